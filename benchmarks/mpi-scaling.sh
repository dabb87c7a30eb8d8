#!/usr/bin/env bash
# Data-parallel scaling on this machine, in one run: a workload (default omni5) as one process on 2 threads,
# under `mpirun -n 1` on 1 thread and under `mpirun -n 2` on 1 thread each, alternating for ROUNDS rounds
# (default 3), so that the host's drift affects all three alike. Prints each configuration's meta-steps/s
# (mean over rounds, and the range), the exchange per meta-step and the parallel efficiency of 2 ranks
# (their rate / twice one rank's). Needs `make build` and Open MPI (make deps).
#   benchmarks/mpi-scaling.sh [WORKLOAD] [ROUNDS] [extra mpirun flags, e.g. --mca btl tcp,self]
set -euo pipefail
cd "$(dirname "$0")/.."
workload=${1:-omni5} rounds=${2:-3}
shift $(( $# < 2 ? $# : 2 ))
metactl=.build/release/metactl
out=$(mktemp -d)
mpirun=(mpirun --oversubscribe --bind-to none "$@")
[ "$(id -u)" = 0 ] && mpirun+=(--allow-run-as-root)
for round in $(seq "$rounds"); do
    "$metactl" bench --workload "$workload" --threads 2 --repetitions 3 --json > "$out/threads2-$round.json"
    "${mpirun[@]}" -n 1 "$metactl" bench --workload "$workload" --threads 1 --repetitions 3 --json > "$out/ranks1-$round.json"
    "${mpirun[@]}" -n 2 "$metactl" bench --workload "$workload" --threads 1 --repetitions 3 --json > "$out/ranks2-$round.json"
    echo "round $round of $rounds done" >&2
done
python3 - "$out" "$rounds" <<'PY'
import json, sys, collections
out, rounds = sys.argv[1], int(sys.argv[2])
rows = collections.defaultdict(list)
for config in ("threads2", "ranks1", "ranks2"):
    for r in range(1, rounds + 1):
        for w in json.load(open(f"{out}/{config}-{r}.json"))["workloads"]:
            rows[(w["workload"], w.get("order"), config)].append(w)
names = {"threads2": "1 process, 2 threads", "ranks1": "mpirun -n 1, 1 thread", "ranks2": "mpirun -n 2, 1 thread each"}
print(f"{'workload':16} {'configuration':28} {'meta-steps/s':>12} {'range':>15} {'exchange µs':>12} {'of step':>8} {'allgather µs':>13} {'peak MB':>8}")
keys = sorted({(w, o) for (w, o, _) in rows})
for (w, o) in keys:
    label = f"{w} order {o}" if o else w
    mean = {}
    for config in ("threads2", "ranks1", "ranks2"):
        runs = rows[(w, o, config)]
        rates = [x["stepsPerSecond"] for x in runs]
        mean[config] = sum(rates) / len(rates)
        exchange = sum(x.get("exchangeSeconds", 0) for x in runs) / len(runs)
        gather = sum(x.get("gatherSeconds", 0) for x in runs) / len(runs)
        peak = max(x.get("peakMemoryBytes") or 0 for x in runs) / 1e6
        print(f"{label:16} {names[config]:28} {mean[config]:12.3f} {min(rates):7.3f}–{max(rates):<7.3f} {exchange*1e6:12.0f} "
              f"{100*exchange*mean[config]:7.2f}% {gather*1e6:13.0f} {peak:8.0f}")
    print(f"{label:16} parallel efficiency of 2 ranks: {mean['ranks2'] / (2 * mean['ranks1']):.2f}; "
          f"2 ranks against 2 threads: {mean['ranks2'] / mean['threads2']:.2f}")
PY
rm -rf "$out"
