"""Typed lab configuration: firewall policies and session timeouts.

Frozen dataclasses, loaded from TOML or dicts with unknown keys rejected and every problem
reported at once (naming where it is). No Mininet import: this is pure data.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields, replace
from pathlib import Path
from typing import Any

from lab.errors import ConfigError

PROTOCOLS = ("tcp", "udp")
HANDOFF_MODES = ("off", "route", "vxlan")
# Linux's own default for an established TCP session: five days.
LINUX_ESTABLISHED_TIMEOUT = 432000


# Kernel conntrack helpers (ALGs) a policy may assign to a service port.
HELPER_TYPES = ("ftp", "tftp", "irc", "sip")


@dataclass(frozen=True)
class Service:
    """A published inside service: new sessions from outside to it are allowed. With
    `port_end`, every port from `port` to `port_end` (an FTP server's passive range)."""

    port: int
    proto: str = "tcp"
    address: str | None = None  # inside address or prefix; None: any inside address
    port_end: int | None = None


@dataclass(frozen=True)
class Helper:
    """An ALG: the kernel's conntrack helper `type` follows the sessions to `port` (FTP's
    control session) and expects the data session they announce, which the firewall then
    lets through as related (and, with source NAT, rewrites the address announced)."""

    port: int
    type: str = "ftp"
    proto: str = "tcp"


@dataclass(frozen=True)
class TimeoutRule:
    """An idle timeout for the sessions to one service port and/or server address."""

    timeout: int  # seconds an established session may idle
    port: int | None = None
    address: str | None = None  # server (destination) address or prefix
    proto: str = "tcp"


@dataclass(frozen=True)
class FirewallPolicy:
    """A stateful policy: inside->outside allowed, new outside->inside denied but for
    published services, replies allowed by session state."""

    tcp_timeout: int = LINUX_ESTABLISHED_TIMEOUT  # idle timeout of any established TCP session
    timeouts: tuple[TimeoutRule, ...] = ()
    allow_inbound: tuple[Service, ...] = ()
    allow_outbound: bool = True
    loose_pickup: bool = False  # admit a mid-stream segment with no session (creates one)
    reset_on_expiry: bool = False  # RST both ends when an established session expires
    # Accept TCP segments outside the window conntrack has seen: a firewall that sees only
    # one direction of a session (asymmetric paths with session sync) cannot track windows.
    liberal_windows: bool = False
    # Hand a TCP packet of a session this firewall never saw (a SYN-ACK or mid-stream
    # segment) to the peer firewall over the FW1-FW2 link: "route" (routed to the peer's
    # link address: the destination MAC is rewritten) or "vxlan" (Ethernet in UDP: a second
    # MAC header). Packets that came from the peer are never handed back (no loops).
    peer_handoff: str = "off"
    helpers: tuple[Helper, ...] = ()  # ALGs on service ports; none: no helper runs at all
    snat: bool = False  # source NAT: what leaves by the outside takes its address (masquerade)
    # The session table as a resource (S5). The firewall's own capacity: new sessions
    # beyond it are dropped (a vendor's "max sessions"; the kernel's nf_conntrack_max is
    # global and read-only inside a namespace, so it is not the lever).
    max_sessions: int | None = None
    per_source_limit: int | None = None  # open sessions one source address may hold
    half_open_timeout: int | None = None  # s in SYN_SENT / SYN_RECV (Linux: 120 / 60)
    closed_timeout: int | None = None  # s a closed TCP session stays (TIME_WAIT, CLOSE: 120 / 10)
    synproxy: bool = False  # answer SYNs to inbound TCP services itself (SYN cookies)
    # Make room at 3/4 of max_sessions by dropping half-open sessions (nobody answered
    # them yet), as Linux's early drop does at nf_conntrack_max (an agent: see
    # lab/agents/early_drop.py).
    early_drop: bool = False

    def with_changes(self, **changes: Any) -> FirewallPolicy:
        policy = replace(self, **changes)
        validate_policy(policy)
        return policy


def _check_port(port: object, where: str, problems: list[str], key: str = "port") -> None:
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        problems.append(f"{where}.{key}: {port!r} is not a port number (1-65535)")


def _check_proto(proto: object, where: str, problems: list[str]) -> None:
    if proto not in PROTOCOLS:
        problems.append(f"{where}.proto: {proto!r} is not one of {', '.join(PROTOCOLS)}")


def _check_address(address: object, where: str, problems: list[str]) -> None:
    if address is None:
        return
    try:
        ipaddress.IPv4Network(str(address), strict=True)
    except ValueError as exc:
        problems.append(f"{where}.address: {address!r} is not an IPv4 address or prefix ({exc})")


def _check_host(address: object, key: str, problems: list[str]) -> None:
    """One IPv4 address (no prefix): a VIP, a peer."""
    try:
        ipaddress.IPv4Address(str(address))
    except ValueError:
        problems.append(f"{key}: {address!r} is not an IPv4 address")


def _check_timeout(value: object, where: str, problems: list[str]) -> None:
    # conntrack keeps timeouts in whole seconds; 2**31 / 1000 keeps jiffies in range.
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 2_000_000:
        problems.append(f"{where}: {value!r} is not a timeout in whole seconds (1-2000000)")


def policy_problems(policy: FirewallPolicy) -> list[str]:
    """Every problem with a policy, each naming the attribute."""
    problems: list[str] = []
    _check_timeout(policy.tcp_timeout, "tcp_timeout", problems)
    for i, rule in enumerate(policy.timeouts):
        where = f"timeouts[{i}]"
        _check_timeout(rule.timeout, f"{where}.timeout", problems)
        _check_proto(rule.proto, where, problems)
        _check_address(rule.address, where, problems)
        if rule.port is not None:
            _check_port(rule.port, where, problems)
        if rule.port is None and rule.address is None:
            problems.append(f"{where}: names neither a port nor an address (use tcp_timeout)")
    for i, service in enumerate(policy.allow_inbound):
        where = f"allow_inbound[{i}]"
        _check_port(service.port, where, problems)
        _check_proto(service.proto, where, problems)
        _check_address(service.address, where, problems)
        if service.port_end is not None:
            _check_port(service.port_end, where, problems, "port_end")
            if (
                isinstance(service.port, int)
                and isinstance(service.port_end, int)
                and service.port_end < service.port
            ):
                problems.append(
                    f"{where}: port range {service.port}-{service.port_end} is reversed (port_end below port)"
                )
    for i, helper in enumerate(policy.helpers):
        where = f"helpers[{i}]"
        _check_port(helper.port, where, problems)
        _check_proto(helper.proto, where, problems)
        if helper.type not in HELPER_TYPES:
            problems.append(
                f"{where}.type: {helper.type!r} is not a conntrack helper (known: {', '.join(HELPER_TYPES)})"
            )
    for name in ("allow_outbound", "loose_pickup", "reset_on_expiry", "liberal_windows", "snat"):
        if not isinstance(getattr(policy, name), bool):
            problems.append(f"{name}: {getattr(policy, name)!r} is not true or false")
    for name in ("max_sessions", "per_source_limit"):
        value = getattr(policy, name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            problems.append(f"{name}: {value!r} is not a positive whole number")
    for name in ("half_open_timeout", "closed_timeout"):
        if getattr(policy, name) is not None:
            _check_timeout(getattr(policy, name), name, problems)
    if not isinstance(policy.synproxy, bool):
        problems.append(f"synproxy: {policy.synproxy!r} is not true or false")
    elif policy.synproxy and not any(s.proto == "tcp" for s in policy.allow_inbound):
        problems.append("synproxy: no inbound TCP service to protect (allow_inbound)")
    if not isinstance(policy.early_drop, bool):
        problems.append(f"early_drop: {policy.early_drop!r} is not true or false")
    elif policy.early_drop and policy.max_sessions is None:
        problems.append("early_drop: needs max_sessions (the capacity it makes room in)")
    if policy.synproxy and policy.loose_pickup:
        problems.append("synproxy with loose_pickup: the proxied handshake needs strict tracking")
    if policy.peer_handoff not in HANDOFF_MODES:
        problems.append(f"peer_handoff: {policy.peer_handoff!r} is not one of {', '.join(HANDOFF_MODES)}")
    if policy.loose_pickup is True and policy.reset_on_expiry is True:
        problems.append(
            "reset_on_expiry with loose_pickup: the probe that learns the sequence numbers "
            "would itself re-open the expired session"
        )
    return problems


def validate_policy(policy: FirewallPolicy) -> FirewallPolicy:
    problems = policy_problems(policy)
    if problems:
        raise ConfigError(problems)
    return policy


def _take(cls: type, data: Mapping[str, Any], where: str, problems: list[str]) -> dict[str, Any]:
    """The keys of `data` that `cls` knows; an unknown key is a problem."""
    names = {f.name for f in fields(cls)}
    if not isinstance(data, Mapping):
        problems.append(f"{where}: expected a table, got {type(data).__name__}")
        return {}
    for key in data:
        if key not in names:
            problems.append(f"{where}: unknown key {key!r} (known: {', '.join(sorted(names))})")
    return {k: v for k, v in data.items() if k in names}


def _items(data: Mapping[str, Any], key: str, cls: type, problems: list[str]) -> tuple[Any, ...]:
    raw = data.get(key, [])
    if not isinstance(raw, list):
        problems.append(f"{key}: expected a list of tables")
        return ()
    out = []
    for i, item in enumerate(raw):
        where = f"{key}[{i}]"
        kwargs = _take(cls, item, where, problems)
        required = [f.name for f in fields(cls) if f.default is MISSING and f.name not in kwargs]
        for name in required:
            problems.append(f"{where}: missing {name!r}")
        if not required:
            out.append(cls(**kwargs))
    return tuple(out)


def policy_from_dict(data: Mapping[str, Any]) -> FirewallPolicy:
    """A validated policy from plain data (a parsed TOML document)."""
    problems: list[str] = []
    top = _take(FirewallPolicy, data, "policy", problems)
    top["timeouts"] = _items(data, "timeouts", TimeoutRule, problems)
    top["allow_inbound"] = _items(data, "allow_inbound", Service, problems)
    top["helpers"] = _items(data, "helpers", Helper, problems)
    policy = FirewallPolicy(**top)
    problems.extend(policy_problems(policy))
    if problems:
        raise ConfigError(problems)
    return policy


def load_policy(path: Path) -> FirewallPolicy:
    """A validated policy from a TOML file; errors name the file."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    try:
        return policy_from_dict(data)
    except ConfigError as exc:
        raise ConfigError([f"{path}: {p}" for p in exc.problems]) from None


# --- L4 balancers ----------------------------------------------------------------------
BALANCE_ALGORITHMS = ("round-robin", "weighted", "source-hash")
BALANCE_MODES = ("nat", "dsr")


@dataclass(frozen=True)
class RealServer:
    """A real server behind a balancer: its address, port and weight (weighted only)."""

    address: str
    port: int
    weight: int = 1


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


def balancer_problems(config: L4Balancer) -> list[str]:
    """Every problem with a balancer, each naming the attribute."""
    problems: list[str] = []
    _check_host(config.vip, "balancer.vip", problems)
    _check_port(config.port, "balancer", problems)
    _check_proto(config.proto, "balancer", problems)
    if config.algorithm not in BALANCE_ALGORITHMS:
        problems.append(
            f"balancer.algorithm: {config.algorithm!r} is not one of {', '.join(BALANCE_ALGORITHMS)}"
        )
    if not config.servers:
        problems.append("balancer.servers: no real server")
    for i, server in enumerate(config.servers):
        where = f"balancer.servers[{i}]"
        _check_address(server.address, where, problems)
        _check_port(server.port, where, problems)
        if (
            not isinstance(server.weight, int)
            or isinstance(server.weight, bool)
            or not 1 <= server.weight <= 100
        ):
            problems.append(f"{where}.weight: {server.weight!r} is not a weight (1-100)")
    seen = [(s.address, s.port) for s in config.servers]
    for twice in sorted({x for x in seen if seen.count(x) > 1}):
        problems.append(f"balancer.servers: {twice[0]}:{twice[1]} is listed more than once")
    if config.mode not in BALANCE_MODES:
        problems.append(f"balancer.mode: {config.mode!r} is not one of {', '.join(BALANCE_MODES)}")
    if config.mode == "dsr":
        if config.snat:
            problems.append("balancer.snat: direct server return rewrites no address (mode dsr)")
        for i, server in enumerate(config.servers):
            if server.port != config.port:
                problems.append(
                    f"balancer.servers[{i}].port: {server.port!r} is not the VIP's port {config.port!r} "
                    "(direct server return keeps the port)"
                )
    return problems


def balancer_from_dict(data: Mapping[str, Any]) -> L4Balancer:
    """A validated L4 balancer from plain data (servers: a list of tables)."""
    problems: list[str] = []
    top = _take(L4Balancer, data, "balancer", problems)
    top["servers"] = _items(data, "servers", RealServer, problems)
    for key in ("vip", "port"):
        if key not in top:
            problems.append(f"balancer: missing {key!r}")
    if problems:
        raise ConfigError(problems)
    config = L4Balancer(**top)
    problems = balancer_problems(config)
    if problems:
        raise ConfigError(problems)
    return config


# --- L7 balancer (ADC) and redundancy -------------------------------------------------
ADC_ALGORITHMS = ("roundrobin", "leastconn", "source")


@dataclass(frozen=True)
class HealthCheck:
    """How a balancer checks a real server: a TCP connect or an HTTP GET of `path`, every
    `interval_ms`; `fall` failures take it out, `rise` successes put it back."""

    kind: str = "tcp"  # "tcp" or "http"
    path: str = "/health"
    interval_ms: int = 200
    rise: int = 2
    fall: int = 2


@dataclass(frozen=True)
class Pool:
    """A group of real servers behind the ADC (an haproxy backend)."""

    name: str
    servers: tuple[RealServer, ...]
    algorithm: str = "roundrobin"
    check: HealthCheck | None = None
    cookie: bool = False  # persistence: the ADC inserts a cookie naming the server
    tls: bool = False  # re-encrypt towards the servers (HTTPS to them)


@dataclass(frozen=True)
class Route:
    """Requests to `pool` when the path starts with `path_prefix` and/or a header has a value."""

    pool: str
    path_prefix: str | None = None
    header: str | None = None
    value: str | None = None


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


def adc_problems(adc: Adc) -> list[str]:
    problems: list[str] = []
    _check_host(adc.vip, "adc.vip", problems)
    _check_port(adc.port, "adc", problems)
    names = [p.name for p in adc.pools]
    if not names:
        problems.append("adc.pools: no pool")
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"adc.pools: {name!r} is defined more than once")
    for i, pool in enumerate(adc.pools):
        where = f"adc.pools[{i}]"
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", pool.name):
            problems.append(f"{where}.name: {pool.name!r} is not a name (letters, digits, _ and -)")
        if pool.algorithm not in ADC_ALGORITHMS:
            problems.append(
                f"{where}.algorithm: {pool.algorithm!r} is not one of {', '.join(ADC_ALGORITHMS)}"
            )
        if not pool.servers:
            problems.append(f"{where}.servers: no real server")
        for j, server in enumerate(pool.servers):
            _check_address(server.address, f"{where}.servers[{j}]", problems)
            _check_port(server.port, f"{where}.servers[{j}]", problems)
        check = pool.check
        if check is not None:
            if check.kind not in ("tcp", "http"):
                problems.append(f"{where}.check.kind: {check.kind!r} is not tcp or http")
            for key in ("interval_ms", "rise", "fall"):
                value = getattr(check, key)
                if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                    problems.append(f"{where}.check.{key}: {value!r} is not a positive whole number")
    for i, route in enumerate(adc.routes):
        where = f"adc.routes[{i}]"
        if route.pool not in names:
            problems.append(f"{where}.pool: no pool {route.pool!r} (pools: {', '.join(names)})")
        if route.path_prefix is None and route.header is None:
            problems.append(f"{where}: matches nothing (give path_prefix and/or header)")
        if (route.header is None) != (route.value is None):
            problems.append(f"{where}: a header route needs both header and value")
    for key in ("deny_pattern", "cache_pattern"):
        pattern = getattr(adc, key)
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as exc:
                problems.append(f"adc.{key}: {pattern!r} is not a regex ({exc})")
    _check_timeout(adc.cache_seconds, "adc.cache_seconds", problems)
    if adc.peers and not adc.persist_source:
        problems.append("adc.peers: peers share a stick table; set persist_source")
    for i, (name, address) in enumerate(adc.peers):
        host, _, port = address.rpartition(":")
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", str(name)):
            problems.append(f"adc.peers[{i}]: {name!r} is not a name")
        _check_host(host, f"adc.peers[{i}]", problems)
        _check_port(int(port) if port.isdigit() else port, f"adc.peers[{i}]", problems)
    return problems


@dataclass(frozen=True)
class VrrpInstance:
    """One side of an active/standby pair (keepalived, VRRPv3): the virtual address moves
    to the standby when the active one stops advertising (every `advert_s`)."""

    interface: str
    router_id: int
    priority: int
    vip: str  # with its prefix, e.g. 10.0.2.100/24
    advert_s: float = 0.1
    peer: str | None = None  # unicast to this peer address (multicast without)


def vrrp_problems(vrrp: VrrpInstance) -> list[str]:
    problems: list[str] = []
    if not isinstance(vrrp.router_id, int) or not 1 <= vrrp.router_id <= 255:
        problems.append(f"vrrp.router_id: {vrrp.router_id!r} is not 1-255")
    if not isinstance(vrrp.priority, int) or not 1 <= vrrp.priority <= 254:
        problems.append(f"vrrp.priority: {vrrp.priority!r} is not 1-254")
    try:
        ipaddress.IPv4Interface(str(vrrp.vip))
        if "/" not in str(vrrp.vip):
            raise ValueError("no prefix")
    except ValueError:
        problems.append(f"vrrp.vip: {vrrp.vip!r} is not an address with its prefix (10.0.2.100/24)")
    if not 0.01 <= vrrp.advert_s <= 40:
        problems.append(f"vrrp.advert_s: {vrrp.advert_s!r} is not 0.01-40 s (VRRPv3 centiseconds)")
    if vrrp.peer is not None:
        _check_host(vrrp.peer, "vrrp.peer", problems)
    return problems


# --- FTP server ------------------------------------------------------------------------
@dataclass(frozen=True)
class FtpServerConfig:
    """An FTP server (vsftpd): anonymous downloads from `root`, the control port, the
    passive range it announces, and how long it waits for a data connection (s)."""

    root: str
    port: int = 21
    pasv_min: int = 30000
    pasv_max: int = 30009
    data_timeout: int = 3  # connect (active) or accept (passive) a data connection
    idle_timeout: int = 300  # a control session with no command


def ftp_server_problems(config: FtpServerConfig) -> list[str]:
    problems: list[str] = []
    for key in ("port", "pasv_min", "pasv_max"):
        _check_port(getattr(config, key), "ftp_server", problems, key)
    if (
        isinstance(config.pasv_min, int)
        and isinstance(config.pasv_max, int)
        and config.pasv_max < config.pasv_min
    ):
        problems.append(f"ftp_server: passive range {config.pasv_min}-{config.pasv_max} is reversed")
    for key in ("data_timeout", "idle_timeout"):
        _check_timeout(getattr(config, key), f"ftp_server.{key}", problems)
    return problems


# --- link impairments -----------------------------------------------------------------
_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0}
_DURATION = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(us|ms|s)\s*$")
IMPAIRMENT_OPTIONS = ("delay", "jitter", "loss", "reorder", "duplicate")


@dataclass(frozen=True)
class Impairment:
    """What one direction of a link does to its frames: delay with uniform jitter (s),
    and the percentages lost, duplicated, and sent at once ahead of delayed ones
    (reordered)."""

    delay: float = 0.0
    jitter: float = 0.0
    loss: float = 0.0
    reorder: float = 0.0
    duplicate: float = 0.0

    @property
    def active(self) -> bool:
        return any((self.delay, self.jitter, self.loss, self.reorder, self.duplicate))

    def describe(self) -> str:
        """In a report's words: "25 ms +/- 5 ms, loss 2 %", or "none"."""
        parts = []
        if self.delay:
            parts.append(
                f"{self.delay * 1000:g} ms" + (f" +/- {self.jitter * 1000:g} ms" if self.jitter else "")
            )
        parts += [f"{name} {value:g} %" for name, value in self._shares() if value]
        return ", ".join(parts) or "none"

    def _shares(self) -> tuple[tuple[str, float], ...]:
        return (("loss", self.loss), ("reorder", self.reorder), ("duplicate", self.duplicate))


def _duration(value: object, key: str, problems: list[str]) -> float:
    """Seconds from a Mininet-style duration ("25ms", "1.5s", "200us")."""
    match = _DURATION.match(str(value)) if isinstance(value, str) else None
    if match is None:
        problems.append(f"{key} {value!r} is not a duration with a unit (us, ms, s), e.g. '25ms'")
        return 0.0
    seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds < 0:
        problems.append(f"{key} {value!r} is negative")
    return max(seconds, 0.0)


def _percent(value: object, key: str, problems: list[str]) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 100:
        problems.append(f"{key} {value!r} is not a percentage (0-100)")
        return 0.0
    return float(value)


def impairment_from(link: str, options: Mapping[str, Any]) -> Impairment:
    """An Impairment from Mininet-style link options (delay="25ms", jitter="5ms", loss=2,
    reorder=1, duplicate=1); every problem is reported at once, naming the link."""
    problems: list[str] = []
    delay, jitter = (
        _duration(options[k], k, problems) if options.get(k) not in (None, 0) else 0.0
        for k in ("delay", "jitter")
    )
    if jitter and not delay:
        problems.append("jitter needs a delay")
    elif jitter > delay:
        problems.append(f"jitter {options['jitter']!r} is larger than the delay {options['delay']!r}")
    percents = {k: _percent(options.get(k) or 0, k, problems) for k in ("loss", "reorder", "duplicate")}
    if problems:
        raise ConfigError([f"link {link}: {p}" for p in problems])
    return Impairment(delay=delay, jitter=jitter, **percents)
