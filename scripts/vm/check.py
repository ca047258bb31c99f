#!/usr/bin/python3
"""Judge one VM-testbed test from the counters the suite collected (host side).

Usage: check.py tcp     DIR     bytes and SHA-256 equal at both ends, rekey seen
       check.py udp-loss DIR    consumer's loss == what netem dropped
       check.py udp-dup  DIR    gwB's replay drops == what netem duplicated
DIR holds flow.json (scripts/vm/flow.sh), wan0.json / wan1.json (netem.sh stats
before / after), gwb0.json / gwb1.json (s2ds stats snapshots before / after),
epoch0 / epoch1 (session key epoch before / after) and params.json. Prints one
result line as JSON to stdout and a sentence to stderr; exits 1 on failure.
"""
import json
import pathlib
import sys


def load(d, name):
    return json.loads((d / name).read_text())


def delta(d, name, key):
    return load(d, name.replace("@", "1"))[key] - load(d, name.replace("@", "0"))[key]


def replay_drops(d):
    return load(d, "gwb1.json")["drops"]["esp_replay"] - load(d, "gwb0.json")["drops"]["esp_replay"]


def port_delta(d, gw, port, key):
    """A port counter's change over the test in gateway gw's snapshots."""
    def at(i):
        snap = load(d, f"{gw}{i}.json")
        return next(p["counts"][key] for p in snap["ports"] if p["id"] == port)
    return at(1) - at(0)


def rekeyed(d):
    return int((d / "epoch1").read_text()) > int((d / "epoch0").read_text())


def check_tcp(d):
    f, p = load(d, "flow.json"), load(d, "params.json")
    ok = (f["pull"].get("bytes") == p["bytes"] == f["serve"].get("bytes")
          and f["pull"].get("sha256") == f["serve"].get("sha256") and rekeyed(d))
    res = {"test": "tcp", "ok": ok, "bytes": f["pull"].get("bytes"), "mbps": f["pull"].get("mbps"),
           "seconds": f["pull"].get("seconds"), "sha256_match": f["pull"].get("sha256") == f["serve"].get("sha256"),
           "rekeyed": rekeyed(d), **p}
    return res, (f"TCP {res['bytes']} B in {res['seconds']} s ({res['mbps']} Mb/s) over {p['netem']}: "
                 f"sha256 {'match' if res['sha256_match'] else 'MISMATCH'}, rekey {'yes' if res['rekeyed'] else 'NO'}")


def check_udp(d, kind):
    f, p = load(d, "flow.json"), load(d, "params.json")
    pull = f["pull"]
    dropped = delta(d, "wan@.json", "netem_dropped")
    sent = delta(d, "wan@.json", "netem_sent")
    esp_in = delta(d, "wan@.json", "esp_in")
    dups = sent - (esp_in - dropped)        # netem's output = input - drops + duplicates
    replays = replay_drops(d)
    base = {"test": f"udp-{kind}", "count": p["count"], "received": pull.get("received"),
            "lost": pull.get("lost"), "consumer_duplicates": pull.get("duplicates"),
            "out_of_order": pull.get("out_of_order"), "netem_in": esp_in, "netem_dropped": dropped,
            "netem_duplicated": dups, "gwb_replay_drops": replays, "rekeyed": rekeyed(d),
            # Where datagrams went before the WAN, to tell a loss upstream of netem.
            "gwa_lan_rx": port_delta(d, "gwa", "lan", "rx_packets"),
            "gwa_wan_tx": port_delta(d, "gwa", "wan", "tx_packets"), **p}
    if kind == "loss":
        ok = (pull.get("lost") == dropped and dropped > 0 and replays == 0 and dups == 0
              and pull.get("duplicates") == 0 and esp_in == p["count"] and rekeyed(d))
        msg = (f"UDP loss: {p['count']} sent, consumer lost {pull.get('lost')}, netem dropped {dropped}, "
               f"{pull.get('out_of_order')} out of order, replay drops {replays}")
    else:
        ok = (replays == dups and dups > 0 and pull.get("lost") == 0 and dropped == 0
              and pull.get("duplicates") == 0 and esp_in == p["count"] and rekeyed(d))
        msg = (f"UDP duplication: {p['count']} sent, netem duplicated {dups}, gwB replay drops {replays}, "
               f"consumer lost {pull.get('lost')} and saw {pull.get('duplicates')} duplicates")
    base["ok"] = ok
    if esp_in != p["count"]:
        msg += (f"; only {esp_in} of {p['count']} reached netem (gwA received {base['gwa_lan_rx']} on LAN, "
                f"sent {base['gwa_wan_tx']} on WAN)")
    return base, msg + f", rekey {'yes' if rekeyed(d) else 'NO'}"


def main():
    kind, d = sys.argv[1], pathlib.Path(sys.argv[2])
    if kind == "tcp":
        res, msg = check_tcp(d)
    elif kind in ("udp-loss", "udp-dup"):
        res, msg = check_udp(d, kind.split("-")[1])
    else:
        sys.exit(f"check.py: unknown test {kind}")
    print(json.dumps(res))
    print(("PASS  " if res["ok"] else "FAIL  ") + msg, file=sys.stderr)
    return 0 if res["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
