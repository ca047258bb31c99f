#!/usr/bin/env bash
# provision.sh - set up one VM of the VM testbed (runs inside the guest, as root).
#
# Usage: provision.sh ROLE REPO RUN
#   ROLE  gen | wan | gwa | gwb
#   REPO  the repository as the guest sees it (9p mount, or Vagrant's /vagrant)
#   RUN   the run directory as the guest sees it: debs/ (scistream-gateway,
#         scistream-client), certs/, tokens.toml, token (written on the host
#         before boot); the gateways' check-host outputs are written back there
#
# The one provisioning path: scripts/vm-testbed.sh runs it over ssh, the
# Vagrantfile as its shell provisioner. NICs are found by the MACs in
# topology.env. Idempotent enough to re-run: it stops what it started first.
#   gen  namespaces prod (10.10.1.2) and cons (10.20.1.2), one NIC each;
#        mg0 10.99.1.2 to gwA and the scistream-client package (s2uc)
#   wan  kernel router a0 10.10.100.254, b0 10.10.200.254 (netem: netem.sh)
#   gwX  (systemd) mg0 on the management link (networkd), the
#        scistream-gateway package, /etc/scistream/{gwX,control-gwX}.toml,
#        `s2ds setup-host --persist` (hugepages, LAN and WAN NICs bound to
#        vfio-pci no-IOMMU or uio_pci_generic), s2ds@gwX and s2cs@gwX enabled
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
    # The user's side: s2uc from the scistream-client package, on a
    # management NIC that gwA routes to both gateways' APIs.
    ip link show mg0 >/dev/null 2>&1 || setup_if "$GEN_MG_MAC" mg0 10.99.1.2/30
    ip route replace 10.99.0.0/30 via 10.99.1.1
    install_deb scistream-client
}

provision_wan() {
    ip link show a0 >/dev/null 2>&1 || setup_if "$WAN_A0_MAC" a0 10.10.100.254/24
    ip link show b0 >/dev/null 2>&1 || setup_if "$WAN_B0_MAC" b0 10.10.200.254/24
    sysctl -qw net.ipv4.ip_forward=1
    ip route replace 10.10.1.0/24 via 10.10.100.1
    ip route replace 10.20.1.0/24 via 10.10.200.1
    modprobe sch_netem
}

# Install a package from the run directory (revision 1 unless DIR says
# otherwise). Its declared dependencies are Debian's and all in the image
# (packages.list; ensure_packages on a Vagrant box): dpkg -i refuses the
# package if one is missing. (apt-get install ./x.deb does the same, but its
# resolver took minutes under TCG.)
install_deb() {
    local pkg="$1" dir="${2:-$RUN/debs}" deb
    deb="$(ls "$dir/${pkg}_"*_amd64.deb 2>/dev/null | head -1)"
    [[ -n "$deb" ]] || die "no $pkg .deb in $dir (scripts/vm/prepare-run.sh builds them)"
    DEBIAN_FRONTEND=noninteractive dpkg -i --force-confold "$deb" >/dev/null \
        || die "installing $(basename "$deb") failed (a dependency missing from the image?)"
    log "installed $(dpkg-query -W -f='${Package} ${Version}' "$pkg")"
}

# systemd-networkd files for the management NICs (matched by MAC), so they
# come back after a reboot: mg0 between the gateways; on gwA also mg1 to gen,
# routed (the user's s2uc in gen reaches both gateways' APIs through gwA).
write_mgmt_network() {
    local mac="$1" addr="$2" extra="${3:-}" file="$4"
    cat >"/etc/systemd/network/$file" <<NET
# scripts/vm/provision.sh: management link of the VM testbed
[Match]
MACAddress=$mac
[Network]
Address=$addr
LinkLocalAddressing=no
IPv6AcceptRA=no
$extra
NET
}

mgmt_network_gw() {
    if [[ "$ROLE" == gwa ]]; then
        write_mgmt_network "$GWA_MG_MAC" 10.99.0.1/30 "IPForward=ipv4" 20-s2vm-mg0.network
        write_mgmt_network "$GWA_MG1_MAC" 10.99.1.1/30 "IPForward=ipv4" 20-s2vm-mg1.network
    else
        write_mgmt_network "$GWB_MG_MAC" 10.99.0.2/30 $'[Route]\nDestination=10.99.1.0/30\nGateway=10.99.0.1' \
            20-s2vm-mg0.network
    fi
    networkctl reload
    local want; [[ "$ROLE" == gwa ]] && want=10.99.0.1 || want=10.99.0.2
    for _ in $(seq 100); do ip -4 addr | grep -q "inet $want/" && return 0; sleep 0.2; done
    die "management address $want did not come up (networkctl status)"
}

# Wait for a file to appear, up to $2 seconds.
wait_for() {
    local f="$1" n=$(( ${2:-60} * 10 ))
    while (( n-- > 0 )); do [[ -e "$f" ]] && return 0; sleep 0.1; done
    return 1
}

# The gateway as an operator sets one up (docs/operations.md): the
# scistream-gateway package, its configuration in /etc/scistream, `s2ds
# check-host` on the unprepared host (it must name the missing hugepages and
# the unbound NICs, with their fixes), `s2ds setup-host --persist`, `s2ds
# check-host` again (no FAIL), then the units enabled and started. The
# check-host outputs land in RUN/host-ROLE-*.txt for the suite.
provision_gw() {
    [[ -d /run/systemd/system ]] || die "the gateways boot systemd (scripts/vm-testbed.sh start_vm)"
    local lan_mac wan_mac
    if [[ "$ROLE" == gwa ]]; then lan_mac="$GWA_LAN_MAC" wan_mac="$GWA_WAN_MAC"
    else lan_mac="$GWB_LAN_MAC" wan_mac="$GWB_WAN_MAC"; fi
    hostnamectl set-hostname "$ROLE" 2>/dev/null || hostname "$ROLE"
    systemctl stop "s2cs@$ROLE" "s2ds@$ROLE" 2>/dev/null || true
    mkdir -p "$STATE"
    mgmt_network_gw
    install_deb scistream-gateway
    local lan_pci wan_pci
    lan_pci="$(pci_by_mac "$lan_mac")" || die "no LAN NIC ($lan_mac)"
    wan_pci="$(pci_by_mac "$wan_mac")" || die "no WAN NIC ($wan_mac)"
    echo "$lan_pci" >"$STATE/pci-$lan_mac"
    echo "$wan_pci" >"$STATE/pci-$wan_mac"
    # Credentials: the key and the token hashes readable by s2cs (user scistream) only.
    local etc=/etc/scistream
    install -d -m 750 -g scistream "$etc/certs"
    install -m 644 "$RUN/certs/ca.pem" "$RUN/certs/$ROLE.pem" "$etc/certs/"
    install -m 600 -o scistream -g scistream "$RUN/certs/$ROLE.key" "$etc/certs/"
    install -m 600 -o scistream -g scistream "$RUN/tokens.toml" "$etc/"
    local rekey=()
    [[ -s "$RUN/rekey_seconds" ]] && rekey=(--rekey-seconds "$(cat "$RUN/rekey_seconds")")
    /usr/bin/python3 "$REPO/scripts/vm/gen-configs.py" --role "$ROLE" --repo "$REPO" \
        --out "$etc" --lan-pci "$lan_pci" --wan-pci "$wan_pci" "${rekey[@]}"
    rm -f "/var/lib/scistream/$ROLE.db"
    s2cs check-config "$etc/control-$ROLE.toml" >/dev/null
    s2ds check-config "$etc/$ROLE.toml" >/dev/null
    local rc=0
    s2ds check-host "$etc/$ROLE.toml" >"$RUN/host-$ROLE-before.txt" 2>&1 || rc=$?
    echo "$rc" >"$RUN/host-$ROLE-before.rc"
    s2ds setup-host --persist "$etc/$ROLE.toml" >"$RUN/host-$ROLE-setup.txt" 2>&1 \
        || { cat "$RUN/host-$ROLE-setup.txt" >&2; die "s2ds setup-host failed"; }
    s2ds check-host "$etc/$ROLE.toml" >"$RUN/host-$ROLE-after.txt" 2>&1 \
        || { cat "$RUN/host-$ROLE-after.txt" >&2; die "s2ds check-host still reports a FAIL after setup-host"; }
    systemctl enable --now "s2ds@$ROLE" "s2cs@$ROLE" 2>/dev/null
    wait_for "/run/scistream/$ROLE.sock" 60 || { journalctl -u "s2cs@$ROLE" --no-pager | tail -30 >&2; die "s2cs did not start"; }
    wait_for "/run/s2ds/$ROLE.stats.json" 120 || { journalctl -u "s2ds@$ROLE" --no-pager | tail -30 >&2; die "s2ds did not start"; }
    log "s2ds@$ROLE and s2cs@$ROLE running from $(dpkg-query -W -f='${Package} ${Version}' scistream-gateway) (lan $lan_pci, wan $wan_pci)"
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
