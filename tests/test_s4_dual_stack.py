"""S4's topology is dual-stack: PLAN6 beside PLAN (IPv4 untouched), and stock Mininet's
`mn --custom` still loads the file (each file run in a bare namespace, as `mn` does)."""

from __future__ import annotations

import subprocess
import sys

from lab import topology
from lab.topology import TOPOLOGY_DIR

STOCK = """
import sys
from mininet.util import buildTopo
topos = {}
for name in sys.argv[1:]:
    customs = {}
    exec(compile(open(name).read(), name, "exec"), customs, customs)  # what `mn --custom` does
    topos.update(customs.get("topos", {}))
for name in ("s4", "s4-sdn"):
    topo = buildTopo(topos, name)
    info = {h: topo.nodeInfo(h) for h in topo.hosts()}
    print(name, info["c1"]["ip6"], info["r4"]["gw6"], info["lb1"]["addresses6"]["lb1-s"], len(topo.links()))
"""


def test_stock_mininet_loads_s4_dual_stack():
    files = [str(TOPOLOGY_DIR / "_sessionlab_nodes.py"), str(TOPOLOGY_DIR / "s4_balancers.py")]
    done = subprocess.run([sys.executable, "-c", STOCK, *files], capture_output=True, text=True, check=True)
    assert done.stdout.splitlines() == [
        "s4 fd00:4:1::11/64 fd00:4:2::1 fd00:4:2::2/64 13",
        "s4-sdn fd00:4:1::11/64 fd00:4:2::1 fd00:4:2::2/64 13",
    ]


def test_the_ipv6_plan_mirrors_the_ipv4_one_with_its_own_vips():
    four, six = topology.plan("s4"), topology.plan("s4", family=6)
    assert four.vips == {"web": "10.0.1.100", "pair gateway": "10.0.2.100"}  # untouched
    assert four.address("c1") == "10.0.1.11" and four.address("lb1-s") == "10.0.2.2"
    assert six.vips == {"web": "fd00:4:1::100", "pair gateway": "fd00:4:2::100"}
    assert six.hosts["servers"] == {f"r{i}": f"fd00:4:2::1{i}" for i in range(1, 5)}
    assert six.networks == {"clients": "fd00:4:1::/64", "servers": "fd00:4:2::/64"}
    assert six.ports == four.ports and six.roles == four.roles
