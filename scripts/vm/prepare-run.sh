#!/usr/bin/env bash
# prepare-run.sh - fill a VM testbed run directory on the host: the binaries,
# test certificates and a user token the gateways' provisioning installs.
# Used by scripts/vm-testbed.sh (qemu) and the Vagrantfile alike.
#
# Usage: scripts/vm/prepare-run.sh DIR [--build]
#   DIR/bin/{s2ds,s2cs,s2uc}   copied from $CARGO_TARGET_DIR/release (or target/release)
#   DIR/debs/                  scistream-gateway and scistream-client .debs of those
#                              binaries (scripts/build-debs.sh, revision 1): what the
#                              gateways and gen install
#   DIR/debs-upgrade/          the same, rebuilt as revision 2 (the upgrade test)
#   DIR/certs/                 scripts/gen-certs.sh: CA, gwa and gwb (with their mgmt IPs)
#   DIR/tokens.toml, DIR/token user "testuser": the hash for s2cs, the token for s2uc
#   DIR/rekey_seconds          $S2VM_REKEY_SECONDS (default 3600): s2cs's time-based rekey
# --build: cargo build --release --locked the three binaries first.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

dir="${1:?usage: prepare-run.sh DIR [--build]}"
bin="${CARGO_TARGET_DIR:-$PWD/target}/release"
if [[ "${2:-}" == --build ]]; then
    echo "prepare-run: building s2ds, s2cs, s2uc (release)" >&2
    export PATH="$HOME/.cargo/bin:$PATH"
    nice -n 10 cargo build --release --locked -p scistream-dataplane --bin s2ds \
        -p scistream-control --bin s2cs --bin s2uc >&2
fi
mkdir -p "$dir/bin"
for b in s2ds s2cs s2uc; do
    [[ -x "$bin/$b" ]] || { echo "prepare-run: $bin/$b missing (build it first)" >&2; exit 1; }
    cp "$bin/$b" "$dir/bin/"
done
# The packages the VMs install, and a rebuilt revision for the upgrade test.
rm -rf "$dir/debs" "$dir/debs-upgrade"
bash scripts/build-debs.sh --no-build --no-lintian --out "$dir/debs" --revision 1 >&2
bash scripts/build-debs.sh --no-build --no-lintian --out "$dir/debs-upgrade" --revision 2 >&2
rm -f "$dir"/debs*/*.ddeb
# Each certificate also names its gateway's management address, which s2uc dials.
rm -rf "$dir/certs"
scripts/gen-certs.sh "$dir/certs" gwa --ip 10.99.0.1 gwb --ip 10.99.0.2 >/dev/null
"$dir/bin/s2cs" hash-token --identity testuser --generate >"$dir/tokens.toml" 2>"$dir/token"
chmod 600 "$dir/tokens.toml" "$dir/token"
echo "${S2VM_REKEY_SECONDS:-3600}" >"$dir/rekey_seconds"
