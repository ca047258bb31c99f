#!/usr/bin/python3
"""Write a VM gateway's s2ds and s2cs configurations.

Used by scripts/vm/provision.sh, so the qemu runner (scripts/vm-testbed.sh)
and the Vagrantfile produce the same files. The namespace testbed's configs
are the templates (configs/testbed-gwX-af_packet.toml and
configs/control-testbed-gwX.toml): the address plan, routes, peers and the
s2cs policy stay theirs; only what differs in a VM changes:

  s2ds  the two ports become the PCI NICs found in the guest (DPDK virtio
        PMD), EAL gets hugepages and PCI instead of --no-huge/--no-pci,
        the worker runs on core 0 (one vCPU), keys come from s2cs;
  s2cs  the routed-mode [[tunnels]] entry enabled (routed and listener-mode
        sessions both run), short rekey timers left to the caller
        (--rekey-seconds).

Paths are the package's (scistream-gateway, docs/operations.md): the
instance name is the role, so OUT (/etc/scistream) gets ROLE.toml for
s2ds@ROLE and control-ROLE.toml for s2cs@ROLE; the admin socket is
/run/scistream/ROLE.sock, the registry /var/lib/scistream/ROLE.db, the
region /dev/shm/scistream-ROLE, the stats JSON /run/s2ds/ROLE.stats.json.
Certificates and the tokens file stay relative (OUT/certs/, OUT/tokens.toml).

Usage: gen-configs.py --role gwa|gwb --repo DIR --out DIR
                      --lan-pci ADDR --wan-pci ADDR [--rekey-seconds N]
"""
import argparse
import pathlib
import re
import sys

# Sections of the s2ds template that s2cs provides instead (keying = "control").
MANUAL_SECTIONS = ("sas", "tunnel_routes", "listeners")
PCI_RE = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")


def s2ds_config(template: str, role: str, lan_pci: str, wan_pci: str) -> str:
    out, skip, port = [], False, None
    for line in template.splitlines():
        header = re.match(r"^\s*\[\[?([A-Za-z_.]+)\]\]?", line)
        if header:
            name = header.group(1)
            skip = name in MANUAL_SECTIONS
            port = name.split(".")[1] if name.startswith("ports.") else None
        if skip:
            continue
        if re.match(r"^\s*eal_args\s*=", line):
            # Hugepages (mounted by provision.sh), only our two PCI NICs probed
            # (s2ds adds -a for each port device), a file prefix of our own.
            line = f'eal_args = ["-m", "256", "--huge-dir", "/dev/hugepages", "--file-prefix=s2vm-{role}"]'
        elif re.match(r"^\s*cores\s*=", line):
            line = "cores = [0]"
        elif re.match(r"^\s*mempool_size\s*=", line):
            line = "mempool_size = 4095"
        elif re.match(r"^\s*device\s*=", line) and port in ("lan", "wan"):
            line = f'device = "{lan_pci if port == "lan" else wan_pci}"'
        out.append(line)
        if line.strip() == "[gateway]":
            out.append(f'stats_path = "/run/s2ds/{role}.stats.json"')
        if line.strip() == "[tunnel]":
            out += ['keying = "control"', f'shm_path = "/dev/shm/scistream-{role}"']
    return "\n".join(out) + "\n"


def s2cs_config(template: str, role: str, rekey_seconds: int | None) -> str:
    out, in_tunnel = [], False
    for line in template.splitlines():
        line = line.replace(f"/tmp/scistream-testbed/{role}.sock", f"/run/scistream/{role}.sock")
        line = line.replace(f"/tmp/scistream-testbed/{role}.db", f"/var/lib/scistream/{role}.db")
        line = line.replace(f"/dev/shm/scistream-testbed-{role}", f"/dev/shm/scistream-{role}")
        # Enable the commented-out routed-mode tunnel (the block after "#[[tunnels]]").
        if line.startswith("#[[tunnels]]"):
            in_tunnel = True
        if in_tunnel and line.startswith("#"):
            line = line[1:]
        elif in_tunnel:
            in_tunnel = False
        if rekey_seconds is not None:
            line = re.sub(r"^rekey_seconds = .*", f"rekey_seconds = {rekey_seconds}", line)
            grace = max(1, min(10, rekey_seconds // 2))
            line = re.sub(r"^grace_seconds = .*", f"grace_seconds = {grace}", line)
        out.append(line)
    return "\n".join(out) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--role", choices=("gwa", "gwb"), required=True)
    ap.add_argument("--repo", required=True, type=pathlib.Path)
    ap.add_argument("--out", required=True, type=pathlib.Path)
    ap.add_argument("--lan-pci", required=True)
    ap.add_argument("--wan-pci", required=True)
    ap.add_argument("--rekey-seconds", type=int)
    a = ap.parse_args()
    for pci in (a.lan_pci, a.wan_pci):
        if not PCI_RE.match(pci):
            print(f"gen-configs: not a full PCI address: {pci!r}", file=sys.stderr)
            return 2
    cfg = a.repo / "configs"
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / f"{a.role}.toml").write_text(
        s2ds_config((cfg / f"testbed-{a.role}-af_packet.toml").read_text(), a.role, a.lan_pci, a.wan_pci))
    (a.out / f"control-{a.role}.toml").write_text(
        s2cs_config((cfg / f"control-testbed-{a.role}.toml").read_text(), a.role, a.rekey_seconds))
    print(f"gen-configs: {a.role}: lan {a.lan_pci}, wan {a.wan_pci} -> {a.out}/{a.role}.toml, control-{a.role}.toml")
    return 0


if __name__ == "__main__":
    sys.exit(main())
