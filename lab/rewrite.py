"""A topology as the lab builds it: what a Mininet Topo asks that this lab cannot honour
(every problem, naming its node or link), and the copy the lab builds instead, with the
run's tag on every switch and each impaired link either kept whole for netem or split by an
impairment element (`lab.links`). Pure: nothing here builds a network, except the one-off
probe whether this kernel has netem at all."""

from __future__ import annotations

import re
import secrets
import subprocess
from typing import Any

from lab.errors import ConfigError
from lab.links import (
    Element,
    ImpairedLink,
    NetemLink,
    asks_impairment,
    directions,
    element_name,
    without_impairments,
)
from lab.procs import host_run
from lab.records import Record

IFNAME_MAX = 15
TAG_LENGTH = 6  # "sl" and four hex digits, before every switch name

_netem: bool | None = None


def kernel_has_netem(record: Record | None = None) -> bool:
    """Whether netem qdiscs work here, tried once in a throwaway namespace of our own
    (written in the lab's `record` before it exists)."""
    global _netem
    if _netem is None:
        ns = f"slnetem{secrets.token_hex(3)}"
        if record is not None:
            record.add_netns(ns)
        host_run(["ip", "netns", "add", ns])
        try:
            host_run(["ip", "-n", ns, "link", "add", "d0", "type", "veth", "peer", "name", "d1"])
            host_run(["ip", "-n", ns, "link", "set", "d0", "up"])
            tc = ["tc", "-n", ns, "qdisc", "add", "dev", "d0", "root", "netem", "delay", "1ms"]
            _netem = subprocess.run(tc, capture_output=True).returncode == 0
        finally:
            host_run(["ip", "netns", "del", ns], check=False)
            if record is not None:
                record.drop_netns(ns)
    return _netem


def topology_problems(topo: Any) -> list[str]:
    """What in a Mininet Topo this lab cannot honour, each problem naming the link or node."""
    problems = []
    links: dict[str, int] = {}
    for src, dst in topo.links():
        for end in (src, dst):
            links[end] = links.get(end, 0) + 1
    for name in topo.nodes():
        if not re.fullmatch(r"[a-z][a-z0-9]{0,9}", name):
            problems.append(f"node {name!r}: names are lower-case letters and digits, at most 10")
            continue
        # Mininet names interfaces <node>-eth<N>; a switch's name carries the run's tag.
        prefix = TAG_LENGTH if topo.isSwitch(name) else 0
        longest = prefix + len(name) + len("-eth") + len(str(links.get(name, 0)))
        if longest > IFNAME_MAX:
            room = len(name) - (longest - IFNAME_MAX)
            kind = "switch" if topo.isSwitch(name) else "host"
            problems.append(
                f"{kind} {name!r}: its interface names would be {longest} characters (Linux allows "
                f"{IFNAME_MAX}); use a name of at most {max(room, 1)} characters"
            )
    problems += _dpid_problems(topo)
    for src, dst, info in topo.links(withInfo=True):
        if asks_impairment(info):
            try:
                directions(f"{src}-{dst}", info)
            except ConfigError as exc:
                problems.extend(exc.problems)
        for side in ("intfName1", "intfName2"):
            if side in info and len(info[side]) > IFNAME_MAX:
                problems.append(f"link {src}-{dst}: interface name {info[side]!r} is over 15 characters")
    return problems


def _dpid_problems(topo: Any) -> list[str]:
    """Switch dpids that are not hexadecimal, or that two switches share."""
    problems = []
    dpids: dict[int, str] = {}
    for name in topo.switches():
        given = topo.nodeInfo(name).get("dpid")
        if given is None:
            continue
        try:
            number = int(str(given), 16)
        except ValueError:
            problems.append(f"switch {name!r}: dpid {given!r} is not hexadecimal")
            continue
        if number in dpids:
            problems.append(f"switches {dpids[number]!r} and {name!r} have the same dpid {number:#x}")
        dpids[number] = name
    return problems


def tagged_topo(
    topo: Any, tag: str, impaired: list[ImpairedLink] | None = None, netem: bool = False
) -> tuple[Any, dict[str, str]]:
    """A copy of `topo` whose switches carry the run's tag; returns it and logical->real
    names. With `impaired` (a list to fill), every link that asks for an impairment is
    listed there: with `netem`, as a link whose ends get netem once built; without, with an
    impairment element in its middle. TCLink keeps only the rate options either way."""
    from mininet.topo import Topo

    names = {n: (f"{tag}{n}" if topo.isSwitch(n) else n) for n in topo.nodes()}
    # A switch without a dpid gets the next free number (Mininet's default, the digits of
    # its name, collides for s1/a1; and the tagged name's digits would be the tag's).
    taken = {int(str(topo.nodeInfo(s)["dpid"]), 16) for s in topo.switches() if "dpid" in topo.nodeInfo(s)}
    free = (n for n in range(1, 1 << 48) if n not in taken)
    copy = Topo()
    for node in topo.nodes():
        info = {k: v for k, v in topo.nodeInfo(node).items() if k != "isSwitch"}
        if topo.isSwitch(node):
            info.setdefault("dpid", f"{next(free):016x}")
            copy.addSwitch(names[node], **info)
        else:
            copy.addHost(node, **info)
    for _src, _dst, info in topo.links(sort=True, withInfo=True):
        info = dict(info)
        a, b = info.pop("node1"), info.pop("node2")
        if impaired is None or not asks_impairment(info):
            copy.addLink(names[a], names[b], **info)
        elif netem:
            impaired.append(NetemLink(f"{a}-{b}", a, b, directions(f"{a}-{b}", info)))
            plain = without_impairments(info)
            for params in ("params1", "params2"):
                plain[params] = without_impairments(info.get(params) or {})
            copy.addLink(names[a], names[b], **plain)
        else:
            name = element_name(len(impaired), set(names))
            impaired.append(Element(name, a, b, directions(f"{a}-{b}", info)))
            names[name] = name
            _split_link(copy, names[a], name, names[b], info)
    return copy, names


def _split_link(copy: Any, a: str, element: str, b: str, info: dict[str, Any]) -> None:
    """Link `a` to `b` through the impairment element `element` (a host of its own with no
    address: it only carries frames between its two interfaces), each end as it was."""
    copy.addHost(element, ip=None)
    shared = {k: v for k, v in without_impairments(info).items() if not k.endswith(("1", "2"))}
    end_a = {k: v for k, v in info.items() if k in ("intfName1", "addr1", "port1")}
    end_b = {k: v for k, v in info.items() if k in ("intfName2", "addr2", "port2")}
    copy.addLink(
        a,
        element,
        **shared,
        **end_a,
        params1=without_impairments(info.get("params1") or {}),
        intfName2=f"{element}-a",
    )
    copy.addLink(
        element,
        b,
        intfName1=f"{element}-b",
        **end_b,
        params2=without_impairments(info.get("params2") or {}),
    )
