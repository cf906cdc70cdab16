"""The userspace datapath's conntrack, as the controller apps read it: `ovs-appctl`
(conntrack is the datapath's, not OpenFlow's) and its connection dumps parsed.

Every lab's switches share one userspace datapath (`netdev@ovs-netdev`), so an app keeps
its connections in conntrack zones of its own (unique among the labs running at once) and
reads and empties only those."""

from __future__ import annotations

import re
import subprocess
from typing import Any

from controllers.ofp import log

DATAPATH = "netdev@ovs-netdev"  # the lab's switches: the userspace datapath

# One connection of `ovs-appctl dpctl/dump-conntrack [-s]`, e.g.
# tcp,orig=(src=10.0.0.11,dst=10.0.1.11,sport=40000,dport=8080),reply=(src=...,sport=...),
# zone=7,timeout=86399,mark=1,protoinfo=(state=ESTABLISHED)
# (the fields after the tuples are optional, and `-s` puts the timeout before the mark).
CONNECTION = re.compile(
    r"^(?P<proto>\w+),orig=\(src=(?P<src>[^,]+),dst=(?P<dst>[^,]+)(?:,sport=(?P<sport>\d+),dport=(?P<dport>\d+))?"
    r"[^)]*\),reply=\(src=(?P<reply_src>[^,]+)"
)
FIELDS = {name: re.compile(rf"[,(]{name}=(\w+)") for name in ("zone", "mark", "timeout", "state")}
BOTH_STATES = re.compile(r"state_orig=(\w+),state_reply=(\w+)")  # while the directions differ
NUMBERS = ("sport", "dport", "zone", "mark", "timeout")


def parse_conntrack(text: str, skip: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """The connections of a conntrack dump: proto, src, sport, dst, dport, reply_src (the
    address the reply comes from: after a destination NAT, the real server), zone, mark,
    and with `-s` the seconds left (timeout) and the TCP state (both directions', or
    "ORIGINAL/REPLY" while they differ: "ESTABLISHED/FIN_WAIT_1" is closing).
    Lines naming a state in `skip` (e.g. `state=TIME_WAIT`) are passed over unparsed: a
    zone of a busy balancer holds thousands of closed connections, and a read that parses
    them all holds up the app that reads it."""
    passed = tuple(f"state={state}" for state in skip)
    out = []
    for line in text.splitlines():
        if passed and any(p in line for p in passed):
            continue
        found = CONNECTION.match(line.strip())
        if found is None:
            continue
        entry: dict[str, Any] = found.groupdict()
        for name, pattern in FIELDS.items():
            value = pattern.search(line, found.end())
            entry[name] = value.group(1) if value else None
        if entry["state"] is None:  # the two directions in different states
            both = BOTH_STATES.search(line, found.end())
            entry["state"] = f"{both.group(1)}/{both.group(2)}" if both else None
        for key in NUMBERS:
            entry[key] = int(entry[key]) if entry[key] is not None else None
        out.append(entry)
    return out


def appctl(*args: str) -> str:
    """An ovs-appctl command's output ('' and an event line when it fails)."""
    return appctl_or_none(*args) or ""


def appctl_or_none(*args: str) -> str | None:
    """An ovs-appctl command's output, or None (and an event line) when it fails: an empty
    zone's dump and a failed one must not look the same to a reader that ends sessions."""
    try:
        done = subprocess.run(
            ["ovs-appctl", "--timeout=5", *args], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        log("appctl_failed", args=list(args), error=str(exc))
        return None
    if done.returncode != 0:
        log("appctl_failed", args=list(args), error=done.stderr.strip()[-200:])
        return None
    return done.stdout


def dump(zone: int, stats: bool = False, skip: tuple[str, ...] = ()) -> list[dict[str, Any]] | None:
    """The connections of one zone (with `stats`: their seconds left and TCP states; the
    TCP states in `skip` left out), or None when the dump failed."""
    text = appctl_or_none("dpctl/dump-conntrack", *(("-s",) if stats else ()), DATAPATH, f"zone={zone}")
    return None if text is None else parse_conntrack(text, skip)


def flush(zone: int, entry: dict[str, Any] | None = None) -> None:
    """Empty a zone, or remove one connection of it (by its original direction)."""
    if entry is None:
        appctl("dpctl/flush-conntrack", f"zone={zone}")  # (3.1 takes no datapath name here)
        return
    tuple_ = (
        f"ct_nw_src={entry['src']},ct_nw_dst={entry['dst']},ct_nw_proto=6,"
        f"ct_tp_src={entry['sport']},ct_tp_dst={entry['dport']}"
    )
    appctl("dpctl/flush-conntrack", f"zone={zone}", tuple_)
