"""Malformed on purpose: two switches with one datapath id."""

from mininet.topo import Topo


class SameDpid(Topo):
    def build(self):
        a = self.addSwitch("s1", dpid="1")
        b = self.addSwitch("s2", dpid="0001")
        self.addLink(a, b)


topos = {"same-dpid": SameDpid}
