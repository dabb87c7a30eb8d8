#!/usr/bin/env bash
# Before and after in one run: `metactl bench --workload W` of two builds (and of extra flag sets) alternating
# for ROUNDS rounds, so that the host's drift affects every configuration alike. Prints each configuration's
# meta-steps/s (mean over rounds, and the range), its peak memory, and its ratio to the first configuration.
#   benchmarks/ab.sh BEFORE-REV [WORKLOADS] [ROUNDS] [-- "extra bench flags" ...]
# BEFORE-REV is built in a worktree under .build/ab/ (once per revision); the after side is this tree's release
# build (make build). WORKLOADS is comma-separated (default omni5,proto,sine); ROUNDS defaults to 3. Each
# quoted flag set after -- adds a configuration of the after build (e.g. "--fusion off").
set -euo pipefail
cd "$(dirname "$0")/.."
before=${1:?usage: benchmarks/ab.sh BEFORE-REV [WORKLOADS] [ROUNDS] [-- "flags" ...]}
workloads=${2:-omni5,proto,sine} rounds=${3:-3}
shift $(( $# < 3 ? $# : 3 ))
[ "${1:-}" = -- ] && shift
extra=("$@")
threads=${THREADS:-2}
rev=$(git rev-parse --short "$before")
tree=.build/ab/$rev
if [ ! -x "$tree/.build/release/metactl" ]; then
    rm -rf "$tree"
    mkdir -p .build/ab
    git worktree add --force --detach "$tree" "$rev" >&2
    (cd "$tree" && swift build -c release --product metactl >&2)
fi
configs=("before|$tree/.build/release/metactl|" "after|.build/release/metactl|")
for flags in "${extra[@]}"; do configs+=("after $flags|.build/release/metactl|$flags"); done
out=$(mktemp -d)
for round in $(seq "$rounds"); do
    for w in ${workloads//,/ }; do
        for k in "${!configs[@]}"; do
            IFS='|' read -r _ binary flags <<< "${configs[$k]}"
            # shellcheck disable=SC2086
            "$binary" bench --workload "$w" --threads "$threads" --repetitions 3 --json $flags > "$out/$k-$w-$round.json"
        done
    done
    echo "round $round of $rounds done" >&2
done
python3 - "$out" "$rounds" "$workloads" "${configs[@]}" <<'PY'
import json, sys
out, rounds, workloads, configs = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(","), sys.argv[4:]
names = [c.split("|")[0] for c in configs]
print(f"{'workload':18} {'configuration':22} {'meta-steps/s':>12} {'range':>17} {'peak MB':>8} {'ratio':>6}")
for w in workloads:
    rows = {}
    for k in range(len(configs)):
        for r in range(1, rounds + 1):
            for x in json.load(open(f"{out}/{k}-{w}-{r}.json"))["workloads"]:
                rows.setdefault((x["workload"], x.get("order")), {}).setdefault(k, []).append(x)
    for (name, order), by in sorted(rows.items(), key=lambda kv: (kv[0][0], -(kv[0][1] or 0))):
        label = f"{name} order {order}" if order else name
        base = sum(x["stepsPerSecond"] for x in by[0]) / len(by[0])
        for k, runs in sorted(by.items()):
            rates = [x["stepsPerSecond"] for x in runs]
            mean = sum(rates) / len(rates)
            peak = max(x.get("peakMemoryBytes") or 0 for x in runs) / 1e6
            print(f"{label:18} {names[k]:22} {mean:12.3f} {min(rates):8.3f}–{max(rates):<8.3f} {peak:8.0f} {mean / base:6.2f}")
PY
rm -rf "$out"
