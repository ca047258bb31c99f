#!/usr/bin/python3
"""Send one request to s2cs's admin socket and print the reply line.

Usage: admin.py SOCKET JSON      e.g. admin.py /var/lib/s2vm/admin/s2cs.sock '{"op":"list"}'
Runs inside a gateway VM; exits 1 if the reply is not {"ok":true,...}.
"""
import json
import socket
import sys


def main() -> int:
    path, request = sys.argv[1], sys.argv[2]
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(30)
        s.connect(path)
        s.sendall(request.encode() + b"\n")
        reply = s.makefile("r").readline().strip()
    print(reply)
    return 0 if json.loads(reply).get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
