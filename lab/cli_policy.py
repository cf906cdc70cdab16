"""`sessionlab policy` and `topologies`: a firewall policy checked and rendered, the
topologies listed."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from lab.catalog import ROOT


# --- policy, topologies -------------------------------------------------------------------
@click.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--inside", default="fw-in", help="inside interface name")
@click.option("--outside", default="fw-out", help="outside interface name")
@click.option("--no-check", is_flag=True, help="print the ruleset without nft's own check (nft -c)")
def policy(file: Path, inside: str, outside: str, no_check: bool) -> int:
    """Check a firewall policy (TOML), render its nftables ruleset, have nft check it
    (`nft -c`, in a throwaway network namespace) and print it; the verdict goes to stderr."""
    from lab.config import checks, load_policy
    from lab.errors import ConfigError
    from lab.render.check import nft_check
    from lab.render.nftables import render_ruleset

    problems: list[str] = []
    checks.interface(inside, "--inside", problems)
    checks.interface(outside, "--outside", problems)
    if inside == outside:
        problems.append(f"--inside and --outside: both are {inside!r}; a firewall sits between two")
    try:
        firewall = load_policy(file)
    except ConfigError as exc:
        problems += exc.problems
    checks.refuse(problems)
    text = render_ruleset(firewall, inside, outside)
    if not no_check:
        nft_check(text, str(file))
    sys.stdout.write(text)
    verdict = "not checked (--no-check)" if no_check else "good: nft -c accepts its ruleset"
    click.echo(f"{file}: {verdict}", err=True)
    return 0


@click.command()
def topologies() -> int:
    """List the topologies and their files."""
    from lab import topology

    for name, path in topology.available().items():
        modes = topology.controller_modes(name)
        extra = f"\tcontroller modes: {', '.join(modes)}" if modes else ""
        click.echo(f"{name}\t{path.relative_to(ROOT)}{extra}")  # tab-separated: for scripts
    return 0
