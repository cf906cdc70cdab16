"""Where the packets of a UDP run through the impairment element went: counters read
before and after it at each hop (the element's two interfaces, the switch's packet socket
on the port after the element, the receiver's UDP socket) and the relay's CPU time, so a
missed packets/s target says which hop lost the packets and what a packet cost the relay.

    h1 -> imp0-a [relay] imp0-b -> s1's port (ovs-vswitchd's packet socket) -> s1 -> h2
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Any

CLOCK_TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Counters:
    """One reading of every hop's counters (packets, cumulative)."""

    arrived: int  # frames the element's first interface received
    left: int  # frames the element's second interface sent
    switch_dropped: int  # frames ovs-vswitchd's full packet socket on the next port dropped
    receiver_dropped: int  # datagrams the receiving host's full UDP sockets dropped
    relay_cpu: float  # seconds of CPU the relay used

    def since(self, before: Counters) -> dict[str, float]:
        return {k: round(v - getattr(before, k), 3) for k, v in vars(self).items()}


def read(lab: Any, receiver: str) -> Counters:
    """The counters now, for the lab's (first) impairment element and `receiver`."""
    element = lab.elements[0]
    node = lab.node(element.name)
    out = node.intf(f"{element.name}-b")
    port = out.link.intf1 if out.link.intf2 is out else out.link.intf2
    stats = {
        link["ifname"]: link["stats64"]
        for link in json.loads(lab.run(element.name, ["ip", "-s", "-j", "link", "show"], merge=False))
    }
    relay = next(p for p in lab.supervisor.procs if p.name == f"impair-{element.name}")
    return Counters(
        arrived=stats[f"{element.name}-a"]["rx"]["packets"],
        left=stats[f"{element.name}-b"]["tx"]["packets"],
        switch_dropped=socket_drops(lab.run(None, ["ss", "-0", "-m", "-n"], merge=False), port.name),
        receiver_dropped=udp_rcvbuf_errors(lab.run(receiver, ["cat", "/proc/net/snmp"], merge=False)),
        relay_cpu=cpu_seconds(relay.popen.pid),
    )


def socket_drops(ss_output: str, intf: str) -> int:
    """The drops (skmem's d) of the packet sockets bound to `intf` in `ss -0 -m` output."""
    total = 0
    for line in ss_output.splitlines():
        if f":{intf} " in line:
            found = re.search(r"skmem:\(.*?,d(\d+)\)", line)
            total += int(found.group(1)) if found else 0
    return total


def udp_rcvbuf_errors(snmp: str) -> int:
    """Udp RcvbufErrors from /proc/net/snmp (a header line, then the values)."""
    rows = [line.split()[1:] for line in snmp.splitlines() if line.startswith("Udp:")]
    return int(dict(zip(rows[0], rows[1], strict=True))["RcvbufErrors"])


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (/proc/PID/stat, fields 14 and 15)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK
