#!/usr/bin/env bash
# gen-certs.sh - make a throwaway CA and one leaf certificate per gateway for
# the s2cs peer channel (mutual TLS). For testbeds and demos, not production.
#
# Usage: scripts/gen-certs.sh DIR NAME...
#
# Writes into DIR (created mode 0700 if missing):
#   ca.pem, ca.key        ECDSA P-256 self-signed CA (reused if both exist)
#   NAME.pem, NAME.key    ECDSA P-256 leaf signed by the CA, subjectAltName=DNS:NAME,
#                         extendedKeyUsage serverAuth+clientAuth; NAME.pem holds the
#                         leaf followed by the CA (a chain for [identity] cert)
# Keys are PKCS#8 PEM, mode 0600. For each NAME the SHA-256 pin of its public key
# (usable as `pin_sha256` in [[peers]]) is printed and written to NAME.pin.
# NAME follows the gateway-name rule: 1 to 32 characters from A-Z a-z 0-9 _ -.
#
# Example: scripts/gen-certs.sh configs/certs gwa gwb
set -euo pipefail

readonly DAYS=365

die() { echo "gen-certs.sh: $*" >&2; exit 1; }

[[ $# -ge 2 ]] || die "usage: gen-certs.sh DIR NAME..."
command -v openssl >/dev/null || die "openssl not found"
dir=$1
shift
for name in "$@"; do
    [[ $name =~ ^[A-Za-z0-9_-]{1,32}$ ]] || die "invalid name '$name': use 1 to 32 characters from A-Z a-z 0-9 _ -"
    [[ $name != ca ]] || die "'ca' is reserved for the CA's own files"
done

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

for name in "$@"; do
    newkey "$dir/$name.key"
    openssl req -new -key "$dir/$name.key" -subj "/CN=$name" -out "$tmp/$name.csr"
    cat >"$tmp/$name.ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=DNS:$name
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
    echo "created $dir/$name.pem (SAN DNS:$name), pin_sha256 = \"$pin\""
done
