#!/usr/bin/env bash
# Demo: a stream through two gateways on a local namespace testbed.
#
#   prod ── gwA (s2ds) ── wan ── gwB (s2ds) ── cons
#
# Installs what it needs (scripts/setup.sh), builds s2ds (release), builds the
# testbed, starts one s2ds in each gateway namespace, then sends from prod to
# cons: ping, 10,000 sequence-numbered UDP datagrams, and a 200 MB TCP stream
# whose SHA-256 is checked at both ends. Prints a summary with each gateway's
# counters and tears everything down, also on failure or Ctrl-C.
#
# Usage: sudo scripts/demo.sh [--backend af_packet|af_xdp|native-xdp|tap] [--bytes N]
#   af_packet   DPDK net_af_packet vdevs (default)
#   af_xdp      DPDK net_af_xdp vdevs
#   native-xdp  s2ds's own AF_XDP backend (no DPDK)
#   tap         s2ds's TAP backend, taps bridged to the veths
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

backend=af_packet
tcp_bytes=200000000
while [[ $# -gt 0 ]]; do
    case "$1" in
        --backend) backend="$2"; shift 2 ;;
        --bytes) tcp_bytes="$2"; shift 2 ;;
        -h | --help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "demo: unknown argument $1" >&2; exit 2 ;;
    esac
done
case "$backend" in
    af_packet | af_xdp | native-xdp) mode=none ;;
    tap) mode=bridge ;;
    *) echo "demo: unknown backend $backend" >&2; exit 2 ;;
esac
[[ $(id -u) -eq 0 ]] || { echo "demo: run as root (it builds network namespaces)" >&2; exit 1; }

bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
echo "demo: building s2ds (release)"
cargo build --release --locked --bin s2ds
s2ds="$PWD/target/release/s2ds"

prefix="s2demo$$"
work="$(mktemp -d /tmp/s2demo.XXXXXX)"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    scripts/testbed.sh down --prefix "$prefix" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

scripts/testbed.sh up --prefix "$prefix" --gw-a "$mode" --gw-b "$mode" >/dev/null
for gw in gwa gwb; do
    cfg="$work/$gw.toml"
    # Unique stats file and EAL file prefix for this run.
    sed -e "0,/^name = \"\\(.*\\)\"/s||name = \"\\1\"\nstats_path = \"$work/$gw.stats.json\"|" \
        -e "s|--file-prefix=[^\"]*|--file-prefix=$prefix$gw|" \
        "configs/testbed-$gw-$backend.toml" > "$cfg"
    ip netns exec "$prefix-$gw" "$s2ds" run "$cfg" >"$work/$gw.log" 2>&1 &
    pids+=("$!")
done
for gw in gwa gwb; do
    for _ in $(seq 300); do [[ -f "$work/$gw.stats.json" ]] && break; sleep 0.1; done
    [[ -f "$work/$gw.stats.json" ]] || { echo "demo: s2ds in $gw did not start:"; cat "$work/$gw.log"; exit 1; }
done
echo "demo: both gateways running ($backend)"

ns() { ip netns exec "$prefix-$1" "${@:2}"; }
for _ in $(seq 20); do ns prod ping -c1 -W1 10.20.1.2 >/dev/null 2>&1 && break; done
echo "demo: ping prod -> cons"
ns prod ping -c 3 -i 0.2 10.20.1.2 | tail -2

echo "demo: UDP, 10000 datagrams of 1024 B at 5000/s"
ns cons python3 scripts/traffic.py udp-recv --bind 10.20.1.2:5001 --count 10000 --timeout 10 \
    --ready-file "$work/udp.ready" >"$work/udp-recv.json" &
rpid=$!
for _ in $(seq 100); do [[ -f "$work/udp.ready" ]] && break; sleep 0.05; done
ns prod python3 scripts/traffic.py udp-send --to 10.20.1.2:5001 --count 10000 --size 1024 --rate 5000 >"$work/udp-send.json"
wait "$rpid" || true

echo "demo: TCP, $tcp_bytes bytes"
ns cons python3 scripts/traffic.py tcp-recv --bind 10.20.1.2:5002 --ready-file "$work/tcp.ready" --timeout 120 >"$work/tcp-recv.json" &
rpid=$!
for _ in $(seq 100); do [[ -f "$work/tcp.ready" ]] && break; sleep 0.05; done
ns prod python3 scripts/traffic.py tcp-send --to 10.20.1.2:5002 --bytes "$tcp_bytes" --timeout 120 >"$work/tcp-send.json"
wait "$rpid" || true

python3 - "$work" <<'PY'
import json, sys
w = sys.argv[1]
def last(p):
    lines = [l for l in open(f"{w}/{p}").read().splitlines() if l.strip().startswith("{")]
    return json.loads(lines[-1])
us, ur, ts, tr = last("udp-send.json"), last("udp-recv.json"), last("tcp-send.json"), last("tcp-recv.json")
print("\n==== summary")
print(f"UDP  sent {us['sent']}  received {ur['received']}  lost {ur['lost']}  in order {ur['in_order']}")
print(f"TCP  {tr['bytes']} bytes in {tr['seconds']:.2f} s ({tr['mbps']:.0f} Mb/s)")
print(f"     sha256 sent     {ts['sha256']}")
print(f"     sha256 received {tr['sha256']}  {'MATCH' if ts['sha256'] == tr['sha256'] else 'MISMATCH'}")
ok = ur["received"] == us["sent"] and ur["in_order"] and ts["sha256"] == tr["sha256"] and tr["bytes"] == ts["bytes"]
open(f"{w}/ok", "w").write("1" if ok else "0")
PY
for gw in gwa gwb; do
    echo; echo "==== s2ds stats ($gw)"
    "$s2ds" stats --path "$work/$gw.stats.json" --interval 0.5 --count 1
done
[[ "$(cat "$work/ok")" == 1 ]] && echo "demo: OK" || { echo "demo: FAILED"; exit 1; }
