#!/usr/bin/env bash
# vm-test.sh - the VM testbed's CI stage: boots the four VMs with the qemu runner
# (TCG unless a KVM probe boot succeeds), runs the short form of the suite and
# tears everything down, also on failure. Called from scripts/test.sh.
#
# Usage: sudo scripts/vm-test.sh [--no-build]
# The image cache ($S2VM_CACHE, default /var/tmp/scistream-vm) makes a second
# run skip debootstrap; CI starts cold. Results are kept in
# $S2VM_RESULTS (default /tmp/s2vm-ci-results).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec bash scripts/vm-testbed.sh ci --out "${S2VM_RESULTS:-/tmp/s2vm-ci-results}" "$@"
