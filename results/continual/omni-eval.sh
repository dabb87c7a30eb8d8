#!/bin/bash
# Continual Omniglot for one checkpoint and one learning rule: pick the learning rate on a selection stream
# (seed 1000: 50 classes of the evaluation alphabets), then 5 streams (seeds 0-4) of 200 classes.
# usage: omni-eval.sh CHECKPOINT NAME LABEL [continual options...]
set -e
ckpt=$1 name=$2 label=$3; shift 3
M=${METACTL:-.build/release/metactl}; D="--data ${DATA:-../shared/data/omniglot}"
best=""; bestacc=-1
for lr in 0.003 0.01 0.03 0.1; do
  acc=$($M continual --checkpoint $ckpt $D --classes 50 --seed 1000 --lr $lr "$@" --json 2>/dev/null | python3 -c 'import json,sys; r=json.load(sys.stdin); print(r["points"][-1]["mean"])')
  echo "$name: lr $lr -> $acc on the selection stream"
  if python3 -c "import sys; sys.exit(0 if $acc > $bestacc else 1)"; then best=$lr; bestacc=$acc; fi
done
echo "$name: chosen lr $best"
/usr/bin/time -f "$name: %e s wall" $M continual --checkpoint $ckpt $D --classes 10,50,100,200 --runs 5 --lr $best "$@" --label "$label" --output omni-$name.json 2>/dev/null
