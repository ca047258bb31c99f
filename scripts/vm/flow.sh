#!/usr/bin/env bash
# flow.sh - one listener-mode transfer in the gen VM (runs inside the guest).
# The producer (namespace prod) serves, the consumer (namespace cons) pulls
# through gwB's listener TO, so the stream crosses both gateways and the WAN.
# Prints one JSON line: {"serve": <producer report>, "pull": <consumer report>}
# (scripts/traffic.py's reports).
#
# Usage: flow.sh tcp TO PORT BYTES TIMEOUT
#        flow.sh udp TO PORT COUNT SIZE RATE TIMEOUT [IDLE]
#   TO    gwB listener ip:port the consumer pulls from
#   PORT  the producer app's port (the session's target)
#   IDLE  UDP: the consumer stops after IDLE seconds with nothing new (default
#         3; longer where a gateway restarts during the stream)
set -euo pipefail
readonly TRAFFIC=/mnt/s2/scripts/traffic.py
work="$(mktemp -d /tmp/flow.XXXXXX)"
serve_pid=""
cleanup() { [[ -n "$serve_pid" ]] && kill "$serve_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

wait_ready() {
    for _ in $(seq 300); do [[ -e "$work/ready" ]] && return 0; sleep 0.1; done
    echo "flow: producer did not bind" >&2; return 1
}

# The report is the last JSON line a traffic.py run printed (even if it failed).
last_json() { grep '^{' "$1" | tail -1 || echo '{}'; }

kind="$1"; to="$2"; port="$3"; shift 3
case "$kind" in
    tcp)
        bytes="$1" timeout="$2"
        ip netns exec prod /usr/bin/python3 "$TRAFFIC" tcp-serve --bind "0.0.0.0:$port" --bytes "$bytes" \
            --timeout "$timeout" --ready-file "$work/ready" >"$work/serve" 2>"$work/serve.err" &
        serve_pid=$!
        wait_ready
        ip netns exec cons /usr/bin/python3 "$TRAFFIC" tcp-pull --to "$to" --timeout "$timeout" \
            >"$work/pull" 2>"$work/pull.err" || true
        ;;
    udp)
        count="$1" size="$2" rate="$3" timeout="$4" idle="${5:-3}"
        ip netns exec prod /usr/bin/python3 "$TRAFFIC" udp-serve --bind "0.0.0.0:$port" --count "$count" \
            --size "$size" --rate "$rate" --timeout "$timeout" --ready-file "$work/ready" \
            >"$work/serve" 2>"$work/serve.err" &
        serve_pid=$!
        wait_ready
        # The consumer stops after IDLE s with nothing new: the stream is over.
        ip netns exec cons /usr/bin/python3 "$TRAFFIC" udp-pull --to "$to" --count "$count" --timeout "$idle" \
            >"$work/pull" 2>"$work/pull.err" || true
        ;;
    *) echo "usage: flow.sh tcp|udp ..." >&2; exit 2 ;;
esac
wait "$serve_pid" || true
serve_pid=""
printf '{"serve": %s, "pull": %s}\n' "$(last_json "$work/serve")" "$(last_json "$work/pull")"
