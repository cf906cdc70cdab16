"""`sessionlab try`: your own server and client programs through a scenario's devices,
with events at chosen times, captures on both sides of the firewall and a report.

Exit status: 0 the client exited 0; 1 it exited otherwise (or outlived --limit, or the
server never listened); 2 bad input (nothing built); 130 interrupted.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from lab.cli_common import RESULTS, console
from lab.tryout.plan import DEFAULT_LIMIT, DEFAULT_PORT, EVENTS, SCENARIOS


@click.command("try")
@click.argument("scenario", metavar="SCENARIO")
@click.option(
    "--server",
    "server",
    required=True,
    help="the server program's command (run on the scenario's server host)",
)
@click.option(
    "--client", "client", required=True, help="the client program's command (run on the client host)"
)
@click.option(
    "--port",
    type=int,
    default=DEFAULT_PORT,
    show_default=True,
    help="the server's port (SERVER_PORT, {port})",
)
@click.option("--timeout", help="the firewall's TCP idle timeout, e.g. 2s, 5m")
@click.option("--policy", type=click.Path(path_type=Path), help="firewall policy (TOML) for every firewall")
@click.option(
    "--mode",
    help="the controller's mode (s2: independent, symmetric, correction-mac, correction-mpls, sync, "
    "sync-defer)",
)
@click.option(
    "--at",
    "at",
    multiple=True,
    metavar="TIME:EVENT",
    help=f"an event TIME after the client started (repeatable): {', '.join(EVENTS)}; e.g. 30s:expire",
)
@click.option("--limit", help=f"longest the client may run (default {DEFAULT_LIMIT:g}s)")
@click.option("--results", type=click.Path(path_type=Path), default=RESULTS, help="folder of run folders")
def try_command(
    scenario: str,
    server: str,
    client: str,
    port: int,
    timeout: str | None,
    policy: Path | None,
    mode: str | None,
    at: tuple[str, ...],
    limit: str | None,
    results: Path,
) -> int:
    """Run your own server and client programs through a scenario's devices.

    SCENARIO: s1 (client -- fw -- server) or s2 (h1 -- fw1 | fw2 -- srv1). The server
    command starts on the server host; once it listens on --port the client command
    starts on the client host. Both get SERVER_ADDR, SERVER_PORT and CLIENT_ADDR in their
    environment, and {server}, {port} in the command are replaced by them. Commands run
    with sh -c in the current folder. Events (--at): expire (s1, s2: the firewalls
    forget the app's sessions), cut (s1, s2: the server's link goes down), failover (s2:
    the firewall holding the app's session fails).

    Exit status: the verdict, the client's: 0 it exited 0; 1 it exited otherwise,
    outlived --limit, or the server never listened; 2 bad input (nothing built).
    """
    from lab import topology
    from lab.tryout.plan import make_plan
    from lab.tryout.runner import run_try

    found = SCENARIOS.get(scenario)
    modes = topology.controller_modes(found.topology) if found is not None and found.controller else ()
    if "sync" in modes:  # sync's option, the firewalls' own: the fabric runs as for sync
        modes = (*modes, "sync-defer")
    plan = make_plan(
        scenario,
        server,
        client,
        at=at,
        timeout=timeout,
        policy=policy,
        mode=mode,
        port=port,
        limit=limit,
        modes=modes,
    )
    root = click.get_current_context().find_root().obj
    argv = list(root["argv"]) if isinstance(root, dict) and "argv" in root else sys.argv[1:]
    outcome = run_try(plan, results, console.print, argv)
    for line in outcome.lines:
        console.print(line)
    return outcome.status
