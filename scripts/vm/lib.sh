# shellcheck shell=bash
# lib.sh - helpers shared by scripts/vm-testbed.sh and scripts/vm/suite.sh
# (sourced, host side). Needs RUN (the run directory) set by the caller.
#
# RUN/ssh_config names each VM by role (Host gen, gwa, gwb, wan): written by
# the qemu runner from its port forwards, or from `vagrant ssh-config` for a
# Vagrant testbed (then RUN/vagrant exists and commands go through sudo).

# shellcheck disable=SC2034  # used by the scripts that source this file
readonly S2VM_ROLES=(gen gwa gwb wan)

vlog() { printf 'vm-testbed: %s\n' "$*" >&2; }
vdie() { printf 'vm-testbed: error: %s\n' "$*" >&2; exit 1; }

vm_ssh() {
    local role="$1"; shift
    local sudo=(); [[ -e "$RUN/vagrant" ]] && sudo=(sudo)
    ssh -q -F "$RUN/ssh_config" "$role" "${sudo[@]}" "$@"
}

# Sets GUEST_REPO and GUEST_RUN, the repository and the run directory as the
# guests see them: the 9p mounts of the qemu runner, or Vagrant's synced folder.
# shellcheck disable=SC2034  # used by the scripts that source this file
guest_paths() {
    if [[ -e "$RUN/vagrant" ]]; then
        GUEST_REPO=/vagrant
        GUEST_RUN=/vagrant/.s2vm-run
    else
        GUEST_REPO=/mnt/s2
        GUEST_RUN=/mnt/s2run
    fi
}

# Mount the qemu runner's two 9p shares in a VM (after a boot or a reboot);
# Vagrant's synced folder needs nothing.
mount_shares() {
    [[ -e "$RUN/vagrant" ]] && return 0
    vm_ssh "$1" "mkdir -p $GUEST_REPO $GUEST_RUN
        mountpoint -q $GUEST_REPO || mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144 s2repo $GUEST_REPO
        mountpoint -q $GUEST_RUN || mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 s2run $GUEST_RUN"
}
