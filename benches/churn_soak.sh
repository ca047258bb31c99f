#!/usr/bin/env bash
# Churn soak on the namespace testbed: two gateways (s2cs and s2ds each)
# with sessions created and released continuously, keys rolled over every
# second, a UDP stream on every live session; at the end memory, file
# descriptors, SAs, listeners and sessions (reserved ports) must be back to
# their starting values, and no session that was not released may have lost
# a datagram. See docs/reliability.md.
#
#   sudo bash benches/churn_soak.sh [--seconds 1800] [--sessions 1000]
#        [--out DIR] [--smoke] [--no-build]
#
# The default is the 30-minute form: 1,000 sessions over 1,800 s. --smoke is
# the 3-minute form CI runs (100 sessions over 180 s). It runs the ignored
# test `churn_soak` of control/tests/control_e2e.rs (which builds what it
# needs unless --no-build), writes OUT/churn_soak.json and prints a table.
# The test tears its namespaces and processes down, also on failure.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

bench_args churn_soak.sh "$@"
seconds=1800
sessions=1000
out=""
set -- "${pass[@]+"${pass[@]}"}"
while [[ $# -gt 0 ]]; do
    case "$1" in
        --smoke) seconds=180; sessions=100; shift ;;
        --seconds) seconds="$2"; shift 2 ;;
        --sessions) sessions="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        *) echo "churn_soak.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
    esac
done
[[ "$seconds" =~ ^[0-9]+$ && "$sessions" =~ ^[0-9]+$ && "$sessions" -ge 1 ]] ||
    { echo "churn_soak.sh: --seconds and --sessions take positive integers" >&2; exit 2; }
out="${out:-$(mktemp -d /tmp/churn-soak.XXXXXX)}"
mkdir -p "$out"

cd "$repo"
if [[ $build -eq 1 ]]; then
    cargo build --locked --workspace --bins
fi
echo "[bench] churn soak: $sessions sessions over $seconds s -> $out/churn_soak.json"
S2_SOAK_SECONDS="$seconds" S2_SOAK_SESSIONS="$sessions" S2_SOAK_OUT="$out/churn_soak.json" \
    cargo test --locked -p scistream-control --test control_e2e churn_soak -- --ignored --exact --nocapture

bench_python
"$py" - "$out/churn_soak.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
print(f"\n{d['sessions']} sessions in {d['seconds']:.0f} s, {d['datagrams']} datagrams, "
      f"{d['lost']} lost, {d['rekey_log_lines']} key switches at gwB\n")
print("| process | RSS start (kB) | RSS end (kB) | fds start | fds end |")
print("|---|---|---|---|---|")
for a, b in zip(d["start"]["procs"], d["end"]["procs"]):
    print(f"| {a['process']} | {a['rss_kb']} | {b['rss_kb']} | {a['fds']} | {b['fds']} |")
print(f"\nregion (SAs, listeners) A/B: {d['start']['region']} -> {d['end']['region']}; "
      f"sessions A/B: {d['start']['sessions']} -> {d['end']['sessions']}")
PY
