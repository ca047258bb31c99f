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
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

bench_args dpdk_forward.sh "$@"
bench_need dpdk-testpmd python3
bench_s2ds

# Fallback clean-up: the Python driver stops its children itself; if it is
# killed outright, stop whatever it recorded as started and is still running.
pid_file="$(mktemp /tmp/s2ds-bench-pids.XXXXXX)"
trap 'bench_kill_recorded "$pid_file"' EXIT

bench_python
BENCH_PID_FILE="$pid_file" "$py" "$here/dpdk_forward.py" --s2ds "$s2ds" "${pass[@]}"
