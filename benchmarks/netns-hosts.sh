#!/usr/bin/env bash
# Two "hosts" on this machine for MPI over TCP: network namespaces mc-h1 and mc-h2 joined by a veth pair
# (10.77.0.1 and 10.77.0.2, nothing else reachable from them), and an rsh agent that "logs in" to a host by
# entering its namespace, so that `mpirun` starts the second rank's daemon in mc-h2 and the ranks talk over TCP.
# Needs root (ip netns). The namespaces are removed when the command ends.
#   benchmarks/netns-hosts.sh COMMAND...   runs COMMAND in mc-h1 with $MPIRUN_TCP set to the mpirun flags
#                                           (hostfile, agent, TCP only) that place one rank on each host
set -euo pipefail
work=$(mktemp -d)
cleanup() { ip netns del mc-h1 2>/dev/null || true; ip netns del mc-h2 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
cleanup; work=$(mktemp -d)
ip netns add mc-h1
ip netns add mc-h2
ip link add mc-veth1 type veth peer name mc-veth2
ip link set mc-veth1 netns mc-h1
ip link set mc-veth2 netns mc-h2
ip -n mc-h1 addr add 10.77.0.1/24 dev mc-veth1
ip -n mc-h2 addr add 10.77.0.2/24 dev mc-veth2
for h in 1 2; do ip -n mc-h$h link set lo up; ip -n mc-h$h link set mc-veth$h up; done
cat > "$work/agent" <<'AGENT'
#!/bin/sh
# mpirun's rsh agent: `agent [options] HOST COMMAND...` runs COMMAND in HOST's namespace.
while [ "${1#-}" != "$1" ]; do shift; done
host=$1; shift
case "$host" in 10.77.0.1) ns=mc-h1 ;; 10.77.0.2) ns=mc-h2 ;; *) echo "unknown host $host" >&2; exit 1 ;; esac
exec ip netns exec "$ns" /bin/sh -c "$*"
AGENT
chmod +x "$work/agent"
printf '10.77.0.1 slots=1\n10.77.0.2 slots=1\n' > "$work/hosts"
export MPIRUN_TCP="--hostfile $work/hosts --mca plm_rsh_agent $work/agent --mca btl tcp,self --mca btl_tcp_if_include 10.77.0.0/24 --mca oob_tcp_if_include 10.77.0.0/24"
ip netns exec mc-h1 "$@"
