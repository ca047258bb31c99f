#!/usr/bin/env bash
# provision.sh - set up one VM of the VM testbed (runs inside the guest, as root).
#
# Usage: provision.sh ROLE REPO RUN
#   ROLE  gen | wan | gwa | gwb
#   REPO  the repository as the guest sees it (9p mount, or Vagrant's /vagrant)
#   RUN   the run directory as the guest sees it: bin/{s2ds,s2cs,s2uc},
#         certs/, tokens.toml, token (written on the host before boot)
#
# The one provisioning path: scripts/vm-testbed.sh runs it over ssh, the
# Vagrantfile as its shell provisioner. NICs are found by the MACs in
# topology.env. Idempotent enough to re-run: it stops what it started first.
#   gen  namespaces prod (10.10.1.2) and cons (10.20.1.2), one NIC each
#   wan  kernel router a0 10.10.100.254, b0 10.10.200.254 (netem: netem.sh)
#   gwX  mg0 on the management link, hugepages, LAN and WAN NICs bound to
#        vfio-pci (no-IOMMU) or uio_pci_generic, s2cs then s2ds (DPDK virtio PMD)
set -euo pipefail

readonly ROLE="$1" REPO="$2" RUN="$3"
readonly STATE=/var/lib/s2vm
# shellcheck source=topology.env
source "$REPO/scripts/vm/topology.env"

log() { printf 'provision[%s]: %s\n' "$ROLE" "$*"; }
die() { printf 'provision[%s]: error: %s\n' "$ROLE" "$*" >&2; exit 1; }

# The interface (in the root namespace) with this MAC.
iface_by_mac() {
    local mac="$1" dev
    for dev in /sys/class/net/*; do
        [[ "$(cat "$dev/address" 2>/dev/null)" == "$mac" ]] && { basename "$dev"; return 0; }
    done
    return 1
}

# The PCI address of a NIC, from its MAC: before binding (kernel driver still
# owns it) via sysfs, or from the record left by an earlier run.
pci_by_mac() {
    local mac="$1" ifc dev
    if ifc="$(iface_by_mac "$mac")"; then
        # virtio-net: the netdev's device is virtioN, a child of the PCI function.
        dev="$(readlink -f "/sys/class/net/$ifc/device")"
        [[ "$(basename "$dev")" == virtio* ]] && dev="$(dirname "$dev")"
        basename "$dev"
    elif [[ -s "$STATE/pci-$mac" ]]; then
        cat "$STATE/pci-$mac"
    else
        return 1
    fi
}

# Rename a NIC and optionally move it into a namespace, address it, bring it up.
setup_if() {
    local mac="$1" name="$2" addr="$3" ns="${4:-}" ifc
    ifc="$(iface_by_mac "$mac")" || die "no NIC with MAC $mac"
    ip link set "$ifc" down
    ip link set "$ifc" name "$name"
    if [[ -n "$ns" ]]; then
        ip link set "$name" netns "$ns"
        ip -n "$ns" addr add "$addr" dev "$name"
        ip -n "$ns" link set "$name" up
    else
        ip addr add "$addr" dev "$name"
        ip link set "$name" up
    fi
}

provision_gen() {
    local ns
    for ns in prod cons; do
        ip netns del "$ns" 2>/dev/null || true
        ip netns add "$ns"
        ip -n "$ns" link set lo up
        ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
    done
    setup_if "$GEN_PROD_MAC" eth0 10.10.1.2/24 prod
    setup_if "$GEN_CONS_MAC" eth0 10.20.1.2/24 cons
    ip -n prod route add default via 10.10.1.1
    ip -n cons route add default via 10.20.1.1
    modprobe pktgen
}

provision_wan() {
    ip link show a0 >/dev/null 2>&1 || setup_if "$WAN_A0_MAC" a0 10.10.100.254/24
    ip link show b0 >/dev/null 2>&1 || setup_if "$WAN_B0_MAC" b0 10.10.200.254/24
    sysctl -qw net.ipv4.ip_forward=1
    ip route replace 10.10.1.0/24 via 10.10.100.1
    ip route replace 10.20.1.0/24 via 10.10.200.1
    modprobe sch_netem
}

# Bind one NIC to a userspace I/O driver for DPDK: vfio-pci in no-IOMMU mode
# (the guest has no vIOMMU), uio_pci_generic when vfio is unavailable.
bind_nic() {
    local pci="$1" dev="/sys/bus/pci/devices/$1" drv=""
    [[ -e "$dev/driver" ]] && drv="$(basename "$(readlink -f "$dev/driver")")"
    case "$drv" in vfio-pci | uio_pci_generic) log "$pci already on $drv"; return 0 ;; esac
    # Debian 12's kernel is built without CONFIG_VFIO_NOIOMMU: vfio then has no
    # enable_unsafe_noiommu_mode parameter, and vfio-pci cannot take a device in a
    # guest without a vIOMMU. uio_pci_generic (INTx) serves the virtio PMD then.
    local want=uio_pci_generic
    modprobe vfio enable_unsafe_noiommu_mode=1 2>/dev/null || true
    if [[ -e /sys/module/vfio/parameters/enable_unsafe_noiommu_mode ]] && modprobe vfio-pci 2>/dev/null; then
        echo 1 >/sys/module/vfio/parameters/enable_unsafe_noiommu_mode
        want=vfio-pci
    else
        modprobe uio_pci_generic
    fi
    echo "$want" >"$dev/driver_override"
    [[ -n "$drv" ]] && echo "$pci" >"$dev/driver/unbind"
    echo "$pci" >/sys/bus/pci/drivers_probe
    local now=none
    [[ -e "$dev/driver" ]] && now="$(basename "$(readlink -f "$dev/driver")")"
    [[ "$now" == "$want" ]] || die "$pci: bound to '$now', wanted $want"
    log "$pci bound to $now (was ${drv:-none})"
}

reserve_hugepages() {
    local sysfs=/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages
    [[ "$(cat "$sysfs")" -ge "$GW_HUGEPAGES" ]] || echo "$GW_HUGEPAGES" >"$sysfs"
    [[ "$(cat "$sysfs")" -ge "$GW_HUGEPAGES" ]] || die "only $(cat "$sysfs") hugepages reserved"
    mountpoint -q /dev/hugepages || { mkdir -p /dev/hugepages; mount -t hugetlbfs -o pagesize=2M nodev /dev/hugepages; }
    log "hugepages: $(cat "$sysfs") x 2 MB, hugetlbfs on /dev/hugepages"
}

# Wait for a file to appear, up to $2 seconds.
wait_for() {
    local f="$1" n=$(( ${2:-60} * 10 ))
    while (( n-- > 0 )); do [[ -e "$f" ]] && return 0; sleep 0.1; done
    return 1
}

# Daemons run in their own session, so they outlive the provisioning (ssh)
# session, under systemd (Vagrant boxes) or the runner's small init alike.
start_daemon() {
    local name="$1"; shift
    setsid "$@" >"$STATE/$name.log" 2>&1 </dev/null &
    echo $! >"$STATE/$name.pid"
}

stop_daemon() {
    local pid
    pid="$(cat "$STATE/$1.pid" 2>/dev/null)" || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$STATE/$1.pid"
}

provision_gw() {
    local lan_mac wan_mac mg_mac mg_ip
    if [[ "$ROLE" == gwa ]]; then
        lan_mac="$GWA_LAN_MAC" wan_mac="$GWA_WAN_MAC" mg_mac="$GWA_MG_MAC" mg_ip=10.99.0.1/30
    else
        lan_mac="$GWB_LAN_MAC" wan_mac="$GWB_WAN_MAC" mg_mac="$GWB_MG_MAC" mg_ip=10.99.0.2/30
    fi
    stop_daemon s2ds
    stop_daemon s2cs
    mkdir -p "$STATE"
    ip link show mg0 >/dev/null 2>&1 || setup_if "$mg_mac" mg0 "$mg_ip"
    reserve_hugepages
    local lan_pci wan_pci
    lan_pci="$(pci_by_mac "$lan_mac")" || die "no LAN NIC ($lan_mac)"
    wan_pci="$(pci_by_mac "$wan_mac")" || die "no WAN NIC ($wan_mac)"
    echo "$lan_pci" >"$STATE/pci-$lan_mac"
    echo "$wan_pci" >"$STATE/pci-$wan_mac"
    bind_nic "$lan_pci"
    bind_nic "$wan_pci"
    # Binaries and credentials are copied: 9p is read-only and the key file
    # must be a local 0600 file.
    install -m 755 "$RUN/bin/s2ds" "$RUN/bin/s2cs" "$RUN/bin/s2uc" /usr/local/bin/
    rm -rf "${STATE:?}/etc"
    mkdir -p "$STATE/etc/certs"
    install -m 644 "$RUN/certs/ca.pem" "$RUN/certs/$ROLE.pem" "$STATE/etc/certs/"
    install -m 600 "$RUN/certs/$ROLE.key" "$STATE/etc/certs/"
    install -m 600 "$RUN/tokens.toml" "$RUN/token" "$STATE/etc/"
    local rekey=()
    [[ -s "$RUN/rekey_seconds" ]] && rekey=(--rekey-seconds "$(cat "$RUN/rekey_seconds")")
    /usr/bin/python3 "$REPO/scripts/vm/gen-configs.py" --role "$ROLE" --repo "$REPO" \
        --out "$STATE/etc" --state "$STATE" --lan-pci "$lan_pci" --wan-pci "$wan_pci" "${rekey[@]}"
    rm -f "$STATE/s2ds.stats.json" "$STATE/s2cs.db"
    /usr/local/bin/s2cs check-config "$STATE/etc/s2cs.toml" >/dev/null
    /usr/local/bin/s2ds check-config "$STATE/etc/s2ds.toml" >/dev/null
    start_daemon s2cs /usr/local/bin/s2cs run "$STATE/etc/s2cs.toml"
    wait_for "$STATE/admin/s2cs.sock" 60 || { cat "$STATE/s2cs.log" >&2; die "s2cs did not start"; }
    start_daemon s2ds /usr/local/bin/s2ds run "$STATE/etc/s2ds.toml"
    wait_for "$STATE/s2ds.stats.json" 120 || { cat "$STATE/s2ds.log" >&2; die "s2ds did not start"; }
    log "s2cs and s2ds running (lan $lan_pci, wan $wan_pci)"
}

# A Vagrant box is a plain Debian 12: install the guest packages the qemu
# image has built in (the same list), once.
ensure_packages() {
    local missing=() pkg
    while read -r pkg; do
        [[ -z "$pkg" || "$pkg" == \#* ]] && continue
        [[ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" == "install ok installed" ]] || missing+=("$pkg")
    done <"$REPO/scripts/vm/packages.list"
    [[ ${#missing[@]} -eq 0 ]] && return 0
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

ensure_packages
case "$ROLE" in
    gen) provision_gen ;;
    wan) provision_wan ;;
    gwa | gwb) provision_gw ;;
    *) die "unknown role $ROLE" ;;
esac
log finished
