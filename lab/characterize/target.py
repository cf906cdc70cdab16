"""What a characterization probes and how far: `Bounds`; what it probes: `Target` (the
lab's own firewall with a policy, or a device the lab did not build, attached by its ports
and read through a driver)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lab.characterize.bisect import IdleSearch
from lab.config import FirewallPolicy
from lab.devices.drivers import Driver, NoneDriver

if TYPE_CHECKING:
    from lab.characterize.attach import Attachment

PROBES = ("tcp", "udp", "nat", "ftp", "capacity")
BUDGET_S = 24 * 3600  # a characterization estimated longer than a day is refused


@dataclass(frozen=True)
class Bounds:
    """How far and how wide a characterization probes."""

    tcp_max_s: float = 120.0  # the longest TCP idle time probed
    udp_max_s: float = 120.0  # the longest UDP idle time probed
    parallel: int = 8  # probes per round
    app_timeout_s: float = 2.0  # how long a probe waits for its answer after the idle time
    capacity_sessions: int = 1000  # concurrent sessions tried at most
    tcp_ports: tuple[int, ...] = ()  # extra TCP ports with a timeout search of their own
    probes: tuple[str, ...] = PROBES

    def problems(self) -> list[str]:
        problems = []
        for name in ("tcp_max_s", "udp_max_s", "app_timeout_s"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
                problems.append(f"{name}: {value!r} is not a positive number of seconds")
        if not isinstance(self.parallel, int) or not 2 <= self.parallel <= 64:
            problems.append(f"parallel: {self.parallel!r} is not a whole number from 2 to 64")
        if not isinstance(self.capacity_sessions, int) or not 1 <= self.capacity_sessions <= 5000:
            problems.append(
                f"capacity_sessions: {self.capacity_sessions!r} is not a whole number from 1 to 5000"
            )
        for port in self.tcp_ports:
            if not isinstance(port, int) or not 1 <= port <= 65535 or port in RESERVED_PORTS:
                problems.append(f"tcp_ports: {port!r} is not a free TCP port (1-65535, not {RESERVED_PORTS})")
        unknown = [p for p in self.probes if p not in PROBES]
        if unknown:
            problems.append(f"probes: unknown {', '.join(unknown)} (known: {', '.join(PROBES)})")
        if not problems and (why := self.too_long()) is not None:
            problems.append(f"estimate: {why}")
        return problems

    def too_long(self) -> str | None:
        """Why the bounds would take too long, or None."""
        seconds = self.estimate_seconds()
        if seconds <= BUDGET_S:
            return None
        days = seconds / 86400
        return f"about {days:.1f} days, over the 1 day allowed: lower the maximum idle times, raise parallel"

    def estimate_seconds(self) -> float:
        """The worst-case wall time (s): the idle-time searches run at once, then the rest."""
        searches = [0.0]
        if "tcp" in self.probes:
            tcp = IdleSearch(self.tcp_max_s, parallel=self.parallel).estimate_seconds(self.app_timeout_s)
            searches.append(tcp)
        if "udp" in self.probes:
            udp = IdleSearch(self.udp_max_s, parallel=self.parallel).estimate_seconds(self.app_timeout_s)
            searches.append(udp + 20)  # the bidirectional probes' warm-up, 2.5 s a round
        rest = {"tcp": 5, "nat": 30, "ftp": 20, "capacity": 15 + self.capacity_sessions / 100}
        return 15 + max(searches) + sum(v for k, v in rest.items() if k in self.probes)


RESERVED_PORTS = (21, 9000, 9001)


@dataclass(frozen=True)
class Target:
    """What is characterized: the lab's own firewall with a policy, or a device the lab did
    not build, attached by its ports and read through a driver."""

    policy: FirewallPolicy | None = None
    attachment: Attachment | None = None
    driver: Driver = field(default_factory=NoneDriver)
    inside_gw: str = "10.0.1.1"
    outside_gw: str = "10.0.2.1"
    name: str = "device"

    @property
    def built_by_lab(self) -> bool:
        return self.attachment is None
