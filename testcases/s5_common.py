"""S5's shared parts (SCENARIOS.md, a stateful firewall and its session table): the
services, the intent every S5 module starts from, and what the echo servers accepted.

   inside: srv 10.0.1.10 (echo servers on 80, published, and 5001, not), c1 10.0.1.11
   outside: ext 10.0.2.10 (echo server on 8080), legit .20, attacker .66 (spoofing .166), scanner .77
"""

from __future__ import annotations

from lab.config import FirewallPolicy, Service
from lab.traffic import server_events

PUBLISHED, UNPUBLISHED, OUTBOUND = 80, 5001, 8080  # srv's published and other service, ext's
INTENT = FirewallPolicy(allow_inbound=(Service(PUBLISHED),))
# The echo servers of every S5 case, node -> ports (the shared `servers` fixture).
ECHOES = {"srv": (PUBLISHED, UNPUBLISHED), "ext": (OUTBOUND,)}


def accepted_from(servers, name: str, client: str, port: int) -> set[int]:
    """Source ports of `client` whose sessions the server `name` accepted on `port`."""
    return {
        int(e["peer"].rsplit(":", 1)[1])
        for e in server_events(servers[name])
        if e["event"] == "accept" and e["port"] == port and e["peer"].startswith(f"{client}:")
    }
