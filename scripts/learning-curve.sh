#!/usr/bin/env bash
# Accuracy versus wall time of a training run: evaluates every snapshot NAME-ITERATION.safetensors that
# `metactl train --snapshot-every` left beside CHECKPOINT, on the same fixed test episodes, and prints CSV
# (iteration, training minutes from the run's --log, mean accuracy, 95% CI half-width, in percent).
#
#   scripts/learning-curve.sh CHECKPOINT LOG [metactl eval options...]
#   scripts/learning-curve.sh runs/protonet.safetensors runs/protonet.jsonl --data DATA --ways 5 --shots 1 --tasks 1000
set -euo pipefail
checkpoint=$1 log=$2; shift 2
metactl=${METACTL:-.build/release/metactl}
stem=${checkpoint%.safetensors}
echo "iteration,minutes,accuracy,ci95"
for snapshot in $(ls "$stem"-*.safetensors | sort -V); do
    iteration=${snapshot##*-}; iteration=${iteration%.safetensors}
    "$metactl" eval --checkpoint "$snapshot" "$@" --json 2>/dev/null | python3 -c '
import json, sys
iteration, log = int(sys.argv[1]), sys.argv[2]
result = json.load(sys.stdin)["accuracy"][-1]
mean, ci = 100 * result["mean"], 100 * result["confidence95"]
seconds = next(r["seconds"] for r in map(json.loads, open(log)) if r["iteration"] >= iteration)
print(f"{iteration},{seconds / 60:.1f},{mean:.2f},{ci:.2f}")' "$iteration" "$log"
done
