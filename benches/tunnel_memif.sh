#!/usr/bin/env bash
# ESP tunnel benchmark over net_memif: one s2ds worker sealing LAN -> WAN and
# opening WAN -> LAN (engines ipsec-mb, ring, aes-gcm) against DPDK's
# ipsec-secgw, same traffic, same sink, AES-128-GCM and AES-256-GCM. See
# docs/benchmarks.md.
#
#   sudo bash benches/tunnel_memif.sh [--directions seal,open] [--sizes 64,512,1400]
#        [--algos aes-128-gcm,aes-256-gcm] [--engines ipsec-mb,ring,aes-gcm]
#        [--rounds 3] [--duration 3] [--warmup 1] [--no-build] [--out DIR]
#        [--fwd-core 1] [--tester-core 0] [--time-limit 1500] [--min-cpu 0.97]
#        [--retries 1] [--quiet-wait 30] [--plot PNG] [--stage-cycles] [--smoke]
#
# --stage-cycles: each engine also runs with `[workers] stage_cycles = true`
# ("s2ds ENGINE +stages"): cycles per packet per stage, and what counting
# them costs, in a second table. --smoke includes it.
#
# Builds s2ds in release (unless --no-build) and a patched copy of
# ipsec-secgw from Debian's dpdk-doc sources in a temporary directory, then
# runs benches/tunnel_memif.py, which prints a markdown table and writes a
# PNG. Every process, socket and temporary directory is removed on exit,
# also on failure or ^C.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

bench_args tunnel_memif.sh "$@"
bench_need dpdk-testpmd python3 pkg-config make cc
secgw_src=/usr/share/dpdk/examples/ipsec-secgw
[[ -d "$secgw_src" ]] || { echo "tunnel_memif.sh: $secgw_src missing (apt-get install dpdk-doc; scripts/setup.sh does)" >&2; exit 2; }
bench_s2ds

# Fallback clean-up: the Python driver stops its children itself; if it is
# killed outright, stop whatever it recorded as started and is still running,
# and remove the ipsec-secgw build.
pid_file="$(mktemp /tmp/s2ds-tunnel-pids.XXXXXX)"
build_dir="$(mktemp -d /tmp/s2ds-secgw.XXXXXX)"
cleanup() {
    bench_kill_recorded "$pid_file"
    rm -rf "$build_dir"
}
trap cleanup EXIT

# ipsec-secgw, as shipped in dpdk-doc (22.11), built with its Makefile
# (pkg-config libdpdk). One patch: its default port configuration asks for
# RTE_ETH_RX_OFFLOAD_CHECKSUM, which virtual PMDs (net_memif) do not offer,
# and port_init() then exits ("required RX offloads"); request none. The
# checksum offload only sets mbuf flags; the library path does not need it.
cp -r "$secgw_src" "$build_dir/"
find "$build_dir/ipsec-secgw" -name '*.gz' -exec gunzip -f {} +
sed -i 's|^\(\t\t\.offloads = \)RTE_ETH_RX_OFFLOAD_CHECKSUM,$|\10, /* tunnel_memif.sh: virtual PMDs lack RX checksum offload */|' \
    "$build_dir/ipsec-secgw/ipsec-secgw.c"
grep -q 'tunnel_memif.sh: virtual PMDs' "$build_dir/ipsec-secgw/ipsec-secgw.c" \
    || { echo "tunnel_memif.sh: the RX offload line of ipsec-secgw.c was not found; update the patch" >&2; exit 2; }
echo "[bench] building ipsec-secgw from $secgw_src (patched RX offloads) in $build_dir"
make -s -C "$build_dir/ipsec-secgw" >"$build_dir/build.log" 2>&1 \
    || { cat "$build_dir/build.log" >&2; echo "tunnel_memif.sh: ipsec-secgw build failed" >&2; exit 2; }
secgw="$build_dir/ipsec-secgw/build/ipsec-secgw"

bench_python
BENCH_PID_FILE="$pid_file" "$py" "$here/tunnel_memif.py" --s2ds "$s2ds" --secgw "$secgw" "${pass[@]}"
