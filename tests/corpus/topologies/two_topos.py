"""Valid, with two topologies: a spec must name one (file.py:one)."""

from mininet.topo import Topo


class One(Topo):
    def build(self, hosts=1):
        sw = self.addSwitch("s1")
        for n in range(int(hosts)):
            self.addLink(self.addHost(f"h{n + 1}"), sw)


topos = {"one": One, "other": One}
