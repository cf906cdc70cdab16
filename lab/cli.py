"""`sessionlab`: list and run the lab suites, build a scenario's lab by hand, check this
machine, clean up after a killed run, compare runs, check policies.

Exit status: 0 done (every case passed), 1 a case failed, 2 bad input (one line on stderr,
nothing started), 130 interrupted.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from lab.catalog import ROOT
from lab.errors import ConfigError, LabError

EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 1, 2, 130

# Long lines stay whole in CI logs; no markup: figures, case ids and messages hold [brackets]
console = Console(highlight=False, soft_wrap=True, markup=False)
RESULTS = ROOT / "results"


@click.group(no_args_is_help=True, help=__doc__)
def app() -> None:
    pass


def _params(items: list[str], option: str) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{option} {item!r}: expected key=value")
        params[key] = value
    return params


# --- list ------------------------------------------------------------------------------
@app.command("list")
@click.argument("suite", nargs=-1)
def list_cases(suite: tuple[str, ...]) -> int:
    """List the scenarios' cases with what each shows."""
    from lab.catalog import collect, suites

    known = suites()
    unknown = [s for s in suite or [] if s not in known]
    if unknown:
        raise ConfigError(f"unknown suite {', '.join(unknown)} (known: {', '.join(known)})")
    chosen = suite or list(known)
    cases = collect([p for s in chosen for p in known[s]])
    table = Table(title=f"{len(cases)} cases in {len(chosen)} suites")
    for column in ("suite", "case", "what it shows"):
        table.add_column(column, overflow="fold")
    last = None
    for case in cases:
        table.add_row(
            case.suite if case.suite != last else "", case.nodeid.split("::", 1)[1], case.description
        )
        last = case.suite
    console.print(table)
    return 0


# --- run -------------------------------------------------------------------------------
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


@app.command()
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
    default=1,
    help="labs side by side on this machine (pytest-xdist; a module and its lab stay on one worker)",
)
@click.option(
    "--host",
    "hosts",
    multiple=True,
    help="spread the cases over these machines ([user@]host[:port], repeatable; pytest-xdist over SSH)",
)
@ssh_options
def run(
    targets: tuple[str, ...],
    keyword: str | None,
    results: Path,
    junitxml: Path | None,
    workers: int,
    hosts: tuple[str, ...],
    known_hosts: Path,
    accept_new: bool,
    identity: Path | None,
    folder: str,
) -> int:
    """Run suites (s1...), modules or cases (see `list`; default: all) with live progress
    and write results/<run>/report.html."""
    from lab.catalog import check_keyword, resolve
    from lab.net import check_host
    from lab.remote import Host

    paths = resolve(list(targets))
    if keyword:
        check_keyword(keyword)
    if junitxml is not None and not junitxml.parent.is_dir():
        raise ConfigError(f"--junitxml {junitxml}: no folder {junitxml.parent}")
    machines = [Host.parse(h) for h in hosts]
    if machines and workers > 1:
        raise ConfigError("-n and --host: choose one (with --host, each host runs one worker)")
    if machines:
        outside = [p for p in paths if not Path(p.split("::")[0]).is_relative_to(ROOT)]
        if outside:
            raise ConfigError(f"{outside[0]}: only the checkout's own suites run on other hosts")
        return _run_on_hosts(
            paths, keyword, results, junitxml, machines, known_hosts, accept_new, identity, folder
        )
    check_host()
    extra = ["-n", str(workers), "--dist", "loadscope"] if workers > 1 else []
    shown = " ".join(targets) or "all suites"
    # The checkout's configuration whatever the targets (a suite of one's own too: markers,
    # the checkout on sys.path).
    here = [f"--rootdir={ROOT}", f"--config-file={ROOT / 'pyproject.toml'}", *extra]
    return _run_here([*paths, *here], shown, keyword, results, junitxml)


def _pytest_args(keyword: str | None, junitxml: Path | None, run_folder: Path) -> list[str]:
    # Paths as --option=path: pytest takes a lone argument that names an existing folder as
    # a target (the run folder moved the root to `/`, and pyproject.toml went unread), and
    # pytest-xdist rewrites such arguments for SSH hosts.
    argv = ["-o", "addopts=", "-p", "no:terminal", f"--run-dir={run_folder}"]
    if keyword:
        argv += ["-k", keyword]
    if junitxml is not None:
        argv += [f"--junitxml={junitxml.resolve()}"]
    return argv


def _finish(code: int, progress: Any, run_folder: Path, keyword: str | None) -> int:
    import pytest

    if progress.outcomes:
        console.print(progress.summary())
    report = run_folder / "report.html"
    if report.exists():
        console.print(f"report: {report}")
    if progress.uncollected:
        # pytest stops before any case when a suite cannot be imported, and says "interrupted"
        errors = run_folder / "collection-errors.txt"
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
        raise LabError(f"pytest could not run the cases (exit {int(code)}); see {run_folder}")
    return 0 if code == pytest.ExitCode.OK else EXIT_FAILED


def _run_here(argv: list[str], shown: str, keyword: str | None, results: Path, junitxml: Path | None) -> int:
    import pytest

    from lab.progress import RunProgress
    from lab.results import new_run

    run_folder = new_run(results)
    progress = RunProgress(console)
    console.print(f"sessionlab run {run_folder.name}: {shown}" + (f" -k {keyword!r}" if keyword else ""))
    code = pytest.main([*argv, *_pytest_args(keyword, junitxml, run_folder)], plugins=[progress])
    return _finish(int(code), progress, run_folder, keyword)


def _printer(label: str) -> Any:
    """Print a host's output lines, each marked with the host."""

    def show(line: str) -> None:
        console.print(f"[{label}] {line}")

    return show


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
    from lab.results import new_run

    remotes = []
    try:
        for host in machines:
            remotes.append(prepare(host, _printer(host.label), known_hosts, accept_new, identity, folder))
        run_folder = new_run(results)
        progress = RunProgress(console)
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


# --- remote ----------------------------------------------------------------------------
@app.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
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
    from lab.results import mark_latest

    machine = Host.parse(host)
    if not command or command[0] != "run":
        raise ConfigError("remote: expected `remote [OPTIONS] HOST run [RUN ARGS...]` (options before HOST)")
    if any(arg in ("--host", "--results") or arg.startswith(("--host=", "--results=")) for arg in command):
        raise ConfigError("remote: --host and --results do not apply to the remote run")
    show = _printer(machine.label)
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
            local = connection.fetch_run(names[0], results / f"{names[0]}-{machine.label}")
            if (local / "report.html").exists():
                mark_latest(local)
                console.print(f"report: {local / 'report.html'}")
    return status


# --- topo ------------------------------------------------------------------------------
@app.command()
@click.argument("spec", metavar="TOPOLOGY")
@click.option("--mode", help="the controller's mode (S2 fabric, S4 balancing algorithm)")
@click.option("--policy", type=click.Path(path_type=Path), help="firewall policy (TOML) for every firewall")
@click.option("--param", multiple=True, help="topology parameter key=value (repeatable)")
@click.option("--results", type=click.Path(path_type=Path), default=RESULTS, help="folder of run folders")
def topo(spec: str, mode: str | None, policy: Path | None, param: tuple[str, ...], results: Path) -> int:
    """Build a scenario's lab with its devices configured and open Mininet's CLI on it;
    leaving removes the lab. TOPOLOGY: a name (see `topologies`) or FILE.py[:NAME]."""
    from lab import topology
    from lab.config import load_policy
    from lab.devices import Firewall
    from lab.interactive import Hangup, serve
    from lab.net import Lab, check_host, topology_problems
    from lab.results import new_run

    name, topo_obj = topology.load_spec(spec, **_params(list(param), "--param"))
    problems = topology_problems(topo_obj)
    if problems:
        raise ConfigError(problems)
    # A topology file of one's own runs without a controller (the suites' harnesses
    # configure theirs for their own topologies).
    own_file = spec.endswith(".py") or ".py:" in spec
    modes = () if own_file else topology.controller_modes(name)
    if mode is not None and not modes:
        raise ConfigError(f"topology {name!r} has no controller: --mode does not apply")
    controller = None if own_file else topology.controller_for(name, mode=mode)
    firewall_policy = load_policy(policy) if policy is not None else None
    check_host()
    folder = new_run(results)
    with Lab(topo_obj, folder / f"topo-{name}", controller=controller) as lab:
        lines = [f"lab {name} ({lab.tag}) is up; logs in {folder}"]
        if controller is not None:
            lines.append(
                f"controller: {controller.module}, mode {mode or 'default'} (modes: {', '.join(modes)})"
            )
        for node in lab.describe()["nodes"]:
            real = lab.names.get(node["name"], node["name"])
            shown = node["name"] if real == node["name"] else f"{node['name']} (as {real})"
            role = f" [{node['role']}]" if node["role"] else ""
            lines.append(f"  {shown}{role} {' '.join(node['addresses'])}")
        if firewall_policy is not None:
            firewalls = [d for d in lab.devices() if isinstance(d, Firewall)]
            if not firewalls:
                raise ConfigError(f"topology {name!r} has no firewall: --policy does not apply")
            for device in firewalls:
                path = device.apply_policy(firewall_policy)
                lines.append(f"policy {policy} on {device.name}: {path}")
        lines.append("Ctrl-D, `exit` or Ctrl-C at the prompt leave and remove the lab.")
        try:
            serve(lab, "\n".join(lines))
        except Hangup as why:
            hung_up = str(why)
        else:
            hung_up = ""
    with contextlib.suppress(OSError):  # the terminal may be gone
        console.print(f"lab {name} removed" + (f" ({hung_up})" if hung_up else ""))
    return EXIT_INTERRUPTED if hung_up else 0


# --- doctor ----------------------------------------------------------------------------
@app.command()
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
@app.command()
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


# --- report ----------------------------------------------------------------------------
@app.command()
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


# --- policy, topologies -------------------------------------------------------------------
@app.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--inside", default="fw-in", help="inside interface name")
@click.option("--outside", default="fw-out", help="outside interface name")
def policy(file: Path, inside: str, outside: str) -> int:
    """Check a firewall policy (TOML) and print its nftables ruleset."""
    from lab.config import load_policy
    from lab.render.nftables import render_ruleset

    sys.stdout.write(render_ruleset(load_policy(file), inside, outside))
    return 0


@app.command()
def topologies() -> int:
    """List the topologies and their files."""
    from lab import topology

    for name, path in topology.available().items():
        modes = topology.controller_modes(name)
        extra = f"\tcontroller modes: {', '.join(modes)}" if modes else ""
        click.echo(f"{name}\t{path.relative_to(ROOT)}{extra}")  # tab-separated: for scripts
    return 0


def main(argv: list[str] | None = None) -> int:
    # SIGTERM and SIGHUP (and SIGINT, even where a shell started us ignoring it) end a run
    # like Ctrl-C, so the lab's cleanup runs.
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, signal.default_int_handler)
    args = sys.argv[1:] if argv is None else argv
    try:
        result: Any = app.main(args=args, prog_name="sessionlab", standalone_mode=False)
        return int(result or 0)
    except click.exceptions.NoArgsIsHelpError as exc:
        print(exc.ctx.get_help() if exc.ctx else "sessionlab: see --help", file=sys.stderr)
        return EXIT_BAD_INPUT
    except click.UsageError as exc:
        print(f"sessionlab: {exc.format_message()} (see --help)", file=sys.stderr)
        return EXIT_BAD_INPUT
    except click.exceptions.Exit as exc:  # --help
        return int(exc.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt):
        print("sessionlab: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except LabError as exc:
        message = " ".join(str(exc).split())  # one line, whatever the error held
        print(f"sessionlab: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
