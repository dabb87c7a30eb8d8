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
import sys, time, resource, statistics
import torch, torch.nn as nn, torch.nn.functional as F
from torch.func import functional_call

workload = sys.argv[1]
order = int(sys.argv[2]) if len(sys.argv) > 2 and sys.argv[2] != '-' else 2
threads = int(sys.argv[3]) if len(sys.argv) > 3 else 2
reps = int(sys.argv[4]) if len(sys.argv) > 4 else 3
torch.manual_seed(0)
torch.set_num_threads(threads)

def conv4(channels, classes):
    layers, c = [], 3
    for _ in range(4):
        layers += [nn.Conv2d(c, channels, 3, padding=1), nn.BatchNorm2d(channels, track_running_stats=False), nn.ReLU(), nn.MaxPool2d(2)]
        c = channels
    layers.append(nn.Flatten())
    if classes: layers.append(nn.Linear(channels * 5 * 5, classes))
    return nn.Sequential(*layers)

def timed(step, count):
    step()
    rates = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(count): step()
        rates.append(count / (time.perf_counter() - t0))
    return statistics.median(rates)

if workload == 'mini5':
    ways, shots, queries, batch, steps, lr = 5, 1, 15, 4, 5, 0.01
    model = conv4(32, ways)
    params = dict(model.named_parameters())
    opt = torch.optim.Adam(params.values(), lr=1e-3)
    tasks = [(torch.randn(ways * shots, 3, 84, 84), torch.arange(ways).repeat(shots),
              torch.randn(ways * queries, 3, 84, 84), torch.arange(ways).repeat_interleave(queries)) for _ in range(batch)]
    def loss(p, x, y): return F.cross_entropy(functional_call(model, p, (x,)), y)
    def step():
        opt.zero_grad()
        for xs, ys, xq, yq in tasks:
            p = dict(params)
            for _ in range(steps):
                g = torch.autograd.grad(loss(p, xs, ys), list(p.values()), create_graph=(order == 2))
                p = {k: v - lr * gi for (k, v), gi in zip(p.items(), g)}
            (loss(p, xq, yq) / batch).backward()
        opt.step()
    rate = timed(step, 2)
    label = f"mini5 order={order}"
else:
    ways, shots, queries = 5, 5, 15
    net = conv4(64, 0)
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    xs, xq = torch.randn(ways * shots, 3, 84, 84), torch.randn(ways * queries, 3, 84, 84)
    yq = torch.arange(ways).repeat_interleave(queries)
    def step():
        opt.zero_grad()
        z = net(torch.cat([xs, xq]))
        protos = z[:ways * shots].view(ways, shots, -1).mean(1)
        F.cross_entropy(-torch.cdist(z[ways * shots:], protos) ** 2, yq).backward()
        opt.step()
    rate = timed(step, 3)
    label = "mini-proto"
print(f"torch {label} threads={threads} meta-steps/s={rate:.4f} peakRSS={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}MiB")
