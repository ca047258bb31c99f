#!/usr/bin/env bash
# setup.sh - prepare a Debian 12 machine to build and test the SciStream data plane (s2ds).
#
# Usage: scripts/setup.sh [--hugepages N] [--no-apt] [-h|--help]
#
#   (default)        install the build/test packages with apt-get (skipped when all are present),
#                    check that a Rust toolchain (cargo) is available, install cargo-deb
#                    (crates.io) if missing.
#   --hugepages N    reserve N 2 MB huge pages and mount hugetlbfs (pagesize=2M) at
#                    /dev/hugepages-s2 unless already mounted there.
#   --no-apt         do not touch packages at all.
#
# Idempotent: running it twice changes nothing the second time. Must run as root.
# It never downloads a Rust toolchain; if cargo is missing it says how to get one.
set -euo pipefail

readonly PACKAGES=(
    libdpdk-dev dpdk dpdk-dev pkg-config clang libclang-dev
    libxdp-dev libbpf-dev xdp-tools iproute2 ethtool tcpdump
    iputils-ping python3 procps openssl
    protobuf-compiler python3-grpcio python3-protobuf python3-cryptography
    libipsec-mb-dev prometheus python3-matplotlib iperf3 haproxy stunnel4 dpdk-doc make gcc linux-perf
    debootstrap qemu-utils openssh-client e2fsprogs vagrant vagrant-libvirt lintian
)
readonly HUGEPAGE_DIR=/dev/hugepages-s2
readonly HUGEPAGE_SYSFS=/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages

log() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

usage() {
    sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
}

hugepages=""
do_apt=1
while [[ $# -gt 0 ]]; do
    case "$1" in
        --hugepages)
            [[ $# -ge 2 ]] || die "--hugepages needs a number"
            hugepages="$2"
            shift 2
            ;;
        --hugepages=*)
            hugepages="${1#*=}"
            shift
            ;;
        --no-apt)
            do_apt=0
            shift
            ;;
        -h | --help)
            usage
            exit 0
            ;;
        *)
            die "unknown argument '$1' (try --help)"
            ;;
    esac
done

if [[ -n "$hugepages" && ! "$hugepages" =~ ^[0-9]+$ ]]; then
    die "--hugepages expects a non-negative integer, got '$hugepages'"
fi
[[ $EUID -eq 0 ]] || die "must run as root (packages, sysctl, hugetlbfs need it)"

# --- packages ---------------------------------------------------------------------------------
# Print the packages from PACKAGES that dpkg does not report as fully installed.
missing_packages() {
    local pkg status
    for pkg in "${PACKAGES[@]}"; do
        status="$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)"
        if [[ "$status" != "install ok installed" ]]; then
            printf '%s\n' "$pkg"
        fi
    done
}

if [[ $do_apt -eq 1 ]]; then
    mapfile -t missing < <(missing_packages)
    if [[ ${#missing[@]} -eq 0 ]]; then
        log "packages: all ${#PACKAGES[@]} already installed, apt skipped"
    else
        log "packages: missing ${missing[*]}"
        log "packages: apt-get update"
        apt-get update
        log "packages: apt-get install ${PACKAGES[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${PACKAGES[@]}"
        mapfile -t still < <(missing_packages)
        [[ ${#still[@]} -eq 0 ]] || die "still not installed after apt-get: ${still[*]}"
        log "packages: installed"
    fi
else
    log "packages: skipped (--no-apt)"
fi

# --- Rust toolchain ---------------------------------------------------------------------------
cargo_bin=""
if command -v cargo >/dev/null 2>&1; then
    cargo_bin="$(command -v cargo)"
elif [[ -x "${HOME:-/root}/.cargo/bin/cargo" ]]; then
    cargo_bin="${HOME:-/root}/.cargo/bin/cargo"
fi
if [[ -n "$cargo_bin" ]]; then
    log "rust: $("$cargo_bin" --version) ($cargo_bin)"
    if ! command -v cargo >/dev/null 2>&1; then
        log "rust: note: cargo is not on PATH; add ${cargo_bin%/cargo} to PATH"
    fi
else
    log "rust: NO Rust toolchain found (cargo not on PATH nor in ~/.cargo/bin)."
    log "rust: install one yourself, e.g. 'apt-get install cargo rustc' (Debian, may be too old)"
    log "rust: or the official rustup installer from https://rustup.rs, then re-run this script."
fi

# --- cargo-deb: the Debian packages (scripts/build-debs.sh) -------------------------------------
readonly CARGO_DEB_VERSION=3.8.0
if [[ -n "$cargo_bin" ]]; then
    if PATH="${cargo_bin%/*}:$PATH" cargo-deb --version 2>/dev/null | grep -qF "$CARGO_DEB_VERSION"; then
        log "cargo-deb: $CARGO_DEB_VERSION present"
    else
        log "cargo-deb: installing $CARGO_DEB_VERSION from crates.io"
        "$cargo_bin" install --quiet --locked --version "$CARGO_DEB_VERSION" cargo-deb
    fi
fi

# --- huge pages -------------------------------------------------------------------------------
if [[ -n "$hugepages" ]]; then
    [[ -w "$HUGEPAGE_SYSFS" ]] || die "cannot write $HUGEPAGE_SYSFS (2 MB huge pages unsupported?)"
    current="$(cat "$HUGEPAGE_SYSFS")"
    if [[ "$current" -eq "$hugepages" ]]; then
        log "hugepages: already $current x 2 MB reserved"
    else
        echo "$hugepages" >"$HUGEPAGE_SYSFS"
        got="$(cat "$HUGEPAGE_SYSFS")"
        log "hugepages: 2 MB pages $current -> $got (asked for $hugepages)"
        if [[ "$got" -lt "$hugepages" ]]; then
            log "hugepages: warning: the kernel could only reserve $got pages (memory fragmented?)"
        fi
    fi
    if mountpoint -q "$HUGEPAGE_DIR" 2>/dev/null; then
        log "hugepages: hugetlbfs already mounted at $HUGEPAGE_DIR"
    else
        mkdir -p "$HUGEPAGE_DIR"
        mount -t hugetlbfs -o pagesize=2M nodev "$HUGEPAGE_DIR"
        log "hugepages: mounted hugetlbfs (pagesize=2M) at $HUGEPAGE_DIR"
    fi
else
    log "hugepages: not requested (use --hugepages N)"
fi

log "done"
