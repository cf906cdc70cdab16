"""Malformed on purpose: a topology file without the `topos` dict stock Mininet reads."""

from mininet.topo import Topo


class Lonely(Topo):
    def build(self):
        self.addHost("h1")
