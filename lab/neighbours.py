"""A node's neighbours (ARP, IPv6 neighbour discovery) resolved before traffic whose timing
matters: a packet that waits for its neighbour is queued and, for a SYN, retransmitted. And
the lab's hosts built so that neighbour discovery works from the start (`lab_mininet`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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


# A host's namespace before its interfaces exist: no IPv6 duplicate address detection
# (the lab's addresses are its own). A link-local address is otherwise tentative for about a
# second after the build, and a router whose link-local is tentative sends no neighbour
# solicitation for a packet it forwards: S4's kernel balancer held every client's first
# SYNs for 2 s in the clean-clone run at 3549ea2 (its first IPv6 case right after the
# build), as S5's firewall had once (its IPv6 module then waited for the addresses).
NO_DAD = "sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0"


def lab_mininet() -> type:
    """Mininet whose hosts' namespaces are set NO_DAD as each host is added, before the
    links (interfaces created in a namespace take its defaults)."""
    from mininet.net import Mininet

    class LabMininet(Mininet):  # type: ignore[misc]
        def addHost(self, name: str, cls: Any = None, **params: Any) -> Any:  # noqa: N802 - Mininet's
            host = super().addHost(name, cls, **params)
            if host.inNamespace:
                host.cmd(NO_DAD)
            return host

    return LabMininet
