"""`sessionlab report`: a run's summary, a run packed to one archive, two runs compared."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.table import Table

from lab.cli_common import EXIT_FAILED, RESULTS, console
from lab.errors import ConfigError

if TYPE_CHECKING:
    from lab.series import Series

DEFAULT_TOLERANCE = 0.1


def _shown(run: Path) -> str:
    """A run's name as shown: a repetition of a repeated run with its run (`<run>/rep-2`)."""
    from lab.results import repetition_number

    real = run.resolve()
    return f"{real.parent.name}/{real.name}" if repetition_number(real) is not None else real.name


def _run(name: Path, results: Path) -> Path:
    """A run folder from a path or a run's name in the results folder (`latest` too)."""
    for path in (name, results / name):
        if path.is_dir():
            return path
    raise ConfigError(f"{name}: no such run folder (neither a folder nor a run in {results})")


def _summary(run: Path) -> int:
    """A run's verdicts, each failed case with its reason, and where its report is; a
    repeated run's in a line, then each flaky or failed case's verdict per repetition."""
    from lab.compare import load_run
    from lab.report import message_reason
    from lab.series import read_series

    cases = load_run(run)
    series = read_series(run)
    if series is not None:
        return _series_summary(run, series)
    counts: dict[str, int] = {}
    for case in cases.values():
        counts[case["verdict"]] = counts.get(case["verdict"], 0) + 1
    shown = ", ".join(f"{n} {v}" for v, n in sorted(counts.items())) or "no cases"
    console.print(f"run {_shown(run)}: {shown}")
    failed = [c for c in cases.values() if c["verdict"] in ("failed", "error")]
    for case in failed:
        console.print(f"  {case['verdict']}: {case['name']}: {message_reason(case.get('message', ''))}")
    report = run / "report.html"
    console.print(f"report: {report.resolve()}" if report.is_file() else "report: none written")
    return EXIT_FAILED if failed else 0


def _series_summary(run: Path, series: Series) -> int:
    """`report RUN` of a repeated run: the series in a line, then each flaky or failed case:
    its verdict per repetition and its first failure's reason."""
    from lab.report import message_reason

    console.print(f"run {_shown(run)}: {series.line()}")
    for row in series.rows:
        if not row.flaky and row.verdict not in ("failed", "error"):
            continue
        verdicts = " ".join(f"{n}:{c.verdict}" for n, c in sorted(row.cells.items()))
        first = row.first_failure()
        why = f"; rep-{first[0]}: {message_reason(first[1].message)}" if first else ""
        console.print(f"  {'flaky' if row.flaky else row.verdict}: {row.name}: {verdicts}{why}")
    report = run / "report.html"
    console.print(f"report: {report.resolve()}" if report.is_file() else "report: none written")
    return EXIT_FAILED if any(r.verdict in ("failed", "error") for r in series.rows) else 0


def _compare(runs: list[Path], tolerance: float) -> int:
    from lab.compare import compare as compare_runs
    from lab.compare import same_run, verdict_changed
    from lab.series import is_series

    changes = compare_runs(runs[0], runs[1], tolerance)
    for label, run in zip("AB", runs, strict=True):
        if is_series(run):
            console.print(
                f"{label} ({_shown(run)}) is a repeated run: a case's verdict is its worst over the "
                f"repetitions, its figures are not compared (name a repetition: {_shown(run)}/rep-1)"
            )
    if same_run(runs[0], runs[1]):
        click.echo(
            f"sessionlab: warning: {runs[0]} and {runs[1]} are the same run: nothing can differ",
            err=True,
        )
    table = Table(title=f"{_shown(runs[0])} (A) -> {_shown(runs[1])} (B), tolerance {tolerance:.0%}")
    for column in ("case", "what", "A", "B", "change"):
        table.add_column(column, overflow="fold")
    for change in changes:
        table.add_row(change.case, change.what, str(change.a), str(change.b), change.kind)
    console.print(table if changes else "no change: same verdicts, figures within tolerance")
    console.print(
        "not compared: figures that differ by nature (sequence numbers, ISNs, source and data "
        "ports, timestamps, PIDs; see lab/compare.py)"
    )
    return EXIT_FAILED if verdict_changed(changes) else 0


@click.command()
@click.argument("run", required=False, type=click.Path(path_type=Path))
@click.option(
    "--compare",
    nargs=2,
    type=click.Path(path_type=Path),
    help="two run folders (or run names in results/): A then B; exit 1 only when a verdict changed",
)
@click.option(
    "--tolerance",
    type=float,
    default=DEFAULT_TOLERANCE,
    show_default=True,
    help="with --compare: list numeric figures moving more than this fraction (0.1 = 10 %)",
)
@click.option(
    "--pack",
    "pack_run",
    type=click.Path(path_type=Path),
    help="write one .tar.gz with RUN's report and the evidence it links (links stay true)",
)
@click.option(
    "--to",
    "archive",
    type=click.Path(path_type=Path),
    help="with --pack: the archive's path  [default: ./sessionlab-<run>.tar.gz]",
)
@click.option("--results", type=click.Path(path_type=Path), default=RESULTS, help="folder of run folders")
def report(
    run: Path | None,
    compare: tuple[Path, Path] | None,
    tolerance: float,
    pack_run: Path | None,
    archive: Path | None,
    results: Path,
) -> int:
    """A run's summary (`report RUN`, e.g. `report latest`: verdicts, each failure's reason,
    the report's path; exit 1 when a case failed), a run packed to one archive (`--pack RUN`),
    or two runs compared (`--compare A B`)."""
    chosen = [name for name, given in (("RUN", run), ("--compare", compare), ("--pack", pack_run)) if given]
    if not chosen:
        raise ConfigError("report: give --compare RUN_A RUN_B, --pack RUN, or a RUN to summarise (latest)")
    if len(chosen) > 1:
        raise ConfigError(f"report: {' and '.join(chosen)} together: give one of them")
    if archive is not None and pack_run is None:
        raise ConfigError("report: --to names --pack's archive: give --pack RUN too")
    if compare:
        return _compare([_run(p, results) for p in compare], tolerance)
    if pack_run is not None:
        from lab.pack import pack

        folder = _run(pack_run, results)
        name = folder.resolve().name
        target = archive or Path(f"sessionlab-{name}.tar.gz")
        count, missing = pack(folder, target)
        console.print(
            f"{target}: {name}'s report and {count - 1} files beside it; unpack and open {name}/report.html"
        )
        for link in missing[:5]:
            console.print(f"  not packed (the report links it, no such file here): {link}")
        if len(missing) > 5:
            console.print(f"  ... and {len(missing) - 5} more links to no file here")
        return 0
    assert run is not None
    return _summary(_run(run, results))
