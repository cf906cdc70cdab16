"""`sessionlab doctor` and `clean`: this machine checked for what each scenario needs, and
what killed runs left behind removed (from the labs' own records, and only that), or with
`clean --runs` old run folders (by the rule in `lab.results`)."""

from __future__ import annotations

from pathlib import Path

import click
from click.core import ParameterSource
from rich.table import Table
from rich.text import Text

from lab.cli_common import EXIT_FAILED, RESULTS, console
from lab.errors import ConfigError
from lab.results import KEEP_RUNS


# --- doctor ----------------------------------------------------------------------------
@click.command()
def doctor() -> int:
    """Check this machine for what each scenario needs; say what is missing and the fix."""
    from lab.doctor import run_checks, scenarios

    with console.status("checking") as status:
        checks = run_checks(lambda what: status.update(f"checking {what}"), results=RESULTS)
    table = Table(title="this machine")
    for column in ("check", "status", "detail", "fix"):
        table.add_column(column, overflow="fold")
    for check in checks:
        status_text = {
            True: Text("ok", "green"),
            False: Text("missing", "red"),
            None: Text("not checked", "yellow"),
        }[check.ok]
        if check.optional and not check.ok:
            status_text = Text("optional", "yellow")
        if check.status:
            status_text = Text(check.status, "yellow")
        table.add_row(check.name, status_text, check.detail, check.fix)
    console.print(table)
    can = scenarios(checks)
    runs = Table(title="scenarios")
    runs.add_column("scenario")
    runs.add_column("can run")
    runs.add_column("missing", overflow="fold")
    for scenario, missing in can.items():
        runs.add_row(scenario, Text("no", "red") if missing else Text("yes", "green"), ", ".join(missing))
    console.print(runs)
    return 0 if not any(can.values()) else EXIT_FAILED


# --- clean -----------------------------------------------------------------------------
@click.command()
@click.option("--dry-run", is_flag=True, help="only show what would be removed")
@click.option(
    "--runs",
    is_flag=True,
    help="remove old run folders instead: all but the newest --keep (of every kind: runs, topo, "
    "characterize), never the one `latest` points at, nor one with a failed case unless --failed",
)
@click.option("--keep", type=click.IntRange(min=1), default=KEEP_RUNS, show_default=True, help="with --runs")
@click.option("--failed", "with_failed", is_flag=True, help="with --runs: old runs with a failed case go too")
@click.option("--results", type=click.Path(path_type=Path), default=RESULTS, help="folder of run folders")
def clean(dry_run: bool, runs: bool, keep: int, with_failed: bool, results: Path) -> int:
    """Remove what killed runs left behind (from the labs' own records), and only that; with
    --runs, old run folders instead."""
    from lab.records import records

    source = click.get_current_context().get_parameter_source
    if not runs and any(
        source(name) != ParameterSource.DEFAULT for name in ("keep", "with_failed", "results")
    ):
        raise ConfigError("--keep, --failed and --results go with --runs")
    if runs:
        return _clean_runs(results, keep, with_failed, dry_run)
    found = records()
    table = Table(title="lab records")
    for column in ("lab", "owner", "left behind", "done"):
        table.add_column(column, overflow="fold")
    for record in found:
        if not record.orphaned():
            table.add_row(record.tag, f"PID {record.owner} (running)", "", "left alone: its run is alive")
            continue
        left = record.leftovers()
        what = "; ".join(f"{kind} {name}" for kind, name in left) or "nothing"
        if dry_run:
            table.add_row(record.tag, f"PID {record.owner} (gone)", what, "would remove")
        else:
            record.remove()
            table.add_row(record.tag, f"PID {record.owner} (gone)", what, "removed")
    if found:
        console.print(table)
    else:
        console.print("nothing to clean: no lab records")
    return 0


def _clean_runs(results: Path, keep: int, with_failed: bool, dry_run: bool) -> int:
    """`clean --runs`: the run folders older than the newest `keep`, removed or (when
    `latest` points at one, or a case of it failed and not `with_failed`) kept, each shown."""
    import shutil

    from lab.results import doomed, failed, in_progress, latest_run, run_folders

    if results.exists() and not results.is_dir():
        raise ConfigError(f"--results {results}: not a folder")
    folders = run_folders(results)
    old = folders[: max(len(folders) - keep, 0)]
    if not old:
        console.print(f"nothing to clean: {len(folders)} run folders in {results}, --keep {keep}")
        return 0
    going = set(doomed(results, keep, with_failed=with_failed, every_kind=True))
    pinned = latest_run(results)
    table = Table(title=f"run folders in {results} older than the newest {keep}")
    for column in ("run", "what it holds", "done"):
        table.add_column(column, overflow="fold")
    for folder in old:
        holds = _holds(folder)
        if folder in going:
            done = "would remove" if dry_run else "removed"
            if not dry_run:
                shutil.rmtree(folder, ignore_errors=True)
        elif folder.resolve() == pinned:
            done = "kept: `latest` points at it"
        elif in_progress(folder):
            done = "kept: its run is still going"
        else:
            done = "kept: a case failed (--failed removes it)" if failed(folder) else "kept"
        table.add_row(folder.name, holds, done)
    console.print(table)
    return 0


def _holds(folder: Path) -> str:
    """What a run folder holds, in a few words: its cases' verdicts, or its sub-folders."""
    from collections import Counter

    from lab.results import verdicts

    found = Counter(verdicts(folder))
    if found:
        return ", ".join(f"{n} {verdict}" for verdict, n in sorted(found.items()))
    inside = sorted(p.name for p in folder.iterdir() if p.is_dir())
    return ", ".join(inside) if inside else "no case"
