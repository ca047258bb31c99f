#!/usr/bin/env python3
"""traffic.py - deterministic UDP/TCP traffic source and sink for the SciStream testbed.

Python 3 standard library only. Every subcommand prints exactly one JSON object on stdout
when it finishes (diagnostics go to stderr) and exits 0 on success, 1 on failure.

  udp-recv --bind IP:PORT --count N [--timeout SECS] [--ready-file PATH]
      Receive sequence-numbered datagrams (first 8 bytes: big-endian u64 sequence number,
      starting at 0). Stops after N distinct sequence numbers, or after SECS without any
      datagram. Reports received, lost, duplicates, out_of_order, in_order, bytes,
      first_seq, last_seq. Exit 0 only if all N arrived, in order, without duplicates.

  udp-send --to IP:PORT --count N --size BYTES [--rate PPS] [--pattern HEX]
      Send N datagrams of BYTES bytes: 8-byte sequence number then filler (HEX pattern
      repeated, else the bytes 0,1,2,...,255,0,1,...). Paced at PPS (0 = as fast as
      possible). Reports sent, bytes, seconds (plus send_errors: datagrams the kernel
      refused; exit 1 if any).

  udp-serve --bind IP:PORT --count N --size BYTES [--rate PPS] [--pattern HEX]
            [--timeout SECS] [--ready-file PATH]
      Pull mode, producer side: wait (up to SECS, default 30) for one datagram, then send
      N datagrams like udp-send back to its source, from the bound socket. For paths
      where the consumer must speak first (a NAT or listener maps the flow on its first
      packet). Repeated start datagrams are ignored. Reports peer, sent, bytes, seconds,
      pps, enobufs, send_errors.

  udp-pull --to IP:PORT --count N [--timeout SECS]
      Pull mode, consumer side: send a start datagram to IP:PORT, again every 200 ms until
      data arrives, then receive like udp-recv (stops after N distinct sequence numbers,
      or after SECS without any datagram, before or after the first). Reports what
      udp-recv reports plus first_ts and last_ts (wall-clock seconds of the first and the
      last datagram) and rate_bps: the datagram bits received after the first one over
      last_ts - first_ts (the first datagram marks the start of the interval).

  tcp-recv --bind IP:PORT [--ready-file PATH] [--timeout SECS]
      Accept one connection and read it to EOF. Reports bytes, sha256, seconds, mbps.

  tcp-send --to IP:PORT --bytes N [--seed S | --pattern HEX] [--timeout SECS]
      Connect (retrying for --connect-timeout seconds), send N bytes of seeded
      pseudo-random data (or HEX pattern repeated), half-close, wait for the peer to close.
      Reports bytes, sha256, seconds, mbps.

The ready file (udp-recv, udp-serve, tcp-recv) is created atomically once the socket is bound
(and listening), so a harness can start the sender without racing the receiver.
"""

import argparse
import errno
import hashlib
import json
import os
import random
import socket
import struct
import sys
import threading
import time

SEQ = struct.Struct("!Q")
# The datagram udp-pull sends to ask udp-serve for the stream.
PULL_START = b"SCISTREAM-PULL\n"
# How often udp-pull repeats its start datagram until data arrives.
PULL_RETRY = 0.2
# Pseudo-random block streamed by tcp-send; its length is deliberately not a power of two
# so that the repetition never lines up with buffer or segment boundaries.
TCP_BLOCK_LEN = (4 << 20) + 13
IO_CHUNK = 1 << 20
SOCK_BUF = 8 << 20
# Errors a connected UDP socket may report for an earlier datagram (queued ICMP errors).
ASYNC_SEND_ERRORS = (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN)


def emit(obj, ok):
    """Print the final JSON report and return the process exit code."""
    sys.stdout.write(json.dumps(obj, sort_keys=True) + "\n")
    sys.stdout.flush()
    return 0 if ok else 1


def parse_addr(text):
    """Parse IPv4:PORT or [IPv6]:PORT into (ip, port); raises argparse.ArgumentTypeError on bad input."""
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        family, what = socket.AF_INET6, "[IPv6]:PORT"
    else:
        host, sep, port = text.rpartition(":")
        family, what = socket.AF_INET, "IPv4:PORT"
    if not sep or not host:
        raise argparse.ArgumentTypeError(f"address '{text}' is not IP:PORT or [IPv6]:PORT")
    try:
        socket.inet_pton(family, host)
        value = int(port)
    except (OSError, ValueError):
        raise argparse.ArgumentTypeError(f"address '{text}' is not {what}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port {value} in '{text}' is out of range")
    return host, value


def new_socket(addr, kind):
    """A socket of the address family of addr (a parse_addr result)."""
    family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
    return socket.socket(family, kind)


def show_addr(sockname):
    """ip:port (IPv4) or [ip]:port (IPv6) of a getsockname() result."""
    host, port = sockname[0], sockname[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_hex(text):
    """Parse a non-empty hex byte pattern."""
    try:
        data = bytes.fromhex(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"pattern '{text}' is not hex") from None
    if not data:
        raise argparse.ArgumentTypeError("pattern must not be empty")
    return data


def non_negative(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} must be >= 0")
    return value


def positive_float(text):
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be > 0")
    return value


def repeat_to(pattern, length):
    """Return `pattern` repeated and truncated to exactly `length` bytes."""
    if length <= 0:
        return b""
    reps = -(-length // len(pattern))
    return (pattern * reps)[:length]


def big_buffers(sock):
    """Ask for large socket buffers; root may exceed net.core.[rw]mem_max."""
    for force, normal in ((getattr(socket, "SO_RCVBUFFORCE", 33), socket.SO_RCVBUF),
                          (getattr(socket, "SO_SNDBUFFORCE", 32), socket.SO_SNDBUF)):
        try:
            sock.setsockopt(socket.SOL_SOCKET, force, SOCK_BUF)
        except OSError:
            try:
                sock.setsockopt(socket.SOL_SOCKET, normal, SOCK_BUF)
            except OSError:
                pass


def write_ready(path, info):
    """Atomically create the ready file with a small JSON description."""
    if not path:
        return
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="ascii") as f:
        f.write(json.dumps(info) + "\n")
    os.replace(tmp, path)


def mbps(nbytes, seconds):
    return round(nbytes * 8 / seconds / 1e6, 3) if seconds > 0 else 0.0


# --- UDP ----------------------------------------------------------------------------------------


class SeqReceiver:
    """Accounts for a stream of sequence-numbered datagrams (udp-recv, udp-pull)."""

    def __init__(self, count):
        self.count = count
        self.seen = bytearray(count)  # seen[seq] == 1 once seq in [0, count) has arrived
        self.extra_seen = set()  # sequence numbers >= count (unexpected, but accounted for)
        self.unique = self.duplicates = self.out_of_order = self.datagrams = self.nbytes = 0
        self.runts = 0
        self.highest = -1
        self.first_seq = self.last_seq = None
        self.t_first = self.t_last = None  # time.monotonic() of the first and last datagram
        self.ts_first = self.ts_last = None  # time.time() of the same
        self.first_len = 0

    def done(self):
        return self.unique >= self.count

    def add(self, view, n):
        """Accounts for one datagram of n bytes at the start of view."""
        now = time.monotonic()
        wall = time.time()
        if self.t_first is None:
            self.t_first, self.ts_first, self.first_len = now, wall, n
        self.t_last, self.ts_last = now, wall
        self.datagrams += 1
        self.nbytes += n
        if n < SEQ.size:
            self.runts += 1
            return
        (seq,) = SEQ.unpack_from(view)
        if self.first_seq is None:
            self.first_seq = seq
        self.last_seq = seq
        if seq < self.count:
            if self.seen[seq]:
                self.duplicates += 1
                return
            self.seen[seq] = 1
            self.unique += 1
        else:
            if seq in self.extra_seen:
                self.duplicates += 1
                return
            self.extra_seen.add(seq)
        if seq < self.highest:
            self.out_of_order += 1
        else:
            self.highest = seq

    def loss_runs(self):
        """The runs of consecutive missing sequence numbers in [0, count):
        (number of runs, length of the longest). A gateway restart shows as
        one long run; random loss as many short ones."""
        runs = longest = cur = 0
        for s in self.seen:
            if s:
                cur = 0
                continue
            if cur == 0:
                runs += 1
            cur += 1
            longest = max(longest, cur)
        return runs, longest

    def report(self, timed_out):
        """The udp-recv report and whether it is a success."""
        lost = self.count - self.unique
        loss_runs, longest_loss_run = self.loss_runs()
        in_order = self.out_of_order == 0
        seconds = (self.t_last - self.t_first) if self.t_first is not None else 0.0
        report = {
            "count": self.count,
            "received": self.unique + len(self.extra_seen),
            "datagrams": self.datagrams,
            "lost": lost,
            "loss_runs": loss_runs,
            "longest_loss_run": longest_loss_run,
            "duplicates": self.duplicates,
            "out_of_order": self.out_of_order,
            "in_order": in_order,
            "unexpected_seq": len(self.extra_seen),
            "runts": self.runts,
            "bytes": self.nbytes,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "timed_out": timed_out,
            "seconds": round(seconds, 6),
        }
        ok = lost == 0 and in_order and not self.extra_seen and self.runts == 0
        return report, ok

    def rate_bps(self):
        """Bits received after the first datagram over the receive interval (0 if none)."""
        if self.t_first is None or self.t_last <= self.t_first:
            return 0.0
        return round((self.nbytes - self.first_len) * 8 / (self.t_last - self.t_first), 1)


def udp_recv(args):
    sock = new_socket(args.bind, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    big_buffers(sock)
    sock.bind(args.bind)
    sock.settimeout(args.timeout)
    write_ready(args.ready_file, {"bound": show_addr(sock.getsockname())})

    rx = SeqReceiver(args.count)
    buf = bytearray(65536)
    view = memoryview(buf)
    timed_out = False
    while not rx.done():
        try:
            n = sock.recv_into(buf)
        except socket.timeout:
            timed_out = True
            break
        except InterruptedError:
            continue
        rx.add(view, n)
    sock.close()
    report, ok = rx.report(timed_out)
    return emit(report, ok)


def udp_pull(args):
    sock = new_socket(args.to, socket.SOCK_DGRAM)
    big_buffers(sock)
    sock.connect(args.to)
    sock.settimeout(PULL_RETRY)

    rx = SeqReceiver(args.count)
    buf = bytearray(65536)
    view = memoryview(buf)
    timed_out = False
    starts = 0
    last_heard = time.monotonic()
    next_start = last_heard
    while not rx.done():
        now = time.monotonic()
        if rx.datagrams == 0 and now >= next_start:
            try:
                sock.send(PULL_START)
                starts += 1
            except OSError as exc:
                # An ICMP error for an earlier start (the server is not up yet): try again.
                if exc.errno not in ASYNC_SEND_ERRORS:
                    raise
            next_start = now + PULL_RETRY
        if now - last_heard >= args.timeout:
            timed_out = True
            break
        try:
            n = sock.recv_into(buf)
        except socket.timeout:
            continue
        except InterruptedError:
            continue
        except OSError as exc:
            if exc.errno in ASYNC_SEND_ERRORS:
                continue  # an ICMP error for a start datagram, reported by recv
            raise
        last_heard = time.monotonic()
        rx.add(view, n)
    sock.close()
    report, ok = rx.report(timed_out)
    report["first_ts"] = round(rx.ts_first, 6) if rx.ts_first is not None else None
    report["last_ts"] = round(rx.ts_last, 6) if rx.ts_last is not None else None
    report["rate_bps"] = rx.rate_bps()
    report["starts"] = starts
    return emit(report, ok)


def stream_packet(args):
    """The datagram template of udp-send/udp-serve, or None if --size is too small."""
    if args.size < SEQ.size:
        return None
    pattern = args.pattern if args.pattern is not None else bytes(range(256))
    return bytearray(SEQ.size) + repeat_to(pattern, args.size - SEQ.size)


def paced_send(sock, packet, count, rate):
    """Sends `count` datagrams (the template with sequence numbers 0..count-1 written in)
    on the connected `sock`, paced at `rate` per second (0 = as fast as possible).
    Returns the report and whether every datagram was sent."""
    send = sock.send
    pack_into = SEQ.pack_into

    sent = nbytes = 0
    enobufs = send_errors = 0
    last_error = None
    retried = False
    interval = 1.0 / rate if rate > 0 else 0.0
    start = time.monotonic()
    seq = 0
    while seq < count:
        if interval:
            due = start + seq * interval
            now = time.monotonic()
            if now < due:
                time.sleep(due - now)
        pack_into(packet, 0, seq)
        try:
            nbytes += send(packet)
        except OSError as exc:
            if exc.errno in (errno.ENOBUFS, errno.EAGAIN):
                # Local queue full: back off briefly and retry the same datagram.
                enobufs += 1
                time.sleep(0.0005)
                continue
            if exc.errno in ASYNC_SEND_ERRORS and not retried:
                # Most likely an ICMP error about an earlier datagram, reported by this
                # send() instead of sending: retry this datagram once.
                retried = True
                continue
            send_errors += 1
            last_error = f"send seq {seq}: {exc}"
            seq += 1
            retried = False
            continue
        sent += 1
        seq += 1
        retried = False
    seconds = time.monotonic() - start
    report = {"sent": sent, "bytes": nbytes, "seconds": round(seconds, 6),
              "pps": round(sent / seconds, 1) if seconds > 0 else 0.0, "enobufs": enobufs,
              "send_errors": send_errors}
    if last_error:
        report["error"] = last_error
    return report, send_errors == 0


def udp_send(args):
    packet = stream_packet(args)
    if packet is None:
        print(f"udp-send: --size {args.size} is smaller than the {SEQ.size}-byte sequence number",
              file=sys.stderr)
        return emit({"error": "size too small", "sent": 0, "bytes": 0, "seconds": 0.0}, False)
    sock = new_socket(args.to, socket.SOCK_DGRAM)
    big_buffers(sock)
    sock.connect(args.to)
    report, ok = paced_send(sock, packet, args.count, args.rate)
    sock.close()
    if not ok:
        print(f"udp-send: {report['send_errors']} datagram(s) not sent, last: {report['error']}",
              file=sys.stderr)
    return emit(report, ok)


def udp_serve(args):
    packet = stream_packet(args)
    if packet is None:
        print(f"udp-serve: --size {args.size} is smaller than the {SEQ.size}-byte sequence "
              "number", file=sys.stderr)
        return emit({"error": "size too small", "sent": 0, "bytes": 0, "seconds": 0.0}, False)
    sock = new_socket(args.bind, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    big_buffers(sock)
    sock.bind(args.bind)
    sock.settimeout(args.timeout)
    write_ready(args.ready_file, {"bound": show_addr(sock.getsockname())})
    try:
        _, peer = sock.recvfrom(65536)
    except socket.timeout:
        sock.close()
        error = f"no start datagram within {args.timeout} s"
        print(f"udp-serve: {error}", file=sys.stderr)
        return emit({"error": error, "sent": 0, "bytes": 0, "seconds": 0.0}, False)
    # Connected to the puller: replies leave from the bound address to its source, the
    # flow its first datagram mapped; its repeated start datagrams are simply not read.
    sock.connect(peer)
    report, ok = paced_send(sock, packet, args.count, args.rate)
    sock.close()
    report["peer"] = show_addr(peer)
    if not ok:
        print(f"udp-serve: {report['send_errors']} datagram(s) not sent, last: "
              f"{report['error']}", file=sys.stderr)
    return emit(report, ok)


# --- TCP ----------------------------------------------------------------------------------------


def tcp_read_all(conn, peer, timeout):
    """Reads one accepted connection to EOF; returns its report and error (or None)."""
    big_buffers(conn)
    conn.settimeout(timeout)
    digest = hashlib.sha256()
    buf = bytearray(IO_CHUNK)
    view = memoryview(buf)
    nbytes = 0
    error = None
    start = time.monotonic()
    while True:
        try:
            n = conn.recv_into(buf)
        except socket.timeout:
            error = f"no data for {timeout} s after {nbytes} bytes"
            break
        except InterruptedError:
            continue
        except OSError as exc:
            error = f"recv after {nbytes} bytes: {exc}"
            break
        if n == 0:
            break
        digest.update(view[:n])
        nbytes += n
    seconds = time.monotonic() - start
    conn.close()
    report = {"bytes": nbytes, "sha256": digest.hexdigest(), "seconds": round(seconds, 6),
              "mbps": mbps(nbytes, seconds), "peer": show_addr(peer)}
    if error:
        report["error"] = error
    return report, error


def tcp_recv(args):
    """Accepts --connections connections (concurrently served) and reads each to EOF.
    With one connection the report is that connection's; with more it lists them."""
    lsock = new_socket(args.bind, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(args.bind)
    lsock.listen(max(1, args.connections))
    lsock.settimeout(args.timeout)
    write_ready(args.ready_file, {"bound": show_addr(lsock.getsockname())})
    results = [None] * args.connections
    threads = []

    def serve(i, conn, peer):
        results[i] = tcp_read_all(conn, peer, args.timeout)

    for i in range(args.connections):
        try:
            conn, peer = lsock.accept()
        except socket.timeout:
            results[i] = ({"error": f"no connection within {args.timeout} s", "bytes": 0,
                           "sha256": hashlib.sha256().hexdigest(), "seconds": 0.0,
                           "mbps": 0.0}, "no connection")
            break
        t = threading.Thread(target=serve, args=(i, conn, peer), daemon=True)
        t.start()
        threads.append(t)
    lsock.close()
    for t in threads:
        t.join()
    reports = [r for r, _ in (x for x in results if x is not None)]
    errors = [e for _, e in (x for x in results if x is not None) if e]
    ok = not errors and len(reports) == args.connections
    for e in errors:
        print(f"tcp-recv: {e}", file=sys.stderr)
    if args.connections == 1:
        return emit(reports[0], ok)
    return emit({"connections": reports, "bytes": sum(r["bytes"] for r in reports)}, ok)


def tcp_connect(addr, connect_timeout, io_timeout):
    """Connect to addr, retrying refused/unreachable attempts until connect_timeout elapses."""
    deadline = time.monotonic() + connect_timeout
    while True:
        sock = new_socket(addr, socket.SOCK_STREAM)
        big_buffers(sock)
        sock.settimeout(max(0.1, min(io_timeout, deadline - time.monotonic())))
        try:
            sock.connect(addr)
            sock.settimeout(io_timeout)
            return sock
        except OSError as exc:
            sock.close()
            if time.monotonic() >= deadline:
                raise OSError(f"connect {addr[0]}:{addr[1]}: {exc}") from exc
            time.sleep(0.1)


def tcp_block(args):
    """The block tcp-send / tcp-serve repeat: HEX repeated, or seeded pseudo-random bytes."""
    if getattr(args, "pattern", None) is not None:
        return repeat_to(args.pattern, max(TCP_BLOCK_LEN - TCP_BLOCK_LEN % len(args.pattern),
                                           len(args.pattern)))
    return random.Random(args.seed).randbytes(TCP_BLOCK_LEN)


def tcp_write_all(sock, block, total, who):
    """Writes `total` bytes of `block` repeated, half-closes, waits for the peer to close
    (then every byte has been read), closes; returns (report, error)."""
    block_view = memoryview(block)
    digest = hashlib.sha256()
    remaining = total
    nbytes = 0
    error = None
    start = time.monotonic()
    try:
        while remaining > 0:
            chunk = block_view[:min(remaining, len(block))]
            sock.sendall(chunk)
            digest.update(chunk)
            nbytes += len(chunk)
            remaining -= len(chunk)
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(4096):
            pass
    except OSError as exc:
        error = f"after {nbytes} bytes: {exc}"
    seconds = time.monotonic() - start
    sock.close()
    report = {"bytes": nbytes, "sha256": digest.hexdigest(), "seconds": round(seconds, 6),
              "mbps": mbps(nbytes, seconds)}
    if error:
        report["error"] = error
        print(f"{who}: {error}", file=sys.stderr)
    return report, error


def tcp_send(args):
    block = tcp_block(args)
    try:
        sock = tcp_connect(args.to, args.connect_timeout, args.timeout)
    except OSError as exc:
        print(f"tcp-send: {exc}", file=sys.stderr)
        return emit({"error": str(exc), "bytes": 0, "sha256": hashlib.sha256().hexdigest(),
                     "seconds": 0.0, "mbps": 0.0}, False)
    report, error = tcp_write_all(sock, block, args.bytes, "tcp-send")
    return emit(report, error is None)


def tcp_serve(args):
    """Pull mode, the producer side: accepts one connection and sends it N bytes (the
    consumer connects through the gateways and receives the stream)."""
    block = tcp_block(args)
    lsock = new_socket(args.bind, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(args.bind)
    lsock.listen(1)
    lsock.settimeout(args.timeout)
    write_ready(args.ready_file, {"bound": show_addr(lsock.getsockname())})
    try:
        conn, peer = lsock.accept()
    except socket.timeout:
        lsock.close()
        print(f"tcp-serve: no connection within {args.timeout} s", file=sys.stderr)
        return emit({"error": "no connection", "bytes": 0,
                     "sha256": hashlib.sha256().hexdigest()}, False)
    lsock.close()
    big_buffers(conn)
    conn.settimeout(args.timeout)
    report, error = tcp_write_all(conn, block, args.bytes, "tcp-serve")
    report["peer"] = show_addr(peer)
    return emit(report, error is None)


def tcp_pull(args):
    """Pull mode, the consumer side: connects and reads the stream to EOF."""
    try:
        sock = tcp_connect(args.to, args.connect_timeout, args.timeout)
    except OSError as exc:
        print(f"tcp-pull: {exc}", file=sys.stderr)
        return emit({"error": str(exc), "bytes": 0, "sha256": hashlib.sha256().hexdigest(),
                     "seconds": 0.0, "mbps": 0.0}, False)
    report, error = tcp_read_all(sock, args.to, args.timeout)
    if error:
        print(f"tcp-pull: {error}", file=sys.stderr)
    return emit(report, error is None)


# --- CLI ----------------------------------------------------------------------------------------


def build_parser():
    parser = argparse.ArgumentParser(prog="traffic.py", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("udp-recv", help="receive a sequence-numbered UDP stream")
    p.add_argument("--bind", type=parse_addr, required=True, metavar="IP:PORT")
    p.add_argument("--count", type=non_negative, required=True, metavar="N")
    p.add_argument("--timeout", type=positive_float, default=5.0, metavar="SECS",
                   help="stop after SECS without traffic (default 5)")
    p.add_argument("--ready-file", metavar="PATH", help="created once the socket is bound")
    p.set_defaults(func=udp_recv)

    p = sub.add_parser("udp-send", help="send a sequence-numbered UDP stream")
    p.add_argument("--to", type=parse_addr, required=True, metavar="IP:PORT")
    p.add_argument("--count", type=non_negative, required=True, metavar="N")
    p.add_argument("--size", type=non_negative, required=True, metavar="BYTES")
    p.add_argument("--rate", type=non_negative, default=0, metavar="PPS",
                   help="datagrams per second, 0 = as fast as possible (default)")
    p.add_argument("--pattern", type=parse_hex, metavar="HEX", help="filler pattern")
    p.set_defaults(func=udp_send)

    p = sub.add_parser("udp-serve", help="pull mode: wait for a start datagram, then send "
                                         "a sequence-numbered UDP stream back to its source")
    p.add_argument("--bind", type=parse_addr, required=True, metavar="IP:PORT")
    p.add_argument("--count", type=non_negative, required=True, metavar="N")
    p.add_argument("--size", type=non_negative, required=True, metavar="BYTES")
    p.add_argument("--rate", type=non_negative, default=0, metavar="PPS",
                   help="datagrams per second, 0 = as fast as possible (default)")
    p.add_argument("--pattern", type=parse_hex, metavar="HEX", help="filler pattern")
    p.add_argument("--timeout", type=positive_float, default=30.0, metavar="SECS",
                   help="wait this long for the start datagram (default 30)")
    p.add_argument("--ready-file", metavar="PATH", help="created once the socket is bound")
    p.set_defaults(func=udp_serve)

    p = sub.add_parser("udp-pull", help="pull mode: ask udp-serve for its stream and "
                                        "receive it")
    p.add_argument("--to", type=parse_addr, required=True, metavar="IP:PORT")
    p.add_argument("--count", type=non_negative, required=True, metavar="N")
    p.add_argument("--timeout", type=positive_float, default=5.0, metavar="SECS",
                   help="stop after SECS without traffic (default 5)")
    p.set_defaults(func=udp_pull)

    p = sub.add_parser("tcp-recv", help="accept TCP connections and read each to EOF")
    p.add_argument("--bind", type=parse_addr, required=True, metavar="IP:PORT")
    p.add_argument("--connections", type=int, default=1, metavar="N",
                   help="connections to accept and serve concurrently (default 1)")
    p.add_argument("--ready-file", metavar="PATH", help="created once the socket listens")
    p.add_argument("--timeout", type=positive_float, default=30.0, metavar="SECS",
                   help="accept / idle read timeout (default 30)")
    p.set_defaults(func=tcp_recv)

    p = sub.add_parser("tcp-send", help="send N deterministic bytes over one TCP connection")
    p.add_argument("--to", type=parse_addr, required=True, metavar="IP:PORT")
    p.add_argument("--bytes", type=non_negative, required=True, metavar="N")
    data = p.add_mutually_exclusive_group()
    data.add_argument("--seed", type=int, default=0, metavar="S",
                      help="seed of the pseudo-random data (default 0)")
    data.add_argument("--pattern", type=parse_hex, metavar="HEX", help="send HEX repeated")
    p.add_argument("--connect-timeout", type=positive_float, default=5.0, metavar="SECS",
                   help="keep retrying the connection this long (default 5)")
    p.add_argument("--timeout", type=positive_float, default=30.0, metavar="SECS",
                   help="per-operation socket timeout (default 30)")
    p.set_defaults(func=tcp_send)

    p = sub.add_parser("tcp-serve", help="pull mode: accept one connection and send it N "
                       "deterministic bytes")
    p.add_argument("--bind", type=parse_addr, required=True, metavar="IP:PORT")
    p.add_argument("--bytes", type=non_negative, required=True, metavar="N")
    p.add_argument("--seed", type=int, default=0, metavar="S",
                   help="seed of the pseudo-random data (default 0)")
    p.add_argument("--ready-file", metavar="PATH", help="created once the socket listens")
    p.add_argument("--timeout", type=positive_float, default=30.0, metavar="SECS",
                   help="accept / per-operation timeout (default 30)")
    p.set_defaults(func=tcp_serve)

    p = sub.add_parser("tcp-pull", help="pull mode: connect and read the stream to EOF")
    p.add_argument("--to", type=parse_addr, required=True, metavar="IP:PORT")
    p.add_argument("--connect-timeout", type=positive_float, default=5.0, metavar="SECS",
                   help="keep retrying the connection this long (default 5)")
    p.add_argument("--timeout", type=positive_float, default=30.0, metavar="SECS",
                   help="idle read timeout (default 30)")
    p.set_defaults(func=tcp_pull)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except OSError as exc:
        print(f"{args.cmd}: {exc}", file=sys.stderr)
        return emit({"error": str(exc)}, False)
    except KeyboardInterrupt:
        return emit({"error": "interrupted"}, False)


if __name__ == "__main__":
    sys.exit(main())
