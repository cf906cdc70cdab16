"""`sessionlab topo`: a scenario's lab built by hand with its devices configured and
Mininet's CLI on it; leaving removes the lab."""

from __future__ import annotations

import contextlib
from pathlib import Path

import click

from lab.cli_common import EXIT_INTERRUPTED, RESULTS, console, params
from lab.errors import ConfigError


@click.command()
@click.argument("spec", metavar="TOPOLOGY")
@click.option("--mode", help="the controller's mode (S2 fabric, S4 balancing algorithm)")
@click.option("--policy", type=click.Path(path_type=Path), help="firewall policy (TOML) for every firewall")
@click.option("--param", multiple=True, help="topology parameter key=value (repeatable)")
@click.option("--results", type=click.Path(path_type=Path), default=RESULTS, help="folder of run folders")
def topo(spec: str, mode: str | None, policy: Path | None, param: tuple[str, ...], results: Path) -> int:
    """Build a scenario's lab with its devices configured and open Mininet's CLI on it;
    leaving removes the lab. TOPOLOGY: a name (see `topologies`) or FILE.py[:NAME]."""
    from lab import topology
    from lab.config import load_policy
    from lab.devices import Firewall
    from lab.interactive import Hangup, serve
    from lab.net import Lab, check_host
    from lab.results import new_run
    from lab.rewrite import topology_problems

    name, topo_obj = topology.load_spec(spec, **params(list(param), "--param"))
    problems = topology_problems(topo_obj)
    if problems:
        raise ConfigError(problems)
    # A topology file of one's own runs without a controller (the suites' harnesses
    # configure theirs for their own topologies).
    own_file = spec.endswith(".py") or ".py:" in spec
    modes = () if own_file else topology.controller_modes(name)
    if mode is not None and not modes:
        raise ConfigError(f"topology {name!r} has no controller: --mode does not apply")
    controller = None if own_file else topology.controller_for(name, mode=mode)
    firewall_policy = load_policy(policy) if policy is not None else None
    check_host()
    folder = new_run(results)
    with Lab(topo_obj, folder / f"topo-{name}", controller=controller) as lab:
        lines = [f"lab {name} ({lab.tag}) is up; logs in {folder}"]
        if controller is not None:
            lines.append(
                f"controller: {controller.module}, mode {mode or 'default'} (modes: {', '.join(modes)})"
            )
        for node in lab.describe()["nodes"]:
            real = lab.names.get(node["name"], node["name"])
            shown = node["name"] if real == node["name"] else f"{node['name']} (as {real})"
            role = f" [{node['role']}]" if node["role"] else ""
            lines.append(f"  {shown}{role} {' '.join(node['addresses'])}")
        if firewall_policy is not None:
            firewalls = [host for host in lab.net.hosts if isinstance(host, Firewall)]
            if not firewalls:
                raise ConfigError(f"topology {name!r} has no firewall: --policy does not apply")
            for fw in firewalls:
                path = fw.apply_policy(firewall_policy)
                lines.append(f"policy {policy} on {fw.name}: {path}")
        lines.append("Ctrl-D, `exit` or Ctrl-C at the prompt leave and remove the lab.")
        try:
            serve(lab, "\n".join(lines))
        except Hangup as why:
            hung_up = str(why)
        else:
            hung_up = ""
    with contextlib.suppress(OSError):  # the terminal may be gone
        console.print(f"lab {name} removed" + (f" ({hung_up})" if hung_up else ""))
    return EXIT_INTERRUPTED if hung_up else 0
