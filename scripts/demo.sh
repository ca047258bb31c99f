#!/usr/bin/env bash
# Demo: a stream through two gateways on a local namespace testbed.
#
#   prod ── gwA (s2ds + s2cs) ── wan ── gwB (s2ds + s2cs) ── cons
#                    └──── management link (peer channel) ────┘
#
# Installs what it needs (scripts/setup.sh), builds s2ds, s2cs and s2uc
# (release), builds the testbed and starts one s2ds and one s2cs in each
# gateway namespace. With the default --keys control, the stream is set up
# the SciStream way, driven only by s2uc: an inbound request at gwA for the
# producer's endpoints, an outbound request at gwB with gwA's listeners; the
# two s2cs authenticate each other (mutual TLS) and negotiate the keys. The
# consumer then pulls a 200 MB TCP stream from the producer through gwB's
# listener (SHA-256 checked at both ends) while a UDP stream of 10,000
# sequence-numbered datagrams goes through the second listener, and the keys
# are rolled over twice on the way (make-before-break). Prints a summary
# with each gateway's counters, releases the session and tears everything
# down, also on failure or Ctrl-C.
#
# Usage: sudo scripts/demo.sh [--backend af_packet|af_xdp|native-xdp|tap]
#                             [--keys control|manual] [--bytes N]
#   af_packet   DPDK net_af_packet vdevs (default)
#   af_xdp      DPDK net_af_xdp vdevs
#   native-xdp  s2ds's own AF_XDP backend (no DPDK)
#   tap         s2ds's TAP backend, taps bridged to the veths
#   --keys manual  no s2cs: static keys from the s2ds configs, routed mode
#                  (prod sends straight to cons' address through the tunnel)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

backend=af_packet
keys=control
tcp_bytes=200000000
while [[ $# -gt 0 ]]; do
    case "$1" in
        --backend) backend="$2"; shift 2 ;;
        --keys) keys="$2"; shift 2 ;;
        --bytes) tcp_bytes="$2"; shift 2 ;;
        -h | --help) sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "demo: unknown argument $1" >&2; exit 2 ;;
    esac
done
case "$backend" in
    af_packet | af_xdp | native-xdp) mode=none ;;
    tap) mode=bridge ;;
    *) echo "demo: unknown backend $backend" >&2; exit 2 ;;
esac
case "$keys" in
    control | manual) ;;
    *) echo "demo: unknown keys $keys (control or manual)" >&2; exit 2 ;;
esac
[[ $(id -u) -eq 0 ]] || { echo "demo: run as root (it builds network namespaces)" >&2; exit 1; }

bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
echo "demo: building s2ds, s2cs and s2uc (release)"
cargo build --release --locked --bin s2ds --bin s2cs --bin s2uc
bin="$PWD/target/release"

prefix="s2demo$$"
work="$(mktemp -d /tmp/s2demo.XXXXXX)"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    scripts/testbed.sh down --prefix "$prefix" >/dev/null 2>&1 || true
    rm -f "/dev/shm/$prefix-gwa" "/dev/shm/$prefix-gwb"
    rm -rf "$work"
}
trap cleanup EXIT INT TERM
ns() { ip netns exec "$prefix-$1" "${@:2}"; }
wait_file() { for _ in $(seq "${2:-300}"); do [[ -e "$1" ]] && return 0; sleep 0.1; done; return 1; }

scripts/testbed.sh up --prefix "$prefix" --gw-a "$mode" --gw-b "$mode" >/dev/null

# ---- s2cs: certificates, a user token, one control process per gateway ----------------
if [[ "$keys" == control ]]; then
    # Each certificate also names its gateway's management address, so s2uc
    # (like SciStream's own client) verifies it by the IP it dials.
    scripts/gen-certs.sh "$work/certs" gwa --ip 10.99.0.1 gwb --ip 10.99.0.2 >/dev/null
    # A random token for user "testuser"; the token file holds only its hash.
    "$bin/s2cs" hash-token --identity testuser --generate >"$work/tokens.toml" 2>"$work/token"
    chmod 600 "$work/tokens.toml" "$work/token"
    for gw in gwa gwb; do
        # Relative paths (certs/, tokens.toml) resolve next to the config in $work.
        sed -e "s|/tmp/scistream-testbed/$gw.sock|$work/$gw-admin/s2cs.sock|" \
            -e "s|/tmp/scistream-testbed/$gw.db|$work/$gw.db|" \
            -e "s|/dev/shm/scistream-testbed-$gw|/dev/shm/$prefix-$gw|" \
            -e "s|^rekey_seconds = .*|rekey_seconds = 3|" \
            -e "s|^grace_seconds = .*|grace_seconds = 2|" \
            "configs/control-testbed-$gw.toml" >"$work/s2cs-$gw.toml"
        ns "$gw" "$bin/s2cs" run "$work/s2cs-$gw.toml" >"$work/s2cs-$gw.log" 2>&1 &
        pids+=("$!")
    done
    for gw in gwa gwb; do
        wait_file "$work/$gw-admin/s2cs.sock" || { echo "demo: s2cs in $gw did not start:"; cat "$work/s2cs-$gw.log"; exit 1; }
    done
    echo "demo: s2cs running in both gateways (peer channel on the management link)"
fi

# ---- s2ds: one data plane per gateway ------------------------------------------------
for gw in gwa gwb; do
    cfg="$work/$gw.toml"
    # Unique stats file and EAL file prefix for this run; with --keys control the
    # manual SAs, tunnel routes and listeners give way to the region s2cs writes.
    python3 - "configs/testbed-$gw-$backend.toml" "$cfg" "$work/$gw.stats.json" \
        "$prefix$gw" "$keys" "/dev/shm/$prefix-$gw" <<'PY'
import re, sys
src, dst, stats, file_prefix, keys, shm = sys.argv[1:]
out, skip = [], False
for line in open(src).read().splitlines():
    header = re.match(r"^\s*\[\[?([A-Za-z_.]+)\]\]?", line)
    if header:
        skip = keys == "control" and header.group(1) in ("sas", "tunnel_routes", "listeners")
    if skip:
        continue
    line = re.sub(r"--file-prefix=[^\"]*", f"--file-prefix={file_prefix}", line)
    out.append(line)
    if line.strip() == "[gateway]":
        out.append(f'stats_path = "{stats}"')
    if keys == "control" and line.strip() == "[tunnel]":
        out += ['keying = "control"', f'shm_path = "{shm}"']
open(dst, "w").write("\n".join(out) + "\n")
PY
    ns "$gw" "$bin/s2ds" run "$cfg" >"$work/$gw.log" 2>&1 &
    pids+=("$!")
done
for gw in gwa gwb; do
    wait_file "$work/$gw.stats.json" || { echo "demo: s2ds in $gw did not start:"; cat "$work/$gw.log"; exit 1; }
done
echo "demo: both data planes running ($backend, keys: $keys)"

# ---- the session -------------------------------------------------------------------
if [[ "$keys" == control ]]; then
    s2uc() {
        local gw="$1"; shift
        local api; [[ "$gw" == gwa ]] && api=10.99.0.1:5001 || api=10.99.0.2:5001
        ns "$gw" "$bin/s2uc" "$@" --s2cs "$api" --server_cert "$work/certs/ca.pem" \
            --token-file "$work/token"
    }
    echo "demo: s2uc inbound-request at gwA (producer app on 10.10.1.2:5100 and :5101)"
    s2uc gwa inbound-request --num_conn 2 --remote_ip 10.10.1.2 --receiver_ports 5100,5101 --json \
        | tee "$work/inbound.json"
    uid=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["uid"])' "$work/inbound.json")
    prod_lstn=$(python3 -c 'import json,sys; print(",".join(json.load(open(sys.argv[1]))["listeners"]))' "$work/inbound.json")
    echo "demo: s2uc outbound-request at gwB with gwA's listeners $prod_lstn"
    s2uc gwb outbound-request "$uid" "$prod_lstn" --num_conn 2 --json | tee "$work/outbound.json"
    tcp_to=10.20.1.1:5100
    udp_to=10.20.1.1:5101
else
    tcp_to=10.20.1.2:5100
    udp_to=10.20.1.2:5101
fi

# Warm the neighbour tables (each gateway answers ARP for its own addresses).
for _ in $(seq 20); do ns cons ping -c1 -W1 10.20.1.1 >/dev/null 2>&1 && break; done
for _ in $(seq 20); do ns prod ping -c1 -W1 10.10.1.1 >/dev/null 2>&1 && break; done

echo "demo: TCP, cons pulls $tcp_bytes bytes from prod via $tcp_to; UDP, 10000 datagrams via $udp_to"
if [[ "$keys" == control ]]; then
    ns prod python3 scripts/traffic.py tcp-serve --bind 0.0.0.0:5100 --bytes "$tcp_bytes" \
        --timeout 120 --ready-file "$work/tcp.ready" >"$work/tcp-send.json" &
    spid=$!
    wait_file "$work/tcp.ready" 100
    ns cons python3 scripts/traffic.py tcp-pull --to "$tcp_to" --timeout 120 >"$work/tcp-recv.json" &
    cpid=$!
else
    ns cons python3 scripts/traffic.py tcp-recv --bind 0.0.0.0:5100 --timeout 120 \
        --ready-file "$work/tcp.ready" >"$work/tcp-recv.json" &
    cpid=$!
    wait_file "$work/tcp.ready" 100
    ns prod python3 scripts/traffic.py tcp-send --to "$tcp_to" --bytes "$tcp_bytes" --timeout 120 >"$work/tcp-send.json" &
    spid=$!
fi
udp_recv_node=prod; udp_send_node=cons
[[ "$keys" == manual ]] && { udp_recv_node=cons; udp_send_node=prod; }
ns "$udp_recv_node" python3 scripts/traffic.py udp-recv --bind 0.0.0.0:5101 --count 10000 --timeout 10 \
    --ready-file "$work/udp.ready" >"$work/udp-recv.json" &
upid=$!
wait_file "$work/udp.ready" 100
ns "$udp_send_node" python3 scripts/traffic.py udp-send --to "$udp_to" --count 10000 --size 1024 --rate 2000 >"$work/udp-send.json"
wait "$upid" || true
wait "$cpid" || true
wait "$spid" || true

python3 - "$work" <<'PY'
import json, sys, time
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
# The gateways clamp the MSS of TCP SYNs crossing the tunnel, so the 1500-MTU
# endpoints never send a segment the tunnel cannot carry: no ICMP
# fragmentation-needed (or any other ICMP error) from either gateway.
time.sleep(1.0)  # the stats files are rewritten twice a second
gws = {g: json.load(open(f"{w}/{g}.stats.json")) for g in ("gwa", "gwb")}
icmp = {g: s["control"]["icmp_errors"] for g, s in gws.items()}
clamped = {g: s["tunnel"]["mss_clamped"] for g, s in gws.items()}
print(f"ICMP errors sent (fragmentation needed, ...): gwA {icmp['gwa']}, gwB {icmp['gwb']}")
print(f"TCP SYNs with the MSS clamped to the tunnel:  gwA {clamped['gwa']}, gwB {clamped['gwb']}")
ok = ur["received"] == us["sent"] and ur["in_order"] and ts["sha256"] == tr["sha256"] and tr["bytes"] == ts["bytes"]
ok = ok and sum(icmp.values()) == 0
open(f"{w}/ok", "w").write("1" if ok else "0")
PY
if [[ "$keys" == control ]]; then
    echo; echo "==== s2uc status (gwB)"
    s2uc gwb status "$uid"
    echo "demo: releasing the session on both gateways"
    s2uc gwb release "$uid" >/dev/null
    s2uc gwa release "$uid" >/dev/null
fi
for gw in gwa gwb; do
    echo; echo "==== s2ds stats ($gw)"
    "$bin/s2ds" stats --path "$work/$gw.stats.json" --interval 0.5 --count 1
done
[[ "$(cat "$work/ok")" == 1 ]] && echo "demo: OK" || { echo "demo: FAILED"; exit 1; }
