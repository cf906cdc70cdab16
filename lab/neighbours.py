"""A node's neighbours (ARP, IPv6 neighbour discovery) resolved before traffic whose timing
matters: a packet that waits for its neighbour is queued and, for a SYN, retransmitted."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lab.net import Lab


def resolved(lab: Lab, node: str, address: str, timeout: float, what: str | None = None) -> None:
    """Wait until `node`'s neighbour table holds a link-layer address for the on-link
    `address`, pinging it once a second (a node that drops pings to itself still answers
    ARP and neighbour solicitations, and learns the asker's address from them). Bounded:
    a LabError naming `what` (or the address) after `timeout` s."""

    def known() -> bool:
        lab.run(node, ["ping", "-c", "1", "-W", "1", address], check=False)
        return "lladdr" in lab.run(node, ["ip", "neigh", "show", address], check=False)

    lab.wait(known, timeout, what or f"{node} to resolve {address}'s link-layer address")
