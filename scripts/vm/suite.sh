#!/usr/bin/env bash
# suite.sh - the VM testbed's test suite (host side; scripts/vm-testbed.sh run).
#
# Usage: scripts/vm/suite.sh --run RUN_DIR [--smoke] [--sizes LIST] [--out DIR]
#
# 1. sessions: the routed tunnel (s2cs [[tunnels]], negotiated at start) and a
#    listener-mode session made with s2uc (inbound-request at gwA, outbound-request
#    at gwB); a ping prod -> cons through the tunnel.
# 2. throughput: RFC 2544-style NDR/PDR search with kernel pktgen in gen
#    (benches/vm_throughput.py), routed mode; table + PNG on the host.
# 3. TCP: the consumer pulls BYTES through the listeners across a WAN of 50 ms
#    RTT and 0.1 % loss; SHA-256 compared; a rekey during the transfer.
# 4. UDP loss: 1 % loss + 5 % reordering; the consumer's loss must equal netem's
#    drop counter exactly (and every datagram must reach netem); a rekey during
#    the stream.
# 5. UDP duplication: 1 % duplication + 5 % reordering; gwB's replay drops must
#    equal what netem duplicated exactly, the consumer sees no duplicate; a rekey.
# 6. the packaged appliance (docs/operations.md): both gateways run
#    scistream-gateway's units, set up by `s2ds setup-host` (provision.sh);
#    check-host named what was missing before and nothing after; s2uc runs in
#    gen from scistream-client. gwB reboots: its units, hugepages and NIC
#    binding come back and the session carries a stream again. gwB is
#    upgraded to a rebuilt package during a UDP stream: no more datagrams
#    lost than the restart window docs/operations.md states, and the session
#    carries a clean stream afterwards. Last, gwB's package is removed (the
#    services stop, configurations and registry stay) and purged (they go).
# --smoke: one frame size and short searches, 20 MB TCP, 3000-datagram UDP streams.
# --sizes 64,1400: other frame sizes (kept: the rest of the smoke or full form).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

RUN="" smoke=0 out="" sizes=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --run) RUN="$2"; shift 2 ;;
        --smoke) smoke=1; shift ;;
        --out) out="$2"; shift 2 ;;
        --sizes) sizes="$2"; shift 2 ;;
        *) echo "suite: unknown argument $1" >&2; exit 2 ;;
    esac
done
# shellcheck source=lib.sh
source scripts/vm/lib.sh
[[ -n "$RUN" && -e "$RUN/up" ]] || vdie "suite: --run RUN_DIR of a testbed that is up"
guest_paths
readonly RES="$RUN/results"
mkdir -p "$RES"

# The restart window docs/operations.md states for an upgrade in this testbed
# (TCG): the longest run of datagrams an upgrade may cost, at UDP_RATE.
readonly RESTART_WINDOW_S=15
if [[ $smoke -eq 1 ]]; then
    # 250/s: at 500/s, with the gateways under systemd, a CI-form run lost
    # 130 datagrams between gwA's WAN port and the wan VM (TCG: 4 VMs on 2
    # cores), which the exact counter checks then rightly failed.
    TCP_BYTES=50000000 UDP_COUNT=3000 UDP_RATE=250
    TPUT_ARGS=(--sizes 64 --trial-seconds 2 --iterations 4 --probes 100)
else
    # 500/s: at 1000/s under TCG, gwA's VM lost datagrams before the WAN
    # (7.7 % in one run), which the exact counter checks then rightly fail;
    # the CI form (smoke) runs at 250/s for the same reason.
    TCP_BYTES=200000000 UDP_COUNT=20000 UDP_RATE=500
    TPUT_ARGS=(--sizes 64,128,256,512,1024,1400,imix --trial-seconds 10 --iterations 8 --probes 1000)
fi
# --sizes replaces the frame sizes (e.g. 64,1400), the rest of the form stays.
[[ -n "$sizes" ]] && TPUT_ARGS+=(--sizes "$sizes")

# s2uc (package scistream-client) in gen, the user's machine, against a
# gateway's API on the management network (gen's mg0 is routed through gwA).
s2uc() {
    local gw="$1"; shift
    local api; [[ "$gw" == gwa ]] && api=10.99.0.1:5001 || api=10.99.0.2:5001
    vm_ssh gen /usr/bin/s2uc "$@" --s2cs "$api" --server_cert "$GUEST_RUN/certs/ca.pem" \
        --token-file "$GUEST_RUN/token"
}
# The gateways run the packaged units: instance name = role (s2ds@gwa, s2cs@gwa).
admin() { vm_ssh "$1" /usr/bin/python3 "$GUEST_REPO/scripts/vm/admin.py" "/run/scistream/$1.sock" "'$2'"; }
jget() { /usr/bin/python3 -c 'import json,sys; d=json.load(sys.stdin)
for k in sys.argv[1].split("."): d=d[int(k)] if k.isdigit() else d[k]
print(",".join(d) if isinstance(d,list) else d)' "$1"; }
# The session's key epoch as gwA's s2cs reports it (searched anywhere in the reply).
epoch() { admin gwa "{\"op\":\"status\",\"uid\":\"$1\"}" | /usr/bin/python3 -c 'import json,sys
def find(o):
    if isinstance(o, dict):
        if "epoch" in o: return o["epoch"]
        o = list(o.values())
    if isinstance(o, list):
        for v in o:
            r = find(v)
            if r is not None: return r
print(find(json.load(sys.stdin)))'; }
# Counters are read after s2ds has written a fresh snapshot (once a second).
gw_stats() { sleep 2; vm_ssh "$1" cat "/run/s2ds/$1.stats.json"; }
s2ds_log() { vm_ssh "$1" journalctl -b -u "s2ds@$1" --no-pager -o cat; }
wan_stats() { vm_ssh wan bash "$GUEST_REPO/scripts/vm/netem.sh" stats "$1"; }
netem() { vm_ssh wan bash "$GUEST_REPO/scripts/vm/netem.sh" "$@"; }

# ---- 1. sessions ---------------------------------------------------------------------
# Routed mode: the tunnel s2cs negotiated from [[tunnels]] at start. Checked
# with ping before any listener session exists: once gwB holds listeners, its
# NAT refuses ICMP echo arriving through the tunnel (drop reason
# nat_unsupported), also on the routed SA, so later routed checks use UDP.
routed_check() {
    local ok=0
    for _ in $(seq 30); do
        vm_ssh gen ip netns exec prod ping -c1 -W2 10.20.1.2 >/dev/null 2>&1 && { ok=1; break; }
        sleep 1
    done
    [[ $ok -eq 1 ]] || vdie "routed tunnel: prod cannot ping cons (10.20.1.2)"
    vm_ssh gen ip netns exec prod ping -c3 -W2 10.20.1.2 >"$RES/routed-ping.txt"
    vlog "routed tunnel up: prod pings cons (10.20.1.2) through gwA, wan, gwB"
    # The gateways' ports as s2ds logged them: PCI address and PMD.
    local gw
    for gw in gwa gwb; do
        s2ds_log "$gw" | sed 's/\x1b\[[0-9;]*m//g' | grep -E 'DPDK port started|initialising DPDK EAL' \
            >"$RES/$gw-s2ds-ports.log" || true
        vlog "$gw: $(grep -c 'DPDK port started' "$RES/$gw-s2ds-ports.log") DPDK ports: $(grep -o 'ethdev=[^ ]* driver=[^ ]*' "$RES/$gw-s2ds-ports.log" | tr '\n' ' ')"
    done
}

# Listener mode, the SciStream way: inbound-request at gwA for the producer
# app's endpoints, outbound-request at gwB with gwA's listeners.
listener_session() {
    vlog "session: s2uc inbound-request at gwA (producer app 10.10.1.2:5100,5101)"
    s2uc gwa inbound-request --num_conn 2 --remote_ip 10.10.1.2 --receiver_ports 5100,5101 --json \
        >"$RES/inbound.json"
    UID_="$(jget uid <"$RES/inbound.json")"
    local prod_lstn; prod_lstn="$(jget listeners <"$RES/inbound.json")"
    vlog "session $UID_: s2uc outbound-request at gwB with gwA's listeners $prod_lstn"
    s2uc gwb outbound-request "$UID_" "$prod_lstn" --num_conn 2 --json >"$RES/outbound.json"
    LSTN_TCP="$(jget listeners.0 <"$RES/outbound.json")"
    LSTN_UDP="$(jget listeners.1 <"$RES/outbound.json")"
    vlog "consumer listeners at gwB: $LSTN_TCP (TCP), $LSTN_UDP (UDP)"
    vm_ssh gen ip netns exec cons ping -c3 -W2 10.20.1.1 >/dev/null
}

# ---- 3..5. impairment checks ---------------------------------------------------------
# Run a flow in gen in the background, rekey the session half-way, wait for it.
flow_with_rekey() {
    local dir="$1" delay="$2"; shift 2
    epoch "$UID_" >"$dir/epoch0"
    vm_ssh gen bash "$GUEST_REPO/scripts/vm/flow.sh" "$@" >"$dir/flow.json" &
    local fpid=$!
    sleep "$delay"
    admin gwa "{\"op\":\"rekey\",\"uid\":\"$UID_\"}" >"$dir/rekey.json" || vlog "rekey request failed: $(cat "$dir/rekey.json")"
    wait "$fpid"
    epoch "$UID_" >"$dir/epoch1"
}

tcp_check() {
    local d="$RES/tcp"; mkdir -p "$d"
    # 25 ms each way = 50 ms RTT, 0.1 % loss each way, on tunnel packets only.
    netem set a0 delay 25ms loss 0.1%
    netem set b0 delay 25ms loss 0.1%
    printf '{"bytes": %s, "netem": "delay 25ms loss 0.1%% each way"}\n' "$TCP_BYTES" >"$d/params.json"
    vlog "TCP: $TCP_BYTES bytes through the listeners, 50 ms RTT, 0.1 % loss, rekey on the way"
    flow_with_rekey "$d" 5 tcp "$LSTN_TCP" 5100 "$TCP_BYTES" 600
    netem clear a0; netem clear b0
    /usr/bin/python3 scripts/vm/check.py tcp "$d" >"$d/result.json"
}

udp_check() {
    local kind="$1" d="$RES/udp-$1"; shift; mkdir -p "$d"
    netem clear a0
    netem set b0 "$@"
    netem count-in a0
    printf '{"count": %s, "rate": %s, "netem": "%s"}\n' "$UDP_COUNT" "$UDP_RATE" "$*" >"$d/params.json"
    wan_stats a0 >"$d/wan0.a0.json"
    wan_stats b0 >"$d/wan-b0-0.json"
    gw_stats gwa >"$d/gwa0.json"
    gw_stats gwb >"$d/gwb0.json"
    vlog "UDP $kind: $UDP_COUNT datagrams at $UDP_RATE/s through the listeners, netem $*"
    flow_with_rekey "$d" 3 udp "$LSTN_UDP" 5101 "$UDP_COUNT" 512 "$UDP_RATE" 60
    gw_stats gwa >"$d/gwa1.json"
    gw_stats gwb >"$d/gwb1.json"
    # netem's counters (b0 egress) and the ESP count arriving from gwA (a0 ingress).
    /usr/bin/python3 - "$d" "$(wan_stats b0)" "$(wan_stats a0)" <<'PY'
import json, sys, pathlib
d = pathlib.Path(sys.argv[1])
b0_0 = json.loads((d / "wan-b0-0.json").read_text())
a0_0 = json.loads((d / "wan0.a0.json").read_text())
b0_1, a0_1 = json.loads(sys.argv[2]), json.loads(sys.argv[3])
for i, (b, a) in enumerate(((b0_0, a0_0), (b0_1, a0_1))):
    (d / f"wan{i}.json").write_text(json.dumps({"netem_sent": b["netem_sent"],
        "netem_dropped": b["netem_dropped"], "esp_in": a["esp_in"]}))
PY
    netem clear b0
    /usr/bin/python3 scripts/vm/check.py "udp-$kind" "$d" >"$d/result.json"
}

# ---- 6. the packaged appliance -------------------------------------------------------
# check-host before and after setup-host (provision.sh wrote its outputs into
# the run directory).
host_checks() {
    local gw fail=0 iommu=no-iommu
    # The qemu runner gives the gateways an IOMMU (scripts/vm-testbed.sh start_vm).
    [[ -e "$RUN/gw-iommu" ]] && iommu=iommu
    for gw in gwa gwb; do
        cp "$RUN/share/host-$gw-"* "$RES/"
        /usr/bin/python3 scripts/vm/check.py host "$RES" "$gw" "$iommu" >"$RES/host-$gw.json" || fail=1
    done
    return "$fail"
}

# The package state of a gateway (scripts/vm/gw-state.sh): version, units,
# hugepages, NIC drivers, boot id, pids.
gw_state() { vm_ssh "$1" bash "$GUEST_REPO/scripts/vm/gw-state.sh" "$1" "$GUEST_REPO"; }

# A short UDP stream through the session, retried until it arrives whole
# (after a restart, s2cs renegotiates keys first). Prints the seconds it took.
wait_session_usable() {
    local d="$1" deadline=$(( SECONDS + ${2:-180} )) t0=$SECONDS
    while (( SECONDS < deadline )); do
        vm_ssh gen bash "$GUEST_REPO/scripts/vm/flow.sh" udp "$LSTN_UDP" 5101 200 512 200 30 >"$d/probe.json" || true
        if [[ "$(jget pull.lost <"$d/probe.json" 2>/dev/null)" == 0 ]]; then
            echo $(( SECONDS - t0 )); return 0
        fi
        sleep 2
    done
    return 1
}

# gwB reboots (systemctl reboot): nothing is redone by hand afterwards.
reboot_check() {
    local d="$RES/reboot"; mkdir -p "$d"
    gw_state gwb >"$d/state0.json"
    vlog "reboot: gwB reboots; units, hugepages and NIC binding must come back, the session carry a stream"
    local t0=$SECONDS
    vm_ssh gwb systemctl reboot || true
    sleep 10
    local deadline=$(( SECONDS + 300 ))
    until vm_ssh gwb true 2>/dev/null; do
        (( SECONDS < deadline )) || { vlog "reboot: gwB has no ssh after 300 s"; return 1; }
        sleep 2
    done
    mount_shares gwb
    echo $(( SECONDS - t0 )) >"$d/boot_seconds"
    # The units start after sshd may already answer: give them their start-up time.
    for _ in $(seq 60); do
        gw_state gwb >"$d/state1.json"
        [[ "$(jget s2ds <"$d/state1.json")" == active && "$(jget s2cs <"$d/state1.json")" == active ]] && break
        sleep 2
    done
    wait_session_usable "$d" 240 >"$d/usable_seconds" || echo -1 >"$d/usable_seconds"
    vm_ssh gen bash "$GUEST_REPO/scripts/vm/flow.sh" udp "$LSTN_UDP" 5101 1000 512 "$UDP_RATE" 60 >"$d/flow.json" || true
    /usr/bin/python3 scripts/vm/check.py reboot "$d" >"$d/result.json"
}

# gwB is upgraded to the rebuilt package (revision 2) during a UDP stream,
# the way docs/operations.md tells an operator to: `apt-get install` of the
# new .deb, 5 s into the stream. Its postinst restarts s2ds, then s2cs, and
# apt returns once they are started again. The host's clock times apt
# against the stream's last datagram.
upgrade_check() {
    local d="$RES/upgrade"; mkdir -p "$d"
    local count=$(( UDP_RATE * (RESTART_WINDOW_S + 45) ))
    gw_state gwb >"$d/state0.json"
    vm_ssh gwb "cp $GUEST_RUN/debs-upgrade/scistream-gateway_*-2_amd64.deb /tmp/" \
        || vlog "upgrade: no revision-2 package in $GUEST_RUN/debs-upgrade"
    vlog "upgrade: $count datagrams at $UDP_RATE/s; apt-get install of gwB's new package 5 s in"
    local t0=$SECONDS
    # IDLE = the window: the consumer must outwait the restart.
    vm_ssh gen bash "$GUEST_REPO/scripts/vm/flow.sh" udp "$LSTN_UDP" 5101 "$count" 512 "$UDP_RATE" \
        $(( count / UDP_RATE + RESTART_WINDOW_S + 30 )) "$RESTART_WINDOW_S" >"$d/flow.json" &
    local fpid=$!
    sleep 5
    local t1=$SECONDS
    vm_ssh gwb "DEBIAN_FRONTEND=noninteractive apt-get install -y /tmp/scistream-gateway_*-2_amd64.deb" \
        >"$d/apt.log" 2>&1 || vlog "upgrade: apt-get install failed ($d/apt.log)"
    local t2=$SECONDS
    wait "$fpid" || true
    printf '{"count": %s, "rate": %s, "restart_window_s": %s, "upgrade_started_s": %s, "upgrade_done_s": %s}\n' \
        "$count" "$UDP_RATE" "$RESTART_WINDOW_S" $(( t1 - t0 )) $(( t2 - t0 )) >"$d/params.json"
    gw_state gwb >"$d/state1.json"
    # When s2ds and s2cs stopped and started, from gwB's journal.
    vm_ssh gwb journalctl -b -u "s2ds@gwb" -u "s2cs@gwb" --no-pager -o short-precise \
        | grep -E 'Stopping|Stopped|Starting|Started|DPDK port started|negotiat' | tail -n 20 >"$d/journal.txt" || true
    wait_session_usable "$d" 120 >"$d/usable_seconds" || echo -1 >"$d/usable_seconds"
    vm_ssh gen bash "$GUEST_REPO/scripts/vm/flow.sh" udp "$LSTN_UDP" 5101 1000 512 "$UDP_RATE" 60 >"$d/after.json" || true
    admin gwb "{\"op\":\"status\",\"uid\":\"$UID_\"}" >"$d/status.json" 2>&1 || true
    /usr/bin/python3 scripts/vm/check.py upgrade "$d" >"$d/result.json"
}

# Last, as it takes gwB's gateway away: `apt-get remove` stops both services
# and keeps the configurations, certificates, registry and enabled instances;
# `apt-get purge` then removes those and setup-host's boot drop-ins.
removal_check() {
    local d="$RES/removal"; mkdir -p "$d"
    pkg_files() { vm_ssh gwb bash "$GUEST_REPO/scripts/vm/pkg-files.sh" gwb; }
    vlog "removal: apt-get remove, then purge, of scistream-gateway in gwB"
    pkg_files >"$d/installed.json"
    vm_ssh gwb apt-get remove -y scistream-gateway >"$d/apt-remove.log" 2>&1 || vlog "removal: apt-get remove failed ($d/apt-remove.log)"
    pkg_files >"$d/removed.json"
    vm_ssh gwb apt-get purge -y scistream-gateway >"$d/apt-purge.log" 2>&1 || vlog "removal: apt-get purge failed ($d/apt-purge.log)"
    pkg_files >"$d/purged.json"
    /usr/bin/python3 scripts/vm/check.py removal "$d" >"$d/result.json"
}

throughput() {
    vlog "throughput: NDR/PDR search with kernel pktgen (${TPUT_ARGS[*]})"
    vm_ssh gen ip netns exec prod /usr/bin/python3 "$GUEST_REPO/benches/vm_throughput.py" search "${TPUT_ARGS[@]}" \
        --dst-mac "$GWA_LAN_MAC" >"$RES/throughput.json"
    /usr/bin/python3 benches/vm_throughput.py report "$RES/throughput.json" --png "$RES/throughput.png" \
        | tee "$RES/throughput.txt" >&2
}

# The session is released whatever ends the suite, so a rerun starts clean.
release_session() {
    [[ -n "${UID_:-}" ]] || return 0
    s2uc gwb release "$UID_" >/dev/null 2>&1 || true
    s2uc gwa release "$UID_" >/dev/null 2>&1 || true
    UID_=""
}

main() {
    trap release_session EXIT
    # shellcheck source=topology.env
    source scripts/vm/topology.env
    local t0=$SECONDS fail=0
    host_checks || fail=1
    routed_check
    listener_session
    throughput || fail=1
    tcp_check || fail=1
    udp_check loss delay 10ms reorder 5% loss 1% || fail=1
    udp_check dup delay 10ms reorder 5% duplicate 1% || fail=1
    reboot_check || fail=1
    upgrade_check || fail=1
    release_session
    removal_check || fail=1
    [[ -n "$out" ]] && { mkdir -p "$out"; cp -r "$RES"/. "$out"/; }
    vlog "suite done in $((SECONDS - t0)) s ($(cat "$RUN/accel")); results in ${out:-$RES}"
    [[ $fail -eq 0 ]] || vdie "suite: a check failed"
    vlog "suite: all checks passed"
}

main
