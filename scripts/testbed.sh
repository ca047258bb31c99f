#!/usr/bin/env bash
# testbed.sh - network-namespace testbed for SciStream gateways (s2ds).
#
# Usage: scripts/testbed.sh up|down|status [--prefix P] [--gw-a MODE] [--gw-b MODE] [--mtu N] [--family 4|6|dual]
#                                [--impair] [--queues N]
#
# Topology (namespaces P-prod P-gwa P-wan P-gwb P-cons, default prefix "s2"):
#
#   P-prod            P-gwa                  P-wan                   P-gwb             P-cons
#  +-----------+    +------------+    +-------------------+    +------------+    +-----------+
#  | eth0      |----| lan0  wan0 |----| a0             b0 |----| wan0  lan0 |----| eth0      |
#  | 10.10.1.2 |    | .1.1 .100.1|    | .100.254 .200.254 |    |.200.1 .1.1 |    | 10.20.1.2 |
#  +-----------+    +------------+    +-------------------+    +------------+    +-----------+
#   10.10.1.0/24     10.10.100.0/24      (kernel router)        10.10.200.0/24     10.20.1.0/24
#
#   prod  eth0 10.10.1.2/24, default via 10.10.1.1
#   wan   a0 10.10.100.254/24, b0 10.10.200.254/24, ip_forward=1,
#         10.10.1.0/24 via 10.10.100.1, 10.20.1.0/24 via 10.10.200.1
#   cons  eth0 10.20.1.2/24, default via 10.20.1.1
#
# Address family (--family, default 4): "4" as drawn above, IPv6 disabled everywhere;
# "dual" adds IPv6 beside IPv4; "6" has IPv6 only on the data path (the management
# link keeps its IPv4 addresses, and gets fd00:99::1/64 (gwa) and fd00:99::2/64 (gwb)).
# The IPv6 plan mirrors the IPv4 one:
#   prod  eth0 fd00:10:1::2/64, default via fd00:10:1::1
#   wan   a0 fd00:10:100::fe/64, b0 fd00:10:200::fe/64, forwarding=1,
#         fd00:10:1::/64 via fd00:10:100::1, fd00:20:1::/64 via fd00:10:200::1
#   cons  eth0 fd00:20:1::2/64, default via fd00:20:1::1
#   kernel-mode gwA lan0 fd00:10:1::1/64, wan0 fd00:10:100::1/64, fd00:20::/32 via fd00:10:100::fe
#   kernel-mode gwB wan0 fd00:10:200::1/64, lan0 fd00:20:1::1/64, fd00:10::/32 via fd00:10:200::fe
# In modes none and bridge the gateway's lan0/wan0 keep IPv6 disabled, so the kernel
# sends nothing (no router solicitations, no MLD) on links the gateway owns.
# Addresses are added without duplicate address detection, so they work at once.
#
# Management link (always, whatever the gateway mode): veth mg0 between P-gwa
# (10.99.0.1/30) and P-gwb (10.99.0.2/30), owned by the kernel. The control
# processes (s2cs) talk over it, as they would over a management network,
# while the data plane owns lan0/wan0.
#
# Gateway MODE (--gw-a / --gw-b, default "kernel"):
#   kernel  the gateway namespace is a plain Linux router (ip_forward=1):
#             gwA lan0 10.10.1.1/24, wan0 10.10.100.1/24, 10.20.0.0/16 via 10.10.100.254
#             gwB wan0 10.10.200.1/24, lan0 10.20.1.1/24, 10.10.0.0/16 via 10.10.200.254
#   none    lan0/wan0 up without any IP address, ip_forward=0: a userspace gateway
#           (s2ds with af_packet / af_xdp) owns them and the kernel stays silent.
#   bridge  like none, plus bridges brlan (port lan0) and brwan (port wan0), up, no IPs,
#           for the TAP backend which enslaves its taps to them.
#
# Every namespace: lo up, IPv6 disabled unless --family asks for it, tx checksum offload off on every veth (frames
# forwarded by a userspace gateway then carry complete checksums), MTU --mtu N (default 1500).
# Impairment (--impair): a sixth namespace P-imp sits on the link between gwA and the WAN
# router, as a wire: gwA wan0 -- g0 [P-imp] w0 -- a0 wan. It has no addresses, IPv6 off and
# forwarding off, so its kernel neither forwards nor says anything; the tests run
# scripts/wan_impair.py in it, which copies frames between g0 and w0 and impairs (loss,
# duplication, reordering, delay) the ones it is told to. Nothing passes until it runs.
#
# Queues (--queues N, default 1, at most 64): every veth of the data path (not the management
# link) gets N TX and N RX queues, as a multi-queue NIC has, so a gateway with N workers gives
# worker i queue i. A veth delivers a frame to the peer's RX queue of the index of the TX queue
# it was sent on (with driver-mode XDP on the receiver; generic XDP sees every frame on queue
# 0, so the gateways use xdp_mode = "native"). What picks the TX queue stands in for a NIC's RSS:
#   - endpoints and kernel-mode gateways: XPS, the kernel sends from CPU c on queue c mod N;
#   - the WAN router: scripts/wan_steer.bpf.c (compiled with clang, attached at tc ingress of
#     a0 and b0) forwards every UDP datagram on queue (source port mod N), so the lanes of a
#     tunnel (outer source ports udp_port + k) reach distinct queues of the peer gateway;
#     other frames leave on the queue the kernel picks.
# Not with --impair (its wire copies frames with packet sockets, which pick their own queues).
#
# Veth pairs are created inside the namespaces, so interface names never collide between
# testbeds with different prefixes.
#
#   up      build the testbed (an existing one with the same prefix is torn down first)
#   down    kill the processes left inside the namespaces and delete them; succeeds even
#           when the testbed is only partly built or absent
#   status  list the namespaces with their addresses; exit 0 only if all five exist
set -euo pipefail

readonly NODES=(prod gwa wan gwb cons)
# Present only with --impair; always torn down.
readonly OPTIONAL_NODES=(imp)

log() { printf 'testbed: %s\n' "$*"; }
die() { printf 'testbed: error: %s\n' "$*" >&2; exit 1; }

usage() {
    sed -n '2,/^set -euo pipefail/{/^set /d;p}' "$0" | sed 's/^# \{0,1\}//'
}

# --- arguments --------------------------------------------------------------------------------
[[ $# -ge 1 ]] || { usage >&2; exit 2; }
cmd="$1"
shift
case "$cmd" in
    up | down | status) ;;
    -h | --help | help) usage; exit 0 ;;
    *) die "unknown command '$cmd' (expected up, down or status)" ;;
esac

prefix="s2"
gw_a="kernel"
gw_b="kernel"
mtu=1500
family=4
impair=0
queues=1
while [[ $# -gt 0 ]]; do
    opt="$1"
    case "$opt" in
        --impair) impair=1; shift; continue ;;
        --prefix | --gw-a | --gw-b | --mtu | --family | --queues)
            [[ $# -ge 2 ]] || die "$opt needs a value"
            val="$2"
            shift 2
            ;;
        --prefix=* | --gw-a=* | --gw-b=* | --mtu=* | --family=* | --queues=*)
            val="${opt#*=}"
            opt="${opt%%=*}"
            shift
            ;;
        -h | --help) usage; exit 0 ;;
        *) die "unknown option '$opt' (try --help)" ;;
    esac
    case "$opt" in
        --prefix) prefix="$val" ;;
        --gw-a) gw_a="$val" ;;
        --gw-b) gw_b="$val" ;;
        --mtu) mtu="$val" ;;
        --family) family="$val" ;;
        --queues) queues="$val" ;;
    esac
done

[[ "$prefix" =~ ^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$ ]] ||
    die "--prefix '$prefix' must be 1-32 characters of [A-Za-z0-9_.-], starting alphanumeric"
for m in "$gw_a" "$gw_b"; do
    case "$m" in
        kernel | none | bridge) ;;
        *) die "gateway mode '$m' unknown (expected kernel, none or bridge)" ;;
    esac
done
case "$family" in
    4 | 6 | dual) ;;
    *) die "--family '$family' unknown (expected 4, 6 or dual)" ;;
esac
[[ "$mtu" =~ ^[0-9]+$ && "$mtu" -ge 68 && "$mtu" -le 65535 ]] ||
    die "--mtu '$mtu' must be an integer between 68 and 65535"
[[ "$queues" =~ ^[0-9]+$ && "$queues" -ge 1 && "$queues" -le 64 ]] ||
    die "--queues '$queues' must be an integer between 1 and 64"
[[ "$queues" == 1 || "$impair" == 0 ]] || die "--queues and --impair do not go together"
[[ "$queues" == 1 ]] || command -v clang >/dev/null ||
    die "--queues needs clang for scripts/wan_steer.bpf.c (scripts/setup.sh installs it)"

if [[ $EUID -ne 0 ]]; then
    die "must run as root (network namespaces need CAP_SYS_ADMIN and CAP_NET_ADMIN)"
fi

# --- helpers ----------------------------------------------------------------------------------
ns_name() { printf '%s-%s' "$prefix" "$1"; }
ns_exists() { [[ -e "/run/netns/$1" ]]; }
nsx() { local ns="$1"; shift; ip netns exec "$ns" "$@"; }

NS_PROD="$(ns_name prod)"
NS_GWA="$(ns_name gwa)"
NS_WAN="$(ns_name wan)"
NS_GWB="$(ns_name gwb)"
NS_CONS="$(ns_name cons)"
readonly NS_PROD NS_GWA NS_WAN NS_GWB NS_CONS

# Kill every process still running inside namespace $1: TERM, up to 2 s grace, then KILL.
kill_ns_pids() {
    local ns="$1" pids i
    pids="$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ' || true)"
    [[ -n "${pids// /}" ]] || return 0
    log "down: $ns: terminating pids $pids"
    # shellcheck disable=SC2086
    kill -TERM $pids 2>/dev/null || true
    for i in $(seq 1 20); do
        pids="$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ' || true)"
        [[ -n "${pids// /}" ]] || return 0
        sleep 0.1
    done
    log "down: $ns: killing pids $pids"
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
    for i in $(seq 1 20); do
        pids="$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ' || true)"
        [[ -n "${pids// /}" ]] || return 0
        sleep 0.1
    done
    log "down: $ns: warning: pids $pids survived SIGKILL"
}

testbed_down() {
    local node ns removed=0
    for node in "${NODES[@]}" "${OPTIONAL_NODES[@]}"; do
        ns="$(ns_name "$node")"
        ns_exists "$ns" || continue
        kill_ns_pids "$ns"
        if ip netns del "$ns" 2>/dev/null; then
            removed=$((removed + 1))
        else
            log "down: warning: could not delete namespace $ns"
        fi
    done
    log "down: prefix $prefix: removed $removed namespace(s)"
}

# Common per-namespace settings: lo up, IPv6 off (before any veth exists, so new interfaces
# inherit it through "default"), forwarding off until a mode turns it on.
ns_create() {
    local ns="$1"
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    nsx "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    nsx "$ns" sysctl -qw net.ipv4.ip_forward=0
}

# xps_mask Q: the XPS CPU mask of TX queue Q, every CPU c with c mod $queues == Q, in the
# comma-separated 32-bit groups of /sys/class/net/*/queues/tx-*/xps_cpus.
xps_mask() {
    local q="$1" ncpu group c bits out=""
    ncpu="$(getconf _NPROCESSORS_CONF)"
    for ((group = (ncpu - 1) / 32; group >= 0; group--)); do
        bits=0
        for ((c = group * 32; c < (group + 1) * 32 && c < ncpu; c++)); do
            if ((c % queues == q)); then bits=$((bits | (1 << (c - group * 32)))); fi
        done
        out+="$(printf '%08x' "$bits")"
        ((group == 0)) || out+=","
    done
    printf '%s' "$out"
}

# set_xps NS IF: the kernel sends from CPU c on TX queue (c mod $queues) of IF.
set_xps() {
    local ns="$1" ifc="$2" q
    for ((q = 0; q < queues; q++)); do
        nsx "$ns" sh -c "echo $(xps_mask "$q") > /sys/class/net/$ifc/queues/tx-$q/xps_cpus"
    done
}

# steer_wan: compile scripts/wan_steer.bpf.c for $queues queues and attach it at tc ingress of
# the WAN router's a0 and b0 (the kernel keeps the program; the object file goes).
steer_wan() {
    local src dir
    src="$(dirname "$(readlink -f "$0")")/wan_steer.bpf.c"
    dir="$(mktemp -d)"
    if ! clang -O2 -target bpf -I"/usr/include/$(uname -m)-linux-gnu" -DQUEUES="$queues" \
        -c "$src" -o "$dir/wan_steer.o"; then
        rm -rf "$dir"
        die "cannot compile $src (needs libbpf-dev and linux-libc-dev)"
    fi
    local ifc
    for ifc in a0 b0; do
        if ! nsx "$NS_WAN" tc qdisc add dev "$ifc" clsact ||
            ! nsx "$NS_WAN" tc filter add dev "$ifc" ingress bpf direct-action \
                obj "$dir/wan_steer.o" sec tc; then
            rm -rf "$dir"
            die "cannot attach the WAN steering program to $ifc (needs cls_bpf and clsact)"
        fi
    done
    rm -rf "$dir"
}

# veth_pair NS1 IF1 NS2 IF2 [QUEUES]: create the pair inside NS1 with its peer directly in
# NS2, with QUEUES (default 1) TX and RX queues each, set MTU, disable tx checksum offload on
# both ends and bring both up.
veth_pair() {
    local ns1="$1" if1="$2" ns2="$3" if2="$4" nq="${5:-1}"
    ip -n "$ns1" link add "$if1" mtu "$mtu" numtxqueues "$nq" numrxqueues "$nq" type veth \
        peer name "$if2" mtu "$mtu" numtxqueues "$nq" numrxqueues "$nq" netns "$ns2"
    nsx "$ns1" ethtool -K "$if1" tx off >/dev/null
    nsx "$ns2" ethtool -K "$if2" tx off >/dev/null
    ip -n "$ns1" link set "$if1" up
    ip -n "$ns2" link set "$if2" up
}

has_v4() { [[ "$family" != 6 ]]; }
has_v6() { [[ "$family" != 4 ]]; }

# enable_v6 NS IF...: turn IPv6 on for these interfaces (the namespace default is off).
enable_v6() {
    local ns="$1" i
    shift
    for i in "$@"; do
        nsx "$ns" sysctl -qw "net.ipv6.conf.$i.disable_ipv6=0"
    done
}

# addr4 NS CIDR DEV / addr6 NS CIDR DEV: add an address of that family if the testbed has it.
addr4() { if has_v4; then ip -n "$1" addr add "$2" dev "$3"; fi; }
addr6() { if has_v6; then ip -n "$1" -6 addr add "$2" dev "$3" nodad; fi; }
route4() { if has_v4; then ip -n "$1" route add "$2" via "$3"; fi; }
route6() { if has_v6; then ip -n "$1" -6 route add "$2" via "$3"; fi; }

# gateway_setup NS MODE LAN_CIDR WAN_CIDR ROUTE_DST ROUTE_VIA LAN6 WAN6 DST6 VIA6
gateway_setup() {
    local ns="$1" mode="$2" lan="$3" wan="$4" dst="$5" via="$6"
    local lan6="$7" wan6="$8" dst6="$9" via6="${10}"
    case "$mode" in
        kernel)
            addr4 "$ns" "$lan" lan0
            addr4 "$ns" "$wan" wan0
            route4 "$ns" "$dst" "$via"
            nsx "$ns" sysctl -qw net.ipv4.ip_forward=1
            if has_v6; then
                enable_v6 "$ns" lan0 wan0 all
                nsx "$ns" sysctl -qw net.ipv6.conf.all.forwarding=1
                addr6 "$ns" "$lan6" lan0
                addr6 "$ns" "$wan6" wan0
                route6 "$ns" "$dst6" "$via6"
            fi
            ;;
        none) ;;
        bridge)
            local br port
            for br in brlan brwan; do
                port="${br#br}0"
                # No snooping and no multicast on the bridge itself: set before it is
                # up, so it never joins (or leaves) 224.0.0.106 with an IGMP report on
                # the link the gateway owns.
                ip -n "$ns" link add "$br" mtu "$mtu" type bridge stp_state 0 mcast_snooping 0
                ip -n "$ns" link set "$br" multicast off
                ip -n "$ns" link set "$port" master "$br"
                ip -n "$ns" link set "$br" up
            done
            ;;
    esac
}

testbed_up() {
    if [[ -n "$(existing_namespaces)" ]]; then
        log "up: prefix $prefix already has namespaces; tearing them down first"
        testbed_down
    fi
    # If anything below fails (set -e exits the script), leave nothing half-built behind.
    trap 'rc=$?; trap - EXIT; log "up: failed (exit $rc), tearing down"; testbed_down; exit $rc' EXIT

    local node
    for node in "${NODES[@]}"; do
        ns_create "$(ns_name "$node")"
    done

    veth_pair "$NS_PROD" eth0 "$NS_GWA" lan0 "$queues"
    if [[ "$impair" == 1 ]]; then
        local ns_imp
        ns_imp="$(ns_name imp)"
        ns_create "$ns_imp"
        veth_pair "$NS_GWA" wan0 "$ns_imp" g0
        veth_pair "$ns_imp" w0 "$NS_WAN" a0
        # Every frame reaches the wire's packet sockets, whatever its MAC.
        ip -n "$ns_imp" link set g0 promisc on
        ip -n "$ns_imp" link set w0 promisc on
    else
        veth_pair "$NS_GWA" wan0 "$NS_WAN" a0 "$queues"
    fi
    veth_pair "$NS_WAN" b0 "$NS_GWB" wan0 "$queues"
    veth_pair "$NS_GWB" lan0 "$NS_CONS" eth0 "$queues"
    veth_pair "$NS_GWA" mg0 "$NS_GWB" mg0
    if ((queues > 1)); then
        set_xps "$NS_PROD" eth0
        set_xps "$NS_GWA" lan0
        set_xps "$NS_GWA" wan0
        set_xps "$NS_GWB" wan0
        set_xps "$NS_GWB" lan0
        set_xps "$NS_CONS" eth0
        steer_wan
    fi
    ip -n "$NS_GWA" addr add 10.99.0.1/30 dev mg0
    ip -n "$NS_GWB" addr add 10.99.0.2/30 dev mg0
    if has_v6; then
        # lo too: traffic to the namespace's own IPv6 addresses goes through it.
        enable_v6 "$NS_GWA" lo mg0
        enable_v6 "$NS_GWB" lo mg0
        addr6 "$NS_GWA" fd00:99::1/64 mg0
        addr6 "$NS_GWB" fd00:99::2/64 mg0
    fi

    if has_v6; then
        enable_v6 "$NS_PROD" eth0 all
        enable_v6 "$NS_WAN" a0 b0 all
        enable_v6 "$NS_CONS" eth0 all
        nsx "$NS_WAN" sysctl -qw net.ipv6.conf.all.forwarding=1
    fi
    addr4 "$NS_PROD" 10.10.1.2/24 eth0
    route4 "$NS_PROD" default 10.10.1.1
    addr6 "$NS_PROD" fd00:10:1::2/64 eth0
    route6 "$NS_PROD" default fd00:10:1::1

    addr4 "$NS_WAN" 10.10.100.254/24 a0
    addr4 "$NS_WAN" 10.10.200.254/24 b0
    route4 "$NS_WAN" 10.10.1.0/24 10.10.100.1
    route4 "$NS_WAN" 10.20.1.0/24 10.10.200.1
    nsx "$NS_WAN" sysctl -qw net.ipv4.ip_forward=1
    addr6 "$NS_WAN" fd00:10:100::fe/64 a0
    addr6 "$NS_WAN" fd00:10:200::fe/64 b0
    route6 "$NS_WAN" fd00:10:1::/64 fd00:10:100::1
    route6 "$NS_WAN" fd00:20:1::/64 fd00:10:200::1

    addr4 "$NS_CONS" 10.20.1.2/24 eth0
    route4 "$NS_CONS" default 10.20.1.1
    addr6 "$NS_CONS" fd00:20:1::2/64 eth0
    route6 "$NS_CONS" default fd00:20:1::1

    gateway_setup "$NS_GWA" "$gw_a" 10.10.1.1/24 10.10.100.1/24 10.20.0.0/16 10.10.100.254 \
        fd00:10:1::1/64 fd00:10:100::1/64 fd00:20::/32 fd00:10:100::fe
    gateway_setup "$NS_GWB" "$gw_b" 10.20.1.1/24 10.10.200.1/24 10.10.0.0/16 10.10.200.254 \
        fd00:20:1::1/64 fd00:10:200::1/64 fd00:10::/32 fd00:10:200::fe

    trap - EXIT
    log "up: prefix $prefix: $NS_PROD $NS_GWA $NS_WAN $NS_GWB $NS_CONS (gw-a $gw_a, gw-b $gw_b, mtu $mtu, family $family, queues $queues)"
}

existing_namespaces() {
    local node ns
    for node in "${NODES[@]}" "${OPTIONAL_NODES[@]}"; do
        ns="$(ns_name "$node")"
        if ns_exists "$ns"; then printf '%s ' "$ns"; fi
    done
}

testbed_status() {
    local node ns present=0
    for node in "${NODES[@]}"; do
        ns="$(ns_name "$node")"
        if ! ns_exists "$ns"; then
            printf '%s: absent\n' "$ns"
            continue
        fi
        present=$((present + 1))
        printf '%s: ip_forward=%s\n' "$ns" "$(nsx "$ns" sysctl -n net.ipv4.ip_forward 2>/dev/null || echo '?')"
        ip -n "$ns" -br addr show | sed 's/^/    /'
        ip -n "$ns" route show | sed 's/^/    route /'
    done
    printf 'testbed %s: %d of %d namespaces present\n' "$prefix" "$present" "${#NODES[@]}"
    [[ $present -eq ${#NODES[@]} ]]
}

case "$cmd" in
    up) testbed_up ;;
    down) testbed_down ;;
    status) testbed_status ;;
esac
