#!/usr/bin/env bash
# pkg-files.sh - one JSON line: what of scistream-gateway is on a gateway VM
# (runs inside the guest, as root; scripts/vm/suite.sh's removal check).
#
# Usage: pkg-files.sh ROLE
# dpkg's status of the package (ii installed, rc removed with its
# configuration kept, absent after a purge), whether s2ds and s2cs processes
# run, the units' states, and which of the package's files, the operator's
# configurations, the registry, the enabled instances and setup-host's boot
# drop-ins exist.
set -euo pipefail
readonly ROLE="$1"
status="$(dpkg-query -W -f='${db:Status-Abbrev}' scistream-gateway 2>/dev/null || true)"
running() { pgrep -x "$1" >/dev/null && echo true || echo false; }
exists() { [[ -e "$1" || -L "$1" ]] && echo true || echo false; }
globbed() { compgen -G "$1" >/dev/null && echo true || echo false; }
active() { systemctl is-active "$1" 2>/dev/null || true; }
/usr/bin/python3 -c 'import json, sys; k = sys.argv[1::2]; v = sys.argv[2::2]
d = {a: (b == "true" if b in ("true", "false") else b) for a, b in zip(k, v)}; print(json.dumps(d))' \
    status "${status// /}" \
    s2ds_running "$(running s2ds)" s2cs_running "$(running s2cs)" \
    s2ds_unit "$(active "s2ds@$ROLE")" s2cs_unit "$(active "s2cs@$ROLE")" \
    bin_s2ds "$(exists /usr/bin/s2ds)" bin_s2cs "$(exists /usr/bin/s2cs)" \
    unit_file "$(exists /lib/systemd/system/s2ds@.service)" \
    conffile_example "$(exists /etc/scistream/example.toml)" \
    config_s2ds "$(exists "/etc/scistream/$ROLE.toml")" config_s2cs "$(exists "/etc/scistream/control-$ROLE.toml")" \
    certs "$(exists /etc/scistream/certs)" \
    registry "$(exists "/var/lib/scistream/$ROLE.db")" \
    wants_s2ds "$(exists "/etc/systemd/system/multi-user.target.wants/s2ds@$ROLE.service")" \
    wants_s2cs "$(exists "/etc/systemd/system/multi-user.target.wants/s2cs@$ROLE.service")" \
    wants_host "$(exists "/etc/systemd/system/multi-user.target.wants/s2ds-host@$ROLE.service")" \
    dropins "$(globbed '/etc/sysctl.d/60-scistream-*.conf')" \
    modules_dropin "$(globbed '/etc/modules-load.d/60-scistream-*.conf')" \
    user "$(getent passwd scistream >/dev/null && echo true || echo false)"
