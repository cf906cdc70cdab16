"""Impaired links on any kernel: where the kernel has netem, the lab sets netem on both ends
of each link whose options name an impairment; where it has not, it puts an impairment
element (`lab/agents/impair_relay.py`, its own namespace, owned like every lab process) into
the link. Either way it changes them while the lab runs.

A topology asks for impairments as stock Mininet's TCLink does: `addLink(a, b,
delay="25ms", jitter="5ms", loss=2)` for both directions, or in `params1` (a to b) and
`params2` (b to a) for one; `reorder` and `duplicate` (percent) are added. Naming any of
them, even as zero, makes the link impairable at run time (`lab.impair`). Rate limits
(`bw`, `max_queue_size`) stay with TCLink (HTB/TBF).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from lab.config import IMPAIRMENT_OPTIONS, Impairment, impairment_from
from lab.errors import ConfigError

ELEMENT_PREFIX = "imp"


def asks_impairment(info: dict[str, Any]) -> bool:
    """Whether a link's options name an impairment (on the link or one of its ends)."""
    sides = (info, info.get("params1") or {}, info.get("params2") or {})
    return any(key in side for side in sides for key in IMPAIRMENT_OPTIONS)


def directions(link: str, info: dict[str, Any]) -> dict[str, Impairment]:
    """The impairment of each direction: "a" (node1 to node2) and "b" (node2 to node1)."""
    both = {k: info[k] for k in IMPAIRMENT_OPTIONS if k in info}
    return {
        side: impairment_from(
            link, {**both, **{k: v for k, v in (info.get(params) or {}).items() if k in IMPAIRMENT_OPTIONS}}
        )
        for side, params in (("a", "params1"), ("b", "params2"))
    }


def without_impairments(options: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in options.items() if k not in IMPAIRMENT_OPTIONS}


@dataclass
class ImpairedLink:
    """A link between `a` and `b` (logical node names) whose impairments the lab sets: at
    build, and again whenever a case asks (`Lab.impair`); it keeps what it had, and when."""

    name: str
    a: str
    b: str
    impairments: dict[str, Impairment]  # "a": from a to b, "b": from b to a
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def link(self) -> str:
        return f"{self.a}-{self.b}"

    def apply(self, impairments: dict[str, Impairment]) -> None:
        raise NotImplementedError

    def set(self, impairments: dict[str, Impairment], now: float) -> None:
        """Apply new impairments to the running link and record them."""
        self.apply(impairments)
        self.impairments = impairments
        self.record(now)

    def record(self, now: float) -> None:
        self.history.append(
            {
                "time": now,
                f"{self.a}->{self.b}": asdict(self.impairments["a"]),
                f"{self.b}->{self.a}": asdict(self.impairments["b"]),
            }
        )

    def during(self, start: float, end: float) -> list[dict[str, Any]]:
        """What the link had from `start` to `end` (wall clock): the setting in force at
        `start`, then each change, with times relative to `start`; [] if it did nothing."""
        before = [h for h in self.history if h["time"] <= start][-1:]
        window = before + [h for h in self.history if start < h["time"] <= end]
        directions = (f"{self.a}->{self.b}", f"{self.b}->{self.a}")
        if not any(Impairment(**h[d]).active for h in window for d in directions):
            return []
        return [
            {
                "from": round(max(0.0, h["time"] - start), 3),
                **{d: Impairment(**h[d]).describe() for d in directions},
            }
            for h in window
        ]


@dataclass
class Element(ImpairedLink):
    """The lab's impairment element in the middle of the link (kernels without netem): a
    node of its own, `name`, whose relay takes new impairments on a control socket."""

    control: str = ""  # the relay's control socket, once it runs

    def apply(self, impairments: dict[str, Impairment]) -> None:
        """Send the new impairments to the running relay (a UNIX datagram)."""
        message = json.dumps({side: asdict(imp) for side, imp in impairments.items()}).encode()
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(message, self.control)


@dataclass
class NetemLink(ImpairedLink):
    """A link impaired by the kernel's netem on each end's egress (kernels that have it):
    side "a" on node a's interface, "b" on node b's; below TCLink's HTB class with a rate."""

    run: Callable[[str, list[str]], Any] | None = None  # runs a command in a node
    ends: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # side: node, intf, parent

    def apply(self, impairments: dict[str, Impairment]) -> None:
        if self.run is None:
            raise ConfigError(f"link {self.link}: not built yet")
        for side, (node, intf, parent) in self.ends.items():
            self.run(node, netem_argv(intf, impairments[side], parent))


def netem_argv(dev: str, imp: Impairment, parent: str = "root") -> list[str]:
    """The tc command that gives `dev`'s egress this impairment with netem (created or
    replaced; no options: frames pass untouched). `parent`: "root", or TCLink's HTB class
    ("parent 5:1") when the link also has a rate."""
    argv = ["tc", "qdisc", "replace", "dev", dev, *parent.split(), "handle", "10:", "netem"]
    if imp.delay or imp.jitter:
        argv += ["delay", f"{imp.delay * 1e6:.0f}us"] + ([f"{imp.jitter * 1e6:.0f}us"] if imp.jitter else [])
    for name, share in (("loss", imp.loss), ("reorder", imp.reorder), ("duplicate", imp.duplicate)):
        if share:
            argv += [name, f"{share:g}%"]
    return argv


def element_name(index: int, taken: set[str]) -> str:
    name = f"{ELEMENT_PREFIX}{index}"
    if name in taken:
        raise ConfigError(
            f"node {name!r}: the lab names its impairment elements {ELEMENT_PREFIX}<n>; rename it"
        )
    return name
