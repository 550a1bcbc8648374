"""Prepare a GPU training run on the device machine (run HERE, before the session's one device call).

The device machine starts bare, reaches no network and receives only the working tree (64 MiB in
all, tracked files included: about 22 MB here) plus the git-ignored paths the call names in
``carry``. So this script puts into git-ignored folders of the repository:

* ``.devdata/train``: a subset of ``../shared/data/train`` (original JPEG bytes, unchanged): all of
  AID-150, then the first images of every RSSCN7 class, as many as ``--mb`` allows (by default
  what the 64 MiB leave after the tree that travels, the wheels and a 2 MiB margin);
* ``.whl``: the wheels the device's Python (3.12, with torch and torchvision) lacks: compressai
  1.2.8 and pytorch-msssim, fetched from the package registry.

    python pipelines/device/prepare.py

then, through the device tool (one call; see ``pipelines/device/train.sh``):

    run(command="bash pipelines/device/train.sh dmenet_geo/weights/default.pt 0.12 --crop 256",
        carry=[".devdata", ".whl"], timeout_s=590)

``pipelines/device/train_many.sh`` trains several runs side by side in one such call (session 17:
three at once, 0.06-0.08 s a step each at batch 64 of 128x128 crops); ``--with-codec`` adds the wheels that
``pipelines/device/check.sh`` (the codec's CUDA checks) needs. Train at the chunk size: with
``--no-aid`` the subset is RSSCN7 alone (400x400), for ``train.py --crop 256``; session 17's
128x128 fine-tune of the default lost 4.7 % on 256x256 tiles (model card, "GPU session 17").
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED_TRAIN = REPO.parent / "shared" / "data" / "train"
WHEELS = ("compressai==1.2.8", "pytorch-msssim==1.0.0")
# what the codec's checks (check.sh) need besides: the numcodecs / Zarr stack of the project's pins
CODEC_WHEELS = ("numcodecs==0.16.6", "zarr==3.1.5", "donfig==0.8.1.post1", "google-crc32c==1.9.0")
CALL_LIMIT = 64 * 2**20  # what one device call may send: the tree plus the carried paths
MARGIN = 2 * 2**20
PLATFORMS = ("manylinux_2_34_x86_64", "manylinux_2_28_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64")


def pick_files(train: Path, budget: int, aid: bool = True) -> tuple[list[Path], int]:
    """AID-150 whole (unless ``aid`` is false), then RSSCN7 round-robin over its classes (sorted
    names) while the bytes fit; returns the files and their bytes."""
    chosen = sorted((train / "aid150").rglob("*.jpg")) if aid else []
    used = sum(p.stat().st_size for p in chosen)
    if used > budget:
        raise SystemExit(f"AID-150 alone is {used / 1e6:.1f} MB, over the {budget / 1e6:.1f} MB budget")
    classes = [sorted(d.glob("*.jpg")) for d in sorted((train / "rsscn7").iterdir()) if d.is_dir()]
    for i in range(max(map(len, classes), default=0)):
        for files in classes:
            if i < len(files):
                size = files[i].stat().st_size
                if used + size > budget:
                    return chosen, used
                chosen.append(files[i])
                used += size
    return chosen, used


def copy_subset(train: Path, out: Path, budget: int, aid: bool = True) -> tuple[int, int]:
    files, size = pick_files(train, budget, aid)
    shutil.rmtree(out, ignore_errors=True)
    for src in files:
        dst = out / src.relative_to(train)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
    return len(files), size


def tree_bytes() -> int:
    """The bytes of the working tree that travel on every call: tracked files and untracked ones
    git does not ignore."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         cwd=REPO, check=True, capture_output=True).stdout
    paths = {REPO / name for name in out.decode().split("\0") if name}
    return sum(p.stat().st_size for p in paths if p.is_file())


def download_wheels(out: Path, names: tuple[str, ...] = WHEELS) -> list[str]:
    shutil.rmtree(out, ignore_errors=True)
    platforms = [a for p in PLATFORMS for a in ("--platform", p)]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version",
           "3.12", "--implementation", "cp", *platforms, "-d", str(out), *names]
    subprocess.run(cmd, check=True)
    return sorted(p.name for p in out.glob("*.whl"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", type=Path, default=SHARED_TRAIN, help="the training folder to subset")
    p.add_argument("--mb", type=float, default=None,
                   help="data budget in MB (default: what the call's 64 MiB leave after the tree and wheels)")
    p.add_argument("--no-wheels", action="store_true", help="copy the data only")
    p.add_argument("--no-aid", action="store_true",
                   help="RSSCN7 only: for --crop 256, which AID-150's 150x150 images cannot serve")
    p.add_argument("--with-codec", action="store_true",
                   help="also the numcodecs / Zarr wheels that pipelines/device/check.sh needs (9.7 MB)")
    args = p.parse_args(argv)
    if not args.no_wheels:
        names = WHEELS + CODEC_WHEELS if args.with_codec else WHEELS
        print(".whl: " + ", ".join(download_wheels(REPO / ".whl", names)))
    wheels = sum(p.stat().st_size for p in (REPO / ".whl").glob("*.whl"))
    tree = tree_bytes()
    budget = int(args.mb * 1e6) if args.mb is not None else CALL_LIMIT - tree - wheels - MARGIN
    count, size = copy_subset(args.train, REPO / ".devdata" / "train", budget, aid=not args.no_aid)
    print(f".devdata/train: {count} images, {size / 1e6:.1f} MB; the tree {tree / 1e6:.1f} MB, "
          f"wheels {wheels / 1e6:.1f} MB: {(tree + wheels + size) / 2**20:.1f} of 64 MiB per call")
    return 0


if __name__ == "__main__":
    sys.exit(main())
