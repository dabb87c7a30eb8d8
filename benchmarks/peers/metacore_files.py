"""What the peer scripts share: reading MetaCore's safetensors files, and Conv-4 as MetaCore lays it out."""
import json, struct
import numpy as np
import torch, torch.nn as nn

def read_safetensors(path):
    """The F32 tensors of a safetensors file by name, and its metadata."""
    with open(path, 'rb') as f:
        n = struct.unpack('<Q', f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    tensors = {}
    for name, entry in header.items():
        if name == '__metadata__':
            continue
        assert entry['dtype'] == 'F32', f"{name}: {entry['dtype']}"
        begin, end = entry['data_offsets']
        tensors[name] = torch.from_numpy(np.frombuffer(data[begin:end], dtype='<f4').reshape(entry['shape']).copy())
    return tensors, header.get('__metadata__', {})

def conv4(ways, running_stats=False):
    """Conv-4 with MetaCore's layer indices: it pools before the ReLU (the same function and derivatives)."""
    layers, c = [], 1
    for _ in range(4):
        layers += [nn.Conv2d(c, 64, 3, padding=1), nn.BatchNorm2d(64, track_running_stats=running_stats), nn.MaxPool2d(2), nn.ReLU()]
        c = 64
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(64, ways))

# ---- Timing the workloads of `metactl bench` (torch_resnet12.py, torch_conv4_84.py) ----
import statistics, time
import torch.nn.functional as F
from torch.func import functional_call

def workload_arguments():
    """WORKLOAD [ORDER|-] [THREADS] [REPETITIONS] from the command line (order 2, 2 threads, 3 repetitions by
    default); seeds torch and sets its threads."""
    import sys
    a = sys.argv
    order = int(a[2]) if len(a) > 2 and a[2] != '-' else 2
    threads = int(a[3]) if len(a) > 3 else 2
    torch.manual_seed(0)
    torch.set_num_threads(threads)
    return a[1], order, threads, int(a[4]) if len(a) > 4 else 3

def timed(step, count, reps):
    """Meta-steps per second of `step`, the median of `reps` runs of `count` after a warm-up."""
    step()
    rates = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(count): step()
        rates.append(count / (time.perf_counter() - t0))
    return statistics.median(rates)

def maml_step(model, ways, shots, queries, batch, steps, lr, order, side=84):
    """One MAML meta-step on `batch` random `ways`-way tasks: `steps` inner steps at `lr` (create_graph for order 2), Adam."""
    params = dict(model.named_parameters())
    opt = torch.optim.Adam(params.values(), lr=1e-3)
    tasks = [(torch.randn(ways * shots, 3, side, side), torch.arange(ways).repeat(shots),
              torch.randn(ways * queries, 3, side, side), torch.arange(ways).repeat_interleave(queries)) for _ in range(batch)]
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
    return step

def proto_step(net, ways, shots, queries, side=84):
    """One Prototypical Networks episode of random images: squared Euclidean distances to the class means, Adam."""
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    xs, xq = torch.randn(ways * shots, 3, side, side), torch.randn(ways * queries, 3, side, side)
    yq = torch.arange(ways).repeat_interleave(queries)
    def step():
        opt.zero_grad()
        z = net(torch.cat([xs, xq]))
        protos = z[:ways * shots].view(ways, shots, -1).mean(1)
        F.cross_entropy(-torch.cdist(z[ways * shots:], protos) ** 2, yq).backward()
        opt.step()
    return step
