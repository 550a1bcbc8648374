#!/bin/bash
# Train on the device machine (GPU) from committed weights; what comes back lands in $OUT.
#
#   bash pipelines/device/train.sh INIT_WEIGHTS HOURS [more pipelines/train.py options]
#
# Prepared here by pipelines/device/prepare.py (.devdata/train, .whl); on the device call, name
# both in `carry`. The defaults below suit a GPU (batch 16 of 128x128 crops, a cosine from 1e-4);
# options given after HOURS override them (argparse keeps the last). The run folder (with the
# optimiser checkpoint) stays on the device; $OUT gets train.log, weights.json, weights.sha256 and
# weights.pt in parts of 15 MiB (a returned file is at most 16 MiB):
#   cat weights.pt.part* > weights.pt && sha256sum -c weights.sha256
# (pipelines/device/assemble.py does this and checks the result.)
# Variables: PYTHON (python3), DEVICE_DATA (.devdata/train), SKIP_WHEELS=1 (use the Python as is),
# PART_SIZE (15M).
set -uo pipefail
if [ $# -lt 2 ]; then
    echo "usage: $0 INIT_WEIGHTS HOURS [train.py options]" >&2
    exit 2
fi
init=$1 hours=$2
shift 2
: "${OUT:?OUT must name the folder whose files come back}"
py=${PYTHON:-python3}
data=${DEVICE_DATA:-.devdata/train}
run=$(mktemp -d /tmp/devrun.XXXXXX)
if [ "${SKIP_WHEELS:-0}" != 1 ]; then
    "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || exit 3
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}  # train.py puts the repository on sys.path itself
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
"$py" pipelines/train.py --train "$data" --out "$run" --init-weights "$init" --hours "$hours" \
    --batch 16 --crop 128 --lr 1e-4 --min-lr 1e-6 --schedule cosine --quality-balance 0.75 \
    --threads 8 --log-every 200 --checkpoint-minutes 3 "$@" 2>&1 | tee "$OUT/train.log"
status=$?
if [ -f "$run/weights.pt" ]; then  # also after a failure: the last checkpoint's weights come back
    cp "$run/weights.json" "$OUT/weights.json"
    (cd "$run" && sha256sum weights.pt) > "$OUT/weights.sha256"
    split -b "${PART_SIZE:-15M}" -d "$run/weights.pt" "$OUT/weights.pt.part"
fi
ls -la "$OUT"
exit $status
