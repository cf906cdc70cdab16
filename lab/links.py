"""Impaired links on any kernel: where netem is missing, the lab puts an impairment element
(`lab/agents/impair_relay.py`, its own namespace, owned like every lab process) into each
link whose options name an impairment, and changes it while the lab runs.

A topology asks for impairments as stock Mininet's TCLink does: `addLink(a, b,
delay="25ms", jitter="5ms", loss=2)` for both directions, or in `params1` (a to b) and
`params2` (b to a) for one; `reorder` and `duplicate` (percent) are added. Naming any of
them, even as zero, makes the link impairable at run time (`lab.impair`). Rate limits
(`bw`, `max_queue_size`) stay with TCLink (HTB/TBF).
"""

from __future__ import annotations

import json
import socket
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
class Element:
    """The impairment element in the link between `a` and `b` (logical node names)."""

    name: str
    a: str
    b: str
    impairments: dict[str, Impairment]
    control: str = ""  # the relay's control socket, once it runs
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def link(self) -> str:
        return f"{self.a}-{self.b}"

    def set(self, impairments: dict[str, Impairment], now: float) -> None:
        """Send new impairments to the running relay (a UNIX datagram) and record them."""
        self.impairments = impairments
        message = json.dumps({side: asdict(imp) for side, imp in impairments.items()}).encode()
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(message, self.control)
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


def element_name(index: int, taken: set[str]) -> str:
    name = f"{ELEMENT_PREFIX}{index}"
    if name in taken:
        raise ConfigError(
            f"node {name!r}: the lab names its impairment elements {ELEMENT_PREFIX}<n>; rename it"
        )
    return name
