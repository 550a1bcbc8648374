#!/bin/bash
# The codec checks that need a GPU, in one device call (about a minute once the machine is up):
#
#   python pipelines/device/prepare.py --with-codec      (here: wheels and the training subset)
#   run(command="bash pipelines/device/check.sh", carry=[".devdata", ".whl"], timeout_s=240)
#
# 1. chunks encoded on the CPU decode bit-identically on CUDA (tests/test_codec_determinism.py);
# 2. the committed golden chunks decode bit-exactly with the model on CUDA (tests/test_codec_numcodecs.py);
# 3. pipelines/bench_codec.py on CUDA: seconds per chunk, single and batched; $OUT/bench_codec_cuda.json.
# The device's Python is newer than the project's pins, so the package is installed there with
# --ignore-requires-python, for its numcodecs entry points only.
# Variables: PYTHON (python3), DEVICE_DATA (.devdata/train/rsscn7: images of at least 256x256),
# CHECK_DEVICE (cuda), SKIP_WHEELS=1 (use the Python as is).
set -uo pipefail
: "${OUT:?OUT must name the folder whose files come back}"
py=${PYTHON:-python3}
device=${CHECK_DEVICE:-cuda}
if [ "${SKIP_WHEELS:-0}" != 1 ]; then
    "$py" -m pip install -q --upgrade --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
        .whl/*.whl || exit 3
    "$py" -m pip install -q --ignore-requires-python --no-index --no-deps --no-build-isolation --no-compile \
        --target /tmp/site-pkg . || exit 3
    export PYTHONPATH=/tmp/site:/tmp/site-pkg${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
if [ "$device" = cuda ] && ! "$py" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
    echo "CUDA is not available to torch: the CUDA checks would only be skipped" >&2
    exit 4
fi
status=0
echo "== CPU-encoded chunks decoded on CUDA"
DMENET_DEVICE=cpu "$py" -m pytest -q -p no:cacheprovider tests/test_codec_determinism.py -k cuda -rs || status=1
echo "== golden chunks decoded on $device"
DMENET_DEVICE=$device "$py" -m pytest -q -p no:cacheprovider tests/test_codec_numcodecs.py -k golden || status=1
echo "== bench_codec on $device"
"$py" pipelines/bench_codec.py --data "${DEVICE_DATA:-.devdata/train/rsscn7}" --tiles 16 --threads 4 \
    --device "$device" --batch-size 16 --repeats 5 --json "$OUT/bench_codec_$device.json" || status=1
exit $status
