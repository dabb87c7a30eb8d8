#!/usr/bin/env python3
"""Meta-steps per second of data-parallel MetaCore on N ranks (one core each), on paper.

A meta-step on N ranks: each rank computes ceil(M / N) tasks' meta-gradients (t seconds each), the ranks
exchange them, and every rank sums them and takes the Adam step (s seconds, serial: every rank does it all).
The exchange, for a ring over a network of latency a and bandwidth B (bytes/s), W meta-parameters of 4 bytes:
  ordered (allgather of every task's gradient):  (N - 1) a + (N - 1) / N * M * 4W / B
  sum (allreduce of each rank's sum):            2 (N - 1) a + 2 (N - 1) / N * 4W / B
Inputs measured on the 2-core development machine (README, "Training on a cluster"); the networks are assumed.
"""
import math

workloads = {
    # name: (seconds per task on one core, meta-parameters, serial seconds per step: the sum of the M task
    # gradients and Adam, for the default meta-batch)
    "Conv-4 omni5 MAML 2nd order": (1 / (0.808 * 32), 112_261, {32: 0.64e-3}),
    "ResNet-12 MAML 2nd order": (2 / (0.0355 * 4), 12_432_261, {4: 35.4e-3}),
}
networks = {"10 Gbit/s (TCP, 25 µs)": (1.25e9, 25e-6), "100 Gbit/s (RDMA, 3 µs)": (12.5e9, 3e-6)}


def serial(measured, m):
    # the sum grows with the tasks summed, Adam does not: scale the measured figure by the task count
    (m0, s0), = measured.items()
    return s0 * m / m0


def step(t, w, measured, m, n, bandwidth, latency, reduction):
    compute = math.ceil(m / n) * t
    if n == 1:
        exchange = 0.0
    elif reduction == "ordered":
        exchange = (n - 1) * latency + (n - 1) / n * m * 4 * w / bandwidth
    else:
        exchange = 2 * (n - 1) * latency + 2 * (n - 1) / n * 4 * w / bandwidth
    summed = m if reduction == "ordered" else math.ceil(m / n)
    return compute, exchange, serial(measured, summed)


print("Cells: meta-steps/s (parallel efficiency against the same meta-batch on one rank; the exchange's share of the step).")
for name, (t, w, measured) in workloads.items():
    (m0, _), = measured.items()
    for label, meta_batch in ((f"meta-batch {m0}", lambda n: m0), ("meta-batch 4N (4 tasks per rank)", lambda n: 4 * n)):
        print(f"\n{name}, {label}:\n")
        print("| ranks | " + " | ".join(f"{net}, {red}" for net in networks for red in ("ordered", "sum")) + " |")
        print("| --- " * (1 + 2 * len(networks)) + "|")
        for n in (1, 8, 64, 512):
            m = meta_batch(n)
            cells = []
            for net, (bandwidth, latency) in networks.items():
                for reduction in ("ordered", "sum"):
                    c, e, s = step(t, w, measured, m, n, bandwidth, latency, reduction)
                    one = m * t + serial(measured, m)   # the same meta-batch on one rank
                    total = c + e + s
                    cells.append(f"{1 / total:.3g} ({one / total / n:.2f}, {100 * e / total:.0f}%)")
            print(f"| {n} | " + " | ".join(cells) + " |")
