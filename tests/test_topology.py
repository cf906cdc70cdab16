"""Topologies: loadable by name, and what this kernel cannot honour is refused up front."""

import os
from pathlib import Path

import pytest
from mininet.topo import Topo

from lab import topology
from lab.errors import ConfigError
from lab.net import Lab, topology_problems

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="probing netem needs root")


def test_s1_loads_without_building_anything():
    topo = topology.load("s1")
    assert sorted(topo.hosts()) == ["client", "fw", "server"]
    assert topo.nodeInfo("fw")["role"] == "firewall"
    assert topology_problems(topo) == []


def test_unknown_topology():
    with pytest.raises(ConfigError, match="unknown topology 'nope'"):
        topology.load("nope")


class _Delayed(Topo):
    def build(self):
        a, b = self.addHost("a"), self.addHost("b")
        self.addLink(a, b, delay="10ms", loss=1)


@needs_root
def test_netem_options_are_refused_with_the_link_named(tmp_path: Path):
    before = set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()
    with pytest.raises(ConfigError, match=r"link a-b: delay, loss needs netem"), Lab(_Delayed(), tmp_path):
        pass
    after = set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()
    assert after == before  # the netem probe's namespace is gone


def test_bad_node_names_are_refused():
    topo = Topo()
    topo.addHost("Bad-Name")
    assert any("Bad-Name" in p for p in topology_problems(topo))
