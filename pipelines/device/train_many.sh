#!/bin/bash
# Several training runs at once on the device machine's one GPU (pipelines/device/train.sh each).
#
#   bash pipelines/device/train_many.sh HOURS NAME 'INIT_WEIGHTS [train.py options]' [NAME '...' ...]
#
# A DMENet training step at these sizes leaves most of an H200 idle (many small kernels, launched
# from one Python thread), so runs side by side cost little more wall clock than one alone. Each run
# writes into $OUT/NAME while it trains; at the end each folder is packed into $OUT/NAME.tar
# (train.log, weights.pt in one part, weights.json, weights.sha256), since a device call returns
# at most 8 files:  tar xf NAME.tar -C DEST && (cd DEST && cat weights.pt.part* > weights.pt)
# (pipelines/device/assemble.py does the joining and the SHA-256 check).
# Variables as in train.sh: PYTHON, DEVICE_DATA, SKIP_WHEELS=1.
set -uo pipefail
if [ $# -lt 3 ] || [ $(($# % 2)) -ne 1 ]; then
    echo "usage: $0 HOURS NAME 'INIT_WEIGHTS [options]' [NAME '...' ...]" >&2
    exit 2
fi
hours=$1
shift
: "${OUT:?OUT must name the folder whose files come back}"
here=$(dirname "$0")
if [ "${SKIP_WHEELS:-0}" != 1 ]; then  # once, not in every run at the same time
    "${PYTHON:-python3}" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 3
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export SKIP_WHEELS=1 PART_SIZE=1G
names=() pids=()
while [ $# -ge 2 ]; do
    name=$1
    read -r -a spec <<<"$2"  # the weights, then the options, split into words
    shift 2
    mkdir -p "$OUT/$name"
    OUT="$OUT/$name" bash "$here/train.sh" "${spec[0]}" "$hours" "${spec[@]:1}" >"$OUT/$name/stdout.txt" 2>&1 &
    names+=("$name") pids+=($!)
done
status=0
for pid in "${pids[@]}"; do
    wait "$pid" || status=$?
done
for name in "${names[@]}"; do
    echo "== $name"
    grep -E "^(step=|checkpoint|context:)" "$OUT/$name/train.log" | tail -n 4
    tar cf "$OUT/$name.tar" -C "$OUT/$name" . && rm -rf "${OUT:?}/$name"
done
nvidia-smi --query-gpu=memory.used,utilization.gpu --format=csv 2>/dev/null
exit $status
