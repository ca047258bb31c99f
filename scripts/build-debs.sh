#!/usr/bin/env bash
# build-debs.sh - the Debian packages scistream-gateway (s2ds, s2cs, units,
# example configurations, docs) and scistream-client (s2uc), with cargo-deb.
#
# Usage: scripts/build-debs.sh [--no-build] [--no-lintian] [--out DIR] [--revision N]
#   builds s2ds, s2cs, s2uc (release, --locked) unless --no-build, renders the
#   man pages and completions from the clap definitions (xtask assets), runs
#   cargo deb --no-build for both packages and lintian on the results.
#   --revision N: the Debian revision (default 1); a rebuild for an upgrade
#   test takes a higher one. --no-lintian: skip lintian (the VM testbed's
#   copies; scripts/test.sh lints the same packages). The .debs go to DIR (default
#   $CARGO_TARGET_DIR/debian). Needs cargo-deb (scripts/setup.sh installs it).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$HOME/.cargo/bin:$PATH"
target="${CARGO_TARGET_DIR:-$PWD/target}"
out="$target/debian" build=1 revision=1 lint=1
while [[ $# -gt 0 ]]; do
    case "$1" in
        --no-build) build=0; shift ;;
        --no-lintian) lint=0; shift ;;
        --out) out="$2"; shift 2 ;;
        --revision) revision="$2"; shift 2 ;;
        *) echo "build-debs: unknown argument $1" >&2; exit 2 ;;
    esac
done
command -v cargo-deb >/dev/null || { echo "build-debs: cargo-deb missing (scripts/setup.sh)" >&2; exit 1; }
if [[ $build -eq 1 ]]; then
    nice -n 10 cargo build --release --locked -p scistream-dataplane --bin s2ds \
        -p scistream-control --bin s2cs --bin s2uc
fi
gen=configs/packaging/generated
rm -rf "$gen"
nice -n 10 cargo run -q --locked -p scistream-xtask -- assets "$gen"
gzip -9n "$gen"/man/*.1
# Debian's completion file names: bash takes the command's name.
for c in s2ds s2cs s2uc; do mv "$gen/completions/bash/$c.bash" "$gen/completions/bash/$c"; done
mkdir -p "$out"
debs=()
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
for pkg in scistream-dataplane scistream-control; do
    if ! cargo deb --no-build --locked --dbgsym -p "$pkg" --deb-revision "$revision" --output "$out" >"$log" 2>&1; then
        cat "$log" >&2
        echo "build-debs: cargo deb -p $pkg failed" >&2
        exit 1
    fi
    deb="$(tail -1 "$log")"
    [[ -f "$deb" ]] || { cat "$log" >&2; echo "build-debs: cargo deb -p $pkg wrote no .deb" >&2; exit 1; }
    debs+=("$deb")
done
for deb in "${debs[@]}"; do
    echo "== $deb"
    dpkg-deb -f "$deb" Package Version Depends
    if [[ $lint -eq 1 ]]; then
        command -v lintian >/dev/null || { echo "build-debs: lintian missing (scripts/setup.sh)" >&2; exit 1; }
        lintian --tag-display-limit 0 "$deb" || { echo "build-debs: lintian reports errors in $deb" >&2; exit 1; }
    fi
done
