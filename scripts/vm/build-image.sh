#!/usr/bin/env bash
# build-image.sh - build the VM testbed's Debian 12 base image with debootstrap.
#
# Usage: scripts/vm/build-image.sh CACHE_DIR
#
# Writes, under CACHE_DIR/image-<key>/ (key = hash of this script, so any change
# to the package list or the guest setup rebuilds):
#   base.qcow2        ext4 root filesystem (no partition table: root=/dev/vda)
#   vmlinuz, initrd   the guest kernel and initramfs, booted with -kernel/-initrd
#   id_ed25519[.pub]  the key the runner logs in with (root, key only)
# and points CACHE_DIR/current at it. A finished image is reused as is; a
# half-built one (no .done) is thrown away. Needs root, debootstrap, mkfs.ext4
# (e2fsprogs >= 1.43 for -d) and qemu-img; no loop device, no mount.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly HERE
# Guest packages: scripts/vm/packages.list (shared with provision.sh).
mapfile -t GUEST_PACKAGES < <(grep -v '^\s*#' "$HERE/packages.list" | grep -v '^\s*$')
readonly GUEST_PACKAGES
readonly MIRROR="${S2VM_MIRROR:-http://deb.debian.org/debian}"
readonly IMAGE_SIZE="${S2VM_IMAGE_SIZE:-3G}"

log() { printf 'build-image: %s\n' "$*" >&2; }
die() { printf 'build-image: error: %s\n' "$*" >&2; exit 1; }

# The cache key: this script's bytes (the guest setup lives here), the
# guest's init and the package list.
image_key() { cat "${BASH_SOURCE[0]}" "$HERE/guest-init.sh" "$HERE/packages.list" | sha256sum | cut -c1-16; }

# Guest configuration written into the root tree before it becomes a
# filesystem (systemd's part applies when the image boots systemd; the runner
# boots /sbin/s2vm-init).
configure_root() {
    local root="$1" key="$2"
    echo s2vm >"$root/etc/hostname"
    printf '127.0.0.1 localhost\n127.0.1.1 s2vm\n' >"$root/etc/hosts"
    # The runner's NIC (qemu user networking, ssh forwarded from the host)
    # always carries this MAC; every other NIC is left to the provisioning.
    mkdir -p "$root/etc/systemd/network"
    cat >"$root/etc/systemd/network/10-s2vm-ctl.network" <<'NET'
[Match]
MACAddress=52:54:5e:00:00:01
[Network]
DHCP=ipv4
LinkLocalAddressing=no
IPv6AcceptRA=no
NET
    chroot "$root" systemctl enable systemd-networkd ssh >/dev/null 2>&1
    # Nothing waits for the other (data) NICs at boot.
    # Nor for what a testbed VM does not use (the gateways boot systemd, and
    # a reboot is one of their tests: under TCG each of these costs seconds).
    chroot "$root" systemctl mask systemd-networkd-wait-online.service apt-daily.timer \
        apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer e2scrub_reap.service \
        getty-static.service getty@tty1.service serial-getty@ttyS0.service dpdk.service \
        dpkg-db-backup.timer man-db.timer >/dev/null 2>&1 || true
    # Root login with the runner's key only.
    install -d -m 700 "$root/root/.ssh"
    install -m 600 "$key.pub" "$root/root/.ssh/authorized_keys"
    printf 'PasswordAuthentication no\nUseDNS no\n' >"$root/etc/ssh/sshd_config.d/s2vm.conf"
    # The runner mounts the repository and its run directory over virtio-9p
    # (scripts/vm-testbed.sh); the guest boots its own small init.
    mkdir -p "$root/mnt/s2" "$root/mnt/s2run"
    echo '/dev/vda / ext4 rw,noatime 0 1' >"$root/etc/fstab"
    install -m 755 "$HERE/guest-init.sh" "$root/sbin/s2vm-init"
    # The serial console logs in nobody; it carries the boot log for debugging.
    chroot "$root" systemctl mask serial-getty@ttyS0.service getty@tty1.service >/dev/null 2>&1 || true
    # Quicker boots: no resume probing, virtio modules in the initramfs.
    echo 'RESUME=none' >"$root/etc/initramfs-tools/conf.d/resume"
    printf 'virtio_pci\nvirtio_blk\next4\n' >>"$root/etc/initramfs-tools/modules"
    chroot "$root" update-initramfs -u >/dev/null 2>&1
    rm -rf "$root/var/cache/apt/archives"/*.deb "$root/var/lib/apt/lists"/*
}

build() {
    local out="$1" tmp root
    tmp="$(mktemp -d "$out.tmp.XXXXXX")"
    # A failed build leaves nothing behind.
    trap 'rm -rf "$tmp"' EXIT
    root="$tmp/root"
    ssh-keygen -q -t ed25519 -N '' -C s2vm-runner -f "$tmp/id_ed25519"
    log "debootstrap bookworm from $MIRROR (${#GUEST_PACKAGES[@]} extra packages)"
    local include; include="$(IFS=,; echo "${GUEST_PACKAGES[*]}")"
    # Downloaded packages are kept under CACHE/debs: a rebuild fetches nothing.
    mkdir -p "$CACHE_DIR/debs"
    debootstrap --variant=minbase --cache-dir="$CACHE_DIR/debs" --include="$include" bookworm "$root" "$MIRROR" \
        >"$tmp/debootstrap.log" 2>&1 || { tail -30 "$tmp/debootstrap.log" >&2; die "debootstrap failed"; }
    configure_root "$root" "$tmp/id_ed25519"
    cp "$(readlink -f "$root/vmlinuz")" "$tmp/vmlinuz"
    cp "$(readlink -f "$root/initrd.img")" "$tmp/initrd"
    log "ext4 image ($IMAGE_SIZE) from the root tree"
    truncate -s "$IMAGE_SIZE" "$tmp/root.raw"
    mkfs.ext4 -q -F -L s2root -d "$root" "$tmp/root.raw"
    qemu-img convert -O qcow2 "$tmp/root.raw" "$tmp/base.qcow2"
    rm -rf "$root" "$tmp/root.raw"
    touch "$tmp/.done"
    rm -rf "$out"
    mv "$tmp" "$out"
    trap - EXIT
}

main() {
    [[ $# -eq 1 ]] || die "usage: build-image.sh CACHE_DIR"
    [[ $EUID -eq 0 ]] || die "must run as root (debootstrap)"
    local cache="$1" out
    CACHE_DIR="$(realpath -m "$cache")"
    mkdir -p "$cache"
    out="$cache/image-$(image_key)"
    if [[ -e "$out/.done" ]]; then
        log "cached image $out"
    else
        rm -rf "$out" "$out".tmp.*
        local t0=$SECONDS
        build "$out"
        log "built $out in $((SECONDS - t0)) s"
        # Images of other script versions are stale: one image per cache.
        find "$cache" -maxdepth 1 -name 'image-*' ! -name "$(basename "$out")" -exec rm -rf {} +
    fi
    ln -sfn "$(basename "$out")" "$cache/current"
    echo "$out"
}

main "$@"
