#!/usr/bin/env bash
# The GPU kit's one device run (README, "Training on a GPU"), from the repository root:
#
#     bash training/gpukit_run.sh [train options, e.g. --config paper --refiners '']
#
# Writes everything to $OUT: speed.json (inference speeds), then <network>.tar per network,
# metrics.json and gpukit.log.  Training gets MINUTES (default 8), or less when the join and the
# speeds took longer than usual: the whole call stays inside the device's 600 s (LIMIT_S).
# A CPU rehearsal: OUT=/tmp/out DEVICE=cpu SPEED_ARGS="--configs realtime --runs 1 --warmup 0" \
#     PACK=... bash training/gpukit_run.sh --steps 2 --batch-mult 0.125 --workers 1
set -u
START=$(date +%s)
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD"
: "${OUT:?set OUT to the folder that comes back}"
PACK=${PACK:-data/gpupack}
DEVICE=${DEVICE:-cuda}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
# A pack that came in parts (gpukit split: one per call, the earlier ones kept on the machine):
# joined whenever parts are here, so that a whole pack an earlier call left does not win over them
if compgen -G "$PACK.part[0-9]*" > /dev/null || [ ! -f "$PACK/faces.zip" ]; then
    python3 -m training.gpukit join --pack "$PACK" || exit 2
fi
# Speeds first (about 30 s): a failure here, or a hang (90 s at most), must not cost the training run.
# shellcheck disable=SC2086 # SPEED_ARGS is a list of options
timeout -k 10 90 python3 -m training.gpukit speed --device "$DEVICE" --json "$OUT/speed.json" ${SPEED_ARGS:-} || echo "speed failed: training anyway"
# Training's budget is what the device's 600 s leave after the join and the speeds (30 s kept
# for Python's start and the last writes), MINUTES at most.
LEFT=$(( ${LIMIT_S:-600} - 30 - ($(date +%s) - START) ))
BUDGET=$(python3 -c "print(round(max(1.0, min(${MINUTES:-8}, $LEFT / 60)), 2))")
echo "training budget: $BUDGET min ($LEFT s left of the call)"
exec python3 -m training.gpukit train --pack "$PACK" --out "$OUT" --minutes "$BUDGET" --device "$DEVICE" "$@"
