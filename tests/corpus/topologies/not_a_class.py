"""Malformed on purpose: `topos` maps a name to something that builds no topology."""

from mininet.topo import Topo


class Fine(Topo):
    def build(self):
        self.addHost("h1")


topos = {"fine": Fine, "number": 42}
