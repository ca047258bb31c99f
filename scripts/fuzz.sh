#!/usr/bin/env bash
# Builds and runs the cargo-fuzz (libFuzzer) targets of dataplane/fuzz and
# control/fuzz, on the stable toolchain (RUSTC_BOOTSTRAP=1 lets cargo-fuzz
# pass its -Z sanitizer flags). Each target runs for N seconds on a copy of
# its seed corpus (corpus/<target>/) in a temporary directory that is
# removed on exit, with a 10 s per-input timeout and a 2 GiB RSS limit
# (AddressSanitizer and LeakSanitizer on). Any crash, leak, timeout or
# out-of-memory fails the run; the input that caused it is kept under
# <fuzz crate>/artifacts/. See docs/reliability.md.
#
#   scripts/fuzz.sh [--seconds-per-target N] [--target NAME] [--jobs J] [--smoke]
#                   [--build-only]
#
# --jobs J runs J targets at a time (default 1; a campaign over all CPUs).
# --build-only builds the targets and runs none.
# --smoke (CI): 15 s per target, built at opt-level 1 without debug info
# (two thirds of the cold build time), in target/fuzz-smoke unless
# CARGO_TARGET_DIR is set. Honours CARGO_TARGET_DIR (default target/fuzz)
# and CARGO_BUILD_JOBS.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

seconds=20
only=""
smoke=0
jobs=1
build_only=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --seconds-per-target) seconds="${2:?--seconds-per-target needs a number}"; shift 2 ;;
        --target) only="${2:?--target needs a name}"; shift 2 ;;
        --smoke) smoke=1; seconds=15; shift ;;
        --jobs) jobs="${2:?--jobs needs a number}"; shift 2 ;;
        --build-only) build_only=1; shift ;;
        -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "scripts/fuzz.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
done
[[ "$seconds" =~ ^[0-9]+$ && "$seconds" -gt 0 ]] || { echo "scripts/fuzz.sh: --seconds-per-target must be a positive integer" >&2; exit 2; }
[[ "$jobs" =~ ^[0-9]+$ && "$jobs" -gt 0 ]] || { echo "scripts/fuzz.sh: --jobs must be a positive integer" >&2; exit 2; }

export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TERM_COLOR=never
export RUSTC_BOOTSTRAP=1
target_dir="${CARGO_TARGET_DIR:-$root/target/fuzz}"
if [[ $smoke -eq 1 ]]; then
    # Quicker to build, still instrumented and sanitized (the default
    # profile keeps opt-level 3 and line tables for the long campaigns).
    export CARGO_PROFILE_RELEASE_OPT_LEVEL=1 CARGO_PROFILE_RELEASE_DEBUG=0
    target_dir="${CARGO_TARGET_DIR:-$root/target/fuzz-smoke}"
fi
triple="$(rustc -vV | sed -n 's/^host: //p')"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "=== installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

crates=()
for c in dataplane/fuzz control/fuzz; do
    [[ -f "$c/Cargo.toml" ]] && crates+=("$c")
done

work="$(mktemp -d /tmp/scistream-fuzz.XXXXXX)"
trap 'rm -rf "$work"' EXIT

# Build every crate that has a wanted target, then run the targets.
runs=()
for crate in "${crates[@]}"; do
    mapfile -t targets < <(cd "$crate" && cargo fuzz list)
    if [[ -n "$only" ]]; then
        printf '%s\n' "${targets[@]}" | grep -qx "$only" || continue
        targets=("$only")
    fi
    echo "=== building $crate (${targets[*]})"
    if [[ -n "$only" ]]; then
        (cd "$crate" && cargo fuzz build --target-dir "$target_dir" "$only")
    else
        (cd "$crate" && cargo fuzz build --target-dir "$target_dir")
    fi
    for t in "${targets[@]}"; do
        runs+=("$crate $t")
    done
done
if [[ ${#runs[@]} -eq 0 ]]; then
    echo "scripts/fuzz.sh: no fuzz target named '$only'" >&2
    exit 2
fi
if [[ $build_only -eq 1 ]]; then
    echo "=== built ${#runs[@]} targets in $target_dir"
    exit 0
fi

# One target for $seconds: its summary line in $work/$t/line, its exit
# status in $work/$t/rc.
fuzz_one() {
    local crate="$1" t="$2"
    local bin="$target_dir/$triple/release/$t"
    local corpus="$work/$t/corpus"
    mkdir -p "$corpus" "$work/$t/artifacts"
    if [[ -d "$crate/corpus/$t" ]]; then
        cp -r "$crate/corpus/$t/." "$corpus/"
    fi
    local log="$work/$t/log"
    echo "=== $t: ${seconds}s"
    local rc=0
    (cd "$work/$t" && "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$work/$t/artifacts/" "$corpus") >"$log" 2>&1 || rc=$?
    local stats execs cov ft files bytes line
    stats="$(grep -E '#[0-9]+[[:space:]]+DONE' "$log" | tail -1 || true)"
    [[ -n "$stats" ]] || stats="$(grep -E 'cov: [0-9]+' "$log" | tail -1 || true)"
    execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
    cov="$(sed -n 's/.*cov: \([0-9]*\).*/\1/p' <<<"$stats")"
    ft="$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$stats")"
    files="$(find "$corpus" -type f | wc -l)"
    bytes="$(du -sb "$corpus" | cut -f1)"
    line="$(printf '%-16s executions %-9s cov %-6s ft %-6s corpus %s files, %s bytes' \
        "$t" "${execs:-?}" "${cov:-?}" "${ft:-?}" "$files" "$bytes")"
    if [[ $rc -ne 0 ]]; then
        local keep="$root/$crate/artifacts/$t"
        mkdir -p "$keep"
        cp -r "$work/$t/artifacts/." "$keep/" 2>/dev/null || true
        {
            grep -E 'panicked at|ERROR: (libFuzzer|AddressSanitizer|LeakSanitizer)|SUMMARY' -A2 "$log" | head -20 || true
            echo "--- last lines of the $t log:"
            tail -n 30 "$log"
            echo "$t FAILED (exit $rc); inputs kept in $keep"
        } >&2
        line="$line  FAILED (exit $rc)"
    fi
    echo "$line"
    echo "$line" >"$work/$t/line"
    echo "$rc" >"$work/$t/rc"
}

running=0
for run in "${runs[@]}"; do
    if [[ $running -ge $jobs ]]; then
        wait -n || true
        running=$((running - 1))
    fi
    # shellcheck disable=SC2086 # "crate target"
    fuzz_one $run &
    running=$((running + 1))
done
wait || true

echo
echo "=== fuzzing summary (${seconds}s per target, $jobs at a time)"
failed=0
for run in "${runs[@]}"; do
    t="${run#* }"
    cat "$work/$t/line" 2>/dev/null || echo "$t: no result"
    [[ "$(cat "$work/$t/rc" 2>/dev/null)" == 0 ]] || failed=1
done
exit "$failed"
