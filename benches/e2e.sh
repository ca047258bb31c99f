#!/usr/bin/env bash
# End-to-end benchmark on the namespace testbed: iperf3 TCP (1 and 4
# streams) and UDP through two gateways, s2ds on each backend against kernel
# forwarding, an HAProxy pair and two stunnel pairs (TLS 1.3; TLS 1.2
# PSK-NULL), all in one run. See docs/benchmarks.md.
#
#   sudo bash benches/e2e.sh [--modes kernel,haproxy,...] [--rounds 3]
#        [--duration 10] [--mtu 1500] [--udp-buffer 4M] [--out DIR] [--plot PNG]
#        [--profile] [--smoke] [--no-build]
#
# Builds s2ds in release (unless --no-build), then runs benches/e2e.py,
# which prints a markdown table and writes a PNG. Every namespace and
# process it made is removed on exit, also on failure or ^C.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

bench_args e2e.sh "$@"
bench_s2ds

# Fallback clean-up if the driver is killed outright: its testbeds are named
# after this prefix.
export E2E_PREFIX="e2e$$"
cleanup() {
    local ns
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^${E2E_PREFIX}m[0-9]*-" || true); do
        bash "$repo/scripts/testbed.sh" down --prefix "${ns%-*}" >/dev/null 2>&1 || true
    done
}
trap cleanup EXIT
bench_python
"$py" "$here/e2e.py" --s2ds "$s2ds" "${pass[@]}"
