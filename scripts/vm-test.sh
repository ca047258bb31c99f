#!/usr/bin/env bash
# vm-test.sh - the VM testbed's CI stage: `vagrant validate` on the Vagrantfile
# (vagrant-libvirt cannot bring it up here: docs/vm-testbed.md says why), then
# the four VMs booted with the qemu runner (TCG unless a KVM probe boot
# succeeds), the short form of the suite, and everything torn down, also on
# failure. Called from scripts/test.sh.
#
# Usage: sudo scripts/vm-test.sh [--no-build]
# The image cache ($S2VM_CACHE, default /var/tmp/scistream-vm) makes a second
# run skip debootstrap; CI starts cold. Results (tables, PNG, counters) are
# kept in $S2VM_RESULTS (default /tmp/s2vm-ci-results).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if command -v vagrant >/dev/null; then
    # validate only reads the Vagrantfile: no run directory, no binaries needed.
    S2VM_SKIP_PREPARE=1 vagrant validate
else
    echo "vm-test: vagrant not installed (scripts/setup.sh installs it); Vagrantfile not validated" >&2
    exit 1
fi
exec bash scripts/vm-testbed.sh ci --out "${S2VM_RESULTS:-/tmp/s2vm-ci-results}" "$@"
