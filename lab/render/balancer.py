"""L4Balancer -> nftables ruleset text: the kernel balancer. Pure: golden-file tested,
checked with `nft -c` before it is loaded.

New sessions to the VIP are DNATed to a real server chosen by `numgen inc` (round robin),
`numgen inc` over weight-sized slots (weighted), or `jhash ip saddr` (source hash: one
client, one server). Conntrack keeps each session on its server (the NAT binding is made
once, at the first packet) and rewrites the replies back to the VIP.
"""

from __future__ import annotations

from lab.config import L4Balancer, balancer_problems
from lab.errors import ConfigError

BALANCER_TABLE = "sessionlab_lb"
HASH_SEED = 0x5E55  # jhash's seed: fixed, so a client maps to the same server every run


def _slots(config: L4Balancer) -> list[str]:
    """The map from a number to a server (`address . port`): one slot per server, or as
    many slots as its weight (weighted)."""
    entries, first = [], 0
    for server in config.servers:
        width = server.weight if config.algorithm == "weighted" else 1
        key = f"{first}" if width == 1 else f"{first}-{first + width - 1}"
        entries.append(f"{key} : {server.address} . {server.port}")
        first += width
    return entries


def slot_count(config: L4Balancer) -> int:
    return sum(s.weight for s in config.servers) if config.algorithm == "weighted" else len(config.servers)


def render_balancer(config: L4Balancer, server_side: str | None = None) -> str:
    """The balancer's ruleset; `server_side` is the interface towards the real servers
    (needed with `snat`). Starts with deleting the table: loading it again replaces it."""
    problems = balancer_problems(config)
    if config.snat and server_side is None:
        problems.append("balancer.snat: needs the interface towards the servers")
    if problems:
        raise ConfigError(problems)
    chooser = (
        f"jhash ip saddr mod {slot_count(config)} seed {HASH_SEED:#x}"
        if config.algorithm == "source-hash"
        else f"numgen inc mod {slot_count(config)}"
    )
    lines = [
        f"table ip {BALANCER_TABLE}",
        f"delete table ip {BALANCER_TABLE}",
        f"table ip {BALANCER_TABLE} {{",
        "\tchain to_servers {",
        "\t\ttype nat hook prerouting priority dstnat; policy accept;",
        f"\t\tip daddr {config.vip} {config.proto} dport {config.port} ct state new "
        f"dnat ip addr . port to {chooser} map {{ {', '.join(_slots(config))} }}",
        "\t}",
    ]
    if config.snat:
        lines += [
            "\tchain from_balancer {",
            "\t\ttype nat hook postrouting priority srcnat; policy accept;",
            f'\t\toifname "{server_side}" ct status dnat masquerade',
            "\t}",
        ]
    lines.append("}")
    return "\n".join(lines) + "\n"
