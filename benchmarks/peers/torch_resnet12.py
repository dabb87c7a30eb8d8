"""Peer benchmark: the ResNet-12 workloads of `metactl bench` in PyTorch, CPU.
  resnet12        : MAML meta-step, ResNet-12 (MetaOptNet: 64-160-320-640, three 3x3 conv + BN + LeakyReLU(0.1)
                    per block, 1x1 conv + BN shortcut, 2x2 max-pool, global mean pool, linear head) on 84x84x3,
                    5-way 1-shot 15-query, meta-batch 4, 1 inner step, lr_in 0.01; ORDER 2 (create_graph) or 1
  resnet12-proto  : one Prototypical Networks episode, ResNet-12 embedding, 5-way 5-shot 15-query, Adam
Batch-norm uses batch statistics (track_running_stats=False), convolutions keep their bias: the same function
as MetaCore's. Usage: torch_resnet12.py WORKLOAD [ORDER] [THREADS] [REPETITIONS]
Prints: workload, meta-steps (episodes) per second (median of repetitions after a warm-up), peak RSS.
"""
import resource
import torch, torch.nn as nn, torch.nn.functional as F
from metacore_files import timed, maml_step, proto_step, workload_arguments

workload, order, threads, reps = workload_arguments()

class Block(nn.Module):
    def __init__(self, cin, width):
        super().__init__()
        layers = []
        for c in range(3):
            layers += [nn.Conv2d(cin if c == 0 else width, width, 3, padding=1), nn.BatchNorm2d(width, track_running_stats=False)]
            if c < 2: layers.append(nn.LeakyReLU(0.1))
        self.path = nn.Sequential(*layers)
        self.shortcut = nn.Sequential(nn.Conv2d(cin, width, 1), nn.BatchNorm2d(width, track_running_stats=False))
    def forward(self, x):
        return F.max_pool2d(F.leaky_relu(self.path(x) + self.shortcut(x), 0.1), 2)

def resnet12(classes):
    blocks, c = [], 3
    for w in [64, 160, 320, 640]:
        blocks.append(Block(c, w)); c = w
    layers = blocks + [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    if classes: layers.append(nn.Linear(640, classes))
    return nn.Sequential(*layers)

if workload == 'resnet12':
    rate = timed(maml_step(resnet12(5), ways=5, shots=1, queries=15, batch=4, steps=1, lr=0.01, order=order), 1, reps)
    label = f"resnet12 order={order}"
else:
    rate = timed(proto_step(resnet12(0), ways=5, shots=5, queries=15), 2, reps)
    label = "resnet12-proto"
print(f"torch {label} threads={threads} meta-steps/s={rate:.4f} peakRSS={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}MiB")
