"""Session devices: one module per device, each the same protocol (see `base`), and the
node classes that hold them (`firewall`, `balancer`).

A topology names a node's `role`; `device_class(role, base)` gives the class the lab runs
it as: the holder's behaviour on top of the topology's own node class, so the topology's
router or neighbour set-up runs first and the file still loads in stock Mininet.
"""

from __future__ import annotations

from lab.devices.adc import AdcDaemon
from lab.devices.balancer import Balancer
from lab.devices.base import (
    ROLES,
    DeviceNode,
    Runner,
    SessionDevice,
    SessionSource,
    device_class,
    node_devices,
    register,
)
from lab.devices.conntrackd import ConntrackSync
from lab.devices.external import ExternalDevice
from lab.devices.firewall import Firewall
from lab.devices.ftp_server import FtpServer
from lab.devices.health_agent import HealthAgent
from lab.devices.keepalived import Keepalived
from lab.devices.l4 import KernelBalancer
from lab.devices.nft_firewall import NftFirewall
from lab.devices.stun import StunServer

# Every device class: one role each (tests/test_devices.py checks each against the protocol).
DEVICE_CLASSES: tuple[type[SessionDevice], ...] = (
    NftFirewall,
    KernelBalancer,
    AdcDaemon,
    FtpServer,
    Keepalived,
    ConntrackSync,
    HealthAgent,
    ExternalDevice,
    StunServer,
)

__all__ = [
    "DEVICE_CLASSES",
    "ROLES",
    "AdcDaemon",
    "Balancer",
    "ConntrackSync",
    "DeviceNode",
    "ExternalDevice",
    "Firewall",
    "FtpServer",
    "HealthAgent",
    "Keepalived",
    "KernelBalancer",
    "NftFirewall",
    "Runner",
    "SessionDevice",
    "SessionSource",
    "StunServer",
    "device_class",
    "node_devices",
    "register",
]
