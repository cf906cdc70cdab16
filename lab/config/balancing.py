"""Balancers as typed data: the kernel L4 balancer, the L7 balancer (ADC) with its pools,
routes and health checks, and VRRP for an active/standby pair.

Every dataclass lists its problems with `problems()`, each naming its place; the device
that is configured with one validates it there, once.

Addresses (VIPs, real servers, peers) are IPv4 or IPv6. The kernel L4 balancer keeps the
family (nftables NAT rewrites addresses, it does not translate IPv6 to IPv4), so its VIP
and servers are all of one family; a full proxy (the ADC) opens its own connections, so
an IPv6 VIP in front of IPv4 servers (or the other way round) is fine there.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.config import checks

BALANCE_ALGORITHMS = ("round-robin", "weighted", "source-hash")
BALANCE_MODES = ("nat", "dsr")
ADC_ALGORITHMS = ("roundrobin", "leastconn", "source")
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")


@dataclass(frozen=True)
class RealServer:
    """A real server behind a balancer: its address, port and weight (weighted only)."""

    address: str
    port: int
    weight: int = 1

    def problems(self, where: str = "server") -> list[str]:
        """Its address and port (the weight is checked by the pool that holds it: the L4
        balancer's 1-100, an ADC pool's 1-256, haproxy's limit)."""
        problems: list[str] = []
        checks.address(self.address, where, problems, ipv6=":" in str(self.address))
        checks.port(self.port, where, problems)
        return problems


@dataclass(frozen=True)
class L4Balancer:
    """A kernel L4 balancer: clients address `vip`:`port`, each new session goes to one
    real server by `algorithm`. `mode` "nat": nftables DNAT (with `snat`, the servers see
    the balancer's address, so their replies come back through it); "dsr": direct server
    return, the balancer only rewrites the frame's MAC and the servers answer the clients
    themselves from the VIP (on their loopback)."""

    vip: str
    port: int
    servers: tuple[RealServer, ...]
    algorithm: str = "round-robin"
    proto: str = "tcp"
    snat: bool = False
    mode: str = "nat"

    def problems(self) -> list[str]:
        """Every problem with the balancer, each naming the attribute."""
        problems: list[str] = []
        _host(self.vip, "balancer.vip", problems)
        checks.port(self.port, "balancer", problems)
        checks.proto(self.proto, "balancer", problems)
        if self.algorithm not in BALANCE_ALGORITHMS:
            problems.append(
                f"balancer.algorithm: {self.algorithm!r} is not one of {', '.join(BALANCE_ALGORITHMS)}"
            )
        if not self.servers:
            problems.append("balancer.servers: no real server")
        for i, server in enumerate(self.servers):
            where = f"balancer.servers[{i}]"
            problems += server.problems(where)
            if not checks.is_count(server.weight) or server.weight > 100:
                problems.append(f"{where}.weight: {server.weight!r} is not a weight (1-100)")
        other = [s.address for s in self.servers if family(s.address) != family(self.vip)]
        if other:
            problems.append(
                f"balancer.servers: {', '.join(other)} {'is' if len(other) == 1 else 'are'} not IPv"
                f"{family(self.vip)} like the VIP {self.vip}: the kernel balancer's NAT keeps the address "
                "family (no NAT64); use servers of the VIP's family, or a proxy (adc)"
            )
        seen = [(s.address, s.port) for s in self.servers]
        for twice in sorted({x for x in seen if seen.count(x) > 1}):
            problems.append(f"balancer.servers: {twice[0]}:{twice[1]} is listed more than once")
        if self.mode not in BALANCE_MODES:
            problems.append(f"balancer.mode: {self.mode!r} is not one of {', '.join(BALANCE_MODES)}")
        if self.mode == "dsr":
            if self.snat:
                problems.append("balancer.snat: direct server return rewrites no address (mode dsr)")
            for i, server in enumerate(self.servers):
                if server.port != self.port:
                    problems.append(
                        f"balancer.servers[{i}].port: {server.port!r} is not the VIP's port {self.port!r} "
                        "(direct server return keeps the port)"
                    )
        return problems


def balancer_problems(config: L4Balancer) -> list[str]:
    """Every problem with a balancer (kept for callers: `config.problems()`)."""
    return config.problems()


def family(address: str) -> int:
    """4 or 6: the family of an address (or address with prefix) written as text."""
    return 6 if ":" in str(address) else 4


def _host(address: object, key: str, problems: list[str]) -> None:
    """One address, IPv4 or IPv6 (an IPv4-looking one refused in IPv4's words)."""
    checks.host(address, key, problems, ipv6=":" in str(address))


def _made(kind: Any, top: dict[str, Any], where: str, problems: list[str]) -> Any:
    """A balancer config made from its read fields once they and it have no problem (a VIP
    and a port required: every balancer listens somewhere)."""
    problems += [f"{where}: missing {key!r}" for key in ("vip", "port") if key not in top]
    checks.refuse(problems)
    config = kind(**top)
    checks.refuse(config.problems())
    return config


def balancer_from_dict(data: Mapping[str, Any]) -> L4Balancer:
    """A validated L4 balancer from plain data (servers: a list of tables)."""
    problems: list[str] = []
    top = checks.take(L4Balancer, data, "balancer", problems)
    top["servers"] = checks.items(data, "servers", RealServer, problems)
    config: L4Balancer = _made(L4Balancer, top, "balancer", problems)
    return config


@dataclass(frozen=True)
class HealthCheck:
    """How a balancer checks a real server: a TCP connect or an HTTP GET of `path`, every
    `interval_ms`; `fall` failures take it out, `rise` successes put it back."""

    kind: str = "tcp"  # "tcp" or "http"
    path: str = "/health"
    interval_ms: int = 200
    rise: int = 2
    fall: int = 2

    def problems(self, where: str = "check") -> list[str]:
        problems: list[str] = []
        if self.kind not in ("tcp", "http"):
            problems.append(f"{where}.kind: {self.kind!r} is not tcp or http")
        for key in ("interval_ms", "rise", "fall"):
            value = getattr(self, key)
            if not checks.is_count(value):
                problems.append(f"{where}.{key}: {value!r} is not a positive whole number")
        return problems


@dataclass(frozen=True)
class Pool:
    """A group of real servers behind the ADC (an haproxy backend)."""

    name: str
    servers: tuple[RealServer, ...]
    algorithm: str = "roundrobin"
    check: HealthCheck | None = None
    cookie: bool = False  # persistence: the ADC inserts a cookie naming the server
    tls: bool = False  # re-encrypt towards the servers (HTTPS to them)

    def problems(self, where: str = "pool") -> list[str]:
        problems: list[str] = []
        if not _NAME.fullmatch(self.name):
            problems.append(f"{where}.name: {self.name!r} is not a name (letters, digits, _ and -)")
        if self.algorithm not in ADC_ALGORITHMS:
            problems.append(
                f"{where}.algorithm: {self.algorithm!r} is not one of {', '.join(ADC_ALGORITHMS)}"
            )
        if not self.servers:
            problems.append(f"{where}.servers: no real server")
        for j, server in enumerate(self.servers):
            problems += server.problems(f"{where}.servers[{j}]")
            if not checks.is_count(server.weight) or server.weight > 256:
                problems.append(f"{where}.servers[{j}].weight: {server.weight!r} is not a weight (1-256)")
        if self.check is not None:
            problems += self.check.problems(f"{where}.check")
        return problems


@dataclass(frozen=True)
class Route:
    """Requests to `pool` when the path starts with `path_prefix` and/or a header has a value."""

    pool: str
    path_prefix: str | None = None
    header: str | None = None
    value: str | None = None

    def problems(self, where: str = "route", pools: Sequence[str] | None = None) -> list[str]:
        """Its problems; with `pools` (the ADC's pool names) also whether its pool exists."""
        problems: list[str] = []
        if pools is not None and self.pool not in pools:
            problems.append(f"{where}.pool: no pool {self.pool!r} (pools: {', '.join(pools)})")
        if self.path_prefix is None and self.header is None:
            problems.append(f"{where}: matches nothing (give path_prefix and/or header)")
        if (self.header is None) != (self.value is None):
            problems.append(f"{where}: a header route needs both header and value")
        return problems


@dataclass(frozen=True)
class Adc:
    """An L7 balancer (haproxy): clients speak HTTP, or HTTPS with `certificate` (TLS
    termination), to `vip`:`port`; requests go to a pool by route, else to the first pool."""

    vip: str
    port: int
    pools: tuple[Pool, ...]
    routes: tuple[Route, ...] = ()
    certificate: str | None = None  # PEM with key: terminate TLS here
    forwarded_for: bool = True  # add X-Forwarded-For
    compression: bool = False  # gzip text responses
    deny_pattern: str | None = None  # a request path regex refused with 403 (WAF-style)
    redirects: tuple[tuple[str, str], ...] = ()  # (path prefix, location): 302
    cache_pattern: str | None = None  # responses to paths matching this regex are cached
    cache_seconds: int = 60
    persist_source: bool = False  # a client address keeps its server (a stick table)
    peers: tuple[tuple[str, str], ...] = ()  # (name, address:port): share the stick table

    def problems(self) -> list[str]:
        """Every problem with the ADC, each naming the attribute (any daemon's; what one
        daemon cannot do is that daemon's device's to add)."""
        problems: list[str] = []
        _host(self.vip, "adc.vip", problems)
        checks.port(self.port, "adc", problems)
        names = [p.name for p in self.pools]
        if not names:
            problems.append("adc.pools: no pool")
        for name in sorted({n for n in names if names.count(n) > 1}):
            problems.append(f"adc.pools: {name!r} is defined more than once")
        for i, pool in enumerate(self.pools):
            problems += pool.problems(f"adc.pools[{i}]")
        for i, route in enumerate(self.routes):
            problems += route.problems(f"adc.routes[{i}]", names)
        for key in ("deny_pattern", "cache_pattern"):
            pattern = getattr(self, key)
            if pattern is not None:
                try:
                    re.compile(pattern)
                except re.error as exc:
                    problems.append(f"adc.{key}: {pattern!r} is not a regex ({exc})")
        checks.timeout(self.cache_seconds, "adc.cache_seconds", problems)
        if self.peers and not self.persist_source:
            problems.append("adc.peers: peers share a stick table; set persist_source")
        for i, (name, address) in enumerate(self.peers):
            host, port = split_host_port(address)
            if not _NAME.fullmatch(str(name)):
                problems.append(f"adc.peers[{i}]: {name!r} is not a name")
            _host(host, f"adc.peers[{i}]", problems)
            checks.port(int(port) if port.isdigit() else port, f"adc.peers[{i}]", problems)
        return problems


def split_host_port(address: str) -> tuple[str, str]:
    """("10.0.2.2", "10000") of "10.0.2.2:10000", ("fd00:4:2::2", "10000") of
    "[fd00:4:2::2]:10000" (an IPv6 address bracketed, as haproxy and nginx write it)."""
    host, _, port = str(address).rpartition(":")
    return host.removeprefix("[").removesuffix("]") if host.startswith("[") else host, port


def host_port(address: str, port: int) -> str:
    """`address`:`port` as haproxy and nginx write it: an IPv6 address in brackets."""
    return f"[{address}]:{port}" if family(address) == 6 else f"{address}:{port}"


def adc_problems(adc: Adc) -> list[str]:
    """Every problem with an ADC (kept for callers: `adc.problems()`)."""
    return adc.problems()


@dataclass(frozen=True)
class VrrpInstance:
    """One side of an active/standby pair (keepalived, VRRPv3): the virtual address moves
    to the standby when the active one stops advertising (every `advert_s`)."""

    interface: str
    router_id: int
    priority: int
    vip: str  # with its prefix, e.g. 10.0.2.100/24 or fd00:4:2::100/64
    advert_s: float = 0.1
    peer: str | None = None  # unicast to this peer address (multicast without)

    def problems(self) -> list[str]:
        problems: list[str] = []
        if not isinstance(self.router_id, int) or not 1 <= self.router_id <= 255:
            problems.append(f"vrrp.router_id: {self.router_id!r} is not 1-255")
        if not isinstance(self.priority, int) or not 1 <= self.priority <= 254:
            problems.append(f"vrrp.priority: {self.priority!r} is not 1-254")
        try:
            (ipaddress.IPv6Interface if family(self.vip) == 6 else ipaddress.IPv4Interface)(str(self.vip))
            if "/" not in str(self.vip):
                raise ValueError("no prefix")
        except ValueError:
            problems.append(f"vrrp.vip: {self.vip!r} is not an address with its prefix (10.0.2.100/24)")
        if not 0.01 <= self.advert_s <= 40:
            problems.append(f"vrrp.advert_s: {self.advert_s!r} is not 0.01-40 s (VRRPv3 centiseconds)")
        if self.peer is not None:
            _host(self.peer, "vrrp.peer", problems)
            if family(self.peer) != family(self.vip):
                problems.append(
                    f"vrrp.peer: {self.peer} and the VIP {self.vip} are of different families "
                    "(an instance advertises in its VIP's family)"
                )
        return problems


def vrrp_problems(vrrp: VrrpInstance) -> list[str]:
    """Every problem with one instance (kept for callers: `vrrp.problems()`)."""
    return vrrp.problems()


def vrrp_group_problems(instances: Sequence[VrrpInstance]) -> list[str]:
    """Every problem with one node's instances (a sync group when several): each one's,
    router ids used twice, no instance at all."""
    problems = [p for v in instances for p in v.problems()]
    ids = [v.router_id for v in instances]
    problems += [f"vrrp.router_id: {i} is used twice" for i in sorted({i for i in ids if ids.count(i) > 1})]
    if not instances:
        problems.append("vrrp: no instance")
    return problems


# --- from TOML files (`sessionlab topo --balancer`, `--adc`) ---------------------------------
def _pairs(data: Mapping[str, Any], key: str, problems: list[str]) -> tuple[tuple[str, str], ...]:
    """A list of two-string lists (`redirects`, `peers`) as pairs."""
    raw = data.get(key, [])
    good = isinstance(raw, list) and all(
        isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p) for p in raw
    )
    if not good:
        problems.append(f"adc.{key}: expected a list of [text, text] pairs")
        return ()
    return tuple((p[0], p[1]) for p in raw)


def adc_from_dict(data: Mapping[str, Any]) -> Adc:
    """A validated ADC from plain data: `[[pools]]` (each with `[[pools.servers]]` and an
    optional `[pools.check]`), `[[routes]]`, `redirects` and `peers` as pairs; every
    problem (unknown keys among them) reported at once."""
    problems: list[str] = []
    top = checks.take(Adc, data, "adc", problems)
    pools: list[Pool] = []
    raw_pools = data.get("pools", [])
    if not isinstance(raw_pools, list):
        problems.append("adc.pools: expected a list of tables ([[pools]])")
        raw_pools = []
    for i, raw in enumerate(raw_pools):
        where = f"adc.pools[{i}]"
        fields_ = checks.take(Pool, raw, where, problems)
        if not isinstance(raw, Mapping):
            continue
        inner: list[str] = []
        fields_["servers"] = checks.items(raw, "servers", RealServer, inner)
        problems += [f"{where}.{p}" for p in inner]
        if isinstance(raw.get("check"), Mapping):
            check = checks.take(HealthCheck, raw["check"], f"{where}.check", problems)
            fields_["check"] = HealthCheck(**check)
        elif "check" in raw:
            problems.append(f"{where}.check: expected a table ([pools.check])")
        if "name" not in fields_:
            problems.append(f"{where}: missing 'name'")
        else:
            pools.append(Pool(**fields_))
    top["pools"] = tuple(pools)
    top["routes"] = checks.items(data, "routes", Route, problems)
    top["redirects"] = _pairs(data, "redirects", problems)
    top["peers"] = _pairs(data, "peers", problems)
    adc: Adc = _made(Adc, top, "adc", problems)
    return adc


def load_balancer(path: Path) -> L4Balancer:
    """A validated kernel L4 balancer from a TOML file (`balancer_from_dict`'s keys)."""
    config: L4Balancer = checks.load_toml(path, balancer_from_dict)
    return config


def load_adc(path: Path) -> Adc:
    """A validated L7 balancer (ADC) from a TOML file (`adc_from_dict`'s keys)."""
    config: Adc = checks.load_toml(path, adc_from_dict)
    return config
