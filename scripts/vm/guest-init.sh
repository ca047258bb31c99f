#!/bin/sh
# guest-init.sh - PID 1 of the qemu runner's guests (installed in the image as
# /sbin/s2vm-init, booted with init=/sbin/s2vm-init).
#
# Under TCG on a 2-core host, four guests booting systemd and udev took over
# 3 minutes; this init brings up just what the testbed uses (filesystems, the
# NIC drivers, the runner's NIC, sshd) in a few seconds. Vagrant boxes boot
# systemd as usual: nothing the provisioning does depends on either init.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# The initramfs has moved /proc, /sys and /dev here already; mount what is not.
mountpoint -q /proc || mount -t proc proc /proc
mountpoint -q /sys || mount -t sysfs sysfs /sys
mountpoint -q /dev || mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm /dev/hugepages
mount -t devpts -o gid=5,mode=620 devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t tmpfs -o mode=755 tmpfs /run
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t hugetlbfs -o pagesize=2M nodev /dev/hugepages
mount -t bpf bpf /sys/fs/bpf 2>/dev/null
mount -o remount,rw /

# The hostname is the VM's role, given on the kernel command line.
for arg in $(cat /proc/cmdline); do
    case "$arg" in s2vm.role=*) hostname "${arg#s2vm.role=}" ;; esac
done

# No udev: load the drivers of the devices qemu gives every guest.
modprobe -a virtio_net 9pnet_virtio 9p 2>/dev/null

# The runner's NIC: qemu user networking always hands out 10.0.2.15.
ip link set lo up
for dev in /sys/class/net/*; do
    if [ "$(cat "$dev/address")" = "52:54:5e:00:00:01" ]; then
        ip addr add 10.0.2.15/24 dev "${dev##*/}"
        ip link set "${dev##*/}" up
        ip route add default via 10.0.2.2
    fi
done

mkdir -p /run/sshd /run/netns /var/log
/usr/sbin/sshd -E /var/log/sshd.log
echo "s2vm-init: ready" >/dev/console

# PID 1 reaps orphans: the shell's wait collects every child it is given.
trap '' TERM
while :; do
    wait
    sleep 1
done
