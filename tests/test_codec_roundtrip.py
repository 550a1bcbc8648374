"""Round trips through ``DMENetCodec``: sizes 1..4096, 1..16 bands, four dtypes, nodata and NaN.

The shipped weights may be an untrained placeholder, so the assertions are structural (shape,
dtype, values inside each band's range, error bounded relative to the range, exact constants,
exact nodata / NaN) plus the loose quality thresholds of ``codec_helpers``.
"""

from __future__ import annotations

import numpy as np
import pytest
from codec_helpers import (
    PSNR_MIN_DB,
    PSNR_MIN_DB_SYNTHETIC,
    assert_bitwise_equal,
    assert_within_band_ranges,
    floor_heavy,
    psnr,
    raster,
    real_tile,
)

from dmenet_geo.codec import DMENetCodec, DMENetCodecError
from dmenet_geo.codec.bitstream import unpack_chunk


@pytest.fixture(scope="module")
def codec() -> DMENetCodec:
    return DMENetCodec()


def roundtrip(codec: DMENetCodec, arr: np.ndarray) -> np.ndarray:
    out = codec.decode(codec.encode(arr))
    assert isinstance(out, np.ndarray)
    return out


def u8_ranges(bands: int) -> list[tuple[float, float]]:
    return [(0.0, 255.0)] * bands


# ------------------------------------------------------------------------------- sizes and bands

SHAPES = [(1, 1), (1, 300), (300, 1), (63, 65), (64, 64), (65, 63), (257, 130), (4096, 64), (2, 4096)]


@pytest.mark.parametrize("h, w", SHAPES, ids=[f"{h}x{w}" for h, w in SHAPES])
def test_any_height_and_width(codec: DMENetCodec, h: int, w: int) -> None:
    arr = raster(1, h, w, "uint8", seed=h * 7 + w)
    dec = roundtrip(codec, arr)
    assert dec.shape == (1, h, w) and dec.dtype == np.uint8
    assert_within_band_ranges(arr, dec, ranges=u8_ranges(1))
    header = unpack_chunk(codec.encode(arr)).header
    assert (header.height, header.width, header.bands) == (h, w, 1)


@pytest.mark.parametrize("h, w", [(1, 1), (5, 300), (63, 65)], ids=["1x1", "5x300", "63x65"])
def test_any_size_uint16_per_chunk_scaling(codec: DMENetCodec, h: int, w: int) -> None:
    arr = raster(3, h, w, "uint16", seed=h + w)
    dec = roundtrip(codec, arr)
    assert dec.shape == arr.shape and dec.dtype == arr.dtype
    assert_within_band_ranges(arr, dec)


@pytest.mark.parametrize("h, w", [(0, 5), (5, 0), (4097, 1), (1, 4097)],
                         ids=["0x5", "5x0", "4097x1", "1x4097"])
def test_sizes_outside_1_to_4096_are_rejected(codec: DMENetCodec, h: int, w: int) -> None:
    with pytest.raises(DMENetCodecError, match="4096"):
        codec.encode(np.zeros((1, h, w), dtype=np.uint8))


@pytest.mark.parametrize("bands", [1, 2, 3, 4, 7, 16], ids=lambda b: f"{b}band")
def test_band_counts(codec: DMENetCodec, bands: int) -> None:
    # disjoint per-band value ranges: a band decoded into another band's slot would leave its range
    arr = np.stack([raster(1, 33, 47, "uint16", seed=b, lo=1000 * b, hi=1000 * b + 700)[0]
                    for b in range(bands)])
    data = codec.encode(arr)
    header = unpack_chunk(data).header
    assert header.bands == bands and header.groups == -(-bands // 3)
    dec = codec.decode(data)
    assert dec.shape == (bands, 33, 47) and dec.dtype == np.uint16
    assert_within_band_ranges(arr, dec)
    u8 = raster(bands, 33, 47, "uint8", seed=bands)
    dec8 = roundtrip(codec, u8)
    assert dec8.shape == u8.shape
    assert_within_band_ranges(u8, dec8, ranges=u8_ranges(bands))


@pytest.mark.parametrize("bands", [0, 17], ids=["0band", "17band"])
def test_band_counts_outside_1_to_16_are_rejected(codec: DMENetCodec, bands: int) -> None:
    with pytest.raises(DMENetCodecError, match="bands"):
        codec.encode(np.zeros((bands, 8, 8), dtype=np.uint8))


def test_real_tile_psnr(codec: DMENetCodec) -> None:
    tile = real_tile()
    dec = roundtrip(codec, tile)
    assert dec.shape == tile.shape and dec.dtype == np.uint8
    assert psnr(tile, dec) > PSNR_MIN_DB


# --------------------------------------------------------------------------------------- dtypes

DTYPES = ["uint8", "uint16", "int16", "float32"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("quality", [1.0, 4.0, 8.0], ids=["q1", "q4", "q8"])
def test_dtypes_error_bounded_by_band_range(dtype: str, quality: float) -> None:
    codec = DMENetCodec(quality=quality)
    arr = raster(3, 63, 65, dtype, seed=3)
    dec = roundtrip(codec, arr)
    assert dec.shape == arr.shape and dec.dtype == arr.dtype
    ranges = u8_ranges(3) if dtype == "uint8" else None
    assert_within_band_ranges(arr, dec, ranges=ranges)
    peak = 255.0 if dtype == "uint8" else float(arr.max() - arr.min())
    assert psnr(arr, dec, peak=peak) > PSNR_MIN_DB_SYNTHETIC
    header = unpack_chunk(codec.encode(arr)).header
    assert header.dtype == dtype and header.quality == quality
    if dtype == "uint8":
        assert header.ranges == ((0.0, 255.0),) * 3
    else:
        for i, (lo, hi) in enumerate(header.ranges):
            assert (lo, hi) == (float(arr[i].min()), float(arr[i].max()))


@pytest.mark.parametrize("dtype", ["int32", "int64", "float64", "uint32", "int8", "bool"])
def test_unsupported_dtypes_are_rejected(codec: DMENetCodec, dtype: str) -> None:
    with pytest.raises(DMENetCodecError, match="dtype"):
        codec.encode(np.zeros((1, 4, 4), dtype=dtype))


def test_float32_infinity_is_rejected(codec: DMENetCodec) -> None:
    arr = raster(1, 8, 8, "float32")
    arr[0, 0, 0] = np.inf
    with pytest.raises(DMENetCodecError, match="infinit"):
        codec.encode(arr)


def test_more_than_three_dimensions_rejected(codec: DMENetCodec) -> None:
    with pytest.raises(DMENetCodecError, match="shape"):
        codec.encode(np.zeros((1, 1, 4, 4), dtype=np.uint8))


CONSTANTS = {
    "uint16-0": ("uint16", 0), "uint16-max": ("uint16", 65535), "uint16-1234": ("uint16", 1234),
    "int16-min": ("int16", -32768), "int16-max": ("int16", 32767), "int16-neg": ("int16", -7),
    "float32-0.1": ("float32", 0.1), "float32-neg-big": ("float32", -3.0e38),
    "float32-tiny": ("float32", 1e-30),
}


@pytest.mark.parametrize("dtype, value", CONSTANTS.values(), ids=CONSTANTS.keys())
def test_constant_bands_decode_exactly(codec: DMENetCodec, dtype: str, value: float) -> None:
    """Non-uint8 bands are scaled by their own min / max, so a constant band is coded exactly."""
    arr = raster(3, 40, 37, dtype, seed=11)
    arr[1] = np.array(value, dtype=dtype)  # constant band between two varying ones
    dec = roundtrip(codec, arr)
    assert_bitwise_equal(dec[1], arr[1], "constant band")
    assert_within_band_ranges(arr, dec)
    whole = np.full((2, 17, 70), value, dtype=dtype)
    assert_bitwise_equal(roundtrip(codec, whole), whole, "constant chunk")


def test_value_range_scaling(codec: DMENetCodec) -> None:
    arr = raster(3, 50, 40, "uint16", seed=5, lo=100, hi=9000)
    arr[0, 0, :5] = 30000  # outside the configured range: clipped to it
    single = DMENetCodec(value_range=[[0, 10000]])
    dec = roundtrip(single, arr)
    assert unpack_chunk(single.encode(arr)).header.ranges == ((0.0, 10000.0),) * 3
    assert dec.dtype == np.uint16 and dec.min() >= 0 and dec.max() <= 10000
    clipped = np.minimum(arr, 10000)
    assert_within_band_ranges(clipped, dec, ranges=[(0.0, 10000.0)] * 3)
    per_band = DMENetCodec(value_range=[[0, 10000], [50, 9500], [-100, 20000]])
    dec2 = roundtrip(per_band, clipped)
    assert unpack_chunk(per_band.encode(clipped)).header.ranges == ((0, 10000), (50, 9500), (-100, 20000))
    assert_within_band_ranges(clipped, dec2, ranges=[(0, 10000), (50, 9500), (0, 20000)])


def test_float32_value_range(codec: DMENetCodec) -> None:
    arr = raster(2, 30, 30, "float32", seed=8, lo=-1.0, hi=1.0)
    vr = DMENetCodec(value_range=[[-1.0, 1.0]])
    dec = roundtrip(vr, arr)
    assert_within_band_ranges(arr, dec, ranges=[(-1.0, 1.0)] * 2)


# --------------------------------------------------------------------------------- nodata and NaN


def _assert_nodata(arr: np.ndarray, dec: np.ndarray, nodata: float) -> None:
    is_nd = arr == nodata
    assert is_nd.any(), "test input must hold nodata"
    assert (dec[is_nd] == nodata).all(), "nodata pixels not restored exactly"
    assert not (dec[~is_nd] == nodata).any(), (
        f"{int((dec[~is_nd] == nodata).sum())} valid pixels decoded to the nodata value {nodata}"
    )


NODATA_CASES = {
    # name: (dtype, nodata, data lo, data hi, valid value next to nodata)
    "uint8-0": ("uint8", 0, 1, 120, 1),
    "uint8-255": ("uint8", 255, 130, 254, 254),
    "uint16-0": ("uint16", 0, 1, 40, 1),
    "int16-min": ("int16", -32768, -32767, -32700, -32767),
    "int16-inside-range": ("int16", -9995, -10000, -9990, -9996),
    "float32--9999": ("float32", -9999.0, -9998.999, -9990.0, float(np.nextafter(np.float32(-9999), 0))),
    "float32-0-inside": ("float32", 0.0, -1.0, 1.0, float(np.nextafter(np.float32(0), np.float32(1)))),
}


@pytest.mark.parametrize("dtype, nodata, lo, hi, near", NODATA_CASES.values(), ids=NODATA_CASES.keys())
def test_nodata_restored_and_never_produced(
    dtype: str, nodata: float, lo: float, hi: float, near: float
) -> None:
    codec = DMENetCodec(nodata=nodata)
    arr = raster(3, 45, 70, dtype, seed=13, lo=lo, hi=hi)
    arr[arr == nodata] = np.array(near, dtype=dtype)  # rounding may have produced nodata itself
    arr[:, :9, :11] = nodata  # a block
    arr[1, 20:, 60:] = nodata  # band-specific
    arr[0, 30, 30] = nodata  # isolated
    arr[0, 30, 31] = np.array(near, dtype=dtype)  # a valid pixel as close to nodata as the dtype allows
    arr[2, 40, :] = np.array(near, dtype=dtype)
    dec = roundtrip(codec, arr)
    assert dec.dtype == arr.dtype and dec.shape == arr.shape
    _assert_nodata(arr, dec, nodata)
    assert unpack_chunk(codec.encode(arr)).mask is not None


def test_nodata_clash_path_is_exercised() -> None:
    """A value_range starting at nodata: pixels at the range floor must not decode to nodata."""
    nodata = -9999.0
    vr = [[nodata, -9000.0]]
    floor = float(np.nextafter(np.float32(nodata), np.float32(0)))  # valid, one ulp above nodata
    arr = floor_heavy(3, 48, 64, "float32", floor, -9000.0)
    arr[:, :4, :4] = nodata
    codec = DMENetCodec(nodata=nodata, value_range=vr, quality=1)
    data = codec.encode(arr)
    dec = codec.decode(data)
    _assert_nodata(arr, dec, nodata)
    # the same bytes without the nodata post-processing: valid pixels do land on nodata
    raw = DMENetCodec(value_range=vr, quality=1).decode(data)
    clashes = int((raw[arr != nodata] == nodata).sum())
    assert clashes > 0, "test did not exercise the clash path"
    moved = dec[(arr != nodata) & (raw == nodata)]
    assert (moved == np.nextafter(np.float32(nodata), np.float32(0))).all(), "moved more than one ulp"


def test_all_nodata_chunk() -> None:
    codec = DMENetCodec(nodata=0)
    arr = np.zeros((3, 20, 30), dtype=np.uint16)
    assert_bitwise_equal(roundtrip(codec, arr), arr, "all-nodata chunk")


def test_no_valid_pixel_decodes_to_nodata_when_chunk_has_no_nodata() -> None:
    """Chunks without nodata pixels (no mask stored) still keep valid pixels off the nodata value."""
    # every pixel is valid and one step above nodata: decoders clamp part of them to the range floor
    codec = DMENetCodec(nodata=0, value_range=[[0, 65535]], quality=1)
    arr = floor_heavy(3, 64, 64, "uint16", 1, 65535)
    data = codec.encode(arr)
    assert unpack_chunk(data).mask is None
    dec = codec.decode(data)
    assert not (dec == 0).any(), f"{int((dec == 0).sum())} valid pixels decoded to nodata 0"
    raw = DMENetCodec(value_range=[[0, 65535]], quality=1).decode(data)  # no nodata post-processing
    assert (raw == 0).any(), "test did not exercise the clash path"
    assert (dec[raw == 0] == 1).all() and (dec[raw != 0] == raw[raw != 0]).all()


def test_float32_nodata_not_exactly_representable() -> None:
    codec = DMENetCodec(nodata=0.1)
    arr = raster(1, 32, 32, "float32", seed=4, lo=0.0, hi=1.0)
    arr[0, :5, :5] = np.float32(0.1)  # what a float32 raster with nodata 0.1 holds
    dec = roundtrip(codec, arr)
    assert (dec[0, :5, :5] == np.float32(0.1)).all()


def test_nan_restored_as_nan(codec: DMENetCodec) -> None:
    arr = raster(2, 41, 39, "float32", seed=9)
    arr[0, :6, :6] = np.nan
    arr[1, 20, :] = np.nan
    dec = roundtrip(codec, arr)
    assert_bitwise_equal(np.isnan(dec), np.isnan(arr), "NaN positions")
    assert_within_band_ranges(arr, dec, invalid=np.isnan(arr))
    all_nan = np.full((1, 5, 5), np.nan, dtype=np.float32)
    assert np.isnan(roundtrip(codec, all_nan)).all()


def test_nan_and_nodata_together() -> None:
    codec = DMENetCodec(nodata=-9999.0)
    arr = raster(1, 30, 30, "float32", seed=10)
    arr[0, :3, :3] = np.nan
    arr[0, -3:, -3:] = -9999.0
    dec = roundtrip(codec, arr)
    assert (dec[0, -3:, -3:] == -9999.0).all()
    assert np.isnan(dec[0, :3, :3]).all()


def test_nodata_nan_config(codec: DMENetCodec) -> None:
    nan_codec = DMENetCodec(nodata=float("nan"))
    arr = raster(1, 20, 20, "float32", seed=12)
    arr[0, 5, 5] = np.nan
    dec = roundtrip(nan_codec, arr)
    assert np.isnan(dec[0, 5, 5]) and np.isfinite(np.delete(dec.ravel(), 5 * 20 + 5)).all()


# ---------------------------------------------------------------------------- API equivalences


def test_2d_input_and_decode_into_out(codec: DMENetCodec) -> None:
    arr = raster(1, 30, 20, "int16", seed=1)[0]
    data = codec.encode(arr)
    dec = codec.decode(data)
    assert dec.shape == (1, 30, 20)
    out = np.empty((30, 20), dtype=np.int16)
    assert codec.decode(data, out=out) is out
    assert_bitwise_equal(out, dec[0], "decode(out=)")


def test_batch_calls_equal_single_calls(codec: DMENetCodec) -> None:
    """encode_batch / decode_batch on mixed sizes, dtypes and bands agree with one-at-a-time calls."""
    arrays = [raster(3, 64, 64, "uint8", seed=1), raster(4, 64, 64, "uint16", seed=2),
              raster(1, 10, 300, "float32", seed=3), raster(3, 64, 64, "int16", seed=4),
              raster(7, 31, 33, "uint8", seed=5)]
    batch = codec.encode_batch(arrays)
    singles = [codec.encode(a) for a in arrays]
    for b, s in zip(batch, singles, strict=True):
        assert unpack_chunk(b).header == unpack_chunk(s).header
    decoded = codec.decode_batch(batch)
    for k, (data, dec) in enumerate(zip(batch, decoded, strict=True)):
        assert_bitwise_equal(codec.decode(data), dec, f"chunk {k}")
