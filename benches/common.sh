# Sourced by the benchmark wrappers (dpdk_forward.sh, tunnel_memif.sh,
# e2e.sh): their common arguments, the root check, the release build of
# s2ds, Debian's Python and the fallback clean-up of recorded processes.
#
#   bench_args NAME "$@"    sets `name`, `here`, `repo`, `build` (0 with
#                           --no-build) and `pass` (the other arguments);
#                           --help prints the caller's header; exits 2
#                           unless root
#   bench_s2ds              builds s2ds in release unless --no-build; sets `s2ds`
#   bench_need TOOL...      exits 2 naming the first TOOL not on PATH
#   bench_kill_recorded F   stops every process group recorded in pid file F
#   bench_python            sets `py`: /usr/bin/python3 (python3-matplotlib
#                           for the plots) before any other python3 on PATH

bench_args() {
    name="$1"
    shift
    here="$(cd "$(dirname "${BASH_SOURCE[1]}")" && pwd)"
    repo="$(cd "$here/.." && pwd)"
    build=1
    pass=()
    local a
    for a in "$@"; do
        case "$a" in
            --no-build) build=0 ;;
            -h|--help)
                # The caller's header comment, up to its first non-comment line.
                sed -n '2,/^[^#]/p' "${BASH_SOURCE[1]}" | sed '$d' | sed 's/^# \{0,1\}//'
                exit 0
                ;;
            *) pass+=("$a") ;;
        esac
    done
    if [[ $EUID -ne 0 ]]; then
        echo "$name: run as root (sudo bash benches/$name)" >&2
        exit 2
    fi
}

bench_need() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null \
            || { echo "$name: $tool not found (scripts/setup.sh installs it)" >&2; exit 2; }
    done
}

bench_s2ds() {
    local target="${CARGO_TARGET_DIR:-$repo/target}"
    if [[ $build -eq 1 ]]; then
        echo "[bench] cargo build --release -p scistream-dataplane --bin s2ds"
        (cd "$repo" && cargo build --release -p scistream-dataplane --bin s2ds)
    fi
    s2ds="$target/release/s2ds"
    [[ -x "$s2ds" ]] || { echo "$name: $s2ds not built (drop --no-build)" >&2; exit 2; }
}

bench_kill_recorded() {
    local pid
    [[ -f "$1" ]] || return 0
    while read -r pid; do
        [[ -n "$pid" ]] || continue
        if kill -0 "$pid" 2>/dev/null; then
            kill -INT -- "-$pid" 2>/dev/null || true
            sleep 1
            kill -KILL -- "-$pid" 2>/dev/null || true
        fi
    done <"$1"
    rm -f "$1"
}

bench_python() {
    py=/usr/bin/python3
    [[ -x "$py" ]] || py=python3
}
