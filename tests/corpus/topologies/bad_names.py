"""Malformed on purpose: an upper-case node name and a switch name too long for Linux."""

from mininet.topo import Topo


class BadNames(Topo):
    def build(self):
        h1 = self.addHost("Client1")
        sw = self.addSwitch("switchnum1")
        self.addLink(h1, sw)


topos = {"bad-names": BadNames}
