"""What `sessionlab try` will do, checked before anything is built: the scenario (which
hosts run the user's programs, which devices stand between them, which events make sense
there), the times and events of `--at`, the firewall's timeout and policy, the mode.

Pure: no lab, no root; every problem is one line (ConfigError).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from lab.config import FirewallPolicy, Service
from lab.errors import ConfigError

EVENTS = {
    "expire": "the firewall forgets the application's sessions (its conntrack entries deleted)",
    "cut": "the server's link goes down (the path breaks beyond the firewall)",
    "failover": "the active firewall of the pair fails (all its links down)",
}
DEFAULT_PORT = 9000
DEFAULT_LIMIT = 120.0
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, None: 1.0}


@dataclass(frozen=True)
class Scenario:
    """A lab `try` can run: the hosts of the user's programs and the firewalls between
    them, each with (client-side interface, server-side interface)."""

    name: str
    topology: str
    client: str
    server: str
    firewalls: dict[str, tuple[str, str]]
    events: tuple[str, ...]
    what: str
    controller: bool = False
    # the network behind the firewall that new sessions from the client must be allowed into
    # (the server sits inside: a default policy publishes the port there); None: outbound
    published: str | None = None


SCENARIOS = {
    s.name: s
    for s in (
        Scenario(
            "s1",
            "s1",
            client="client",
            server="server",
            firewalls={"fw": ("fw-in", "fw-out")},
            events=("expire", "cut"),
            what="client (inside) -- fw -- server (outside)",
        ),
        Scenario(
            "s2",
            "s2",
            client="h1",
            server="srv1",
            firewalls={"fw1": ("fw1-out", "fw1-in"), "fw2": ("fw2-out", "fw2-in")},
            events=("expire", "cut", "failover"),
            what="h1 (outside) -- fabric -- fw1 | fw2 -- fabric -- srv1 (inside)",
            controller=True,
            published="10.0.1.0/24",
        ),
    )
}


@dataclass(frozen=True)
class Event:
    """Something done to the lab at `at` seconds after the client started."""

    at: float
    kind: str

    @property
    def label(self) -> str:
        return f"{self.at:g}s:{self.kind}"


@dataclass(frozen=True)
class TryPlan:
    """A checked `sessionlab try`: everything the run needs, nothing built yet."""

    scenario: Scenario
    server_cmd: str
    client_cmd: str
    port: int
    limit: float
    policy: FirewallPolicy
    events: tuple[Event, ...] = ()
    mode: str | None = None
    policy_file: Path | None = None
    notes: list[str] = field(default_factory=list)

    def env(self, server_addr: str, client_addr: str) -> dict[str, str]:
        """What the programs are told (environment variables)."""
        return {
            "SERVER_ADDR": server_addr,
            "SERVER_PORT": str(self.port),
            "CLIENT_ADDR": client_addr,
        }

    def command(self, which: str, server_addr: str) -> str:
        """A program's command line with {server} and {port} filled in."""
        text = self.server_cmd if which == "server" else self.client_cmd
        return text.replace("{server}", server_addr).replace("{port}", str(self.port))


def parse_duration(text: str, what: str) -> float:
    """Seconds from "30s", "1.5s", "500ms", "2m" or a bare number of seconds."""
    match = _DURATION.match(text)
    if match is None:
        raise ConfigError(f"{what} {text!r} is not a time (e.g. 30s, 500ms, 2m)")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_at(text: str) -> Event:
    """An `--at TIME:EVENT` option, e.g. `30s:expire`."""
    when, sep, kind = text.rpartition(":")
    if not sep or not when:
        raise ConfigError(
            f"--at {text!r}: expected TIME:EVENT, e.g. 30s:expire (events: {', '.join(EVENTS)})"
        )
    kind = kind.strip()
    if kind not in EVENTS:
        raise ConfigError(f"--at {text!r}: unknown event {kind!r} (events: {', '.join(EVENTS)})")
    return Event(parse_duration(when, f"--at {text!r}: time"), kind)


def parse_timeout(text: str) -> int:
    """The firewall's TCP idle timeout in whole seconds (conntrack counts whole seconds)."""
    seconds = parse_duration(text, "--timeout")
    if seconds < 1 or seconds != int(seconds) or seconds > 2_000_000:
        raise ConfigError(f"--timeout {text!r}: the firewall's timeout is whole seconds, 1s to 2000000s")
    return int(seconds)


def make_plan(
    scenario: str,
    server: str,
    client: str,
    *,
    at: tuple[str, ...] = (),
    timeout: str | None = None,
    policy: Path | None = None,
    mode: str | None = None,
    port: int = DEFAULT_PORT,
    limit: str | None = None,
    modes: tuple[str, ...] = (),
) -> TryPlan:
    """Check every option; a ConfigError (one line) for the first problem. `modes`: the
    scenario's controller modes (from its topology's harness)."""
    from lab.config import load_policy

    if scenario not in SCENARIOS:
        raise ConfigError(f"try: unknown scenario {scenario!r} (try runs: {', '.join(SCENARIOS)})")
    found = SCENARIOS[scenario]
    for which, cmd in (("--server", server), ("--client", client)):
        if not cmd or not cmd.strip():
            raise ConfigError(
                f"{which}: the command is empty (give the program to run, e.g. 'python3 app.py')"
            )
    if not 1 <= port <= 65535:
        raise ConfigError(f"--port {port}: not a port (1-65535)")
    seconds = parse_duration(limit, "--limit") if limit is not None else DEFAULT_LIMIT
    if not 1 <= seconds <= 3600:
        raise ConfigError(f"--limit {limit!r}: between 1s and 3600s")
    events = tuple(sorted((parse_at(a) for a in at), key=lambda e: e.at))
    for event in events:
        if event.kind not in found.events:
            raise ConfigError(
                f"--at {event.label}: {scenario} has no {event.kind} "
                f"({'it has one firewall, no pair' if event.kind == 'failover' else 'not possible here'}; "
                f"events in {scenario}: {', '.join(found.events)})"
            )
        if event.at >= seconds:
            raise ConfigError(f"--at {event.label}: after the client's --limit of {seconds:g}s")
    if mode is not None:
        if not found.controller:
            having = ", ".join(s.name for s in SCENARIOS.values() if s.controller)
            raise ConfigError(f"--mode: {scenario} has no controller (modes exist in: {having})")
        if mode not in modes:
            raise ConfigError(f"--mode {mode!r}: not a mode of {scenario} (modes: {', '.join(modes)})")
    base = load_policy(policy) if policy is not None else default_policy(found, port)
    if timeout is not None:
        base = base.with_changes(tcp_timeout=parse_timeout(timeout))
    return TryPlan(found, server, client, port, seconds, base, events, mode, policy)


def default_policy(scenario: Scenario, port: int) -> FirewallPolicy:
    """The scenario's firewall as it stands, with the server's port reachable from the client."""
    if scenario.published is None:
        return FirewallPolicy()
    return FirewallPolicy(allow_inbound=(Service(port, address=scenario.published),))
