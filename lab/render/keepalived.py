"""VrrpInstance -> keepalived.conf text: one side of an active/standby pair. Pure:
golden-file tested, checked with `keepalived -t` before it starts."""

from __future__ import annotations

from lab.config import VrrpInstance, vrrp_problems
from lab.errors import ConfigError


def render_keepalived(vrrp: VrrpInstance, name: str = "lb") -> str:
    problems = vrrp_problems(vrrp)
    if problems:
        raise ConfigError(problems)
    lines = [
        "global_defs {",
        f"    router_id {name}",
        "    vrrp_version 3",
        "    enable_script_security",
        "}",
        "",
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
    lines.append("}")
    return "\n".join(lines) + "\n"
