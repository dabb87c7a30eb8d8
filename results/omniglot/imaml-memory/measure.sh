#!/bin/sh
# Peak resident memory of training (reset after loading) for second-order MAML and iMAML at 5, 10 and 20
# inner steps, on the iMAML 5-way row's command for 2 iterations (32 tasks, both threads).
D=${DATA:-../shared/data/omniglot}
M=${METACTL:-metactl}
common="--task omniglot --data $D --ways 5 --shots 1 --queries 1 --meta-batch 32 --inner-lr 0.1 --meta-lr 0.001 \
  --backbone strided-conv --channels 64 --strides 2,2,2,2 --padding 1 --batch-norm --hidden none --init pytorch \
  --iterations 2 --threads 2 --checkpoint-every 1000"
for steps in 5 10 20; do
  for algorithm in maml imaml; do
    extra=""
    [ $algorithm = imaml ] && extra="--imaml-inner pull-back --imaml-lambda 2 --cg-steps 5 --cg-damping 1 --cg-lambda-damping 10"
    rm -f mem.safetensors
    line=$($M train --algorithm $algorithm $common $extra --inner-steps $steps --checkpoint mem.safetensors --progress-every 1000 | grep "peak resident")
    echo "$algorithm $steps: $line"
  done
done
