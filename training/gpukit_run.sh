#!/usr/bin/env bash
# The GPU kit's one device run (README, "Training on a GPU"), from the repository root:
#
#     bash training/gpukit_run.sh [train options, e.g. --config paper --refiners '']
#
# Writes everything to $OUT: speed.json (inference speeds), then <network>.tar per network,
# metrics.json and gpukit.log.  The whole run stays within MINUTES of training budget (default
# 8) plus about a minute for the speeds and Python's start, inside the device's 600 s limit.
# A CPU rehearsal: OUT=/tmp/out DEVICE=cpu SPEED_ARGS="--configs realtime --runs 1 --warmup 0" \
#     PACK=... bash training/gpukit_run.sh --steps 2 --batch-mult 0.125 --workers 1
set -u
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
# Speeds first (about 30 s): a failure here must not cost the training run.
# shellcheck disable=SC2086 # SPEED_ARGS is a list of options
python3 -m training.gpukit speed --device "$DEVICE" --json "$OUT/speed.json" ${SPEED_ARGS:-} || echo "speed failed: training anyway"
exec python3 -m training.gpukit train --pack "$PACK" --out "$OUT" --minutes "${MINUTES:-8}" --device "$DEVICE" "$@"
