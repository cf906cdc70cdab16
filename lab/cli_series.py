"""`sessionlab run --repeat N` / `--until-fail`: the selection run again and again into one
run folder, each repetition a pytest session of its own, then the series' report with its
flake table (`lab.series`). `lab.cli_run` hands a repeated run here."""

from __future__ import annotations

from pathlib import Path

from lab.catalog import ROOT
from lab.cli_common import EXIT_FAILED, console
from lab.cli_run import _invocation, _pytest_args, _status


def run_series(
    argv: list[str],
    shown: str,
    keyword: str | None,
    results: Path,
    junitxml: Path | None,
    pause_on_fail: bool,
    most: int,
    until_fail: bool,
) -> int:
    """`run --repeat N` / `--until-fail`: the selection run up to `most` times into one run
    folder, each repetition a pytest session of its own (its -n workers, schedule, port
    blocks and labs as in a plain run) writing into `<run>/rep-<i>/` with its report and
    junit.xml; then the series' report with the flake table (lab.series). A repetition
    interrupted (Ctrl-C), stopped (--pause-on-fail's prompt left) or, with `until_fail`,
    failed ends the series; the report of the repetitions so far is written whatever ended it."""
    import pytest

    from lab.progress import RunProgress, series_table, verdict_counts
    from lab.report import write_series_report
    from lab.results import new_run, repetition_folder, settle, write_run_info
    from lab.series import JUNIT_FILE, Repetition, Series, merge_junit

    run_folder = new_run(results)
    done: list[Repetition] = []
    ran, failed, stopped = False, False, ""
    try:
        write_run_info(run_folder, _invocation(), ROOT)
        asked = f"until a case fails, at most {most} repetitions" if until_fail else f"{most} repetitions"
        with_k = f" -k {keyword!r}" if keyword else ""
        console.print(f"sessionlab run {run_folder.name}: {shown}{with_k}, {asked}")
        for number in range(1, most + 1):
            folder = repetition_folder(run_folder, number)
            folder.mkdir()
            write_run_info(folder, _invocation(), ROOT, repetition=number, of=most)
            done.append(Repetition(number, folder))
            console.print(f"repetition {number}/{most}: {folder}")
            if number > 1:
                _forget_suites(argv)
            progress = RunProgress(console, tag=f"{number}/{most} ")
            pytest_argv = [*argv, *_pytest_args(keyword, folder / JUNIT_FILE, folder, pause_on_fail)]
            code = pytest.main(pytest_argv, plugins=[progress])
            ran = ran or bool(progress.outcomes)
            done[-1].ended = "interrupted" if code == pytest.ExitCode.INTERRUPTED else "finished"
            if progress.stopped:
                done[-1].ended = stopped = f"stopped: {progress.stopped}"
            # Collection errors are named in the run folder's file (kept by `settle`)
            status = _status(int(code), progress, run_folder, keyword)
            console.print(f"repetition {number}/{most}: {verdict_counts(progress.outcomes)}")
            failed = failed or status != 0
            if status != 0 and until_fail:
                stopped = f"stopped after repetition {number}: a case failed (--until-fail)"
            if stopped:
                break
        return EXIT_FAILED if failed else 0
    except KeyboardInterrupt:
        stopped = f"interrupted in repetition {len(done)}"
        raise
    finally:
        if ran:
            try:
                series = Series.read(run_folder, most, until_fail, done, stopped)
                report = write_series_report(series)
                if junitxml is not None:
                    merge_junit([(r.number, r.folder / JUNIT_FILE) for r in done], junitxml.resolve())
                console.print(series_table(series))
                console.print(f"report: {report}")
            except Exception as exc:  # noqa: BLE001 - never hide what ended the series
                console.print(f"sessionlab: the series' report could not be written: {exc!r}")
        settle(run_folder, ran=True if ran else None)


def _forget_suites(argv: list[str]) -> None:
    """Drop the selected suites' modules (and their folders' conftest and helpers) from
    sys.modules, so the next repetition's pytest session imports them afresh and no
    module-level state of a suite carries from one repetition to the next (pytest reuses
    an imported module; each pytest-xdist worker is a new process anyway). The harness's
    own packages stay."""
    import sys

    import lab

    harness = Path(lab.__file__).resolve().parent.parent
    folders = set()
    for arg in argv:
        path = Path(arg.split("::")[0])
        if arg.startswith("-") or not path.exists():
            continue
        folder = (path if path.is_dir() else path.parent).resolve()
        if folder != harness and not harness.is_relative_to(folder):
            folders.add(folder)
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if file and any(Path(file).resolve().is_relative_to(f) for f in folders):
            del sys.modules[name]
