#!/usr/bin/env bash
# gw-state.sh - one JSON line: a gateway VM's package state (runs inside the
# guest, as root; scripts/vm/suite.sh's reboot and upgrade checks).
#
# Usage: gw-state.sh ROLE REPO
# version of scistream-gateway, the state of s2ds@ROLE, s2cs@ROLE and
# s2ds-host@ROLE, the 2 MB hugepages reserved, the drivers of the LAN and WAN
# NICs, the boot id and s2ds's pid (a restart changes them).
set -euo pipefail
readonly ROLE="$1" REPO="$2"
# shellcheck source=topology.env
source "$REPO/scripts/vm/topology.env"
if [[ "$ROLE" == gwa ]]; then lan="$GWA_LAN_MAC" wan="$GWA_WAN_MAC"; else lan="$GWB_LAN_MAC" wan="$GWB_WAN_MAC"; fi
driver() {
    local pci; pci="$(cat "/var/lib/s2vm/pci-$1")"
    if [[ -e "/sys/bus/pci/devices/$pci/driver" ]]; then
        basename "$(readlink -f "/sys/bus/pci/devices/$pci/driver")"
    else
        echo none
    fi
}
active() { systemctl is-active "$1" 2>/dev/null || true; }
/usr/bin/python3 -c 'import json, sys; k = sys.argv[1::2]; v = sys.argv[2::2]
d = dict(zip(k, v)); d["hugepages"] = int(d["hugepages"]); print(json.dumps(d))' \
    version "$(dpkg-query -W -f='${Version}' scistream-gateway)" \
    s2ds "$(active "s2ds@$ROLE")" s2cs "$(active "s2cs@$ROLE")" host_unit "$(active "s2ds-host@$ROLE")" \
    hugepages "$(cat /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages)" \
    lan_driver "$(driver "$lan")" wan_driver "$(driver "$wan")" \
    boot_id "$(cat /proc/sys/kernel/random/boot_id)" \
    s2ds_pid "$(systemctl show -p MainPID --value "s2ds@$ROLE")" \
    s2cs_pid "$(systemctl show -p MainPID --value "s2cs@$ROLE")"
