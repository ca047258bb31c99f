#!/usr/bin/env bash
# DPDK forwarding benchmark over net_memif: s2ds against dpdk-testpmd in io
# mode, same set-up, same run, counted at the same sink. See
# docs/benchmarks.md for the set-up and the figures.
#
#   sudo bash benches/dpdk_forward.sh [--sizes 64,1400] [--rounds 5]
#        [--duration 5] [--warmup 2] [--profile] [--no-build]
#        [--out DIR] [--fwd-core 1] [--tester-core 0] [--time-limit 900]
#        [--min-cpu 0.97] [--retries 2] [--quiet-wait 60] [--plot PNG] [--smoke]
#
# Builds s2ds in release (unless --no-build), then runs
# benches/dpdk_forward.py, which starts, measures and stops the DPDK
# processes and prints a markdown table. Every process it started and every
# socket are removed on exit, also on failure or ^C.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
build=1
pass=()
for a in "$@"; do
    case "$a" in
        --no-build) build=0 ;;
        -h|--help) sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) pass+=("$a") ;;
    esac
done

if [[ $EUID -ne 0 ]]; then
    echo "dpdk_forward.sh: run as root (sudo bash benches/dpdk_forward.sh)" >&2
    exit 2
fi
for tool in dpdk-testpmd python3; do
    command -v "$tool" >/dev/null || { echo "dpdk_forward.sh: $tool not found (scripts/setup.sh installs it)" >&2; exit 2; }
done

target="${CARGO_TARGET_DIR:-$repo/target}"
if [[ $build -eq 1 ]]; then
    echo "[bench] cargo build --release -p scistream-dataplane"
    (cd "$repo" && cargo build --release -p scistream-dataplane)
fi
s2ds="$target/release/s2ds"
[[ -x "$s2ds" ]] || { echo "dpdk_forward.sh: $s2ds not built (drop --no-build)" >&2; exit 2; }

# Fallback clean-up: the Python driver stops its children itself; if it is
# killed outright, stop whatever it recorded as started and is still running.
pid_file="$(mktemp /tmp/s2ds-bench-pids.XXXXXX)"
cleanup() {
    local pid
    while read -r pid; do
        [[ -n "$pid" ]] || continue
        if kill -0 "$pid" 2>/dev/null; then
            kill -INT -- "-$pid" 2>/dev/null || true
            sleep 1
            kill -KILL -- "-$pid" 2>/dev/null || true
        fi
    done <"$pid_file"
    rm -f "$pid_file"
}
trap cleanup EXIT

# Debian's interpreter (python3-matplotlib for the plot) before any other on PATH.
py=/usr/bin/python3
[[ -x "$py" ]] || py=python3
BENCH_PID_FILE="$pid_file" "$py" "$here/dpdk_forward.py" --s2ds "$s2ds" "${pass[@]}"
