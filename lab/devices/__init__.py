"""Session devices: one module per kind, each the same protocol (see `base`).

A topology names a node's `role`; `device_class(role, base)` gives the class the lab runs
it as: the device's behaviour on top of the topology's own node class, so the topology's
router or neighbour set-up runs first and the file still loads in stock Mininet.
"""

from __future__ import annotations

from lab.devices.balancer import Balancer
from lab.devices.base import ROLES, SessionDevice, SessionSource, device_class, register
from lab.devices.firewall import Firewall

__all__ = ["ROLES", "Balancer", "Firewall", "SessionDevice", "SessionSource", "device_class", "register"]
