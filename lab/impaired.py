"""The impaired links of a running lab: started with it (an impairment element's relay, or
netem on both ends of the link), changed while it runs (`Lab.impair`), and what each had,
and when, kept in `links.json` beside the lab's logs for the cases' reports. What a link
is and how it applies a setting is `lab.links`; which links are impaired, `lab.rewrite`."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lab.config import IMPAIRMENT_OPTIONS, impairment_from
from lab.errors import ConfigError
from lab.links import Element, ImpairedLink, NetemLink

if TYPE_CHECKING:
    from lab.net import Lab


class LinkImpairments:
    """The lab's impaired links (filled by `lab.rewrite.tagged_topo` at build)."""

    def __init__(self, folder: Path) -> None:
        self.links: list[ImpairedLink] = []
        self.path = folder / "links.json"

    @property
    def elements(self) -> list[Element]:
        """The impairment elements (kernels without netem)."""
        return [link for link in self.links if isinstance(link, Element)]

    def start(self, lab: Lab, topo: Any) -> None:
        """Give every impaired link of the built lab its first setting (`topo`: the tagged
        copy the lab built)."""
        for element in self.elements:
            self._start_element(lab, element)
        for link in self.links:
            if isinstance(link, NetemLink):
                self._start_netem(lab, link, topo)

    def _start_element(self, lab: Lab, element: Element) -> None:
        element.control = str(lab.runtime_dir() / f"{element.name}.ctl")
        initial = json.dumps({side: asdict(imp) for side, imp in element.impairments.items()})
        argv = [sys.executable, "-m", "lab.agents.impair_relay", "--a", f"{element.name}-a"]
        argv += ["--b", f"{element.name}-b", "--control", element.control, "--impairment", initial]
        lab.start(
            element.name, argv, f"impair-{element.name}", ready='"event": "ready"', keep=True, daemon=True
        )
        element.record(time.time())
        self.save()

    def _start_netem(self, lab: Lab, link: NetemLink, topo: Any) -> None:
        """Netem on both ends of the built link (below TCLink's HTB class where it has a rate)."""
        node_a, node_b = lab.node(link.a), lab.node(link.b)
        built = lab.net.linksBetween(node_a, node_b)[0]
        info = next(
            i for x, y, i in topo.links(withInfo=True) if {x, y} == {lab.names[link.a], lab.names[link.b]}
        )
        link.run = lambda node, argv: lab.run(node, argv)
        for side, node in (("a", node_a), ("b", node_b)):
            intf = built.intf1 if built.intf1.node is node else built.intf2
            params = info.get("params1" if node.name == info["node1"] else "params2") or {}
            rated = "bw" in info or "bw" in params
            link.ends[side] = (node.name, intf.name, "parent 5:1" if rated else "root")
        link.set(link.impairments, time.time())
        self.save()

    def find(self, a: str, b: str) -> tuple[ImpairedLink, bool]:
        """The impaired link between `a` and `b`, and whether `a` is its side a."""
        for link in self.links:
            if (link.a, link.b) in ((a, b), (b, a)):
                return link, link.a == a
        impairable = ", ".join(e.link for e in self.links) or "none"
        raise ConfigError(
            f"link {a}-{b}: not impairable (links that name an impairment in the topology: {impairable})"
        )

    def impair(self, a: str, b: str, one_way: bool = False, **options: Any) -> None:
        """Change a link's impairments, Mininet-style options (delay="10ms", loss=1, ...):
        both directions, or with `one_way` only from a to b."""
        link, forward = self.find(a, b)
        unknown = sorted(set(options) - set(IMPAIRMENT_OPTIONS))
        if unknown:
            raise ConfigError(f"link {a}-{b}: unknown impairment {', '.join(unknown)}")
        new = impairment_from(f"{a}-{b}", options)
        sides = {"a" if forward else "b"} if one_way else {"a", "b"}
        link.set({s: new if s in sides else link.impairments[s] for s in ("a", "b")}, time.time())
        self.save()

    def save(self) -> None:
        """What each impaired link had, and when (`links.json` beside the lab's logs)."""
        data = {e.link: e.history for e in self.links}
        self.path.write_text(json.dumps(data, indent=1))

    def during(self, start: float, end: float) -> dict[str, list[dict[str, Any]]]:
        """Each impaired link's settings from `start` to `end` (see `ImpairedLink.during`)."""
        return {e.link: e.during(start, end) for e in self.links if e.during(start, end)}

    def beyond(self, intf: Any) -> Any:
        """The interface at the far end of an impairment element (or `intf` itself): where
        a link really goes, element or not."""
        if not any(intf.node.name == e.name for e in self.elements):
            return intf
        other = next(i for i in intf.node.intfList() if i is not intf and i.name != "lo")
        return other.link.intf2 if other.link.intf1 is other else other.link.intf1
