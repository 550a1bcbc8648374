"""Rebuild the files in ``sample_tiles/`` from the shared real data (see README.md here).

    python sample_tiles/make_samples.py [--data ../shared/data]

Four RSSCN7 validation tiles (400x400 JPEG) are centre-cropped to 256x256 and stored as lossless
PNG, and a 600x500 window of rasterio's ``landsat7_rgb_byte.tif`` test scene is written as a
deflate GeoTIFF that keeps the CRS, the (windowed) transform and nodata.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import rasterio
from PIL import Image
from rasterio.windows import Window

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parent.parent / "shared" / "data"

# output name -> RSSCN7 validation image (class folder / file)
TILES = {
    "field.png": "bField/b102.jpg",
    "industry.png": "cIndustry/c101.jpg",
    "river_lake.png": "dRiverLake/d101.jpg",
    "residential.png": "fResident/f101.jpg",
}
CROP = 256

GEOTIFF_SOURCE = "geotiff/landsat7_rgb_byte.tif"
GEOTIFF_NAME = "landsat7_rgb_byte_crop.tif"
# 600 wide x 500 high; ~77 % valid pixels, the rest is the scene's nodata (0) corner.
GEOTIFF_WINDOW = Window(col_off=184, row_off=216, width=600, height=500)


def make_tiles(data: Path, out: Path) -> list[Path]:
    """Centre-crop each RSSCN7 tile to 256x256 and save it as PNG."""
    written = []
    for name, rel in TILES.items():
        with Image.open(data / "val" / "rsscn7" / rel) as img:
            rgb = img.convert("RGB")
        left, top = (rgb.width - CROP) // 2, (rgb.height - CROP) // 2
        tile = rgb.crop((left, top, left + CROP, top + CROP))
        target = out / name
        tile.save(target, format="PNG", optimize=True)
        written.append(target)
    return written


def make_geotiff(data: Path, out: Path) -> Path:
    """Write the Landsat-7 window with its CRS, transform and nodata (deflate, tiled)."""
    with rasterio.open(data / GEOTIFF_SOURCE) as src:
        pixels = src.read(window=GEOTIFF_WINDOW)
        profile = {
            "driver": "GTiff",
            "dtype": src.dtypes[0],
            "count": src.count,
            "width": int(GEOTIFF_WINDOW.width),
            "height": int(GEOTIFF_WINDOW.height),
            "crs": src.crs,
            "transform": src.window_transform(GEOTIFF_WINDOW),
            "nodata": src.nodata,
            "compress": "deflate",
            "predictor": 2,
            "tiled": True,
            "blockxsize": 256,
            "blockysize": 256,
            "interleave": "pixel",
        }
    target = out / GEOTIFF_NAME
    with rasterio.open(target, "w", **profile) as dst:
        dst.write(pixels)
    return target


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared data folder")
    parser.add_argument("--out", type=Path, default=HERE, help="where to write (default: here)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for path in [*make_tiles(args.data, args.out), make_geotiff(args.data, args.out)]:
        print(f"{path.name}: {path.stat().st_size} bytes")
    with rasterio.open(args.out / GEOTIFF_NAME) as check:
        valid = float(np.mean(check.dataset_mask() > 0))
        print(
            f"{GEOTIFF_NAME}: {check.width}x{check.height}, {check.crs}, nodata={check.nodata}, "
            f"{valid:.1%} valid"
        )


if __name__ == "__main__":
    main()
