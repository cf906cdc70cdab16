"""`sessionlab topo`: a scenario's lab built by hand with its devices configured by node
(a policy per firewall, a kernel balancer or an ADC per balancer, from TOML files) and
Mininet's CLI on it; leaving removes the lab. Every option is checked before the build."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from lab.cli_common import EXIT_INTERRUPTED, RESULTS, console, params
from lab.errors import ConfigError

ADC_PORTS = range(40000, 40500)  # the ADC's source ports towards the servers (a case's block)


@dataclass(frozen=True)
class Setting:
    """A configuration file for one node, read and checked before the build."""

    option: str
    node: str
    path: Path
    config: Any


def _nodes_of(topo: Any, role: str) -> list[str]:
    """The topology's nodes that run as `role` (the role a node's parameters name)."""
    return sorted(n for n in topo.nodes() if topo.nodeInfo(n).get("role") == role)


def _nft_checks(policies: list[Setting]) -> None:
    """Each policy's ruleset checked by nft itself (`nft -c` in a throwaway namespace,
    about 40 ms a file) before anything is built, as `sessionlab policy` does."""
    from lab.render.check import nft_check
    from lab.render.nftables import render_ruleset

    for path in dict.fromkeys(s.path for s in policies):
        config = next(s.config for s in policies if s.path == path)
        nft_check(render_ruleset(config, "fw-in", "fw-out", "fw-sync"), str(path))


def _per_node(
    values: tuple[str, ...], option: str, role: str, topo: Any, name: str, load: Callable[[Path], Any]
) -> list[Setting]:
    """`NODE=FILE` values (a bare FILE: every node of `role`), each file loaded once; a
    node that does not run as `role`, or one given twice, is refused naming those that do."""
    if not values:
        return []
    nodes = _nodes_of(topo, role)
    if not nodes:
        raise ConfigError(f"topology {name!r} has no {role}: {option} does not apply")
    wanted: list[tuple[str, Path]] = []
    for value in values:
        node, sep, file = value.partition("=")
        if sep and node and "/" not in node:
            if node not in nodes:
                raise ConfigError(
                    f"{option} {node}=...: {node!r} is not a {role} of topology {name!r} "
                    f"({role}s: {', '.join(nodes)})"
                )
            if not file:
                raise ConfigError(f"{option} {value}: no file after {node}=")
            wanted.append((node, Path(file)))
        else:
            wanted += [(n, Path(value)) for n in nodes]
    named = [node for node, _ in wanted]
    twice = sorted({n for n in named if named.count(n) > 1})
    if twice:
        raise ConfigError(f"{option}: {', '.join(twice)} given more than one file")
    loaded: dict[Path, Any] = {}
    for _, path in wanted:
        if path not in loaded:
            loaded[path] = load(path)
    return [Setting(option, node, path, loaded[path]) for node, path in wanted]


def _apply(lab: Any, setting: Setting, daemon: str) -> str:
    """Configure one node as a case would; the line saying what it did."""
    node = lab.node(setting.node)
    if setting.option == "--policy":
        done = node.apply_policy(setting.config)
    elif setting.option == "--balancer":
        done = node.apply(setting.config)
    else:
        done = node.start_adc(setting.config, daemon, ADC_PORTS).conf_path
    return f"{setting.option.removeprefix('--')} {setting.path} on {setting.node}: {done}"


@click.command()
@click.argument("spec", metavar="TOPOLOGY")
@click.option(
    "--mode",
    is_flag=False,
    flag_value="",
    help="the controller's mode (S2 fabric, S4-SDN balancing algorithm); --mode alone lists "
    "them, as `sessionlab topologies` does",
)
@click.option(
    "--policy",
    "policies",
    multiple=True,
    metavar="[NODE=]FILE",
    help="firewall policy (TOML) for the firewall NODE, or for every firewall (repeatable)",
)
@click.option(
    "--balancer",
    "balancers",
    multiple=True,
    metavar="NODE=FILE",
    help="kernel L4 balancer (TOML, as examples/s4-l4.toml) on the balancer NODE (repeatable)",
)
@click.option(
    "--adc",
    "adcs",
    multiple=True,
    metavar="NODE=FILE",
    help="L7 balancer (TOML, as examples/s4-adc.toml) run on the balancer NODE (repeatable)",
)
@click.option(
    "--adc-daemon", type=click.Choice(["haproxy", "nginx"]), default="haproxy", help="the ADC's daemon"
)
@click.option("--param", multiple=True, help="topology parameter key=value (repeatable)")
@click.option("--results", type=click.Path(path_type=Path), default=RESULTS, help="folder of run folders")
def topo(
    spec: str,
    mode: str | None,
    policies: tuple[str, ...],
    balancers: tuple[str, ...],
    adcs: tuple[str, ...],
    adc_daemon: str,
    param: tuple[str, ...],
    results: Path,
) -> int:
    """Build a scenario's lab with its devices configured and open Mininet's CLI on it;
    leaving removes the lab. TOPOLOGY: a name (see `topologies`) or FILE.py[:NAME]."""
    from lab import topology
    from lab.config import load_policy
    from lab.config.balancing import load_adc, load_balancer
    from lab.interactive import Hangup, serve
    from lab.net import Lab
    from lab.preflight import check_host
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
    if mode is not None and mode not in modes:
        said = f"unknown mode {mode!r}" if mode else "--mode needs a value"
        raise ConfigError(f"{said} for topology {name!r} (modes: {', '.join(modes)})")
    controller = None if own_file else topology.controller_for(name, mode=mode)
    settings = [
        *_per_node(policies, "--policy", "firewall", topo_obj, name, load_policy),
        *_per_node(balancers, "--balancer", "balancer", topo_obj, name, load_balancer),
        *_per_node(adcs, "--adc", "balancer", topo_obj, name, load_adc),
    ]
    both = sorted(
        {s.node for s in settings if s.option == "--balancer"}
        & {s.node for s in settings if s.option == "--adc"}
    )
    if both:
        raise ConfigError(f"{', '.join(both)}: --balancer and --adc on one node (a case runs one of them)")
    if adc_daemon == "nginx":  # what nginx cannot do, refused now rather than after the build
        from lab.render.nginx import nginx_problems

        refused = [
            f"{s.path}: {p}" for s in settings if s.option == "--adc" for p in nginx_problems(s.config)
        ]
        if refused:
            raise ConfigError(refused)
    _nft_checks([s for s in settings if s.option == "--policy"])
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
        lines += [_apply(lab, setting, adc_daemon) for setting in settings]
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
