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
step "fuzz smoke: every cargo-fuzz target for 15 s (libFuzzer, ASan; a crash, leak or timeout fails)"
bash scripts/fuzz.sh --smoke
step "bench smoke: DPDK forwarding over memif, s2ds against testpmd (one short round)"
cargo build --release --locked -p scistream-dataplane --bin s2ds
bench_out="$(mktemp -d /tmp/s2ds-bench-smoke.XXXXXX)"
bash benches/dpdk_forward.sh --smoke --no-build --out "$bench_out"
rm -rf "$bench_out"
step "bench smoke: iperf3 through two gateways, s2ds on each backend against kernel, HAProxy, stunnel"
bench_out="$(mktemp -d /tmp/s2-e2e-smoke.XXXXXX)"
bash benches/e2e.sh --smoke --no-build --out "$bench_out"
rm -rf "$bench_out"
step "bench smoke: ESP tunnel over memif, s2ds (ipsec-mb) against ipsec-secgw (one short round)"
bench_out="$(mktemp -d /tmp/s2ds-tunnel-smoke.XXXXXX)"
bash benches/tunnel_memif.sh --smoke --no-build --out "$bench_out"
rm -rf "$bench_out"
step "bench smoke: churn soak, 100 sessions created and released in 3 minutes under 1 s rekeys"
bench_out="$(mktemp -d /tmp/s2-churn-smoke.XXXXXX)"
bash benches/churn_soak.sh --smoke --no-build --out "$bench_out"
rm -rf "$bench_out"
step "Debian packages: scistream-gateway and scistream-client with cargo-deb, lintian (no errors)"
cargo build --release --locked -p scistream-control --bin s2cs --bin s2uc
debs_out="$(mktemp -d /tmp/s2-debs.XXXXXX)"
bash scripts/build-debs.sh --no-build --out "$debs_out"
rm -rf "$debs_out"
step "VM testbed: four qemu VMs, s2ds on DPDK's virtio PMD over PCI NICs, netem WAN, pktgen NDR/PDR (short form)"
bash scripts/vm-test.sh
