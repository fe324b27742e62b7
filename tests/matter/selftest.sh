#!/bin/sh
# Proves controller.mjs against a Matter device nobody on the project wrote
# (device.mjs, a matter.js bridge): device and controller in two network
# namespaces of their own, joined by a veth pair, nothing on the host's
# network. Needs root and iproute2; run `npm ci` here first.
# Exit code: 0 when every step passed. Bounded: the whole run is killed
# after SELFTEST_TIMEOUT seconds (default 180).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
tag=$$
dev_ns=hmt-dev-$tag
ctl_ns=hmt-ctl-$tag
dev_if=hmtd$tag
ctl_if=hmtc$tag
dir=$(mktemp -d)

cleanup() {
    ip netns del "$dev_ns" 2>/dev/null || true
    ip netns del "$ctl_ns" 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT INT TERM

for ns in "$dev_ns" "$ctl_ns"; do
    ip netns add "$ns"
    ip -n "$ns" link set lo up
done
# The veth ends get IPv6 link-local addresses on their own once up; wait
# for DAD to finish (or skip it) so matter.js sees a usable fe80:: address.
ip link add "$dev_if" netns "$dev_ns" type veth peer name "$ctl_if" netns "$ctl_ns"
ip -n "$dev_ns" addr add 10.77.0.1/24 dev "$dev_if"
ip -n "$ctl_ns" addr add 10.77.0.2/24 dev "$ctl_if"
ip netns exec "$dev_ns" sysctl -qw "net.ipv6.conf.$dev_if.accept_dad=0"
ip netns exec "$ctl_ns" sysctl -qw "net.ipv6.conf.$ctl_if.accept_dad=0"
if [ "${SELFTEST_IPV6:-1}" = 0 ]; then
    # IPv4 only: what a Matter stack sees on a LAN where hearth's mDNS
    # answers carry A records alone.
    ip netns exec "$dev_ns" sysctl -qw "net.ipv6.conf.$dev_if.disable_ipv6=1"
    ip netns exec "$ctl_ns" sysctl -qw "net.ipv6.conf.$ctl_if.disable_ipv6=1"
fi
ip -n "$dev_ns" link set "$dev_if" multicast on up
ip -n "$ctl_ns" link set "$ctl_if" multicast on up
# matter.js joins the IPv4 mDNS group without naming an interface, so the
# kernel needs a route for 224.0.0.251; without one, addMembership fails
# with ENODEV and only IPv6 mDNS works.
if [ "${SELFTEST_MCAST_ROUTE:-1}" = 1 ]; then
    ip -n "$dev_ns" route add 224.0.0.0/4 dev "$dev_if"
    ip -n "$ctl_ns" route add 224.0.0.0/4 dev "$ctl_if"
fi
i=0
[ "${SELFTEST_IPV6:-1}" = 0 ] ||
until ip -n "$ctl_ns" -6 addr show dev "$ctl_if" scope link | grep -q fe80 && \
      ip -n "$dev_ns" -6 addr show dev "$dev_if" scope link | grep -q fe80; do
    i=$((i + 1)); [ "$i" -lt 50 ] || { echo "no IPv6 link-local address on the veth" >&2; exit 1; }
    sleep 0.1
done

export SELFTEST_DIR="$dir"
export DEVICE_CMD="[\"ip\",\"netns\",\"exec\",\"$dev_ns\"]"
export CONTROLLER_CMD="[\"ip\",\"netns\",\"exec\",\"$ctl_ns\"]"
export DEVICE_IP="${DEVICE_IP:-10.77.0.1}"
export DEVICE_PORT="${DEVICE_PORT:-5540}"
export CONTROLLER_MDNS_IF="${CONTROLLER_MDNS_IF:-$ctl_if}"
export DEVICE_MDNS_IF="${DEVICE_MDNS_IF:-$dev_if}"
if [ "$DEVICE_IP" = ipv6 ]; then
    DEVICE_IP="$(ip -n "$dev_ns" -6 addr show dev "$dev_if" scope link | sed -n 's/.*inet6 \(fe80[^/]*\).*/\1/p')%$ctl_if"
fi
set +e
timeout --kill-after=5 "${SELFTEST_TIMEOUT:-180}" node "$here/selftest.mjs"
rc=$?
set -e
# Nothing may outlive the run: a process left in a namespace keeps it busy.
for ns in "$dev_ns" "$ctl_ns"; do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
done
exit $rc
