#!/usr/bin/env bash
# Undoes everything the tests/node harness sets up on this machine, whatever state a run left:
# run by the harness before it starts (a run killed with SIGKILL cleans up on the next one) and
# when the test process exits; safe to run by hand (as root) any time no node run is going.
#
#   processes: the components (pid files), the containers (every pid in the kubepods cgroups),
#              the containerd shims of our containerd (by their -address argument)
#   mounts under the kubelet root, the containerd state and /run/netns/cni-*; kubepods cgroups;
#   the pod bridge, the node's /32 on lo, the iptables rules, kube-proxy's chains, ip_forward;
#   the state directories (the pods' logs are copied to $JVM_GUARD_NODE_LOGS when set).
#
# Processes are ended by pid, never by name.
set -uo pipefail

STATE=/var/lib/jvm-guard-node
RUN=/run/jvm-guard-node
BRIDGE=jgnode0
NODE_IP=10.255.100.1
POD_CIDR=10.244.0.0/24
SERVICE_CIDR=10.96.0.0/16
CHAIN=JVM-GUARD-NODE
# KUBERNETES_VERSION: the directory of scripts/install-node-tools.sh, when the harness has not
# named its kube-proxy.
# shellcheck source=tests/versions.env
source "$(dirname "$0")/../versions.env"
KUBE_PROXY="${JVM_GUARD_NODE_KUBE_PROXY:-$HOME/.cache/jvm-guard-e2e/node-$KUBERNETES_VERSION/kube-proxy}"

# kill_pids SIGNAL PID...: signals the pids that still exist.
kill_pids() {
    local signal="$1" pid
    shift
    for pid in "$@"; do
        [ -n "$pid" ] && [ -d "/proc/$pid" ] && kill "-$signal" "$pid" 2>/dev/null
    done
}

# Wait up to N tenths of a second for the pids to go.
wait_gone() {
    local tenths="$1" pid alive
    shift
    for _ in $(seq "$tenths"); do
        alive=""
        for pid in "$@"; do
            # A zombie child of the harness counts as gone: its parent reaps it.
            [ -d "/proc/$pid" ] && ! grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null && alive=1
        done
        [ -z "$alive" ] && return 0
        sleep 0.1
    done
    return 1
}

component_pids() {
    local f
    for f in "$RUN"/pids/*; do
        [ -f "$f" ] && echo "$(<"$f")"
    done
}

container_pids() {
    local h
    for h in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/unified/kubepods; do
        [ -d "$h" ] && find "$h" -name cgroup.procs -exec cat {} + 2>/dev/null
    done | sort -u
}

shim_pids() {
    local p
    for p in /proc/[0-9]*; do
        { tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null | grep -q "containerd-shim.* -address $RUN/containerd.sock" \
            && echo "${p#/proc/}"
    done
}

# 1. The components first (a kubelet left alive restarts what is killed next), with SIGKILL:
# the cluster's state is thrown away, nothing needs a graceful stop. Then the containers and
# the shims, until none is left.
pids=$(component_pids)
# shellcheck disable=SC2086
kill_pids KILL $pids
# shellcheck disable=SC2086
wait_gone 100 $pids || echo "teardown: components still alive: $pids" >&2
for _ in $(seq 10); do
    left="$(container_pids) $(shim_pids)"
    [ -z "${left// /}" ] && break
    # shellcheck disable=SC2086
    kill_pids KILL $left
    sleep 0.3
done

# 2. kube-proxy's iptables chains.
if [ -n "$KUBE_PROXY" ] && [ -x "$KUBE_PROXY" ]; then
    "$KUBE_PROXY" --cleanup >/dev/null 2>&1 || true
fi

# The kubelet's own chains (its canaries and the 127.0.0.0/8 firewall), in case it made them.
for cmd in iptables ip6tables; do
    command -v "$cmd" >/dev/null || continue
    for table in filter nat mangle; do
        for chain in INPUT OUTPUT; do
            while "$cmd" -w -t "$table" -D "$chain" -j KUBE-FIREWALL 2>/dev/null; do :; done
        done
        for chain in KUBE-FIREWALL KUBE-KUBELET-CANARY KUBE-IPTABLES-HINT; do
            "$cmd" -w -t "$table" -F "$chain" 2>/dev/null && "$cmd" -w -t "$table" -X "$chain" 2>/dev/null
        done
    done
done

# 3. Mounts, deepest first: the kubelet's, containerd's, the network namespaces of our pods.
mounts=$(awk -v state="$STATE" -v run="$RUN" '
    { p = $5; gsub(/\\040/, " ", p) }
    index(p, state "/") == 1 || p == state || index(p, run "/") == 1 || p == run \
        || index(p, "/run/netns/cni-") == 1 || index(p, "/run/containerd/io.containerd.") == 1 { print p }
' /proc/self/mountinfo | sort -r)
for m in $mounts; do
    umount -l "$m" 2>/dev/null || echo "teardown: could not unmount $m" >&2
done
for ns in /run/netns/cni-*; do
    [ -e "$ns" ] && rm -f "$ns"
done

# 4. The kubepods cgroups, in every hierarchy, leaves first.
for h in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/unified/kubepods; do
    [ -d "$h" ] && find "$h" -depth -type d -exec rmdir {} \; 2>/dev/null
done

# 5. Network: the bridge, the node address, our rules, ip_forward as it was.
ip link del "$BRIDGE" 2>/dev/null || true
ip addr del "$NODE_IP/32" dev lo 2>/dev/null || true
while iptables -w -D FORWARD -i "$BRIDGE" -j "$CHAIN" 2>/dev/null; do :; done
while iptables -w -D OUTPUT -d "$SERVICE_CIDR" -j DROP 2>/dev/null; do :; done
iptables -w -F "$CHAIN" 2>/dev/null || true
iptables -w -X "$CHAIN" 2>/dev/null || true
if [ -f "$STATE/ip_forward" ]; then
    cat "$STATE/ip_forward" >/proc/sys/net/ipv4/ip_forward 2>/dev/null || true
fi
: "$POD_CIDR"

# 6. State, after keeping the containers' logs with the components' (for a failure report).
LOGS="${JVM_GUARD_NODE_LOGS:-}"
if [ -n "$LOGS" ] && [ -d "$STATE/pod-logs" ]; then
    rm -rf "$LOGS/pod-logs"
    mkdir -p "$LOGS" && cp -r "$STATE/pod-logs" "$LOGS/pod-logs" 2>/dev/null || true
fi
# The kubelet makes /var/lib/kubelet/device-plugins even with --root-dir, and links
# container logs into /var/log/containers.
# containerd 1.6 caches the loopback CNI result of each sandbox in /var/lib/cni: ours are the
# sandboxes in our containerd's root. Without a system containerd, /run/containerd is ours too.
for sandbox in "$STATE"/containerd/io.containerd.grpc.v1.cri/sandboxes/*; do
    [ -d "$sandbox" ] && rm -f /var/lib/cni/results/*-"$(basename "$sandbox")"-* 2>/dev/null
done
rm -rf "$STATE" "$RUN" /run/containerd/runc/k8s.io 2>/dev/null || true
[ -S /run/containerd/containerd.sock ] || rm -rf /run/containerd
rmdir /var/lib/cni/results /var/lib/cni 2>/dev/null
for link in /var/log/containers/*.log; do
    [ -L "$link" ] && [[ "$(readlink "$link")" == "$STATE"/* ]] && rm -f "$link"
done
rm -f /var/lib/cni/results/jvm-guard-pods-* 2>/dev/null || true
if [ -d /var/lib/kubelet ] && [ -z "$(find /var/lib/kubelet -mindepth 1 -not -path '/var/lib/kubelet/device-plugins*' -print -quit)" ]; then
    rm -rf /var/lib/kubelet
fi

# 7. Anything left is a teardown bug: say what, and fail.
left=""
grep -q -- "-N $CHAIN\|KUBE-" <<<"$(iptables -w -S)" && left+=" iptables"
grep -q -- "KUBE-" <<<"$(iptables -w -t nat -S)" && left+=" iptables-nat"
grep -qE " ($STATE|$RUN)[/ ]" /proc/self/mountinfo && left+=" mounts"
for h in /sys/fs/cgroup/*/kubepods; do [ -d "$h" ] && left+=" $h"; done
[ -n "$(shim_pids)" ] && left+=" shims"
[ -e "$STATE" ] && left+=" $STATE"
grep -q " $NODE_IP/" <<<"$(ip addr show dev lo)" && left+=" $NODE_IP"
if [ -n "$left" ]; then
    echo "teardown: left over:$left" >&2
    exit 1
fi
exit 0
