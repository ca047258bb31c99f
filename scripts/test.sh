#!/usr/bin/env bash
# Runs every test, on a fresh Debian 12 machine, as root (namespaces, AF_XDP,
# TAP and DPDK vdevs need it). Installs what it needs first (scripts/setup.sh),
# then: formatting, clippy with and without DPDK, the whole test suite with
# the default features (DPDK + native backends), the native backends again
# in a build without DPDK (`--no-default-features`), every cargo-fuzz target
# for 15 s (scripts/fuzz.sh --smoke: a crash, leak or timeout fails), each benchmark's
# `--smoke` mode (one short round, so that no bench can silently break; the
# churn soak's is its 3-minute form), the Debian packages (cargo-deb, lintian), and the VM testbed's short suite
# (scripts/vm-test.sh, docs/vm-testbed.md), which installs those packages.
#
# Two jobs that need none of the project's binaries run in the background
# from the start, at nice 19, so that they only take CPU the foreground
# leaves idle (a test waiting on a link, a one-crate compile on one of two
# cores, the network): the fuzz targets' build (in their own target
# directory, so that no cargo lock is shared) and the VM testbed's Debian
# image (debootstrap, into the image cache). Each stage that needs one waits
# for it and fails if it failed; both are killed if the run stops early.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ $(id -u) -ne 0 ]]; then
    echo "scripts/test.sh: run as root (the end-to-end tests build network namespaces)" >&2
    exit 1
fi
bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TERM_COLOR=never

started=$SECONDS
step() { printf '\n=== [%d min %02d s] %s\n' $(((SECONDS - started) / 60)) $(((SECONDS - started) % 60)) "$*"; }

# Background jobs: name -> pid; each logs to $bg_dir/<name>.log.
bg_dir="$(mktemp -d /tmp/s2-test-bg.XXXXXX)"
declare -A bg_pid=()
stop_background() {
    local name
    for name in "${!bg_pid[@]}"; do
        kill -TERM -- "-${bg_pid[$name]}" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    rm -rf "$bg_dir"
}
trap stop_background EXIT
# start_background NAME COMMAND...: COMMAND in its own process group, nice 19.
start_background() {
    local name="$1"; shift
    setsid nice -n 19 "$@" >"$bg_dir/$name.log" 2>&1 &
    bg_pid[$name]=$!
    printf '=== [background] %s started (pid %d, log %s)\n' "$name" "${bg_pid[$name]}" "$bg_dir/$name.log"
}
# wait_background NAME: its status; its log is shown if it failed.
wait_background() {
    local name="$1" rc=0 t0=$SECONDS
    wait "${bg_pid[$name]}" || rc=$?
    unset "bg_pid[$name]"
    printf '=== [background] %s finished (exit %d; waited %d s for it)\n' "$name" "$rc" $((SECONDS - t0))
    if [[ $rc -ne 0 ]]; then
        tail -n 60 "$bg_dir/$name.log" >&2
        echo "scripts/test.sh: background job $name failed (exit $rc)" >&2
        return "$rc"
    fi
    tail -n 3 "$bg_dir/$name.log"
}

fuzz_target_dir="${CARGO_TARGET_DIR:-$PWD/target}/fuzz-smoke"
start_background fuzz-build env CARGO_TARGET_DIR="$fuzz_target_dir" bash scripts/fuzz.sh --smoke --build-only
start_background vm-image bash scripts/vm/build-image.sh "${S2VM_CACHE:-/var/tmp/scistream-vm}"

step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy (default features: DPDK + native)"
cargo clippy --workspace --all-targets --locked -- -D warnings
step "cargo clippy (no DPDK)"
cargo clippy -p scistream-dataplane --no-default-features --all-targets --locked -- -D warnings
step "cargo test (default features)"
cargo test --workspace --locked
step "cargo test (no DPDK: native backends end to end, unit tests)"
cargo test -p scistream-dataplane --no-default-features --locked --lib --test gateway_e2e --test config_files --test cli
step "bench smoke: DPDK forwarding over memif, s2ds against testpmd (one short round)"
cargo build --release --locked -p scistream-dataplane --bin s2ds
bench_out="$(mktemp -d /tmp/s2ds-bench-smoke.XXXXXX)"
bash benches/dpdk_forward.sh --smoke --no-build --out "$bench_out"
rm -rf "$bench_out"
step "bench smoke: iperf3 through two gateways, s2ds on each backend against kernel, HAProxy, stunnel"
bench_out="$(mktemp -d /tmp/s2-e2e-smoke.XXXXXX)"
bash benches/e2e.sh --smoke --profile --no-build --out "$bench_out"
rm -rf "$bench_out"
step "bench smoke: ESP tunnel over memif, s2ds (ipsec-mb) against ipsec-secgw (one short round)"
bench_out="$(mktemp -d /tmp/s2ds-tunnel-smoke.XXXXXX)"
bash benches/tunnel_memif.sh --smoke --no-build --out "$bench_out"
rm -rf "$bench_out"
step "bench smoke: churn soak, 100 sessions created and released in 3 minutes under 1 s rekeys"
bench_out="$(mktemp -d /tmp/s2-churn-smoke.XXXXXX)"
bash benches/churn_soak.sh --smoke --no-build --out "$bench_out"
rm -rf "$bench_out"
step "fuzz smoke: every cargo-fuzz target for 15 s, two at a time (libFuzzer, ASan; a crash, leak or timeout fails)"
wait_background fuzz-build
CARGO_TARGET_DIR="$fuzz_target_dir" bash scripts/fuzz.sh --smoke --jobs 2
step "Debian packages: scistream-gateway and scistream-client with cargo-deb, lintian (no errors)"
cargo build --release --locked -p scistream-control --bin s2cs --bin s2uc
debs_out="$(mktemp -d /tmp/s2-debs.XXXXXX)"
bash scripts/build-debs.sh --no-build --out "$debs_out"
rm -rf "$debs_out"
step "VM testbed: four qemu VMs, the packaged gateways (s2ds on DPDK's virtio PMD, vfio-pci behind a vIOMMU), netem WAN, pktgen NDR/PDR, check-host, reboot, upgrade, removal (short form)"
wait_background vm-image
bash scripts/vm-test.sh
