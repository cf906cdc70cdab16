"""The session-device protocol, the role registry and session-table sources.

A session device's lifecycle: render its configuration (a pure function) -> check it with
the device itself -> start it as an owned process or load it -> ready on an event -> its
session table as data -> reset between cases -> stop by PID with the lab.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from lab.errors import ConfigError

if TYPE_CHECKING:
    from lab.conntrack import Session
    from lab.net import Lab


@runtime_checkable
class SessionSource(Protocol):
    """Anything that can list the sessions it holds: a kernel's conntrack, a daemon's
    statistics, a controller's table."""

    name: str

    def sessions(self) -> list[Session]: ...


@runtime_checkable
class SessionDevice(SessionSource, Protocol):
    """A node that keeps sessions and that the lab starts, resets per case and stops."""

    def lab_start(self, lab: Lab) -> None:
        """Called once the network is up: render, check, start, wait until ready."""

    def reset(self) -> None:
        """Empty the session table and zero the counters: a case starts clean."""


ROLES: dict[str, type] = {}


def register(role: str) -> Any:
    """Class decorator: topology nodes with `role=<role>` run as this class."""

    def add(cls: type) -> type:
        ROLES[role] = cls
        return cls

    return add


def device_class(role: str, base: type | None = None) -> type:
    """The class a node of `role` runs as, layered on the topology's own class `base`."""
    try:
        device = ROLES[role]
    except KeyError:
        known = ", ".join(sorted(ROLES)) or "none"
        raise ConfigError(f"unknown role {role!r} (known: {known})") from None
    if base is None or issubclass(device, base):
        return device
    return type(f"{device.__name__}On{base.__name__}", (device, base), {})
