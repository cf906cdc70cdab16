"""`sessionlab run` and `sessionlab remote`: the suites run here under pytest with live
progress, spread over other machines (pytest-xdist over SSH), or run whole on one other
machine with its run folder fetched back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from lab.catalog import ROOT
from lab.cli_common import EXIT_BAD_INPUT, EXIT_FAILED, RESULTS, console, printer
from lab.errors import ConfigError, LabError
from lab.results import COLLECTION_ERRORS
from lab.series import DEFAULT_UNTIL_FAIL, MAX_REPEAT

SSH_OPTIONS = [
    click.option(
        "--known-hosts",
        type=click.Path(path_type=Path),
        default=Path("~/.ssh/known_hosts").expanduser(),
        show_default="~/.ssh/known_hosts",
        help="host keys to check hosts against",
    ),
    click.option("--accept-new", is_flag=True, help="trust (and record) the key of a host never seen"),
    click.option(
        "--identity", type=click.Path(path_type=Path), help="private key (default: agent, ~/.ssh keys)"
    ),
    click.option(
        "--folder", default="/var/tmp/sessionlab", show_default=True, help="checkout folder on hosts"
    ),
]


def ssh_options(function: Any) -> Any:
    for option in reversed(SSH_OPTIONS):
        function = option(function)
    return function


@click.command()
@click.argument("targets", nargs=-1)
@click.option("-k", "keyword", help="only cases matching this pytest -k expression")
@click.option("--results", type=click.Path(path_type=Path), default=RESULTS, help="folder of run folders")
@click.option(
    "--junitxml", type=click.Path(path_type=Path), help="also write JUnit XML here (for CI systems)"
)
@click.option(
    "-n",
    "--workers",
    type=click.IntRange(1, 8),
    default=None,
    help="labs side by side on this machine (pytest-xdist; a module and its lab stay on one worker; "
    "default: 3 on a machine of 2 or more CPUs running 2 or more modules, else 1)",
)
@click.option(
    "--host",
    "hosts",
    multiple=True,
    help="spread the cases over these machines ([user@]host[:port], repeatable; pytest-xdist over SSH)",
)
@click.option(
    "--pause-on-fail",
    is_flag=True,
    help="when a case fails, keep its lab as the failure left it and open the Mininet prompt (here, -n 1); "
    "with --repeat or --until-fail, leaving the prompt ends the series",
)
@click.option(
    "--repeat",
    type=click.IntRange(1, MAX_REPEAT),
    default=None,
    metavar="N",
    help="run the selection N times into one run folder: each repetition in <run>/rep-<i>/ with its "
    "report, summary.json and junit.xml; <run>/report.html has the flake table (each case's verdict "
    "and smallest client timeout margin per repetition, flaky cases marked); with --junitxml, one "
    "file with a <testsuite> per repetition (named rep-<i>); exit 1 when any repetition failed. "
    "1: a plain run",
)
@click.option(
    "--until-fail",
    is_flag=True,
    help=f"repeat until a repetition has a failed case, at most --repeat N times "
    f"(default {DEFAULT_UNTIL_FAIL}); exit 1 when one failed, 0 when none did",
)
@ssh_options
def run(
    targets: tuple[str, ...],
    keyword: str | None,
    results: Path,
    junitxml: Path | None,
    workers: int | None,
    hosts: tuple[str, ...],
    pause_on_fail: bool,
    repeat: int | None,
    until_fail: bool,
    known_hosts: Path,
    accept_new: bool,
    identity: Path | None,
    folder: str,
) -> int:
    """Run suites (s1...), modules, node ids or cases by their exact name (see `list`;
    default: all) with live progress and write results/<run>/report.html. A run that ran no
    case keeps no folder; the newest 10 runs are kept, and older ones with a failed case
    (see `clean --runs`). A repeated run (--repeat, --until-fail) is one run folder, kept or
    pruned as one run; Ctrl-C ends it after writing the report of the repetitions so far."""
    import sys

    from lab.catalog import check_keyword, resolve
    from lab.preflight import check_host
    from lab.remote import Host
    from lab.results import check_results_root

    if keyword is not None:
        check_keyword(keyword)
    if junitxml is not None and junitxml.is_dir():
        raise ConfigError(f"--junitxml {junitxml}: a folder; name the file to write")
    if junitxml is not None and not junitxml.parent.is_dir():
        raise ConfigError(f"--junitxml {junitxml}: no folder {junitxml.parent}")
    machines = [Host.parse(h) for h in hosts]
    if workers is not None and machines and workers > 1:
        raise ConfigError("-n and --host: choose one (with --host, each host runs one worker)")
    if pause_on_fail and ((workers or 1) > 1 or machines):
        raise ConfigError(
            "--pause-on-fail needs this terminal: the prompt opens here, not in an -n worker or on a --host"
        )
    if until_fail and repeat == 1:
        raise ConfigError(
            "--until-fail --repeat 1: one repetition; give --repeat 2 or more (the most to run)"
        )
    repeating = until_fail or (repeat or 1) > 1
    if repeating and machines:
        raise ConfigError(
            "--repeat/--until-fail and --host: repetitions run here; "
            "`sessionlab remote HOST run --repeat N ...` repeats on another machine"
        )
    if pause_on_fail and not sys.stdin.isatty():
        raise ConfigError("--pause-on-fail needs this terminal: stdin is not a terminal")
    check_results_root(results)
    paths = resolve(list(targets))
    if machines:
        outside = [p for p in paths if not Path(p.split("::")[0]).is_relative_to(ROOT)]
        if outside:
            raise ConfigError(f"{outside[0]}: only the checkout's own suites run on other hosts")
        return _run_on_hosts(
            paths, keyword, results, junitxml, machines, known_hosts, accept_new, identity, folder
        )
    check_host()
    if workers is None:
        workers = default_workers(paths, pause_on_fail)
    extra = ["-n", str(workers), "--dist", "loadscope"] if workers > 1 else []
    shown = " ".join(targets) or "all suites"
    # The checkout's configuration whatever the targets (a suite of one's own too: markers,
    # the checkout on sys.path).
    here = [f"--rootdir={ROOT}", f"--config-file={ROOT / 'pyproject.toml'}", *extra]
    if repeating:
        most = repeat or DEFAULT_UNTIL_FAIL
        from lab.cli_series import run_series

        return run_series([*paths, *here], shown, keyword, results, junitxml, pause_on_fail, most, until_fail)
    return _run_here([*paths, *here], shown, keyword, results, junitxml, pause_on_fail)


WORKERS = 4  # labs side by side by default (README command 2 takes as many: .ci/run)


def default_workers(paths: list[str], pause_on_fail: bool, cpus: int | None = None) -> int:
    """Labs side by side unless told: 4 where the machine has 2 CPUs or more and the
    selection spans 2 modules or more (measured on 2 cores: the default suite in 19 min one
    lab at a time, about 10 min with 2, 6 min 18 s-6 min 25 s with 3 until 2026-12-03;
    at 67c1015 342 s with 3 and 267 s with 4, the CPUs 65 % busy, the smallest client
    timeout margin 0.744 s: most of a case is waiting for a timeout); 1 for one module
    (xdist's start costs more than it saves) and for --pause-on-fail (its prompt needs this
    terminal)."""
    import os

    modules = {p.split("::")[0] for p in paths}
    cpus = (os.cpu_count() or 1) if cpus is None else cpus
    return WORKERS if cpus >= 2 and len(modules) >= 2 and not pause_on_fail else 1


def _invocation() -> list[str]:
    """The arguments `sessionlab` was given (main() passes them as the context's obj)."""
    import sys

    obj = click.get_current_context().find_root().obj
    return list(obj["argv"]) if isinstance(obj, dict) and "argv" in obj else sys.argv[1:]


def _pytest_args(
    keyword: str | None, junitxml: Path | None, run_folder: Path, pause_on_fail: bool = False
) -> list[str]:
    # Paths as --option=path: pytest takes a lone argument that names an existing folder as
    # a target (the run folder moved the root to `/`, and pyproject.toml went unread), and
    # pytest-xdist rewrites such arguments for SSH hosts.
    argv = ["-o", "addopts=", "-p", "no:terminal", f"--run-dir={run_folder}"]
    if keyword:
        argv += ["-k", keyword]
    if junitxml is not None:
        argv += [f"--junitxml={junitxml.resolve()}"]
    if pause_on_fail:
        argv += ["--pause-on-fail"]
    return argv


def _finish(code: int, progress: Any, run_folder: Path, keyword: str | None) -> int:
    if progress.outcomes:
        console.print(progress.summary())
    report = run_folder / "report.html"
    if report.exists():
        console.print(f"report: {report}")
    return _status(code, progress, run_folder, keyword)


def _status(code: int, progress: Any, run_folder: Path, keyword: str | None) -> int:
    """A pytest session's end as the run's: 0 or EXIT_FAILED, or the error it raises (a
    suite that cannot be collected, named in `run_folder`'s collection-errors.txt; Ctrl-C;
    no case; pytest's own trouble)."""
    import pytest

    if progress.uncollected:
        # pytest stops before any case when a suite cannot be imported, and says "interrupted"
        errors = run_folder / COLLECTION_ERRORS
        errors.write_text("".join(f"{nodeid}\n{text}\n\n" for nodeid, text in progress.uncollected))
        nodeid, text = progress.uncollected[0]
        last = text.strip().splitlines()[-1].removeprefix("E").strip() if text.strip() else "error"
        more = f" (and {len(progress.uncollected) - 1} more)" if len(progress.uncollected) > 1 else ""
        raise ConfigError(f"{nodeid}: cannot be collected: {last}{more}; see {errors}")
    if code == pytest.ExitCode.INTERRUPTED:
        raise KeyboardInterrupt
    if code == pytest.ExitCode.NO_TESTS_COLLECTED:
        raise ConfigError(f"no case matches {keyword!r}" if keyword else "no case to run")
    if code in (pytest.ExitCode.USAGE_ERROR, pytest.ExitCode.INTERNAL_ERROR):
        raise LabError(f"pytest could not run the cases (exit {int(code)}): see its message above")
    return 0 if code == pytest.ExitCode.OK else EXIT_FAILED


def _run_here(
    argv: list[str],
    shown: str,
    keyword: str | None,
    results: Path,
    junitxml: Path | None,
    pause_on_fail: bool = False,
) -> int:
    import pytest

    from lab.progress import RunProgress
    from lab.results import new_run, settle, write_run_info

    run_folder = new_run(results)
    progress = RunProgress(console)
    try:
        write_run_info(run_folder, _invocation(), ROOT)
        console.print(f"sessionlab run {run_folder.name}: {shown}" + (f" -k {keyword!r}" if keyword else ""))
        pytest_argv = [*argv, *_pytest_args(keyword, junitxml, run_folder, pause_on_fail)]
        code = pytest.main(pytest_argv, plugins=[progress])
        return _finish(int(code), progress, run_folder, keyword)
    finally:
        settle(run_folder, ran=True if progress.outcomes else None)


def _run_on_hosts(
    paths: list[str],
    keyword: str | None,
    results: Path,
    junitxml: Path | None,
    machines: list[Any],
    known_hosts: Path,
    accept_new: bool,
    identity: Path | None,
    folder: str,
) -> int:
    """The cases spread over hosts by pytest-xdist's SSH gateways (a module and its lab on
    one host), after each host got this checkout and its bootstrap; then each host's
    cases are fetched and one report written here."""
    import os
    import tempfile

    import pytest

    from lab.progress import RunProgress
    from lab.pytest_plugin import cases_in
    from lab.remote import prepare, ssh_config, tx_specs
    from lab.report import write_report
    from lab.results import new_run, settle, write_run_info

    remotes = []
    run_folder: Path | None = None
    progress = RunProgress(console)
    try:
        for host in machines:
            remotes.append(prepare(host, printer(host.label), known_hosts, accept_new, identity, folder))
        run_folder = new_run(results)
        write_run_info(run_folder, _invocation(), ROOT)
        relative = [str(Path(p.split("::")[0]).relative_to(ROOT)) + p[len(p.split("::")[0]) :] for p in paths]
        console.print(f"sessionlab run {run_folder.name} on {', '.join(str(h) for h in machines)}")
        with tempfile.TemporaryDirectory(prefix="sessionlab-hosts-") as scratch:
            aliases = ssh_config(machines, Path(scratch) / "ssh_config", known_hosts.resolve(), identity)
            specs = tx_specs(aliases, Path(scratch) / "ssh_config", folder)
            argv = [*relative, "--dist", "loadscope", *(f"--tx={s}" for s in specs)]
            here = Path.cwd()
            # The controller collects nothing itself: from an empty folder the cases' paths,
            # relative to each host's checkout, name nothing here and go to the hosts as given.
            os.chdir(scratch)
            try:
                code = pytest.main([*argv, *_pytest_args(keyword, junitxml, run_folder)], plugins=[progress])
            finally:
                os.chdir(here)
        for remote in remotes:
            try:
                remote.fetch_run(run_folder.name, run_folder)
            except LabError as exc:
                console.print(f"[{remote.host.label}] {exc}")
        cases = cases_in(run_folder, [o.nodeid for o in progress.outcomes])
        if cases:
            write_report(run_folder, cases)
        return _finish(int(code), progress, run_folder, keyword)
    finally:
        for remote in remotes:
            remote.close()
        if run_folder is not None:
            settle(run_folder, ran=True if progress.outcomes else None)


@click.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("host")
@ssh_options
@click.option(
    "--results", type=click.Path(path_type=Path), default=RESULTS, help="local folder of run folders"
)
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def remote(
    host: str,
    known_hosts: Path,
    accept_new: bool,
    identity: Path | None,
    folder: str,
    results: Path,
    command: tuple[str, ...],
) -> int:
    """Run on another machine: `remote [OPTIONS] HOST run [RUN ARGS...]` pushes this checkout
    over SSH, bootstraps it there, runs with the output streamed here, and fetches the run
    folder into results/<run>-<host>. The exit status is the remote run's."""
    import re
    import shlex

    from lab.remote import Host, prepare
    from lab.results import check_results_root, mark_latest, prune, ran_a_case

    machine = Host.parse(host)
    if not command or command[0] != "run":
        raise ConfigError("remote: expected `remote [OPTIONS] HOST run [RUN ARGS...]` (options before HOST)")
    if any(arg in ("--host", "--results") or arg.startswith(("--host=", "--results=")) for arg in command):
        raise ConfigError("remote: --host and --results do not apply to the remote run")
    if "--pause-on-fail" in command:
        raise ConfigError("--pause-on-fail needs this terminal: not a remote run's")
    check_results_root(results)
    show = printer(machine.label)
    with prepare(machine, show, known_hosts, accept_new, identity, folder) as connection:
        names: list[str] = []

        def on_line(line: str) -> None:
            found = re.match(r"sessionlab run (\S+?):? ", line)
            if found and not names:
                names.append(found.group(1))
            show(line)

        # A terminal (a pty: a closed connection hangs the run up) without live redraws.
        line = f"cd {shlex.quote(folder)} && TERM=dumb .venv/bin/sessionlab {shlex.join(command)}"
        status = connection.stream(line, on_line, pty=True)
        if names:
            try:
                local = connection.fetch_run(names[0], results / f"{names[0]}-{machine.label}")
            except LabError:
                if status == EXIT_BAD_INPUT:  # it ran no case and kept no folder; it said why
                    return status
                raise
            if (local / "report.html").exists():
                mark_latest(local)
                console.print(f"report: {local / 'report.html'}")
            if ran_a_case(local):
                prune(results)
    return status
