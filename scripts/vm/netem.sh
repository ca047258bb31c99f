#!/usr/bin/env bash
# netem.sh - impair the tunnel in the wan VM (runs inside the guest, as root).
#
# Usage: netem.sh set DEV NETEM-ARGS...   ESP-in-UDP (dport 4500) leaving DEV goes
#                                         through netem NETEM-ARGS; the rest (ARP,
#                                         ICMP) is untouched, so netem's counters
#                                         count tunnel packets only
#        netem.sh clear DEV               no impairment on DEV
#        netem.sh count-in DEV            count ESP arriving on DEV (ingress filter)
#        netem.sh stats DEV               JSON: netem's sent/dropped on DEV's egress,
#                                         ESP counted arriving on DEV (count-in)
set -euo pipefail

readonly ESP_MATCH=(u32 match ip protocol 17 0xff match ip dport 4500 0xffff)

cmd_set() {
    local dev="$1"; shift
    tc qdisc del dev "$dev" root 2>/dev/null || true
    # prio: every priority to band 2 (class 1:2, plain FIFO); the filter sends ESP
    # to band 3 (class 1:3), where netem sits.
    tc qdisc add dev "$dev" root handle 1: prio bands 3 priomap 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1
    tc qdisc add dev "$dev" parent 1:3 handle 30: netem limit 100000 "$@"
    tc filter add dev "$dev" parent 1: protocol ip prio 1 "${ESP_MATCH[@]}" flowid 1:3
}

cmd_clear() { tc qdisc del dev "$1" root 2>/dev/null || true; }

cmd_count_in() {
    local dev="$1"
    tc qdisc del dev "$dev" clsact 2>/dev/null || true
    tc qdisc add dev "$dev" clsact
    tc filter add dev "$dev" ingress protocol ip prio 1 "${ESP_MATCH[@]}" action ok
}

cmd_stats() {
    local dev="$1"
    { tc -s -j qdisc show dev "$dev"; echo; tc -s filter show dev "$dev" ingress; } | /usr/bin/python3 -c '
import json, re, sys
qdiscs, filters = sys.stdin.read().split("\n", 1)
netem = [q for q in json.loads(qdiscs) if q.get("kind") == "netem"]
m = re.search(r"Sent (\d+) bytes (\d+) pkt", filters)
print(json.dumps({
    "netem_sent": netem[0]["packets"] if netem else 0,
    "netem_dropped": netem[0]["drops"] if netem else 0,
    "esp_in": int(m.group(2)) if m else 0,
}))'
}

case "${1:-}" in
    set) shift; cmd_set "$@" ;;
    clear) cmd_clear "$2" ;;
    count-in) cmd_count_in "$2" ;;
    stats) cmd_stats "$2" ;;
    *) echo "usage: netem.sh set|clear|count-in|stats DEV ..." >&2; exit 2 ;;
esac
