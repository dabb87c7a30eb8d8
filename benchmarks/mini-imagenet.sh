#!/usr/bin/env bash
# The README's mini-ImageNet walkthrough, end to end: check and cache the dataset, meta-train Prototypical
# Networks and MAML on Conv-4 and Prototypical Networks on ResNet-12, evaluate each on the test classes.
#
#   benchmarks/mini-imagenet.sh DATA OUT
#
# DATA is mini-ImageNet as Ravi & Larochelle distribute it (DATA/images/*.jpg, DATA/train.csv, val.csv, test.csv);
# OUT receives the checkpoints, logs and evaluations. The settings below are the papers'; each may be overridden
# from the environment (the test suite runs this script on a generated dataset of the layout with tiny ones).
# METACTL is the binary (default: metactl on PATH).
set -euo pipefail
data=$1 out=$2
metactl=${METACTL:-metactl}
size=${SIZE:-84}               # 84x84 RGB, stretched, as the usual preprocessing
tasks=${TASKS:-1000}           # test episodes per evaluation
proto_ways=${PROTO_WAYS:-20}   # Snell et al. train 5-shot models on 20-way episodes of 15 queries per class
proto_iterations=${PROTO_ITERATIONS:-40000}
maml_iterations=${MAML_ITERATIONS:-60000}   # Finn et al.: 60,000 meta-iterations
resnet_iterations=${RESNET_ITERATIONS:-40000}
queries=${QUERIES:-15}
threads=${THREADS:-2}
mkdir -p "$out"
images=(--task images --data "$data" --image-size "$size" --threads "$threads")

# Check the layout and decode every image once into the cache (later runs map it).
"$metactl" data --dataset images --data "$data" --image-size "$size"

# Prototypical Networks, Conv-4 (64 channels), with random crops and flips.
"$metactl" train --algorithm protonet "${images[@]}" --augment crop-flip --ways "$proto_ways" --shots 5 --queries "$queries" \
    --iterations "$proto_iterations" --checkpoint "$out/proto.safetensors" --log "$out/proto.jsonl"
"$metactl" eval --checkpoint "$out/proto.safetensors" --data "$data" --ways 5 --shots 5 --tasks "$tasks" --threads "$threads" \
    --output "$out/proto-eval.json"

# MAML, Conv-4 with 32 channels (Finn et al.): 5 inner steps at 0.01, meta-batch 4, second order; 10 steps at test.
"$metactl" train --algorithm maml "${images[@]}" --channels 32 --ways 5 --shots 1 --queries "$queries" --inner-steps 5 \
    --inner-lr 0.01 --meta-batch 4 --iterations "$maml_iterations" --checkpoint "$out/maml.safetensors" --log "$out/maml.jsonl"
"$metactl" eval --checkpoint "$out/maml.safetensors" --data "$data" --tasks "$tasks" --steps 10 --threads "$threads" \
    --output "$out/maml-eval.json"

# Prototypical Networks on ResNet-12 (MetaOptNet's widths), 5-way 5-shot.
"$metactl" train --algorithm protonet --backbone resnet12 "${images[@]}" --augment crop-flip --ways 5 --shots 5 --queries "$queries" \
    --iterations "$resnet_iterations" --checkpoint "$out/resnet12-proto.safetensors" --log "$out/resnet12-proto.jsonl"
"$metactl" eval --checkpoint "$out/resnet12-proto.safetensors" --data "$data" --tasks "$tasks" --threads "$threads" \
    --output "$out/resnet12-proto-eval.json"
