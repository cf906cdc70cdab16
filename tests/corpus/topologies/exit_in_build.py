"""Malformed on purpose: a topology whose build ends the program."""

import sys

from mininet.topo import Topo


class Quits(Topo):
    def build(self):
        sys.exit("no hosts today")


topos = {"quits": Quits}
