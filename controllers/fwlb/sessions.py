"""The fabric's session table: the fabric switches' conntrack connections (`ovs-appctl
dpctl/dump-conntrack` of their zones), joined into sessions with the firewall each
switch gave them (the connection's mark). Both families: an IPv6 session's ends are
written address:port with the address unbracketed (split at the last colon)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Session:
    client: str  # the side that opened the session (the original direction's source)
    server: str
    inbound_fw: int | None = None  # the outside switch's firewall for the session
    return_fw: int | None = None  # the inside switch's
    first_seen: float = 0.0  # when the controller first read it

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class SessionTable:
    """Sessions as the fabric pinned them: which firewall each fabric switch gave them
    (their connections' marks in the outside and inside switches' conntrack zones)."""

    sessions: dict[tuple[str, str], Session] = field(default_factory=dict)

    def update(self, role: str, entries: list[dict[str, Any]], now: float) -> None:
        """`entries`: one switch's connections (`controllers.conntrack.parse_conntrack`), named by their
        original direction on both switches (each tracks both directions)."""
        for e in entries:
            fw = e.get("mark") or 0
            if not 1 <= fw <= 9 or e.get("sport") is None:
                continue  # not marked by the fabric, or without ports (ICMP): not a session here
            a, b = f"{e['src']}:{e['sport']}", f"{e['dst']}:{e['dport']}"
            session = self.sessions.get((a, b))
            if session is None:
                session = self.sessions[(a, b)] = Session(client=a, server=b, first_seen=now)
            if role == "outside":
                session.inbound_fw = fw
            else:
                session.return_fw = fw

    def to_list(self) -> list[dict[str, Any]]:
        return [s.to_dict() for s in sorted(self.sessions.values(), key=lambda s: s.first_seen)]
