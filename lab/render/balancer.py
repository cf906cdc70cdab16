"""L4Balancer -> nftables ruleset text: the kernel balancer. Pure: golden-file tested,
checked with `nft -c` before it is loaded; it takes a valid configuration (the device
validates it once, `lab.devices.l4`).

NAT mode: new sessions to the VIP are DNATed to a real server chosen by `numgen inc`
(round robin), `numgen inc` over weight-sized slots (weighted), or `jhash ip saddr`
(source hash: one client, one server). Conntrack keeps each session on its server (the
NAT binding is made once, at the first packet) and rewrites the replies back to the VIP.

DSR mode (direct server return): a netdev ingress chain on the client side rewrites the
frame's destination MAC to a server's and forwards it out of the server side unchanged
otherwise; the server holds the VIP on its loopback and answers the client directly. The
balancer sees one direction only and keeps no session, so the choice is a hash: of the
client's address (source hash) or of its address and port (one choice per session; round
robin and weighted become a per-session hash over the same slots).

An IPv6 VIP (with IPv6 servers: NAT keeps the family) gets the same rules in IPv6's words
(`ip6 daddr`, `dnat ip6`, `jhash ip6 saddr`) in a table of family ip6 of the same name;
the IPv4 ruleset is unchanged. Every ruleset deletes the tables it replaces, and the
clearing ruleset deletes all of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from lab.config import L4Balancer
from lab.config.balancing import family

BALANCER_TABLE = "sessionlab_lb"
DSR_TABLE = "sessionlab_dsr"


@dataclass(frozen=True)
class DsrPorts:
    """What direct server return needs of the balancer's node: its client- and server-side
    interfaces, the server side's MAC (the frames' new source) and each server's MAC."""

    client_side: str
    server_side: str
    source_mac: str
    server_macs: Mapping[str, str]

    def problems(self, config: L4Balancer) -> list[str]:
        """What `config` needs of these ports: a MAC for each of its servers."""
        return [
            f"balancer.servers[{i}]: no MAC known for {s.address}"
            for i, s in enumerate(config.servers)
            if s.address not in self.server_macs
        ]


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


def _ip(config: L4Balancer) -> str:
    """nft's word for the VIP's family, as the NAT table's family and in its matches: ip,
    or ip6 for an IPv6 VIP."""
    return "ip6" if family(config.vip) == 6 else "ip"


def clear_lines(families: tuple[str, ...] = ("ip",)) -> list[str]:
    """Delete the balancer's NAT table of each of `families` and its DSR table (each
    created first, so deleting never fails)."""
    lines = [
        line
        for f in families
        for line in (f"table {f} {BALANCER_TABLE}", f"delete table {f} {BALANCER_TABLE}")
    ]
    return [*lines, f"table netdev {DSR_TABLE}", f"delete table netdev {DSR_TABLE}"]


def render_clear() -> str:
    """A ruleset that only removes the balancer's tables, both families' (no balancer, or
    no server left)."""
    return "\n".join(clear_lines(("ip", "ip6"))) + "\n"


def render_balancer(config: L4Balancer, server_side: str | None = None, dsr: DsrPorts | None = None) -> str:
    """The balancer's ruleset; `server_side` is the interface towards the real servers
    (needed with `snat`), `dsr` the node's ports (needed in mode dsr). Starts with deleting
    the balancer's tables: loading it again replaces them."""
    if config.mode == "dsr":
        assert dsr is not None
        return _render_dsr(config, dsr)
    ip = _ip(config)
    chooser = (
        f"jhash {ip} saddr mod {slot_count(config)} seed {HASH_SEED:#x}"
        if config.algorithm == "source-hash"
        else f"numgen inc mod {slot_count(config)}"
    )
    lines = [
        *clear_lines((ip,)),
        f"table {ip} {BALANCER_TABLE} {{",
        "\tchain to_servers {",
        "\t\ttype nat hook prerouting priority dstnat; policy accept;",
        f"\t\t{ip} daddr {config.vip} {config.proto} dport {config.port} ct state new "
        f"dnat {ip} addr . port to {chooser} map {{ {', '.join(_slots(config))} }}",
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


def _render_dsr(config: L4Balancer, dsr: DsrPorts) -> str:
    ip = _ip(config)
    key = f"{ip} saddr" if config.algorithm == "source-hash" else f"{ip} saddr . {config.proto} sport"
    slots = []
    first = 0
    for server in config.servers:
        width = server.weight if config.algorithm == "weighted" else 1
        index = f"{first}" if width == 1 else f"{first}-{first + width - 1}"
        slots.append(f"{index} : {dsr.server_macs[server.address]}")
        first += width
    return (
        "\n".join(
            [
                *clear_lines((ip,)),
                f"table netdev {DSR_TABLE} {{",
                "\tchain to_servers {",
                f'\t\ttype filter hook ingress device "{dsr.client_side}" priority filter; policy accept;',
                f"\t\t{ip} daddr {config.vip} {config.proto} dport {config.port} "
                f"ether saddr set {dsr.source_mac} "
                f"ether daddr set jhash {key} mod {slot_count(config)} seed {HASH_SEED:#x} "
                f"map {{ {', '.join(slots)} }} "
                f'fwd to "{dsr.server_side}"',
                "\t}",
                "}",
            ]
        )
        + "\n"
    )
