#!/usr/bin/env python3
"""wan_impair.py - a seeded WAN impairment stage for the namespace testbed.

This host's kernel has no netem, so the tests impair the WAN themselves: this program joins
two interfaces of one namespace like a wire (AF_PACKET, every frame copied from one side to
the other unchanged) and impairs the frames it is told to, at set rates, from a seeded
generator so that a run is repeatable. Python 3 standard library only.

  wan_impair.py --a IF --b IF [--seed N] [--loss P] [--dup P] [--reorder P --depth K]
                [--late-every N --late-depth K] [--delay-ms D --jitter-ms J]
                [--direction a2b|b2a|both] [--udp-port PORT] [--stats PATH]

Impaired are the IPv4 and IPv6 UDP frames to --udp-port (default 4500: ESP in UDP) going in
--direction (default a2b); everything else (ARP, neighbour discovery, the other direction)
is copied at once. For each impaired frame, in this order:

  loss P      dropped with probability P;
  dup P       sent twice, back to back, with probability P;
  reorder P   held back with probability P and sent right after the Kth impaired frame
              behind it (--depth, default 3): it arrives K places late;
  late-every  every Nth frame is held back --late-depth frames (a reorder far beyond a
              receiver's window);
              a held frame goes after --hold-ms (default 200) in any case, so the end
              of a stream is not kept back;
  delay       every impaired frame leaves D ms (+- J ms, uniform) after it arrived; frames
              keep their order unless jitter reorders them.

The counts (seen, dropped, duplicated, reordered, late, forwarded per direction) go to
--stats as JSON, rewritten every 200 ms and at exit (SIGTERM, SIGINT). Exit 0 on a signal,
1 on an error.
"""

import argparse
import heapq
import json
import os
import random
import select
import signal
import socket
import struct
import sys
import time

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
PACKET_IGNORE_OUTGOING = 23
SOL_PACKET = 263


def udp_dst_port(frame):
    """The UDP destination port of an IPv4 or IPv6 frame (no VLAN), else None."""
    if len(frame) < 14:
        return None
    ethertype = struct.unpack_from("!H", frame, 12)[0]
    if ethertype == 0x0800 and len(frame) >= 34:
        ihl = (frame[14] & 0x0F) * 4
        frag = struct.unpack_from("!H", frame, 20)[0] & 0x1FFF
        if frame[23] != 17 or frag != 0 or len(frame) < 14 + ihl + 4:
            return None
        return struct.unpack_from("!H", frame, 14 + ihl + 2)[0]
    if ethertype == 0x86DD and len(frame) >= 58:
        if frame[20] != 17:
            return None
        return struct.unpack_from("!H", frame, 56)[0]
    return None


class Direction:
    """One direction of the wire, with its impairments and counters."""

    def __init__(self, name, out_sock, args, rng, impaired):
        self.name = name
        self.out = out_sock
        self.args = args
        self.rng = rng
        self.impaired = impaired
        self.held = []  # [frames still to pass, frame, release deadline]
        # Delays draw from their own generator: timing never shifts which
        # frames are lost, duplicated or reordered.
        self.rng_delay = random.Random(rng.random())
        self.counter = 0
        self.stats = {
            "frames": 0,
            "seen": 0,
            "dropped": 0,
            "duplicated": 0,
            "reordered": 0,
            "late": 0,
            "forwarded": 0,
            "send_errors": 0,
        }

    def send(self, frame):
        try:
            self.out.send(frame)
            self.stats["forwarded"] += 1
        except OSError:
            self.stats["send_errors"] += 1

    def tick_held(self):
        """One impaired frame passes every held one: the frames now due."""
        due, still = [], []
        for entry in self.held:
            entry[0] -= 1
            (due if entry[0] <= 0 else still).append(entry)
        self.held = still
        return [e[1] for e in due]

    def release_stale(self, now, timers):
        """Held frames whose traffic stopped go after --hold-ms anyway."""
        if self.held and any(e[2] <= now for e in self.held):
            for e in [e for e in self.held if e[2] <= now]:
                self.emit(e[1], now, timers)
            self.held = [e for e in self.held if e[2] > now]

    def emit(self, frame, now, timers):
        a = self.args
        if a.delay_ms > 0 or a.jitter_ms > 0:
            jitter = self.rng_delay.uniform(-a.jitter_ms, a.jitter_ms) if a.jitter_ms > 0 else 0.0
            due = now + max(0.0, a.delay_ms + jitter) / 1000.0
            heapq.heappush(timers, (due, next(TICKET), self, frame))
        else:
            self.send(frame)

    def frame_in(self, frame, now, timers):
        self.stats["frames"] += 1
        port = udp_dst_port(frame)
        if not self.impaired or port != self.args.udp_port:
            self.send(frame)
            return
        a, rng = self.args, self.rng
        self.stats["seen"] += 1
        self.counter += 1
        # Every random draw happens for every frame, in one order: the
        # decisions for frame n depend only on the seed and n.
        lose, dup, reorder = rng.random(), rng.random(), rng.random()
        due = self.tick_held()
        hold_until = now + a.hold_ms / 1000.0
        if lose < a.loss:
            self.stats["dropped"] += 1
        elif a.late_every and self.counter % a.late_every == 0:
            self.stats["late"] += 1
            self.held.append([a.late_depth, frame, hold_until])
        elif reorder < a.reorder:
            self.stats["reordered"] += 1
            self.held.append([a.depth, frame, hold_until])
        else:
            self.emit(frame, now, timers)
            if dup < a.dup:
                self.stats["duplicated"] += 1
                self.emit(frame, now, timers)
        # A frame held K places goes right after the Kth frame behind it.
        for f in due:
            self.emit(f, now, timers)


def counter():
    n = 0
    while True:
        n += 1
        yield n


TICKET = counter()


def open_side(ifname):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    try:
        s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
    except OSError:
        pass  # older kernels: outgoing frames are filtered by packet type below
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16 << 20)
    s.bind((ifname, 0))
    s.setblocking(False)
    return s


def write_stats(path, dirs, started):
    if not path:
        return
    out = {d.name: d.stats for d in dirs}
    out["seconds"] = round(time.monotonic() - started, 3)
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(out, f)
    os.replace(tmp, path)


def probability(text):
    v = float(text)
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a probability in [0, 1]")
    return v


def non_negative(text):
    v = float(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return v


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--a", required=True, help="first interface")
    p.add_argument("--b", required=True, help="second interface")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--loss", type=probability, default=0.0)
    p.add_argument("--dup", type=probability, default=0.0)
    p.add_argument("--reorder", type=probability, default=0.0)
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--late-every", type=int, default=0)
    p.add_argument("--late-depth", type=int, default=0)
    p.add_argument("--hold-ms", type=non_negative, default=200.0,
                   help="a held frame goes after this long even if too few frames follow it")
    p.add_argument("--delay-ms", type=non_negative, default=0.0)
    p.add_argument("--jitter-ms", type=non_negative, default=0.0)
    p.add_argument("--direction", choices=["a2b", "b2a", "both"], default="a2b")
    p.add_argument("--udp-port", type=int, default=4500)
    p.add_argument("--stats", default="")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.reorder > 0 and args.depth < 1:
        print("wan_impair: --depth must be at least 1", file=sys.stderr)
        return 1
    if args.late_every and args.late_depth < 1:
        print("wan_impair: --late-every needs --late-depth >= 1", file=sys.stderr)
        return 1
    sa, sb = open_side(args.a), open_side(args.b)
    # One generator per direction, each seeded from the seed: the two
    # directions never perturb each other's decisions.
    a2b = Direction("a2b", sb, args, random.Random(args.seed * 2 + 1), args.direction in ("a2b", "both"))
    b2a = Direction("b2a", sa, args, random.Random(args.seed * 2 + 2), args.direction in ("b2a", "both"))
    by_sock = {sa.fileno(): (sa, a2b), sb.fileno(): (sb, b2a)}
    timers = []
    started = time.monotonic()
    stopping = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.append(True))
    poller = select.poll()
    for fd in by_sock:
        poller.register(fd, select.POLLIN)
    next_stats = 0.0
    print(f"wan_impair: {args.a} <-> {args.b}, seed {args.seed}, impairing {args.direction}", file=sys.stderr, flush=True)
    while not stopping:
        now = time.monotonic()
        while timers and timers[0][0] <= now:
            _, _, d, frame = heapq.heappop(timers)
            d.send(frame)
        for d in (a2b, b2a):
            d.release_stale(now, timers)
        if now >= next_stats:
            write_stats(args.stats, (a2b, b2a), started)
            next_stats = now + 0.2
        wait_ms = 50 if not (a2b.held or b2a.held) else 10
        if timers:
            wait_ms = max(0, min(wait_ms, int((timers[0][0] - now) * 1000)))
        try:
            events = poller.poll(wait_ms)
        except InterruptedError:
            continue
        for fd, _ in events:
            sock, d = by_sock[fd]
            for _ in range(256):
                try:
                    frame, addr = sock.recvfrom(65535)
                except BlockingIOError:
                    break
                except InterruptedError:
                    continue
                if addr[2] == PACKET_OUTGOING:
                    continue
                d.frame_in(frame, time.monotonic(), timers)
    # Flush what is still delayed or held, then the final counts.
    for d in (a2b, b2a):
        for entry in d.held:
            d.send(entry[1])
        d.held = []
    for _, _, d, frame in sorted(timers, key=lambda t: t[0]):
        d.send(frame)
    write_stats(args.stats, (a2b, b2a), started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
