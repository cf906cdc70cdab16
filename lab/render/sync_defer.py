"""Deferral (pfsync's `defer`, for conntrackd) -> the netfilter rules that hold a new
session's SYN and SYN-ACK in an NFQUEUE after conntrack has confirmed its entry. Pure.

Why this shape (measured on this machine's kernel, see lab/devices/sync_defer.py):
- conntrack announces an entry (its NEW event, which conntrackd copies) only at confirm,
  conntrack's postrouting hook at priority INT_MAX; a packet held before it is never
  copied. The hold is a base chain at the same priority, and of two hooks with equal
  priority the one registered *later* runs *first*: the chain is made before the
  firewall's first ruleset brings conntrack's hooks, and never made again.
- the kernel has no nftables `queue` expression (CONFIG_NFT_QUEUE off), but has xtables'
  NFQUEUE target: iptables-nft puts it, as nft_compat, into a regular chain of its
  `mangle` table, which the base chain jumps to.
"""

from __future__ import annotations

from collections.abc import Sequence

TABLE = "mangle"  # an iptables table: iptables-nft writes the NFQUEUE target only there
CHAIN = "sessionlab_defer"  # the base chain, after conntrack's confirm
HOLD = "SESSIONLAB_HOLD"  # the regular chain holding the NFQUEUE target
PRIORITY = 2**31 - 1  # INT_MAX: NF_IP_PRI_CONNTRACK_CONFIRM
QUEUE = 5
AGENT_PORT = 3781  # UDP, the deferring agents' acknowledgements over the sync link


def base_chain() -> str:
    """nft text: the table and the empty base chain (made once, before conntrack's hooks)."""
    return (
        f"table ip {TABLE} {{\n"
        f"\tchain {CHAIN} {{\n"
        f"\t\ttype filter hook postrouting priority {PRIORITY}; policy accept;\n"
        "\t}\n"
        "}\n"
    )


def hold_target(queue: int = QUEUE) -> list[list[str]]:
    """iptables-nft commands: the regular chain and its NFQUEUE rule. `--queue-bypass`:
    with no agent bound, packets pass (fail open, as a pfsync without a peer)."""
    return [
        ["iptables-nft", "-t", TABLE, "-N", HOLD],
        [
            "iptables-nft",
            "-t",
            TABLE,
            "-A",
            HOLD,
            "-j",
            "NFQUEUE",
            "--queue-num",
            str(queue),
            "--queue-bypass",
        ],
    ]


def hold_rule(interfaces: Sequence[str]) -> str:
    """nft text: send to the hold the SYN of each new TCP session and each SYN-ACK
    forwarded between `interfaces` (inside and outside: never the sync link, nor the
    node's own packets); TCP only, as conntrackd syncs (lab/render/conntrackd.py)."""
    names = ", ".join(f'"{i}"' for i in interfaces)
    where = f"add rule ip {TABLE} {CHAIN} iifname {{ {names} }} oifname {{ {names} }}"
    return (
        f"{where} tcp flags & (syn | ack) == syn ct state new ct direction original jump {HOLD}\n"
        f"{where} tcp flags & (syn | ack) == syn | ack ct direction reply jump {HOLD}\n"
    )


def no_hold_rule() -> str:
    """nft text: the base chain empty again (deferral off)."""
    return f"flush chain ip {TABLE} {CHAIN}\n"
