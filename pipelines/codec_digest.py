"""SHA-256 of the chunks ``DMENetCodec`` writes for real tiles and of the arrays it decodes from them.

    python pipelines/codec_digest.py --data ../shared/data/val --tiles 35 --models default,default-ecbb8582

Run it under two versions of the code (e.g. an older commit checked out with ``git worktree add
/tmp/old REV`` and ``PYTHONPATH=/tmp/old``) to check that a change leaves every encoded byte and
every decoded pixel as it was. Tiles: as ``pipelines/bench_codec.py`` picks them (``--tiles``
images spread over the sorted files under ``--data``, central 256x256 RGB window). One line per
model: the two digests over all tiles, in order.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``pipelines`` importable, after PYTHONPATH's
    sys.path.append(str(Path(__file__).resolve().parent.parent))  # dmenet_geo (another version's)

from pipelines.bench_codec import DEFAULT_DATA, list_images, load_chunks  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--tiles", type=int, default=35)
    p.add_argument("--models", default="default", help="comma-separated shipped model names")
    p.add_argument("--quality", type=float, default=4.0)
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    args = p.parse_args(argv)

    import torch

    import dmenet_geo
    from dmenet_geo.codec import DMENetCodec

    torch.set_num_threads(args.threads)
    chunks = load_chunks(list_images(args.data, args.tiles))
    print(f"dmenet_geo from {Path(dmenet_geo.__file__).parent}; {len(chunks)} chunks of 3x256x256 uint8, "
          f"quality {args.quality}, {args.threads} torch thread(s)")
    for model in args.models.split(","):
        codec = DMENetCodec(quality=args.quality, model=model)
        encoded, decoded = hashlib.sha256(), hashlib.sha256()
        for chunk in chunks:
            data = codec.encode(chunk)
            encoded.update(data)
            decoded.update(codec.decode(data).tobytes())
        print(f"{model}: encoded {encoded.hexdigest()[:16]}  decoded {decoded.hexdigest()[:16]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
