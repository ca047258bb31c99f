#!/usr/bin/env python3
"""A second, independent client of the SciStream control API (s2cs).

It shares nothing with s2uc but the .proto file: the message classes are
generated at run time by `protoc --python_out` from control/proto/
scistream.proto, and the RPCs are made with grpc's generic
`channel.unary_unary` (no generated stubs, so grpc_tools is not needed).
It follows the call sequence of SciStream's own client.

  inbound   req(PROD) with hello(PROD, targets) while it waits, then
            update(PROD, prod_listeners); prints
            {"uid", "listeners", "prod_listeners"}
  outbound  req(CONS) with hello(CONS, []) while it waits, then
            update(CONS, the producer gateway's listeners); prints the same
  release   release(uid); prints {"uid", "released": true}

With --as-scistream it behaves exactly as SciStream's own s2uc does (its
inbound-request, outbound-request and release), quirks included, so that a
test can show that SciStream's client works against s2cs unchanged:
  - the token goes bare in the `authorization` metadata (no "Bearer ");
  - the uid is a version-1 uuid (uuid.uuid1());
  - req and hello go from a thread pool, hello 0.5 s after req, and each
    result is awaited for at most 5 s;
  - the consumer-side hello says role "PROD" and carries the receivers
    (remote_ip:receiver_ports, "localhost:5074,..." by default);
  - `rate` is 10000 (SciStream's kB/s default) unless --rate is given;
  - the server certificate is checked against the host it dials, an IP
    address in SciStream's usage (no --server-name override).

On a gRPC error it prints {"error": "<CODE_NAME>", "details": "..."} and
exits 2; on a local error (bad arguments, protoc failing) it exits 1.

Needs python3-grpcio and python3-protobuf, and protoc on PATH.
"""

import argparse
import concurrent.futures
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

import grpc

PROTO_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "control", "proto")

# hello is retried while s2cs has not yet seen the req (NOT_FOUND).
HELLO_FIRST_DELAY = 0.02
HELLO_ATTEMPTS = 7
HELLO_BACKOFF = 0.05

# SciStream's s2uc: hello 0.5 s after req, results awaited 5 s, rate 10000
# (kB/s) and these receiver ports by default.
SCISTREAM_HELLO_DELAY = 0.5
SCISTREAM_RESULT_TIMEOUT = 5
SCISTREAM_DEFAULT_RATE = 10000
SCISTREAM_DEFAULT_RECEIVERS = "localhost:5074,localhost:5075,localhost:5076,localhost:37000,localhost:47000"


class UsageError(Exception):
    """A problem with the arguments or the environment, not with the server."""


def load_messages(proto_dir):
    """Generates scistream_pb2 from scistream.proto into a temporary
    directory, imports it, and removes the directory."""
    proto = os.path.join(proto_dir, "scistream.proto")
    if not os.path.isfile(proto):
        raise UsageError(f"{proto}: not found (give --proto-dir)")
    out = tempfile.mkdtemp(prefix="scistream-pb-")
    try:
        run = subprocess.run(
            ["protoc", f"--proto_path={proto_dir}", f"--python_out={out}", "scistream.proto"],
            capture_output=True,
            text=True,
        )
        if run.returncode != 0:
            raise UsageError(f"protoc failed on {proto}: {run.stderr.strip()}")
        sys.path.insert(0, out)
        try:
            import scistream_pb2  # noqa: E402  (generated just now)
        finally:
            sys.path.remove(out)
        return scistream_pb2
    except FileNotFoundError as e:
        raise UsageError(f"protoc not found: {e}") from e
    finally:
        shutil.rmtree(out, ignore_errors=True)


class Control:
    """The four RPCs of scistream.Control over `channel`."""

    def __init__(self, channel, pb, metadata, timeout):
        def method(name, request, response):
            return channel.unary_unary(
                f"/scistream.Control/{name}",
                request_serializer=request.SerializeToString,
                response_deserializer=response.FromString,
            )

        self.pb = pb
        self.metadata = metadata
        self.timeout = timeout
        self.req = method("req", pb.Request, pb.Response)
        self.update = method("update", pb.UpdateTargets, pb.Response)
        self.release = method("release", pb.Release, pb.Response)
        self.hello = method("hello", pb.Hello, pb.AppResponse)

    def call(self, rpc, message):
        return rpc(message, metadata=self.metadata, timeout=self.timeout)

    def req_and_hello(self, uid, role, num_conn, rate, app_listeners):
        """req, with hello sent while req waits; returns req's Response."""
        pb = self.pb
        pending = self.req.future(
            pb.Request(uid=uid, role=role, num_conn=num_conn, rate=rate),
            metadata=self.metadata,
            timeout=self.timeout,
        )
        hello = pb.Hello(uid=uid, prod_listeners=app_listeners, role=role)
        time.sleep(HELLO_FIRST_DELAY)
        backoff = HELLO_BACKOFF
        for attempt in range(1, HELLO_ATTEMPTS + 1):
            try:
                self.call(self.hello, hello)
                break
            except grpc.RpcError as e:
                # A req that failed is the cause of the hello's failure.
                if pending.done() and pending.exception() is not None:
                    raise pending.exception()
                if e.code() != grpc.StatusCode.NOT_FOUND or attempt == HELLO_ATTEMPTS:
                    pending.cancel()
                    raise
                time.sleep(backoff)
                backoff *= 2
        return pending.result()

    def scistream_req_and_hello(self, uid, req_role, hello_role, num_conn, rate, receivers):
        """What SciStream's s2uc does: req and hello submitted to a thread
        pool, hello 0.5 s after req, no retry; req's Response, awaited 5 s."""
        pb = self.pb
        with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
            req = pool.submit(
                self.call, self.req,
                pb.Request(uid=uid, role=req_role, num_conn=num_conn, rate=rate))
            time.sleep(SCISTREAM_HELLO_DELAY)
            hello = pb.Hello(uid=uid, role=hello_role)
            hello.prod_listeners.extend(receivers)
            hello_done = pool.submit(self.call, self.hello, hello)
            resp = req.result(timeout=SCISTREAM_RESULT_TIMEOUT)
            hello_done.result(timeout=SCISTREAM_RESULT_TIMEOUT)
        return resp


def make_channel(args):
    if args.insecure:
        print(
            f"scistream_client: warning: --insecure: plaintext to {args.s2cs}",
            file=sys.stderr,
        )
        return grpc.insecure_channel(args.s2cs)
    if not args.server_cert:
        raise UsageError("TLS needs --server-cert FILE (or --insecure)")
    try:
        with open(args.server_cert, "rb") as f:
            root = f.read()
    except OSError as e:
        raise UsageError(f"--server-cert {args.server_cert}: {e}") from e
    creds = grpc.ssl_channel_credentials(root_certificates=root)
    options = []
    if args.server_name:
        if args.as_scistream:
            raise UsageError("--as-scistream checks the certificate against --s2cs's host: no --server-name")
        options.append(("grpc.ssl_target_name_override", args.server_name))
    return grpc.secure_channel(args.s2cs, creds, options)


def token_metadata(args):
    token = args.token
    if token is None and args.token_file:
        try:
            with open(args.token_file, encoding="ascii") as f:
                token = f.read()
        except (OSError, UnicodeDecodeError) as e:
            raise UsageError(f"--token-file {args.token_file}: {e}") from e
    if token is None:
        token = os.environ.get("S2UC_TOKEN")
    if token is None:
        return ()
    token = token.strip()
    if not token:
        raise UsageError("empty token")
    if args.as_scistream:
        return (("authorization", token),)
    return (("authorization", f"Bearer {token}"),)


def endpoint_list(text):
    items = [s.strip() for s in text.split(",")]
    if not items or any(not s or ":" not in s for s in items):
        raise argparse.ArgumentTypeError(f"{text!r}: expected ip:port,ip:port,...")
    return items


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Independent SciStream control client (Python, generic gRPC calls)."
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--s2cs", default="localhost:5000", help="HOST:PORT of s2cs")
    common.add_argument("--server-cert", help="PEM certificate(s) to trust")
    common.add_argument("--server-name", help="name to verify the certificate for")
    common.add_argument("--insecure", action="store_true", help="plaintext, no TLS")
    common.add_argument("--token", help="bearer token")
    common.add_argument("--token-file", help="file holding the bearer token")
    common.add_argument("--timeout", type=float, default=200.0, help="seconds per RPC")
    common.add_argument("--proto-dir", default=PROTO_DIR, help="where scistream.proto is")
    common.add_argument("--as-scistream", action="store_true",
                        help="behave exactly as SciStream's own s2uc (see the module help)")
    sub = p.add_subparsers(dest="command", required=True)

    inbound = sub.add_parser("inbound", parents=[common], help="producer side (PROD)")
    inbound.add_argument("--uid", default=None,
                         help="session id (default: a random UUIDv4; uuid1 with --as-scistream)")
    inbound.add_argument("--num-conn", type=int, default=1)
    inbound.add_argument("--rate", type=int, default=None,
                         help="kB/s, 0 = unlimited (default 0; 10000 with --as-scistream)")
    inbound.add_argument("--targets", type=endpoint_list, required=True,
                         help="the producer app's endpoints, ip:port,...")

    outbound = sub.add_parser("outbound", parents=[common], help="consumer side (CONS)")
    outbound.add_argument("--uid", required=True)
    outbound.add_argument("--num-conn", type=int, default=1)
    outbound.add_argument("--rate", type=int, default=None,
                          help="kB/s, 0 = unlimited (default 0; 10000 with --as-scistream)")
    outbound.add_argument("--prod-listeners", type=endpoint_list, required=True,
                          help="the producer gateway's listeners, ip:port,...")
    outbound.add_argument("--receivers", type=endpoint_list, default=None,
                          help="--as-scistream: what its consumer-side hello carries "
                               "(default SciStream's localhost:5074,...)")

    release = sub.add_parser("release", parents=[common], help="free a session")
    release.add_argument("--uid", required=True)
    return p.parse_args(argv)


def run(args):
    pb = load_messages(args.proto_dir)
    metadata = token_metadata(args)
    compat = args.as_scistream
    rate = getattr(args, "rate", None)
    if rate is None:
        rate = SCISTREAM_DEFAULT_RATE if compat else 0
    with make_channel(args) as channel:
        control = Control(channel, pb, metadata, args.timeout)
        if args.command == "inbound":
            uid = args.uid or str(uuid.uuid1() if compat else uuid.uuid4())
            if compat:
                resp = control.scistream_req_and_hello(
                    uid, "PROD", "PROD", args.num_conn, rate, args.targets)
            else:
                resp = control.req_and_hello(uid, "PROD", args.num_conn, rate, args.targets)
            targets = list(resp.prod_listeners) or args.targets
            control.call(control.update,
                         pb.UpdateTargets(uid=uid, remote_listeners=targets, role="PROD"))
            return {"uid": uid, "listeners": list(resp.listeners),
                    "prod_listeners": list(resp.prod_listeners)}
        if args.command == "outbound":
            if compat:
                # SciStream's outbound-request: hello with role PROD (sic)
                # and the receivers, while the req says CONS.
                receivers = args.receivers or SCISTREAM_DEFAULT_RECEIVERS.split(",")
                resp = control.scistream_req_and_hello(
                    args.uid, "CONS", "PROD", args.num_conn, rate, receivers)
            else:
                resp = control.req_and_hello(args.uid, "CONS", args.num_conn, rate, [])
            control.call(control.update,
                         pb.UpdateTargets(uid=args.uid, remote_listeners=args.prod_listeners,
                                          role="CONS"))
            return {"uid": args.uid, "listeners": list(resp.listeners),
                    "prod_listeners": list(resp.prod_listeners)}
        control.call(control.release, pb.Release(uid=args.uid))
        return {"uid": args.uid, "released": True}


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        result = run(args)
    except grpc.RpcError as e:
        print(json.dumps({"error": e.code().name, "details": e.details() or ""}))
        return 2
    except concurrent.futures.TimeoutError:
        print(json.dumps({"error": "CLIENT_TIMEOUT",
                          "details": f"no answer within {SCISTREAM_RESULT_TIMEOUT} s (SciStream's limit)"}))
        return 2
    except UsageError as e:
        print(f"scistream_client: {e}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
