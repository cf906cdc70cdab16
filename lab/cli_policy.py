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
def policy(file: Path, inside: str, outside: str) -> int:
    """Check a firewall policy (TOML) and print its nftables ruleset."""
    from lab.config import load_policy
    from lab.render.nftables import render_ruleset

    sys.stdout.write(render_ruleset(load_policy(file), inside, outside))
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
