#!/usr/bin/env bash
# gen-certs.sh - make a throwaway CA and one leaf certificate per gateway for
# the s2cs peer channel (mutual TLS) and its gRPC API. For testbeds and demos,
# not production.
#
# Usage: scripts/gen-certs.sh DIR NAME [--ip ADDR]... [NAME [--ip ADDR]...]...
#
# Writes into DIR (created mode 0700 if missing):
#   ca.pem, ca.key        ECDSA P-256 self-signed CA (reused if both exist)
#   NAME.pem, NAME.key    ECDSA P-256 leaf signed by the CA, subjectAltName=DNS:NAME
#                         plus IP:ADDR for each --ip after NAME, extendedKeyUsage
#                         serverAuth+clientAuth; NAME.pem holds the leaf followed
#                         by the CA (a chain for [identity] cert)
# Keys are PKCS#8 PEM, mode 0600. For each NAME the SHA-256 pin of its public key
# (usable as `pin_sha256` in [[peers]]) is printed and written to NAME.pin.
# NAME follows the gateway-name rule: 1 to 32 characters from A-Z a-z 0-9 _ -.
# --ip ADDR (IPv4 or IPv6, repeatable) puts the gateway's address in its
# certificate, so that clients that dial it by IP (SciStream's s2uc, and ours
# without --server-name) can verify it.
#
# Example: scripts/gen-certs.sh configs/certs gwa --ip 10.99.0.1 gwb --ip 10.99.0.2
set -euo pipefail

readonly DAYS=365

die() { echo "gen-certs.sh: $*" >&2; exit 1; }

valid_ip() {
    local ip=$1 part
    if [[ $ip =~ ^([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})$ ]]; then
        for part in "${BASH_REMATCH[@]:1}"; do
            ((10#$part <= 255)) || return 1
        done
        return 0
    fi
    # IPv6: hex groups and colons (an embedded IPv4 tail allowed); openssl
    # checks the rest.
    [[ $ip == *:* && $ip =~ ^[0-9A-Fa-f:.]+$ ]]
}

[[ $# -ge 2 ]] || die "usage: gen-certs.sh DIR NAME [--ip ADDR]... [NAME [--ip ADDR]...]..."
command -v openssl >/dev/null || die "openssl not found"
dir=$1
shift
names=()
declare -A ips=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --ip)
            [[ ${#names[@]} -gt 0 ]] || die "--ip must follow the NAME it belongs to"
            [[ $# -ge 2 ]] || die "--ip needs an address"
            valid_ip "$2" || die "--ip '$2': not an IPv4 or IPv6 address"
            last=${names[-1]}
            ips[$last]="${ips[$last]:-},IP:$2"
            shift 2
            ;;
        --ip=*)
            die "write --ip ADDR (with a space)"
            ;;
        -*)
            die "unknown option '$1'"
            ;;
        *)
            name=$1
            [[ $name =~ ^[A-Za-z0-9_-]{1,32}$ ]] || die "invalid name '$name': use 1 to 32 characters from A-Z a-z 0-9 _ -"
            [[ $name != ca ]] || die "'ca' is reserved for the CA's own files"
            names+=("$name")
            shift
            ;;
    esac
done
[[ ${#names[@]} -gt 0 ]] || die "no NAME given"

umask 077
mkdir -p -- "$dir"
tmp=$(mktemp -d)
trap 'rm -rf -- "$tmp"' EXIT

newkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; chmod 600 "$1"; }

if [[ -f $dir/ca.pem && -f $dir/ca.key ]]; then
    echo "reusing CA $dir/ca.pem"
else
    newkey "$dir/ca.key"
    openssl req -x509 -new -key "$dir/ca.key" -sha256 -days "$DAYS" \
        -subj "/CN=SciStream test CA" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -addext "subjectKeyIdentifier=hash" \
        -out "$dir/ca.pem"
    chmod 644 "$dir/ca.pem"
    echo "created CA $dir/ca.pem"
fi

for name in "${names[@]}"; do
    newkey "$dir/$name.key"
    openssl req -new -key "$dir/$name.key" -subj "/CN=$name" -out "$tmp/$name.csr"
    cat >"$tmp/$name.ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=DNS:$name${ips[$name]:-}
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid,issuer
EXT
    openssl x509 -req -in "$tmp/$name.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
        -CAcreateserial -CAserial "$tmp/ca.srl" -sha256 -days "$DAYS" \
        -extfile "$tmp/$name.ext" -out "$tmp/$name.leaf.pem" 2>/dev/null
    cat "$tmp/$name.leaf.pem" "$dir/ca.pem" >"$dir/$name.pem"
    chmod 644 "$dir/$name.pem"
    pin=$(openssl pkey -in "$dir/$name.key" -pubout -outform DER | openssl dgst -sha256 -r | cut -d' ' -f1)
    echo "$pin" >"$dir/$name.pin"
    chmod 644 "$dir/$name.pin"
    echo "created $dir/$name.pem (SAN DNS:$name${ips[$name]:-}), pin_sha256 = \"$pin\""
done
