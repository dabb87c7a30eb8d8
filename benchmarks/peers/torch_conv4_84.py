"""Peer benchmark: the 84x84 Conv-4 workloads of `metactl bench` in PyTorch, CPU.
  mini5       : MAML meta-step, Conv-4 with 32 channels (Finn et al.'s mini-ImageNet network: 3x3 conv, BN,
                ReLU, 2x2 max-pool, four times; linear head on the 5x5x32 map) on 84x84x3, 5-way 1-shot
                15-query, meta-batch 4, 5 inner steps, lr_in 0.01; ORDER 2 (create_graph) or 1
  mini-proto  : one Prototypical Networks episode, Conv-4 (64 channels) embedding on 84x84x3, 5-way 5-shot
                15-query, Adam
Batch-norm uses batch statistics (track_running_stats=False), convolutions keep their bias: the same function
as MetaCore's. Usage: torch_conv4_84.py WORKLOAD [ORDER] [THREADS] [REPETITIONS]
Prints: workload, meta-steps (episodes) per second (median of repetitions after a warm-up), peak RSS.
"""
import resource
import torch, torch.nn as nn
from metacore_files import timed, maml_step, proto_step, workload_arguments

workload, order, threads, reps = workload_arguments()

def conv4(channels, classes):
    layers, c = [], 3
    for _ in range(4):
        layers += [nn.Conv2d(c, channels, 3, padding=1), nn.BatchNorm2d(channels, track_running_stats=False), nn.ReLU(), nn.MaxPool2d(2)]
        c = channels
    layers.append(nn.Flatten())
    if classes: layers.append(nn.Linear(channels * 5 * 5, classes))
    return nn.Sequential(*layers)

if workload == 'mini5':
    rate = timed(maml_step(conv4(32, 5), ways=5, shots=1, queries=15, batch=4, steps=5, lr=0.01, order=order), 2, reps)
    label = f"mini5 order={order}"
else:
    rate = timed(proto_step(conv4(64, 0), ways=5, shots=5, queries=15), 3, reps)
    label = "mini-proto"
print(f"torch {label} threads={threads} meta-steps/s={rate:.4f} peakRSS={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}MiB")
