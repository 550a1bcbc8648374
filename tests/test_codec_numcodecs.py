"""``DMENetCodec`` against numcodecs' own conformance helpers, golden chunks and config validation.

The raw-bytes paths of ``check_encode_decode`` (bytes, bytearray, array.array) are coded as 1-band
uint8 strips ``(1, 1, N)``, so the arrays here are uint8 with at most 4096 elements. The codec is
lossy: comparisons use ``decimal=UINT8_DECIMAL`` (see ``codec_helpers``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numcodecs
import numcodecs.tests.common as nc_common
import numpy as np
import pytest
from codec_helpers import (
    GOLDEN_DIR,
    REGENERATE_HINT,
    UINT8_DECIMAL,
    assert_bitwise_equal,
    golden_status,
    raster,
    regenerate_golden,
    shipped_sha256,
)

from dmenet_geo.codec import DMENetCodec, DMENetCodecError
from dmenet_geo.codec.bitstream import FORMAT_VERSION, MAGIC

SHA = shipped_sha256()
GOLDEN_SHAS = {SHA, shipped_sha256("wide")}  # every model the golden sets below code with

# uint8 inputs are kept in 5..100: the placeholder weights decode any input to roughly 0..106, so
# errors stay below the 150 grey levels that decimal=-2 allows; trained weights do far better.
LO, HI = 5, 100


def _u8(*shape: int, seed: int = 0) -> np.ndarray:
    flat = raster(1, 1, int(np.prod(shape)), "uint8", seed=seed, lo=LO, hi=HI)
    return flat.reshape(shape)


# --------------------------------------------------------------------------- conformance helpers

ENCODE_DECODE_CASES = {
    "1d-7": lambda: _u8(7),
    "2d-32x40": lambda: _u8(32, 40),
    "2d-1x1": lambda: _u8(1, 1),
    "3d-3x16x16": lambda: _u8(3, 16, 16),
    "3d-7x9x13": lambda: _u8(7, 9, 13),
    "3d-3x16x16-fortran": lambda: np.asfortranarray(_u8(3, 16, 16, seed=1)),
}


@pytest.mark.parametrize("make", ENCODE_DECODE_CASES.values(), ids=ENCODE_DECODE_CASES.keys())
@pytest.mark.parametrize("quality", [1.0, 4.0, 8.0], ids=["q1", "q4", "q8"])
def test_check_encode_decode(make, quality: float) -> None:
    nc_common.check_encode_decode(make(), DMENetCodec(quality=quality), precision=UINT8_DECIMAL)


def test_check_encode_decode_longest_strip() -> None:
    """4096 bytes: the longest raw buffer (a (1, 1, 4096) strip, padded to 64 x 4096 for the model)."""
    nc_common.check_encode_decode(_u8(4096), DMENetCodec(), precision=UINT8_DECIMAL)


def test_raw_buffer_longer_than_4096_bytes_is_rejected() -> None:
    with pytest.raises(DMENetCodecError, match="4096"):
        DMENetCodec().encode(bytes(4097))


CONFIG_CASES = {
    "default": {},
    "q1": {"quality": 1},
    "q2.5-nodata0": {"quality": 2.5, "nodata": 0},
    "q8-nodata-float": {"quality": 8.0, "nodata": -9999.5},
    "value-range-one": {"value_range": [[0, 10000]]},
    "value-range-per-band": {"value_range": [[0, 1], [-5, 5.5], [100, 4000]]},
    "explicit-sha": {"weights_sha256": SHA},
    "explicit-sha-upper": {"weights_sha256": SHA.upper()},
    "other-sha": {"weights_sha256": "ab" * 32},
    "refine-10": {"refine": 10},
    "refine-max": {"refine": 1000},
}


@pytest.mark.parametrize("kwargs", CONFIG_CASES.values(), ids=CONFIG_CASES.keys())
def test_check_config(kwargs: dict) -> None:
    codec = DMENetCodec(**kwargs)
    nc_common.check_config(codec)
    config = codec.get_config()
    assert config["id"] == "dmenet"
    expected = {"id", "quality", "nodata", "model", "weights_sha256", "value_range"}
    assert set(config) == expected | ({"refine"} if kwargs.get("refine") else set())
    assert config["weights_sha256"] == kwargs.get("weights_sha256", SHA).lower()
    # the registry resolves the id (entry point or explicit registration) to the same codec
    assert numcodecs.get_codec(json.loads(json.dumps(config))) == codec


@pytest.mark.parametrize(
    "stmt",
    [
        f"DMENetCodec(model='default', nodata=None, quality=4.0, refine=0, value_range=None, "
        f"weights_sha256='{SHA}')",
        f"DMENetCodec(model='default', nodata=0.0, quality=2.5, refine=5, value_range=[[0.0, 10000.0]], "
        f"weights_sha256='{SHA}')",
    ],
    ids=["default", "custom"],
)
def test_check_repr(stmt: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # check_repr evals in numcodecs.tests.common's namespace, which only knows numcodecs' own codecs
    monkeypatch.setattr(nc_common, "DMENetCodec", DMENetCodec, raising=False)
    nc_common.check_repr(stmt)


def test_default_repr_uses_the_shipped_sha() -> None:
    assert repr(DMENetCodec()) == (
        f"DMENetCodec(model='default', nodata=None, quality=4.0, refine=0, value_range=None, "
        f"weights_sha256='{SHA}')"
    )


def test_check_err_encode_object_buffer() -> None:
    nc_common.check_err_encode_object_buffer(DMENetCodec())


def test_unsupported_dtype_is_a_codec_error() -> None:
    """numcodecs' check_err_decode_object_buffer encodes int64 first, which DMENet refuses."""
    with pytest.raises(DMENetCodecError, match="unsupported dtype int64"):
        DMENetCodec().encode(np.arange(10))


def test_decode_into_object_buffer_raises_type_error() -> None:
    """check_err_decode_object_buffer's assertion, with a uint8 array the codec can encode."""
    codec = DMENetCodec()
    enc = codec.encode(np.arange(10, dtype=np.uint8))
    with pytest.raises(TypeError):
        codec.decode(enc, out=np.empty(10, dtype=object))
    with pytest.raises(TypeError):
        codec.decode(np.array([enc], dtype=object))


# --------------------------------------------------------------------------------- golden chunks
# tests/golden/fixture/dmenet/<prefix>/array.NN.npy         input arrays (numcodecs' layout)
#                                     /codec.MM/config.json  codec config (binds the weights SHA)
#                                     /codec.MM/encoded.NN.dat
#                                     /codec.MM/decoded.NN.npy  what those bytes decoded to (ours)


def _with_nodata(arr: np.ndarray, value: float) -> np.ndarray:
    arr = arr.copy()
    arr[:, :5, :7] = value
    arr[-1, -3:, -2:] = value
    return arr


def _with_nan(arr: np.ndarray) -> np.ndarray:
    arr = arr.copy()
    arr[:, 10:14, 3:9] = np.nan
    return arr


GOLDEN_SETS: dict[str, tuple[list, list, int]] = {
    # prefix: (arrays, codecs, decimal for check_backwards_compatibility)
    "uint8": (
        [lambda: raster(3, 64, 64, "uint8", seed=1, lo=LO, hi=HI),
         lambda: _with_nodata(raster(4, 33, 70, "uint8", seed=2, lo=LO, hi=HI), 0),
         lambda: _u8(1, 1, 300, seed=3)],
        [lambda: DMENetCodec(quality=1), lambda: DMENetCodec(), lambda: DMENetCodec(quality=8),
         lambda: DMENetCodec(quality=2.5, nodata=0)],
        UINT8_DECIMAL,
    ),
    "uint16": (
        [lambda: _with_nodata(raster(2, 40, 50, "uint16", seed=4), 0)],
        [lambda: DMENetCodec(), lambda: DMENetCodec(nodata=0), lambda: DMENetCodec(value_range=[[0, 20000]])],
        -5,
    ),
    "int16": (
        [lambda: _with_nodata(raster(3, 30, 30, "int16", seed=5), -32768)],
        [lambda: DMENetCodec(nodata=-32768, quality=6)],
        -5,
    ),
    "float32-nan": (
        [lambda: _with_nan(raster(1, 50, 47, "float32", seed=6))],
        [lambda: DMENetCodec(quality=3)],
        -2,
    ),
    "float32-nodata": (
        [lambda: _with_nodata(raster(5, 20, 66, "float32", seed=7), -9999.0)],
        [lambda: DMENetCodec(nodata=-9999.0)],
        -2,
    ),
    "wide-uint8": (  # the N = 128 model shipped beside the default
        [lambda: raster(3, 64, 64, "uint8", seed=8, lo=LO, hi=HI),
         lambda: _with_nodata(raster(3, 40, 72, "uint8", seed=9, lo=LO, hi=HI), 0)],
        [lambda: DMENetCodec(model="wide", quality=1),
         lambda: DMENetCodec(model="wide", quality=8, nodata=0)],
        UINT8_DECIMAL,
    ),
}

GOLDEN_ROOT = GOLDEN_DIR / "fixture" / "dmenet"


@pytest.fixture(scope="module")
def golden() -> Path:
    """The golden fixture root; rebuilt only when DMENET_REGENERATE_GOLDEN=1, else SHA-checked."""
    if regenerate_golden():
        if GOLDEN_ROOT.exists():
            shutil.rmtree(GOLDEN_ROOT)
        GOLDEN_ROOT.mkdir(parents=True)
        return GOLDEN_ROOT
    state, why = golden_status(GOLDEN_ROOT, GOLDEN_SHAS)
    if state == "missing":
        pytest.fail(why)
    if state == "stale":
        pytest.skip(why)
    return GOLDEN_ROOT


@pytest.mark.parametrize("prefix", GOLDEN_SETS, ids=list(GOLDEN_SETS))
def test_golden_check_backwards_compatibility(
    prefix: str, golden: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    arrays, codecs, decimal = GOLDEN_SETS[prefix]
    codecs_built = [make() for make in codecs]
    monkeypatch.chdir(GOLDEN_DIR)  # the helper reads and writes fixture/<codec_id>/... under CWD
    if regenerate_golden():
        nc_common.check_backwards_compatibility(
            "dmenet", [make() for make in arrays], codecs_built,
            precision=[decimal] * len(codecs), prefix=prefix,
        )
        # record what the bytes decode to, for the bit-exact test below
        for j, codec in enumerate(codecs_built):
            for enc in sorted((golden / prefix / f"codec.{j:02d}").glob("encoded.*.dat")):
                np.save(enc.with_name(enc.name.replace("encoded", "decoded").replace(".dat", ".npy")),
                        codec.decode(enc.read_bytes()))
        return
    # never write: the arrays argument is only used to create missing fixture files
    missing = [f"array.{i:02d}.npy" for i in range(len(arrays))
               if not (golden / prefix / f"array.{i:02d}.npy").exists()]
    assert not missing, f"golden arrays {missing} missing under {golden / prefix}: {REGENERATE_HINT}"
    for j in range(len(codecs)):
        files = [golden / prefix / f"codec.{j:02d}" / f"encoded.{i:02d}.dat" for i in range(len(arrays))]
        absent = [str(f) for f in files if not f.exists()]
        assert not absent, f"golden chunks missing: {absent}: {REGENERATE_HINT}"
    nc_common.check_backwards_compatibility(
        "dmenet", [], codecs_built, precision=[decimal] * len(codecs), prefix=prefix
    )


@pytest.mark.parametrize("prefix", GOLDEN_SETS, ids=list(GOLDEN_SETS))
def test_golden_chunks_decode_bit_exactly(prefix: str, golden: Path) -> None:
    """Stored chunks decode to exactly the pixels recorded when they were made (any machine)."""
    if regenerate_golden():
        pytest.skip("regenerating golden chunks")
    encoded = sorted((golden / prefix).glob("codec.*/encoded.*.dat"))
    assert encoded, f"no golden chunks under {golden / prefix}"
    for enc in encoded:
        config = json.loads((enc.parent / "config.json").read_text())
        codec = numcodecs.get_codec(config)
        data = enc.read_bytes()
        assert data[:4] == MAGIC and data[4] <= FORMAT_VERSION
        expected = np.load(enc.with_name(enc.name.replace("encoded", "decoded").replace(".dat", ".npy")))
        assert_bitwise_equal(codec.decode(data), expected, str(enc.relative_to(golden)))
        original = np.load(golden / prefix / f"array.{enc.name.split('.')[1]}.npy")
        assert expected.shape == original.shape and expected.dtype == original.dtype


def test_golden_stale_weights_are_skipped_with_a_clear_message(tmp_path: Path) -> None:
    """Golden configs bound to other weights give a skip naming both SHAs and the command."""
    root = tmp_path / "dmenet"
    (root / "uint8" / "codec.00").mkdir(parents=True)
    config = DMENetCodec(weights_sha256="0" * 64).get_config()
    (root / "uint8" / "codec.00" / "config.json").write_text(json.dumps(config))
    state, why = golden_status(root, {SHA})
    assert state == "stale"
    assert why.startswith(f"golden chunks were made with weights {'0' * 64}, shipped weights are {SHA}")
    assert REGENERATE_HINT in why and "DMENET_REGENERATE_GOLDEN=1" in why
    assert golden_status(tmp_path / "nothing", {SHA})[0] == "missing"
    config = DMENetCodec(weights_sha256=SHA).get_config()
    (root / "uint8" / "codec.00" / "config.json").write_text(json.dumps(config))
    assert golden_status(root, {SHA})[0] == "ok"
    assert golden_status(root, {SHA, "1" * 64})[0] == "stale"  # a model whose golden chunks are missing


# --------------------------------------------------------------------------- config validation

BAD_CONFIGS = {
    "quality-0": ({"quality": 0}, "quality"),
    "quality-0.99": ({"quality": 0.99}, "quality"),
    "quality-8.01": ({"quality": 8.01}, "quality"),
    "quality-9": ({"quality": 9}, "quality"),
    "quality-nan": ({"quality": float("nan")}, "quality"),
    "quality-inf": ({"quality": float("inf")}, "quality"),
    "quality-str": ({"quality": "4"}, "quality"),
    "quality-bool": ({"quality": True}, "quality"),
    "quality-none": ({"quality": None}, "quality"),
    "nodata-str": ({"nodata": "0"}, "nodata"),
    "nodata-bool": ({"nodata": False}, "nodata"),
    "nodata-list": ({"nodata": [0]}, "nodata"),
    "sha-short": ({"weights_sha256": "abc"}, "weights_sha256"),
    "sha-65": ({"weights_sha256": "a" * 65}, "weights_sha256"),
    "sha-not-hex": ({"weights_sha256": "z" * 64}, "weights_sha256"),
    "sha-int": ({"weights_sha256": 123}, "weights_sha256"),
    "range-empty": ({"value_range": []}, "value_range"),
    "range-equal": ({"value_range": [[1, 1]]}, "value_range"),
    "range-reversed": ({"value_range": [[2, 1]]}, "value_range"),
    "range-nan": ({"value_range": [[0, float("nan")]]}, "value_range"),
    "range-single-number": ({"value_range": [0]}, "value_range"),
    "range-triple": ({"value_range": [[0, 1, 2]]}, "value_range"),
    "range-strings": ({"value_range": [["a", "b"]]}, "value_range"),
    "range-scalar": ({"value_range": 5}, "value_range"),
    "model-empty": ({"model": ""}, "model"),
    "model-unknown": ({"model": "no-such-model"}, "model"),
    "model-unknown-sha-unknown": ({"model": "no-such-model", "weights_sha256": "ab" * 32}, "model"),
    "model-int": ({"model": 3}, "model"),
    "refine-negative": ({"refine": -1}, "refine"),
    "refine-too-many": ({"refine": 1001}, "refine"),
    "refine-float": ({"refine": 2.5}, "refine"),
    "refine-bool": ({"refine": True}, "refine"),
    "refine-string": ({"refine": "10"}, "refine"),
}


@pytest.mark.parametrize("kwargs, word", BAD_CONFIGS.values(), ids=BAD_CONFIGS.keys())
def test_bad_config_raises(kwargs: dict, word: str) -> None:
    with pytest.raises(DMENetCodecError) as info:
        DMENetCodec(**kwargs)
    assert isinstance(info.value, ValueError)
    assert word.split("_")[0] in str(info.value)


def test_bad_config_from_registry_raises() -> None:
    with pytest.raises(DMENetCodecError, match="quality"):
        numcodecs.get_codec({"id": "dmenet", "quality": 0})


def test_value_range_pairs_must_match_bands() -> None:
    codec = DMENetCodec(value_range=[[0, 1000], [0, 2000]])
    with pytest.raises(DMENetCodecError, match="value_range has 2 pairs for 3 bands"):
        codec.encode(np.zeros((3, 8, 8), dtype=np.uint16))
    # one pair per band, or a single pair, is fine
    assert codec.decode(codec.encode(np.zeros((2, 8, 8), dtype=np.uint16))).shape == (2, 8, 8)


def test_a_model_shipped_under_another_name_is_found_by_its_sha256() -> None:
    """A store's config names a model that the package no longer ships under that name (renamed):
    the SHA-256 decides, so its chunks still decode with the shipped weights that have it, and
    the config keeps the name it was written with."""
    codec = numcodecs.get_codec({"id": "dmenet", "model": "renamed-model", "weights_sha256": SHA.upper()})
    assert codec.model == "renamed-model" and codec.weights_sha256 == SHA
    data = raster(3, 32, 32, "uint8", seed=3, lo=LO, hi=HI)
    assert np.array_equal(codec.decode(codec.encode(data)), DMENetCodec().decode(DMENetCodec().encode(data)))


def test_quality_bounds_accepted() -> None:
    for q in (1, 1.0, 8, 8.0, 2.5, np.float32(3.25), np.int64(5)):
        assert DMENetCodec(quality=q).quality == float(q)  # type: ignore[arg-type]


EARLIER_ROOT = GOLDEN_DIR / "earlier"


@pytest.mark.parametrize("weights", sorted(p.name for p in EARLIER_ROOT.iterdir()), ids=str)
def test_chunks_of_earlier_weights_still_decode_bit_exactly(weights: str) -> None:
    """Golden chunks written before the default model was retrained name the earlier weights by
    SHA-256 (with ``model: default``); the package still ships those weights and decodes the chunks
    to the same pixels."""
    encoded = sorted((EARLIER_ROOT / weights).glob("*/codec.*/encoded.*.dat"))
    assert len(encoded) >= 10
    for enc in encoded:
        config = json.loads((enc.parent / "config.json").read_text())
        assert config["model"] == "default" and config["weights_sha256"].startswith(weights)
        codec = numcodecs.get_codec(config)
        expected = np.load(enc.with_name(enc.name.replace("encoded", "decoded").replace(".dat", ".npy")))
        assert_bitwise_equal(codec.decode(enc.read_bytes()), expected, str(enc.relative_to(EARLIER_ROOT)))
