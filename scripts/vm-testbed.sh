#!/usr/bin/env bash
# vm-testbed.sh - the VM testbed with qemu directly (no Vagrant, no libvirt, no bridge).
#
# Usage: sudo scripts/vm-testbed.sh up   [--name N] [--accel auto|kvm|tcg] [--no-build]
#        sudo scripts/vm-testbed.sh run  [--name N] [--smoke] [--sizes LIST] [--out DIR]
#        sudo scripts/vm-testbed.sh run  --vagrant [...]   (the VMs of `vagrant up`)
#        sudo scripts/vm-testbed.sh ssh  ROLE [--name N] [COMMAND...]
#        sudo scripts/vm-testbed.sh down [--name N] [--purge]
#        sudo scripts/vm-testbed.sh ci   [--accel ...] [--no-build] [--out DIR]
#                                        (up + run --smoke + down, cleaned up on any exit)
#
#   gen (prod ns, cons ns) -- gwa -- wan (netem) -- gwb -- gen
#                             gwa ------ mgmt ------ gwb
#
# up    builds (or reuses) the Debian 12 image (scripts/vm/build-image.sh, cached
#       under $S2VM_CACHE, default /var/tmp/scistream-vm), builds s2ds/s2cs/s2uc
#       (release, $CARGO_TARGET_DIR respected) unless --no-build, boots the four
#       VMs from qcow2 overlays with -kernel/-initrd, links them with qemu UDP
#       socket netdevs on 127.0.0.1, shares the repository and the run directory
#       over virtio-9p and provisions each VM with scripts/vm/provision.sh.
#       KVM is used when a probe boot shows the guest kernel reaching init with
#       it, else TCG; the choice is printed.
# run   the suite (scripts/vm/suite.sh): sessions, throughput search, TCP and
#       UDP impairment checks, a rekey under each, then the packaged appliance
#       (check-host, reboot, upgrade during a stream, removal and purge);
#       --smoke is the CI form.
# down  stops the VMs and removes the overlays, sockets and run directory;
#       --purge also removes the cached images.
# Several testbeds can run at once under different --name values.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO="$PWD"

CACHE="${S2VM_CACHE:-/var/tmp/scistream-vm}"
name=s2vm
accel="${S2VM_ACCEL:-auto}"
build=1
smoke=0
purge=0
vagrant=0
sizes=""
out=""

# shellcheck source=vm/topology.env
source scripts/vm/topology.env
# shellcheck source=vm/lib.sh
source scripts/vm/lib.sh

usage() { sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; }

parse_args() {
    cmd="${1:-}"; [[ $# -gt 0 ]] && shift
    while [[ $# -gt 0 ]]; do
        case "$1" in
            --name) name="$2"; shift 2 ;;
            --accel) accel="$2"; shift 2 ;;
            --no-build) build=0; shift ;;
            --smoke) smoke=1; shift ;;
            --sizes) sizes="$2"; shift 2 ;;
            --vagrant) vagrant=1; name=vagrant; shift ;;
            --purge) purge=1; shift ;;
            --out) out="$2"; shift 2 ;;
            -h | --help) usage; exit 0 ;;
            *) vdie "unknown argument $1 (try --help)" ;;
        esac
    done
    [[ "$name" =~ ^[A-Za-z0-9_-]{1,32}$ ]] || vdie "--name: letters, digits, - and _ only"
    case "$accel" in auto | kvm | tcg) ;; *) vdie "--accel auto, kvm or tcg" ;; esac
    RUN="/tmp/s2vm-$name"
    guest_paths
}

# ---- host prerequisites --------------------------------------------------------------
# qemu-system-x86 must match an already installed qemu-utils: on hosts whose
# qemu-utils comes from bookworm-backports, so must qemu-system-x86.
ensure_host_tools() {
    local missing=()
    command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
    command -v qemu-img >/dev/null || missing+=(qemu-utils)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    command -v ssh >/dev/null || missing+=(openssh-client)
    command -v mkfs.ext4 >/dev/null || missing+=(e2fsprogs)
    [[ ${#missing[@]} -eq 0 ]] && return 0
    vlog "installing ${missing[*]}"
    local release=()
    if dpkg-query -W -f='${Version}' qemu-utils 2>/dev/null | grep -q '~bpo12'; then
        release=(-t bookworm-backports)
        grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/ || printf '%s\n' \
            'Types: deb' 'URIs: http://deb.debian.org/debian' 'Suites: bookworm-backports' \
            'Components: main' 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg' \
            >/etc/apt/sources.list.d/s2vm-bookworm-backports.sources
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${release[@]}" "${missing[@]}"
}

# ---- the run directory ---------------------------------------------------------------
# RUN/share is what the guests see as /mnt/s2run: binaries, certificates, token.
prepare_share() {
    local args=("$RUN/share"); [[ $build -eq 1 ]] && args+=(--build)
    bash scripts/vm/prepare-run.sh "${args[@]}"
}

# A free 127.0.0.1 port for TCP (ssh forwards) or UDP (links); the kernel
# picks it, so parallel testbeds do not collide.
free_port() {
    /usr/bin/python3 -c 'import socket,sys
s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM if sys.argv[1]=="udp" else socket.SOCK_STREAM)
s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' "$1"
}

# Six links, two UDP endpoints each: LINK.1 and LINK.2 files hold the ports.
allocate_links() {
    local l
    for l in lana wana wanb lanb mgmt mgen; do
        free_port udp >"$RUN/link-$l.1"
        free_port udp >"$RUN/link-$l.2"
    done
}

# qemu arguments for one NIC on side S of link L with MAC M. A gateway's
# DPDK ports (D = dpdk) are modern-only virtio devices whose DMA goes through
# the VM's IOMMU (iommu_platform): vfio-pci in the guest then isolates them,
# as on a host with VT-d.
nic_args() {
    local l="$1" s="$2" mac="$3" o=$(( 3 - $2 )) extra=""
    [[ "${4:-}" == dpdk ]] && extra=",disable-legacy=on,iommu_platform=on"
    printf -- '-netdev\0socket,id=%s,udp=127.0.0.1:%s,localaddr=127.0.0.1:%s\0' \
        "$l" "$(cat "$RUN/link-$l.$o")" "$(cat "$RUN/link-$l.$s")"
    printf -- '-device\0virtio-net-pci,netdev=%s,mac=%s,romfile=%s\0' "$l" "$mac" "$extra"
}

# ---- accelerator ---------------------------------------------------------------------
# KVM only if the guest kernel gets to init with it within 20 s (on some hosts
# a Linux guest hangs in early boot under KVM); otherwise TCG.
pick_accel() {
    local img="$1"
    if [[ "$accel" == auto ]]; then
        accel=tcg
        if [[ -r /dev/kvm && -w /dev/kvm ]]; then
            local log="$RUN/kvm-probe.console"
            timeout 20 qemu-system-x86_64 -machine pc,accel=kvm -cpu max -m 256 -smp 1 \
                -kernel "$img/vmlinuz" -initrd "$img/initrd" -append "console=ttyS0 panic=-1 rdinit=/bin/false" \
                -display none -serial "file:$log" -monitor none -no-reboot -nodefaults >/dev/null 2>&1 || true
            # Any sign of the kernel reaching its init stage (the command, its
            # failure or the panic that follows) counts as booted.
            grep -qE 'as init process|Failed to execute|Kernel panic|Freeing unused kernel' "$log" 2>/dev/null \
                && accel=kvm
        fi
    fi
    vlog "accelerator: $accel"
    echo "$accel" >"$RUN/accel"
}

# ---- VMs -----------------------------------------------------------------------------
vm_nics() {
    case "$1" in
        gen) nic_args lana 1 "$GEN_PROD_MAC"; nic_args lanb 2 "$GEN_CONS_MAC"; nic_args mgen 1 "$GEN_MG_MAC" ;;
        gwa) nic_args mgmt 1 "$GWA_MG_MAC"; nic_args lana 2 "$GWA_LAN_MAC" dpdk; nic_args wana 1 "$GWA_WAN_MAC" dpdk
             nic_args mgen 2 "$GWA_MG1_MAC" ;;
        gwb) nic_args mgmt 2 "$GWB_MG_MAC"; nic_args lanb 1 "$GWB_LAN_MAC" dpdk; nic_args wanb 2 "$GWB_WAN_MAC" dpdk ;;
        wan) nic_args wana 2 "$WAN_A0_MAC"; nic_args wanb 1 "$WAN_B0_MAC" ;;
    esac
}

vm_memory() { case "$1" in gwa | gwb) echo 1280 ;; gen) echo 768 ;; wan) echo 384 ;; esac; }

# An ssh_config entry for the VM (host keys change with every image: not recorded).
write_ssh_config() {
    local role="$1" port="$2" key="$3"
    echo "$port" >"$RUN/$role.ssh-port"
    cat >>"$RUN/ssh_config" <<CFG
Host $role
  HostName 127.0.0.1
  Port $port
  User root
  IdentityFile $key
  IdentitiesOnly yes
  StrictHostKeyChecking no
  UserKnownHostsFile /dev/null
  LogLevel ERROR
  ConnectTimeout 10
  ServerAliveInterval 15
  BatchMode yes
CFG
}

start_vm() {
    local role="$1" img; img="$(cat "$RUN/image")"
    qemu-img create -q -f qcow2 -b "$img/base.qcow2" -F qcow2 "$RUN/$role.qcow2"
    write_ssh_config "$role" "$(free_port tcp)" "$img/id_ed25519"
    local nics=(); mapfile -d '' nics < <(vm_nics "$role")
    # The gateways boot systemd: they run the packaged units, and their
    # reboot test needs a real boot. gen and wan boot the small init. The
    # gateways are q35 machines with an emulated VT-d (intel-iommu, first on
    # the command line: it must exist before the PCI devices it translates)
    # and boot with it on, so that setup-host binds vfio-pci and check-host
    # finds the IOMMU it wants; the kernel's own devices stay in
    # pass-through (iommu=pt).
    local machine=pc init=" init=/sbin/s2vm-init" iommu=()
    if [[ "$role" == gw? ]]; then
        machine=q35 init=" intel_iommu=on iommu=pt"
        iommu=(-device intel-iommu)
        touch "$RUN/gw-iommu"
    fi
    local accel_args=(-machine "$machine,accel=$(cat "$RUN/accel")" -cpu max)
    [[ "$(cat "$RUN/accel")" == tcg ]] && accel_args=(-machine "$machine" -accel tcg,thread=multi,tb-size=256 -cpu max)
    nice -n 10 qemu-system-x86_64 -name "s2vm-$name-$role" "${accel_args[@]}" "${iommu[@]}" -smp 1 -m "$(vm_memory "$role")" \
        -kernel "$img/vmlinuz" -initrd "$img/initrd" \
        -append "root=/dev/vda rw console=ttyS0 quiet mitigations=off$init s2vm.role=$role" \
        -drive "file=$RUN/$role.qcow2,if=virtio,format=qcow2,cache=unsafe" \
        -netdev "user,id=ctl,hostfwd=tcp:127.0.0.1:$(cat "$RUN/$role.ssh-port")-:22" \
        -device "virtio-net-pci,netdev=ctl,mac=$CTL_MAC,romfile=" \
        "${nics[@]}" \
        -virtfs "local,path=$REPO,mount_tag=s2repo,security_model=none,readonly=on,id=s2repo" \
        -virtfs "local,path=$RUN/share,mount_tag=s2run,security_model=none,id=s2run" \
        -display none -serial "file:$RUN/$role.console" -monitor none -nodefaults \
        -pidfile "$RUN/$role.pid" -daemonize
}

# Wait until sshd in the VM answers, then mount the two 9p shares.
wait_vm() {
    local role="$1" deadline=$(( SECONDS + 300 ))
    until vm_ssh "$role" true 2>/dev/null; do
        (( SECONDS < deadline )) || { tail -20 "$RUN/$role.console" >&2; vdie "$role: no ssh after 300 s"; }
        kill -0 "$(cat "$RUN/$role.pid")" 2>/dev/null || { tail -20 "$RUN/$role.console" >&2; vdie "$role: qemu exited"; }
        sleep 2
    done
    mount_shares "$role"
}

provision() { vm_ssh "$1" "bash $GUEST_REPO/scripts/vm/provision.sh $1 $GUEST_REPO $GUEST_RUN" >"$RUN/provision-$1.log" 2>&1 \
    || { tail -30 "$RUN/provision-$1.log" >&2; vdie "$1: provisioning failed (log: $RUN/provision-$1.log)"; }; }

# The four VMs are provisioned at once (each in its own guest; the gateways'
# s2cs retry their peer until the other is up). Fails if any fails.
provision_all() {
    local role pids=() fail=0
    for role in wan gen gwa gwb; do provision "$role" & pids+=($!); done
    for pid in "${pids[@]}"; do wait "$pid" || fail=1; done
    cat "$RUN"/provision-*.log >"$RUN/provision.log"
    [[ $fail -eq 0 ]] || vdie "provisioning failed"
}

cmd_up() {
    [[ -e "$RUN/up" ]] && { vlog "testbed $name is up already; down first"; cmd_down; }
    ensure_host_tools
    mkdir -p "$RUN"; chmod 700 "$RUN"
    # A failed up leaves nothing running (on_exit).
    cleanup_on_exit=1
    local t0=$SECONDS img
    img="$(nice -n 10 scripts/vm/build-image.sh "$CACHE" | tail -1)"
    echo "$img" >"$RUN/image"
    vlog "image ready after $((SECONDS - t0)) s"
    prepare_share
    pick_accel "$img"
    allocate_links
    local role t1=$SECONDS
    for role in "${S2VM_ROLES[@]}"; do start_vm "$role"; done
    for role in "${S2VM_ROLES[@]}"; do wait_vm "$role"; done
    vlog "four VMs booted ($(cat "$RUN/accel")) in $((SECONDS - t1)) s"
    provision_all
    touch "$RUN/up"
    [[ "$cmd" == ci ]] || cleanup_on_exit=0
    vlog "up in $((SECONDS - t0)) s; ssh: sudo $0 ssh ROLE (run dir $RUN)"
}

cmd_down() {
    local role pid
    for role in "${S2VM_ROLES[@]}"; do
        [[ -s "$RUN/$role.pid" ]] || continue
        pid="$(cat "$RUN/$role.pid")"
        # Only our qemu: the pid file's process must carry this testbed's name.
        if grep -qa "s2vm-$name-$role" "/proc/$pid/cmdline" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    rm -rf "$RUN"
    [[ $purge -eq 1 ]] && rm -rf "$CACHE"
    vlog "down ($name)"
}

# A run directory for the VMs of `vagrant up`: their ssh configuration, and
# the marker that makes vm_ssh use sudo and the guests' paths /vagrant/...
vagrant_run_dir() {
    command -v vagrant >/dev/null || vdie "vagrant not installed"
    rm -rf "$RUN"; mkdir -p "$RUN"; chmod 700 "$RUN"
    touch "$RUN/vagrant"
    guest_paths
    vagrant ssh-config "${S2VM_ROLES[@]}" >"$RUN/ssh_config" || vdie "vagrant ssh-config failed (vagrant up first)"
    echo kvm >"$RUN/accel"
    touch "$RUN/up"
}

cmd_run() {
    [[ $vagrant -eq 1 ]] && vagrant_run_dir
    [[ -e "$RUN/up" ]] || vdie "testbed $name is not up (scripts/vm-testbed.sh up --name $name)"
    local args=(--run "$RUN")
    [[ $smoke -eq 1 ]] && args+=(--smoke)
    [[ -n "$sizes" ]] && args+=(--sizes "$sizes")
    [[ -n "$out" ]] && args+=(--out "$out")
    bash scripts/vm/suite.sh "${args[@]}"
}

# Whatever ends this script (error, Ctrl-C, success of ci) stops what it started
# while cleanup_on_exit is 1.
cleanup_on_exit=0
on_exit() {
    local rc=$?
    if [[ $cleanup_on_exit -eq 1 ]]; then
        [[ $rc -eq 0 ]] || vlog "failed (exit $rc), cleaning up"
        cmd_down
    fi
    exit "$rc"
}

main() {
    if [[ "${1:-}" == ssh ]]; then
        # sudo scripts/vm-testbed.sh ssh ROLE [--name N] [COMMAND...]
        local role="${2:?ssh ROLE}"; shift 2
        [[ "${1:-}" == --name ]] && { name="$2"; shift 2; }
        RUN="/tmp/s2vm-$name"
        guest_paths
        vm_ssh "$role" "$@"
        return
    fi
    parse_args "$@"
    trap on_exit EXIT
    trap 'exit 130' INT TERM
    [[ $EUID -eq 0 ]] || vdie "run as root (debootstrap, image files)"
    case "$cmd" in
        up) cmd_up ;;
        down) cmd_down ;;
        run) cmd_run ;;
        ci)
            [[ "$name" == s2vm ]] && name="s2vm-ci-$$" && RUN="/tmp/s2vm-$name" && guest_paths
            cleanup_on_exit=1
            local t0=$SECONDS
            cmd_up
            local t1=$SECONDS
            smoke=1
            cmd_run
            vlog "ci: up $((t1 - t0)) s, run --smoke $((SECONDS - t1)) s"
            ;;
        *) usage; exit 2 ;;
    esac
}

main "$@"
