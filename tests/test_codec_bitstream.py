"""The chunk container under abuse: other weights, newer versions, truncation and corruption.

Every bad chunk must raise ``DMENetCodecError`` (a ``ValueError``): never another exception, never
a crash or hang, never wrong pixels. The fuzz loops run in one fresh interpreter with a timeout, so
a hang or a segfault in the entropy decoder fails the test instead of the session.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np
import pytest
from codec_helpers import chunk_regions, raster, reseal, run_python, with_crc

from dmenet_geo.codec import DMENetCodec, DMENetCodecError
from dmenet_geo.codec.bitstream import FORMAT_VERSION, unpack_chunk

FUZZ_SEED = 20240607
FUZZ_CASES = 200  # per random family
FUZZ_TIMEOUT_S = 240


def _chunk_a() -> tuple[DMENetCodec, np.ndarray]:
    """uint8, 3 bands, one group, no mask."""
    return DMENetCodec(), raster(3, 16, 20, "uint8", seed=1)


def _chunk_b() -> tuple[DMENetCodec, np.ndarray]:
    """int16, 4 bands (two groups), nodata mask."""
    arr = raster(4, 9, 70, "int16", seed=2)
    arr[:, :3, :5] = -32768
    return DMENetCodec(nodata=-32768, quality=6), arr


@pytest.fixture(scope="module")
def chunks() -> dict[str, tuple[DMENetCodec, bytes, np.ndarray]]:
    out = {}
    for name, make in (("A", _chunk_a), ("B", _chunk_b)):
        codec, arr = make()
        data = codec.encode(arr)
        out[name] = (codec, data, codec.decode(data))
    return out


# ------------------------------------------------------------------------------- targeted checks


def test_regions_cover_the_chunk(chunks) -> None:
    for _, data, _ in chunks.values():
        regions = chunk_regions(data)
        assert regions[0].start == 0 and regions[-1].stop == len(data)
        assert all(a.stop == b.start for a, b in zip(regions, regions[1:], strict=False))


def test_other_weights_id_is_refused(chunks) -> None:
    _, data, _ = chunks["A"]
    other = DMENetCodec(weights_sha256="ab" * 32)
    with pytest.raises(DMENetCodecError, match="weights") as info:
        other.decode(data)
    assert isinstance(info.value, ValueError)
    assert unpack_chunk(data).header.model_id.hex() in str(info.value)
    assert "abababab" in str(info.value)
    # the same chunk stamped with another model id (and a valid checksum) is refused by the shipped codec
    forged = reseal(data[:15] + bytes(4) + data[19:])  # model_id: bytes 15..18
    assert unpack_chunk(forged).header.model_id == bytes(4)
    with pytest.raises(DMENetCodecError, match="encoded with weights 00000000"):
        DMENetCodec().decode(forged)


def test_codec_bound_to_other_weights_cannot_encode() -> None:
    with pytest.raises(DMENetCodecError, match="installed weights"):
        DMENetCodec(weights_sha256="cd" * 32).encode(np.zeros((1, 4, 4), np.uint8))


@pytest.mark.parametrize("version", [FORMAT_VERSION + 1, 7, 255], ids=lambda v: f"v{v}")
@pytest.mark.parametrize("sealed", [False, True], ids=["raw", "resealed"])
def test_newer_format_version_asks_to_upgrade(chunks, version: int, sealed: bool) -> None:
    _, data, _ = chunks["A"]
    newer = data[:4] + bytes([version]) + data[5:]
    newer = reseal(newer) if sealed else newer
    with pytest.raises(DMENetCodecError, match="upgrade"):
        DMENetCodec().decode(newer)


def test_version_zero_is_unknown(chunks) -> None:
    _, data, _ = chunks["A"]
    with pytest.raises(DMENetCodecError, match="unknown chunk format version 0"):
        DMENetCodec().decode(reseal(data[:4] + b"\x00" + data[5:]))


@pytest.mark.parametrize("data", [b"", b"DMN", b"DMNT", b"PNG\x89" + bytes(60), bytes(100)],
                         ids=["empty", "3-bytes", "magic-only", "png-ish", "zeros"])
def test_not_a_chunk(data: bytes) -> None:
    with pytest.raises(DMENetCodecError):
        DMENetCodec().decode(data)


def test_digest_mismatch_is_refused(chunks) -> None:
    """A checksum-valid chunk whose latent digest is wrong (e.g. other arithmetic) never decodes."""
    _, data, _ = chunks["B"]
    group0 = next(r for r in chunk_regions(data) if r.name == "group0.lengths")
    (digest,) = struct.unpack_from("<I", data, group0.start)
    forged = reseal(data[: group0.start] + struct.pack("<I", digest ^ 1) + data[group0.start + 4 :])
    with pytest.raises(DMENetCodecError, match="digest mismatch"):
        DMENetCodec(nodata=-32768, quality=6).decode(forged)


@pytest.mark.parametrize("quality", [0.0, 0.999, 8.5, float("nan"), float("-inf")],
                         ids=["q0", "q0.999", "q8.5", "qnan", "q-inf"])
def test_forged_quality_out_of_range_raises(chunks, quality: float) -> None:
    """The header's quality (bytes 11..14) is not checked by the container: the model refuses it."""
    _, data, _ = chunks["A"]
    forged = reseal(data[:11] + struct.pack("<f", quality) + data[15:])
    with pytest.raises(DMENetCodecError):
        DMENetCodec().decode(forged)


def test_checksum_message(chunks) -> None:
    _, data, _ = chunks["A"]
    bad = bytearray(data)
    bad[len(bad) // 2] ^= 0x40
    with pytest.raises(DMENetCodecError, match="checksum"):
        DMENetCodec().decode(bytes(bad))


def test_trailing_bytes_inside_the_checksum(chunks) -> None:
    _, data, _ = chunks["A"]
    with pytest.raises(DMENetCodecError, match="trailing"):
        DMENetCodec().decode(with_crc(data[:-4] + b"\x00\x00"))


def test_one_bad_chunk_fails_the_whole_batch(chunks) -> None:
    codec, data, _ = chunks["A"]
    with pytest.raises(DMENetCodecError):
        codec.decode_batch([data, data[:-1], data])


# ------------------------------------------------------------------------------------------ fuzz

FUZZ_CHILD = r"""
import json, random, struct, sys, zlib
from pathlib import Path
import numpy as np
import numcodecs

root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__import__("os").environ["FUZZ_DIR"])
spec = json.loads((root / "spec.json").read_text())
rng = random.Random(spec["seed"])
results = {}

def reseal(b):
    b = bytes(b[:-4])
    return b + struct.pack("<I", zlib.crc32(b))

def classify(codec, ref, data):
    try:
        out = codec.decode(data)
    except ValueError as exc:
        name = type(exc).__name__
        return ("error" if name == "DMENetCodecError" else "other"), f"{name}: {exc}"
    except BaseException as exc:  # noqa: BLE001
        return "other", f"{type(exc).__name__}: {exc}"
    out = np.asarray(out)
    if out.shape == ref.shape and out.dtype == ref.dtype and out.tobytes() == ref.tobytes():
        return "same", ""
    return "different", f"shape {out.shape} dtype {out.dtype}"

def record(family, label, region, codec, ref, data):
    print(family, label, file=sys.stderr, flush=True)  # the last line names a hanging case
    outcome, detail = classify(codec, ref, data)
    results.setdefault(family, []).append([label, region, outcome, detail[:200]])

chunks = {}
for name, item in spec["chunks"].items():
    codec = numcodecs.get_codec(item["config"])
    data = (root / f"{name}.dat").read_bytes()
    ref = np.load(root / f"{name}.npy")
    chunks[name] = (codec, data, ref, item["regions"])

def region_of(regions, pos):
    for name, start, stop in regions:
        if start <= pos < stop:
            return name
    return "?"

for name, (codec, data, ref, regions) in chunks.items():
    for n in range(len(data)):
        record("truncate", f"{name}[:{n}]", region_of(regions, n), codec, ref, data[:n])
    for extra in (b"\x00", bytes(rng.randrange(256) for _ in range(16)), data):
        record("extend", f"{name}+{len(extra)}", "after", codec, ref, data + extra)
    for i in range(len(data)):
        bad = bytearray(data)
        bad[i] ^= 1 << (i % 8)
        record("flip", f"{name}@{i}", region_of(regions, i), codec, ref, bytes(bad))

names = sorted(chunks)
for k in range(spec["cases"]):
    name = names[k % len(names)]
    codec, data, ref, regions = chunks[name]
    bad = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        i = rng.randrange(len(bad))
        bad[i] = (bad[i] + rng.randrange(1, 256)) % 256
    record("mutate", f"{name}#{k}", "", codec, ref, bytes(bad))

for k in range(spec["cases"]):
    name = names[k % len(names)]
    codec, data, ref, regions = chunks[name]
    inner = [r for r in regions if r[0] != "crc" and r[2] > r[1]]
    region, start, stop = inner[rng.randrange(len(inner))]
    bad = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(start, stop)
        bad[i] = (bad[i] + rng.randrange(1, 256)) % 256
    record("resealed", f"{name}#{k}", region, codec, ref, reseal(bad))

print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def fuzz(chunks, tmp_path_factory) -> dict[str, list[list[str]]]:
    root = tmp_path_factory.mktemp("fuzz")
    spec: dict[str, Any] = {"seed": FUZZ_SEED, "cases": FUZZ_CASES, "chunks": {}}
    for name, (codec, data, ref) in chunks.items():
        (root / f"{name}.dat").write_bytes(data)
        np.save(root / f"{name}.npy", ref)
        spec["chunks"][name] = {
            "config": codec.get_config(),
            "regions": [[r.name, r.start, r.stop] for r in chunk_regions(data)],
        }
    (root / "spec.json").write_text(json.dumps(spec))
    return run_python(FUZZ_CHILD, {"FUZZ_DIR": str(root)}, timeout=FUZZ_TIMEOUT_S)


def _summary(cases: list[list[str]]) -> str:
    bad = [c for c in cases if c[2] != "error"]
    return "\n".join(f"{label} ({region}): {outcome} {detail}" for label, region, outcome, detail in bad[:20])


@pytest.mark.parametrize("family", ["truncate", "extend", "flip", "mutate"])
def test_damaged_chunks_always_raise(fuzz, chunks, family: str) -> None:
    cases = fuzz[family]
    expected = {"truncate": sum(len(d) for _, d, _ in chunks.values()),
                "flip": sum(len(d) for _, d, _ in chunks.values()), "extend": 6, "mutate": FUZZ_CASES}
    assert len(cases) == expected[family]
    assert all(c[2] == "error" for c in cases), _summary(cases)


def test_truncation_and_flips_report_why(fuzz) -> None:
    msgs = [c[3] for c in fuzz["truncate"]]
    assert all(("truncated" in m or "bad magic" in m or "checksum" in m) for m in msgs), msgs[:5]
    flips = [c for c in fuzz["flip"] if c[1] not in ("header",)]
    assert all("checksum" in c[3] for c in flips)


def test_resealed_corruption_never_crashes_or_returns_wrong_latents(fuzz) -> None:
    """Checksum-valid mutations reach the parser and the entropy decoder.

    Any region: DMENetCodecError or a decoded array, never another exception. Entropy-coded payload
    (``group*.z`` / ``group*.y``): an error or the original pixels, never other pixels. (Header
    fields such as the value ranges or the mask can be forged undetectably once the checksum is
    recomputed: they are not covered by the latent digest.)
    """
    cases = fuzz["resealed"]
    assert len(cases) == FUZZ_CASES
    other = [c for c in cases if c[2] == "other"]
    assert not other, _summary(other)
    payload = [c for c in cases if c[1].endswith((".z", ".y"))]
    assert len(payload) >= 20, "too few payload mutations sampled"
    wrong = [c for c in payload if c[2] == "different"]
    assert not wrong, _summary(wrong)
