"""Malformed on purpose: a topology file that ends the program while it loads."""

import sys

from mininet.topo import Topo


class Early(Topo):
    def build(self):
        self.addHost("h1")


sys.exit(3)
topos = {"early": Early}
