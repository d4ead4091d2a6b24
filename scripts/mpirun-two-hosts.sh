#!/usr/bin/env bash
# mpirun across two "machines" on this one: `scripts/mpirun-two-hosts.sh [MPIRUN ARGS] PROGRAM [ARGS]`
# runs `mpirun -np 2` with a hostfile of two hosts, as on a cluster, where each host is a
# network namespace with its own hostname and address, joined by a virtual switch:
#
#   beit-head 10.77.0.254  runs mpirun, holds the bridge br0
#   beit-a    10.77.0.1    rank 0, eth0 -- vethA -- br0
#   beit-b    10.77.0.2    rank 1, eth0 -- vethB -- br0
#
# Open MPI starts its daemon on each host through an ssh stand-in (`plm_rsh_agent`) that
# enters the host's namespaces with a fresh environment, so only `-x VAR` reaches the
# ranks. The ranks share the filesystem and this machine's cores (unbound: each host's
# daemon would bind its rank to "its" first core, the same one) and talk over TCP through
# the switch; nothing is created in this machine's own network namespace. Afterwards it prints the bytes each
# host sent and received. Needs root (ip netns); exits 77 when it cannot set up the hosts.
set -u -o pipefail

P=beit$$
RUN=${TMPDIR:-/tmp}/mpirun-two-hosts.$$
SUBNET=10.77.0.0/24
declare -A NAME=([H]=beit-head [A]=beit-a [B]=beit-b)
declare -A ADDR=([H]=10.77.0.254 [A]=10.77.0.1 [B]=10.77.0.2)

skip() { echo "SKIP: $*" >&2; exit 77; }
[ "$(id -u)" = 0 ] || skip "needs root (ip netns, veth, nsenter)"
for c in ip nsenter unshare timeout mpirun; do
    command -v $c >/dev/null || skip "no '$c' on PATH"
done

# Remove the hosts of run `$1` (processes left inside keep a namespace alive).
destroy() {
    local h ns pids
    for h in H A B; do
        ns=$1$h
        if [ -e /run/netns/$ns ]; then
            pids=$(ip netns pids $ns 2>/dev/null)
            [ -n "$pids" ] && kill -KILL $pids 2>/dev/null && sleep 0.5
            ip netns del $ns 2>/dev/null
        fi
        [ -e "$2/uts.$h" ] && umount "$2/uts.$h" 2>/dev/null
    done
    rm -rf "$2"
}
# Leftovers of runs that were killed.
for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^beit[0-9]+H$'); do
    pid=${ns#beit}; pid=${pid%H}
    kill -0 $pid 2>/dev/null || destroy beit$pid "${TMPDIR:-/tmp}/mpirun-two-hosts.$pid"
done
trap 'destroy $P "$RUN"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$RUN"
# Run a setup step; a failure means this machine cannot make the hosts: skip.
try() { "$@" 2>"$RUN/err" || skip "$* failed: $(cat "$RUN/err")"; }
for h in H A B; do
    try ip netns add $P$h
    ip netns exec $P$h sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 2>/dev/null
    try ip -n $P$h link set lo up
    : >"$RUN/uts.$h"
    try unshare --uts="$RUN/uts.$h" hostname ${NAME[$h]}
done
try ip -n ${P}H link add br0 type bridge
try ip -n ${P}H link set br0 type bridge forward_delay 0 stp_state 0
try ip -n ${P}H addr add ${ADDR[H]}/24 dev br0
try ip -n ${P}H link set br0 up
for h in A B; do
    try ip -n ${P}H link add veth$h type veth peer name eth0 netns $P$h
    try ip -n ${P}H link set veth$h master br0 up
    try ip -n $P$h addr add ${ADDR[$h]}/24 dev eth0
    try ip -n $P$h link set eth0 up
done
links_up() { [ "$(for h in A B; do ip -n $P$h -br link show eth0; done | grep -c LOWER_UP)" = 2 ]; }
for _ in $(seq 50); do links_up && break; sleep 0.1; done
links_up || skip "the virtual links did not come up"

printf '%s slots=1\n' ${NAME[A]} ${NAME[B]} >"$RUN/hostfile"
# The ssh stand-in: `agent [ssh options] [user@]HOST COMMAND...`, COMMAND run by sh in
# HOST's namespaces with the environment a login there would have.
{
    echo '#!/usr/bin/env bash'
    printf 'P=%q RUN=%q HOME_=%q PATH_=%q LDLP=%q\n' "$P" "$RUN" "${HOME:-/root}" "$PATH" "${LD_LIBRARY_PATH:-}"
    cat <<'AGENT'
while [ $# -gt 0 ]; do
    case $1 in
        --) shift; break ;;
        -[BbcDEeFIiJLlmOopQRSWw]) shift 2 ;;
        -?*) shift ;;
        *) break ;;
    esac
done
case ${1#*@} in
    beit-a|10.77.0.1) h=A ;;
    beit-b|10.77.0.2) h=B ;;
    *) echo "agent: unknown host $1" >&2; exit 255 ;;
esac
shift
exec nsenter --net=/run/netns/$P$h --uts="$RUN/uts.$h" -- \
    env -i HOME="$HOME_" PATH="$PATH_" ${LDLP:+LD_LIBRARY_PATH="$LDLP"} /bin/sh -c "$*"
AGENT
} >"$RUN/agent"
chmod +x "$RUN/agent"

# Bytes host A and B sent and received: "A_tx A_rx B_tx B_rx".
bytes() {
    for h in A B; do
        nsenter --net=/run/netns/$P$h cat /proc/net/dev | sed 's/:/ /' | awk '$1 == "eth0" { print $10, $2 }'
    done | tr '\n' ' '
}
read -r a_tx a_rx b_tx b_rx <<<"$(bytes)"
# In the background, so that a signal to this script cleans up at once.
timeout -k 10 "${BEIT_TIMEOUT:-600}" nsenter --net=/run/netns/${P}H --uts="$RUN/uts.H" -- \
    mpirun --allow-run-as-root --hostfile "$RUN/hostfile" -np 2 --map-by node --bind-to none \
    --mca plm_rsh_agent "$RUN/agent" --mca pml ob1 --mca btl tcp,self \
    --mca btl_tcp_if_include $SUBNET --mca oob_tcp_if_include $SUBNET "$@" </dev/null &
wait $!
rc=$?
read -r a_tx1 a_rx1 b_tx1 b_rx1 <<<"$(bytes)"
echo "two hosts: beit-a sent $((a_tx1 - a_tx)) received $((a_rx1 - a_rx)) bytes, beit-b sent $((b_tx1 - b_tx)) received $((b_rx1 - b_rx))"
exit $rc
