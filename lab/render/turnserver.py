"""StunConfig -> turnserver.conf text (coturn as a plain RFC 5780 STUN server). Pure:
golden-file tested.

RFC 5780 needs the server on two addresses and two ports: it answers a CHANGE-REQUEST
from the other address and/or port, and names that other endpoint in OTHER-ADDRESS. coturn
turns this on by itself when it listens on two addresses of one family (`listening-ip`
twice) with `alt-listening-port`. Its OTHER-ADDRESS is always its *second* listening
address (coturn 4.6.1 and master: `get_alt_addr` starts from the first listener of the
family, not from the one asked), so a client must address `primary`, listed first: asked
on `secondary` it names `secondary` as the other address and the change-IP tests change
nothing.

STUN only (no TURN relays, so no credentials), UDP only (RFC 5780 is UDP), no TLS/DTLS,
no telnet CLI, and everything it logs on stdout, with each new client endpoint
(`verbose` + `log-binding`): the server's side of the evidence (the mapped address the
device gave the client).
"""

from __future__ import annotations

from dataclasses import dataclass

from lab.config import checks


@dataclass(frozen=True)
class StunConfig:
    """An RFC 5780 STUN server: clients address `primary`:`port`; the answers to a change
    request come from `secondary` and/or `alt_port`."""

    primary: str
    secondary: str
    port: int = 3478
    alt_port: int = 3479

    def problems(self) -> list[str]:
        """Every problem, each naming its attribute."""
        problems: list[str] = []
        checks.host(self.primary, "stun.primary", problems)
        checks.host(self.secondary, "stun.secondary", problems)
        if self.primary == self.secondary:
            problems.append(f"stun.secondary: {self.secondary} is also the primary (RFC 5780 needs two)")
        checks.port(self.port, "stun", problems)
        checks.port(self.alt_port, "stun", problems, "alt_port")
        if self.port == self.alt_port:
            problems.append(f"stun.alt_port: {self.alt_port} is also the port (RFC 5780 needs two)")
        return problems

    def listeners(self) -> list[tuple[str, int]]:
        """The four UDP endpoints it listens on (address, port)."""
        return [(a, p) for a in (self.primary, self.secondary) for p in (self.port, self.alt_port)]


def render_turnserver(config: StunConfig, state_dir: str) -> str:
    """The whole turnserver.conf; `state_dir`: where its pid file and (unused, but always
    opened) SQLite user database go, so no two servers share /var files."""
    lines = [
        "log-file=stdout",
        "simple-log",
        "verbose",
        "log-binding",
        # The primary first: coturn's OTHER-ADDRESS is always its second listening address.
        f"listening-ip={config.primary}",
        f"listening-ip={config.secondary}",
        f"listening-port={config.port}",
        f"alt-listening-port={config.alt_port}",
        "stun-only",
        "no-auth",
        "no-tcp",
        "no-tls",
        "no-dtls",
        "no-cli",
        f"pidfile={state_dir}/turnserver.pid",
        f"userdb={state_dir}/turndb",
    ]
    return "".join(f"{line}\n" for line in lines)
