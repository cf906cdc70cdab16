"""Malformed on purpose: `topos` names a class that is not a Mininet Topo."""


class Plain:
    pass


topos = {"plain": Plain}
