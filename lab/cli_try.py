"""`sessionlab try`: your own application through a scenario (placeholder until built)."""

from __future__ import annotations

import click

from lab.errors import ConfigError


@click.command("try")
@click.argument("scenario")
def try_command(scenario: str) -> int:
    """Run your own server and client programs through a scenario's devices."""
    raise ConfigError("try: not built yet")
