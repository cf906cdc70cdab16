"""Firewall policies as typed data: services, ALGs, timeouts, the session table's limits.

Loaded from TOML or dicts with unknown keys rejected; `problems()` lists every problem,
naming its place. The firewall device validates a policy once, when it is configured.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from lab.config import checks

HANDOFF_MODES = ("off", "route", "vxlan")
# Masquerade's choice of the outside port: "" keeps the inside source port where it is free
# (Linux's own), "random" / "fully-random" pick a random one for every new mapping.
SNAT_RANDOM = ("", "random", "fully-random")
# What becomes of ICMP errors about a session (see FirewallPolicy.icmp_errors).
ICMP_ERROR_MODES = ("related", "drop")
# Linux's own default for an established TCP session: five days.
LINUX_ESTABLISHED_TIMEOUT = 432000
# Linux's own UDP timeouts: a flow with no reply yet (nf_conntrack_udp_timeout) and one that
# has seen replies and is still active after 2 s (nf_conntrack_udp_timeout_stream).
LINUX_UDP_TIMEOUT = 30
LINUX_UDP_STREAM_TIMEOUT = 120
# Kernel conntrack helpers (ALGs) a policy may assign to a service port, and the protocols
# each is registered for (the first is a helper's default): nf_conntrack_tftp has no TCP
# helper, so nft refuses `type "tftp" protocol tcp`.
HELPER_PROTOCOLS = {"ftp": ("tcp",), "tftp": ("udp",), "irc": ("tcp",), "sip": ("udp", "tcp")}
HELPER_TYPES = tuple(HELPER_PROTOCOLS)


@dataclass(frozen=True)
class Service:
    """A published inside service: new sessions from outside to it are allowed. With
    `port_end`, every port from `port` to `port_end` (an FTP server's passive range)."""

    port: int
    proto: str = "tcp"
    address: str | None = None  # inside address or prefix, IPv4 or IPv6; None: any
    port_end: int | None = None

    def problems(self, where: str = "service") -> list[str]:
        problems: list[str] = []
        checks.port(self.port, where, problems)
        checks.proto(self.proto, where, problems)
        checks.address(self.address, where, problems, ipv6=True)
        if self.port_end is not None:
            checks.port(self.port_end, where, problems, "port_end")
            if isinstance(self.port, int) and isinstance(self.port_end, int) and self.port_end < self.port:
                problems.append(
                    f"{where}: port range {self.port}-{self.port_end} is reversed (port_end below port)"
                )
        return problems


@dataclass(frozen=True)
class Helper:
    """An ALG: the kernel's conntrack helper `type` follows the sessions to `port` (FTP's
    control session) and expects the data session they announce, which the firewall then
    lets through as related (and, with source NAT, rewrites the address announced)."""

    port: int
    type: str = "ftp"
    proto: str = ""  # "": the protocol the helper is registered for (tftp: udp, ftp: tcp)

    def __post_init__(self) -> None:
        if self.proto == "":
            known = HELPER_PROTOCOLS.get(self.type) if isinstance(self.type, str) else None
            object.__setattr__(self, "proto", (known or ("tcp",))[0])

    def problems(self, where: str = "helper") -> list[str]:
        problems: list[str] = []
        checks.port(self.port, where, problems)
        checks.proto(self.proto, where, problems)
        if self.type not in HELPER_TYPES:
            problems.append(
                f"{where}.type: {self.type!r} is not a conntrack helper (known: {', '.join(HELPER_TYPES)})"
            )
        elif self.proto in checks.PROTOCOLS and self.proto not in HELPER_PROTOCOLS[self.type]:
            problems.append(
                f"{where}.proto: the kernel's {self.type} helper follows "
                f"{' and '.join(HELPER_PROTOCOLS[self.type])} only, not {self.proto}"
            )
        return problems


def helper_conflicts(helpers: tuple[Helper, ...]) -> list[str]:
    """Two helpers on one port and protocol: a session gets one helper, so the second
    would never run (and the same helper twice is a slip)."""
    problems: list[str] = []
    first: dict[tuple[str, str], int] = {}
    for i, helper in enumerate(helpers):
        key = (repr(helper.port), repr(helper.proto))  # repr: a bad value (a list) is no key
        if key not in first:
            first[key] = i
            continue
        j, on = first[key], f"{helper.port}/{helper.proto}"
        if helpers[j] == helper:
            problems.append(f"helpers[{i}]: the same helper as helpers[{j}] ({helper.type} on {on})")
        else:
            problems.append(
                f"helpers[{i}]: {helper.type} on {on} clashes with helpers[{j}] ({helpers[j].type} "
                f"on {on}): a session gets one helper"
            )
    return problems


@dataclass(frozen=True)
class TimeoutRule:
    """An idle timeout for the sessions to one service port and/or server address."""

    timeout: int  # seconds an established session may idle
    port: int | None = None
    address: str | None = None  # server (destination) address or prefix, IPv4 or IPv6
    proto: str = "tcp"

    def problems(self, where: str = "timeout") -> list[str]:
        problems: list[str] = []
        checks.timeout(self.timeout, f"{where}.timeout", problems)
        checks.proto(self.proto, where, problems)
        checks.address(self.address, where, problems, ipv6=True)
        if self.port is not None:
            checks.port(self.port, where, problems)
        if self.port is None and self.address is None:
            problems.append(f"{where}: names neither a port nor an address (use tcp_timeout)")
        return problems


@dataclass(frozen=True)
class FirewallPolicy:
    """A stateful policy: inside->outside allowed, new outside->inside denied but for
    published services, replies allowed by session state.

    `full_cone` (with `snat`) makes the NAT "full cone" for one inside host, RFC 4787's
    endpoint-independent mapping and filtering: any new UDP packet from outside to the
    firewall's outside address on a port 1024-65535 goes to that host on the same port, so
    once the host has sent from a port, anyone outside may reach it there; masquerade keeps
    the inside source port where it is free, so the mapping does not depend on the
    destination either. Without it the NAT filters by address and port (Linux's own).
    """

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
    snat_random: str = ""  # masquerade's port choice, one of SNAT_RANDOM (needs snat)
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
    # UDP idle timeouts (s); None: Linux's (30 and 120). Set either and both are written.
    udp_timeout: int | None = None  # a flow that has seen no reply yet
    udp_stream_timeout: int | None = None  # one with replies, still active after 2 s
    full_cone: str | None = None  # an inside host address: see the class docstring (needs snat)
    # ICMP errors about a session (ICMP "fragmentation needed", ICMPv6 "packet too big",
    # unreachables), either family: "related", let through as conntrack's RELATED (what
    # every policy did before this option); "drop", dropped and counted (drop_icmp_error):
    # a firewall that "blocks ICMP", and with it path MTU discovery (S5's PMTU black hole).
    icmp_errors: str = "related"
    # Lower the MSS option of every forwarded SYN and SYN-ACK to what the routes' MTU allows
    # (nftables `tcp option maxseg size set rt mtu`), so segments fit without PMTUD. It knows
    # only the MTUs the firewall's routes know: a narrower link beyond a router must be told.
    clamp_mss: bool = False

    def with_changes(self, **changes: Any) -> FirewallPolicy:
        """A copy with `changes`, refused at once if it is not a valid policy (cases build
        their policies at import time: a typo fails the collection, not a run)."""
        policy = replace(self, **changes)
        checks.refuse(policy.problems())
        return policy

    def problems(self) -> list[str]:
        """Every problem with the policy, each naming the attribute."""
        problems: list[str] = []
        checks.timeout(self.tcp_timeout, "tcp_timeout", problems)
        for i, rule in enumerate(self.timeouts):
            problems += rule.problems(f"timeouts[{i}]")
        for i, service in enumerate(self.allow_inbound):
            problems += service.problems(f"allow_inbound[{i}]")
        for i, helper in enumerate(self.helpers):
            problems += helper.problems(f"helpers[{i}]")
        problems += helper_conflicts(self.helpers)
        if self.icmp_errors not in ICMP_ERROR_MODES:
            problems.append(f"icmp_errors: {self.icmp_errors!r} is not one of {', '.join(ICMP_ERROR_MODES)}")
        for name in (
            "allow_outbound",
            "loose_pickup",
            "reset_on_expiry",
            "liberal_windows",
            "snat",
            "clamp_mss",
        ):
            if not isinstance(getattr(self, name), bool):
                problems.append(f"{name}: {getattr(self, name)!r} is not true or false")
        for name in ("max_sessions", "per_source_limit"):
            value = getattr(self, name)
            if value is not None and not checks.is_count(value):
                problems.append(f"{name}: {value!r} is not a positive whole number")
        for name in ("half_open_timeout", "closed_timeout", "udp_timeout", "udp_stream_timeout"):
            if getattr(self, name) is not None:
                checks.timeout(getattr(self, name), name, problems)
        if not isinstance(self.synproxy, bool):
            problems.append(f"synproxy: {self.synproxy!r} is not true or false")
        elif self.synproxy and not any(s.proto == "tcp" for s in self.allow_inbound):
            problems.append("synproxy: no inbound TCP service to protect (allow_inbound)")
        if not isinstance(self.early_drop, bool):
            problems.append(f"early_drop: {self.early_drop!r} is not true or false")
        elif self.early_drop and self.max_sessions is None:
            problems.append("early_drop: needs max_sessions (the capacity it makes room in)")
        if self.synproxy and self.loose_pickup:
            problems.append("synproxy with loose_pickup: the proxied handshake needs strict tracking")
        if self.full_cone is not None:
            checks.host(self.full_cone, "full_cone", problems)
            if self.snat is not True:
                problems.append("full_cone: needs snat (the mapping it opens to everyone outside)")
        if self.snat_random not in SNAT_RANDOM:
            problems.append(
                f"snat_random: {self.snat_random!r} is not one of {', '.join(map(repr, SNAT_RANDOM))}"
            )
        elif self.snat_random and self.snat is not True:
            problems.append("snat_random: needs snat (the mapping whose port it picks)")
        if self.peer_handoff not in HANDOFF_MODES:
            problems.append(f"peer_handoff: {self.peer_handoff!r} is not one of {', '.join(HANDOFF_MODES)}")
        if self.loose_pickup is True and self.reset_on_expiry is True:
            problems.append(
                "reset_on_expiry with loose_pickup: the probe that learns the sequence numbers "
                "would itself re-open the expired session"
            )
        return problems


def policy_problems(policy: FirewallPolicy) -> list[str]:
    """Every problem with a policy (kept for callers: `policy.problems()`)."""
    return policy.problems()


def validate_policy(policy: FirewallPolicy) -> FirewallPolicy:
    """The policy, or a ConfigError with all its problems (kept for callers)."""
    checks.refuse(policy.problems())
    return policy


def policy_from_dict(data: Mapping[str, Any]) -> FirewallPolicy:
    """A validated policy from plain data (a parsed TOML document)."""
    problems: list[str] = []
    top = checks.take(FirewallPolicy, data, "policy", problems)
    top["timeouts"] = checks.items(data, "timeouts", TimeoutRule, problems)
    top["allow_inbound"] = checks.items(data, "allow_inbound", Service, problems)
    top["helpers"] = checks.items(data, "helpers", Helper, problems)
    policy = FirewallPolicy(**top)
    checks.refuse(problems + policy.problems())
    return policy


def load_policy(path: Path) -> FirewallPolicy:
    """A validated policy from a TOML file; errors name the file."""
    policy: FirewallPolicy = checks.load_toml(path, policy_from_dict)
    return policy
