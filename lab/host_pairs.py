"""Host pairs through one switch: the small topology the harness's own checks measure
links with (the impairment benchmark, the impaired-link cases).

    h1 -[first link's options]- s1 - h2
    h3 -[its options]---------- s1 - h4     ... one pair per options dict

Addresses 10.0.9.N/24 for hN. A link whose options name a delay ("0ms") gets the lab's
impairment element, which the caller then changes while the lab runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mininet.topo import Topo


def add_host_pairs(topo: Topo, *first_links: dict[str, Any]) -> None:
    """Add to `topo` (in its `build`) one host pair per options dict: pair i is
    h(2i+1) -[first_links[i]]- s1 - h(2i+2). Hosts first, then s1, then the links in pair
    order (so s1's port numbers follow the pairs)."""
    count = 2 * len(first_links)
    hosts = [topo.addHost(f"h{n}", ip=f"10.0.9.{n}/24") for n in range(1, count + 1)]
    switch = topo.addSwitch("s1")
    for pair, options in enumerate(first_links):
        topo.addLink(hosts[2 * pair], switch, **options)
        topo.addLink(switch, hosts[2 * pair + 1])
