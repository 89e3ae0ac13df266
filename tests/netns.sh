#!/bin/sh
# The network of the tests' namespace (run inside `unshare --net`, as root): loopback, and a veth pair
# whose two ends both stay in the namespace, one of them with a TEST-NET-1 address (RFC 5737) and a
# default route through a gateway that does not exist. Browsers with their default settings need such an
# interface and route to gather ICE candidates (Firefox gathers none without a default route; Chromium,
# hiding its addresses behind mDNS names, none within seconds on loopback alone); no packet can leave.
# The name servers are unreachable at once, so that a name looked up (aiortc's default STUN server, for
# one) fails as on a machine without a network, instead of timing out at the gateway that does not exist.
set -eu
ip link set lo up
ip link add vgs0 type veth peer name vgs1
ip addr add 192.0.2.10/24 dev vgs0
ip link set vgs0 up
ip link set vgs1 up
ip route add default via 192.0.2.1 dev vgs0
for server in $(awk '$1 == "nameserver" && $2 ~ /^[0-9.]+$/ { print $2 }' /etc/resolv.conf 2>/dev/null); do
  ip route add unreachable "$server/32"
done
