"""`sessionlab doctor` and `clean`: this machine checked for what each scenario needs, and
what killed runs left behind removed (from the labs' own records, and only that)."""

from __future__ import annotations

import click
from rich.table import Table
from rich.text import Text

from lab.cli_common import EXIT_FAILED, console


# --- doctor ----------------------------------------------------------------------------
@click.command()
def doctor() -> int:
    """Check this machine for what each scenario needs; say what is missing and the fix."""
    from lab.doctor import run_checks, scenarios

    with console.status("checking") as status:
        checks = run_checks(lambda what: status.update(f"checking {what}"))
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
def clean(dry_run: bool) -> int:
    """Remove what killed runs left behind (from the labs' own records), and only that."""
    from lab.records import records

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
