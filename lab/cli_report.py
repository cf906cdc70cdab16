"""`sessionlab report`: runs compared, case by case and figure by figure."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from lab.cli_common import EXIT_FAILED, RESULTS, console
from lab.errors import ConfigError


# --- report ----------------------------------------------------------------------------
@click.command()
@click.option(
    "--compare",
    nargs=2,
    type=click.Path(path_type=Path),
    help="two run folders (or run names in results/): A then B",
)
@click.option("--tolerance", type=float, default=0.1, help="list figures moving more than this fraction")
@click.option("--results", type=click.Path(path_type=Path), default=RESULTS, help="folder of run folders")
def report(compare: tuple[Path, Path] | None, tolerance: float, results: Path) -> int:
    """Compare two runs: cases whose verdict changed, figures that moved beyond a tolerance."""
    from lab.compare import compare as compare_runs

    if not compare:
        raise ConfigError("report: give --compare RUN_A RUN_B")
    runs = [p if p.exists() else results / p for p in compare]
    changes = compare_runs(runs[0], runs[1], tolerance)
    table = Table(title=f"{runs[0].name} (A) -> {runs[1].name} (B), tolerance {tolerance:.0%}")
    for column in ("case", "what", "A", "B", "change"):
        table.add_column(column, overflow="fold")
    for change in changes:
        table.add_row(change.case, change.what, str(change.a), str(change.b), change.kind)
    console.print(table if changes else "no change: same verdicts, figures within tolerance")
    verdicts = [c for c in changes if c.kind != "moved" and c.kind != "changed"]
    return EXIT_FAILED if verdicts else 0
