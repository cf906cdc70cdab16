"""The root namespace as data: its listeners (`ss -lntupH -p`), addresses (`ip -j addr`)
and routes (`ip -j route`), parsed; a sample of all three at one moment. Pure: `lab.outside`
reads the machine and judges (tested offline, tests/test_outside_checks.py)."""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Listener:
    """A listening socket (TCP LISTEN, or UDP bound and unconnected) as `ss -lntupH -p`
    shows it: `address` without brackets or interface (`*`: every address of both
    families); `processes`: (command, PID) of each holder (none for a process of another
    PID namespace); `lab`: the lab process it belongs to, where it is one's."""

    proto: str
    address: str
    port: int
    processes: tuple[tuple[str, int], ...] = ()
    lab: str = ""

    @property
    def loopback(self) -> bool:
        if self.address == "*":
            return False
        ip = ipaddress.ip_address(self.address)
        mapped = getattr(ip, "ipv4_mapped", None)
        return ip.is_loopback or (mapped is not None and mapped.is_loopback)

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.proto, self.address, self.port)

    def __str__(self) -> str:
        who = ", ".join(f"{name} (pid {pid})" for name, pid in self.processes) or "a process not seen here"
        shown = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.proto} {shown}:{self.port} held by {who}" + (f", of {self.lab}" if self.lab else "")


_USERS = re.compile(r'\("((?:[^"\\]|\\.)*)",pid=(\d+),fd=\d+\)')


def split_endpoint(text: str) -> tuple[str, int]:
    """("0.0.0.0", 22) from ss's "0.0.0.0:22", "[::]:22", "127.0.0.53%lo:53", "*:68"
    or "[fe80::1]%eth0:546": the address without brackets or interface."""
    host, _, port = text.rpartition(":")
    host = host.split("%", 1)[0] if not host.startswith("[") else host[1 : host.index("]")]
    return host.split("%", 1)[0], int(port) if port.isdigit() else 0


def parse_listeners(text: str) -> list[Listener]:
    """`ss -lntupH -p` (no header) as Listeners; lines of another shape are skipped."""
    found = []
    for line in text.splitlines():
        words = line.split(None, 6)
        if len(words) < 6 or words[0] not in ("tcp", "udp"):
            continue
        address, port = split_endpoint(words[4])
        users = tuple((name, int(pid)) for name, pid in _USERS.findall(words[6] if len(words) > 6 else ""))
        found.append(Listener(words[0], address, port, users))
    return found


@dataclass(frozen=True)
class Address:
    """An address on a root-namespace interface (`ip -j addr`)."""

    ifname: str
    address: str
    prefixlen: int

    def __str__(self) -> str:
        return f"{self.address}/{self.prefixlen} on {self.ifname}"


def parse_addresses(text: str) -> list[Address]:
    """`ip -j addr show` as Addresses."""
    return [
        Address(link.get("ifname", "?"), info["local"], int(info.get("prefixlen", 0)))
        for link in json.loads(text or "[]")
        for info in link.get("addr_info", [])
        if "local" in info
    ]


@dataclass(frozen=True)
class Route:
    """A root-namespace route (`ip -j route show table all`, either family)."""

    dst: str  # a prefix, "default" as 0.0.0.0/0 or ::/0
    dev: str
    table: str
    type: str

    @property
    def network(self) -> Network:
        return ipaddress.ip_network(self.dst, strict=False)

    def __str__(self) -> str:
        return f"{self.type} {self.dst} dev {self.dev or '-'} table {self.table}"


def parse_routes(text: str, family: int) -> list[Route]:
    """`ip -j [-6] route show table all` as Routes."""
    found = []
    for entry in json.loads(text or "[]"):
        dst = entry.get("dst", "")
        if dst == "default":
            dst = "0.0.0.0/0" if family == 4 else "::/0"
        try:
            ipaddress.ip_network(dst, strict=False)
        except ValueError:
            continue  # nothing a lab range could hold
        found.append(
            Route(dst, entry.get("dev", ""), str(entry.get("table", "main")), entry.get("type", "unicast"))
        )
    return found


@dataclass(frozen=True)
class RootSample:
    """The root namespace at one moment: its listeners, addresses and routes."""

    time: float
    listeners: tuple[Listener, ...]
    addresses: tuple[Address, ...]
    routes: tuple[Route, ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RootSample:
        listeners = tuple(
            Listener(**{**x, "processes": tuple(tuple(p) for p in x["processes"])}) for x in data["listeners"]
        )
        return cls(
            data["time"],
            listeners,
            tuple(Address(**a) for a in data["addresses"]),
            tuple(Route(**r) for r in data["routes"]),
        )
