"""Open vSwitch's own view, as data: a switch's flow table (`ovs-ofctl dump-flows`).

The switch is the evidence for what a controller installed or what a `learn` action
pinned: its counters say how many packets took each flow (how many went to the
controller), independent of the controller's own report.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lab.procs import host_run

if TYPE_CHECKING:
    from lab.net import Lab

_KEYS = ("cookie", "duration", "table", "n_packets", "n_bytes", "idle_timeout", "priority")


@dataclass(frozen=True)
class OvsFlow:
    """One flow entry: its cookie, table, priority, packet count, match fields and actions."""

    cookie: int
    table: int
    priority: int
    n_packets: int
    match: dict[str, str] = field(default_factory=dict)
    actions: str = ""
    idle_timeout: int = 0


def parse_flows(text: str) -> list[OvsFlow]:
    """Every flow of `ovs-ofctl dump-flows` output (the reply header is skipped)."""
    flows = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("cookie=") or " actions=" not in line:
            continue
        head, actions = line.split(" actions=", 1)
        values: dict[str, str] = {}
        match: dict[str, str] = {}
        for item in re.split(r",\s*|\s+", head):
            if not item:
                continue
            key, _, value = item.partition("=")
            if key in _KEYS:
                values[key] = value
            else:
                match[key] = value  # a protocol shorthand (tcp, arp) has no value
        flows.append(
            OvsFlow(
                cookie=int(values.get("cookie", "0"), 16),
                table=int(values.get("table", "0")),
                priority=int(values.get("priority", "32768")),
                n_packets=int(values.get("n_packets", "0")),
                match=match,
                actions=actions,
                idle_timeout=int(values.get("idle_timeout", "0")),
            )
        )
    return flows


def dump_flows(lab: Lab, switch: str) -> tuple[str, list[OvsFlow]]:
    """A switch's flow table (logical name): the raw text, to keep, and its flows.

    OVS adds the packets of its datapath's cached flows to their rules' counters later, in
    its revalidators' rounds, so a counter may lag the packets sent (measured: the flow
    that sends new sessions to the controller counted 245 packets for 300 sessions)."""
    text = lab.run(None, ["ovs-ofctl", "-O", "OpenFlow13", "dump-flows", lab.names.get(switch, switch)])
    return text, parse_flows(text)


def remove_bridges(bridges: Iterable[str], timeout: float = 10) -> None:
    """Delete OVS bridges (absent ones are skipped): while any other bridge exists, a port
    per ovsdb transaction, then each bridge; else all in one transaction.

    Every bridge of the machine's userspace datapath shares its main thread, which both
    forwards the veth ports of every bridge and applies each ovsdb change; removing a port
    holds that thread about 17 ms. One `del-br` of a lab's 6 bridges (16 ports) stalled
    another lab's forwarding 317-355 ms at once, the same ports one transaction each 14-30
    ms (`python -m bench stall`). ovs-vsctl waits until ovs-vswitchd has applied each change,
    so the stalls come one at a time with forwarding between them. With no other bridge
    nothing is stalled, and one transaction is quicker."""
    vsctl = ["ovs-vsctl", f"--timeout={timeout:g}"]
    bridges = list(bridges)
    others = set(host_run([*vsctl, "list-br"], check=False).split()) - set(bridges)
    if not others:
        command = [part for b in bridges for part in ("--", "--if-exists", "del-br", b)]
        if command:
            host_run([*vsctl, *command], check=False)
        return
    for bridge in bridges:
        ports = host_run([*vsctl, "list-ports", bridge], check=False).split()
        for port in ports:
            host_run([*vsctl, "--if-exists", "del-port", bridge, port], check=False)
        host_run([*vsctl, "--if-exists", "del-br", bridge], check=False)
