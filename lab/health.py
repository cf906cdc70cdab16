"""Health checks as a balancer does them: a server is taken out after `fall` failed checks
in a row and put back after `rise` good ones. Pure (the checks themselves are the agent's,
`lab/agents/health_check.py`), so the counting is tested offline.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ServerHealth:
    """One server's checks so far; it starts up (as haproxy's servers do)."""

    name: str
    rise: int
    fall: int
    up: bool = True
    streak: int = 0  # checks in a row that disagree with the current state
    history: list[tuple[float, bool]] = field(default_factory=list)

    def record(self, ok: bool, now: float) -> str | None:
        """A check's result at `now`; returns "down" or "up" when the state changes."""
        self.history.append((now, ok))
        if ok == self.up:
            self.streak = 0
            return None
        self.streak += 1
        if self.streak < (self.rise if ok else self.fall):
            return None
        self.up, self.streak = ok, 0
        return "up" if ok else "down"


def live(servers: dict[str, ServerHealth]) -> list[str]:
    """The servers in service, in their given order."""
    return [name for name, health in servers.items() if health.up]
