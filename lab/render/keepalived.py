"""VrrpInstance(s) -> keepalived.conf text: one side of an active/standby pair. Pure:
golden-file tested, checked with `keepalived -t` before it starts.

Several instances (a balancer's client side and server side) form a sync group: they
change state together, so the node that holds the VIP also holds the servers' gateway.
"""

from __future__ import annotations

from collections.abc import Sequence

from lab.config import VrrpInstance


def _instance(vrrp: VrrpInstance, name: str) -> list[str]:
    lines = [
        f"vrrp_instance {name} {{",
        "    state BACKUP",  # both start as backup: the higher priority wins the election
        f"    interface {vrrp.interface}",
        f"    virtual_router_id {vrrp.router_id}",
        f"    priority {vrrp.priority}",
        f"    advert_int {vrrp.advert_s:g}",
        "    virtual_ipaddress {",
        f"        {vrrp.vip} dev {vrrp.interface}",
        "    }",
    ]
    if vrrp.peer is not None:
        lines += ["    unicast_peer {", f"        {vrrp.peer}", "    }"]
    return [*lines, "}"]


def render_keepalived(vrrp: VrrpInstance | Sequence[VrrpInstance], name: str = "lb") -> str:
    """keepalived.conf for one node: one instance (named `name`) or several in a sync
    group (`name`-1, `name`-2, ...)."""
    instances = [vrrp] if isinstance(vrrp, VrrpInstance) else list(vrrp)
    names = [name] if len(instances) == 1 else [f"{name}-{i}" for i in range(1, len(instances) + 1)]
    lines = [
        "global_defs {",
        f"    router_id {name}",
        "    vrrp_version 3",
        "    enable_script_security",
        "}",
    ]
    if len(instances) > 1:
        lines += [
            "",
            f"vrrp_sync_group {name} {{",
            "    group {",
            *[f"        {n}" for n in names],
            "    }",
            "}",
        ]
    for instance, instance_name in zip(instances, names, strict=True):
        lines += ["", *_instance(instance, instance_name)]
    return "\n".join(lines) + "\n"
