"""`sessionlab`: list and run the lab suites, build a scenario's lab by hand, profile a
session device, check this machine, clean up after a killed run, compare runs, check
policies.

Exit status: 0 done (every case passed), 1 a case failed, 2 bad input (one line on stderr,
nothing started), 130 interrupted.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import textwrap
from typing import Any

import click

from lab.cli_characterize import characterize
from lab.cli_common import EXIT_BAD_INPUT, EXIT_INTERRUPTED, console
from lab.cli_lab import clean, doctor
from lab.cli_policy import policy, topologies
from lab.cli_report import report
from lab.cli_run import remote, run
from lab.cli_topo import topo
from lab.cli_try import try_command
from lab.errors import ConfigError, LabError

log = logging.getLogger(__name__)

# Where Debian keeps ethtool, nft, conntrack, sysctl...: a plain `su` to root leaves them
# off PATH, and the tools were then reported missing.
SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")


def _show_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    """`--version`: the installed package's version, and the checkout's commit if a git one."""
    if not value or ctx.resilient_parsing:
        return
    from importlib.metadata import PackageNotFoundError, version

    from lab.catalog import ROOT
    from lab.results import git_state

    try:
        number = version("sessionlab")
    except PackageNotFoundError:
        number = "(not installed)"
    commit, dirty = git_state(ROOT)
    where = f" (commit {commit[:12]}{', with local changes' if dirty else ''})" if commit else ""
    click.echo(f"sessionlab {number}{where}")
    ctx.exit(0)


@click.group(no_args_is_help=True, help=__doc__)
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_show_version,
    help="show the version (and the checkout's git commit) and exit",
)
def app() -> None:
    pass


for _command in (run, remote, topo, try_command, characterize, doctor, clean, report, policy, topologies):
    app.add_command(_command)


# --- list ------------------------------------------------------------------------------
@app.command("list")
@click.argument("suite", nargs=-1)
def list_cases(suite: tuple[str, ...]) -> int:
    """List the scenarios' cases by suite and module, with what each shows (any of these
    names is a `run` target)."""
    from lab.catalog import collect, suites

    known = suites()
    unknown = [s for s in suite or [] if s not in known]
    if unknown:
        raise ConfigError(f"unknown suite {', '.join(unknown)} (known: {', '.join(known)})")
    chosen = suite or list(known)
    cases = collect([p for s in chosen for p in known[s]])
    console.print("\n".join(_listing(cases, len(chosen), shutil.get_terminal_size().columns)))
    return 0


def _listing(cases: list[Any], suites: int, width: int) -> list[str]:
    """`list`'s lines: a section per suite, a header per module, each case's name whole on
    its own line (indented 2: the longest fits 80 columns) and its description wrapped to
    `width` below it, once for a run of variants of one parametrized case."""
    width = max(width, 40)
    lines = [f"{len(cases)} cases in {suites} suite{'' if suites == 1 else 's'}"]
    counts: dict[str, int] = {}
    modules: dict[str, set[str]] = {}
    for case in cases:
        counts[case.suite] = counts.get(case.suite, 0) + 1
        modules.setdefault(case.suite, set()).add(case.module)
    suite = module = None
    for n, case in enumerate(cases):
        if case.suite != suite:
            suite, module = case.suite, None
            lines += ["", f"suite {suite}: {counts[suite]} cases in {len(modules[suite])} modules"]
        if case.module != module:
            module = case.module
            lines += ["", module]
        lines.append(f"  {case.name}")  # never folded: it is what `run` takes
        after = cases[n + 1] if n + 1 < len(cases) else None
        variant = after is not None and (after.module, after.name.split("[")[0], after.description) == (
            case.module,
            case.name.split("[")[0],
            case.description,
        )
        if case.description != case.name and not variant:
            lines += textwrap.wrap(
                case.description,
                width,
                initial_indent=" " * 6,
                subsequent_indent=" " * 6,
                break_long_words=False,
                break_on_hyphens=False,
            )
    return lines


def _sbin_on_path() -> None:
    """Put the sbin folders on PATH (appended, where missing), so every tool is found
    whatever the shell gave us."""
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p]
    missing = [d for d in SBIN if d not in path]
    if missing:
        log.debug("PATH lacked %s: appended", ", ".join(missing))
        os.environ["PATH"] = os.pathsep.join([*path, *missing])


def main(argv: list[str] | None = None) -> int:
    # SIGTERM and SIGHUP (and SIGINT, even where a shell started us ignoring it) end a run
    # like Ctrl-C, so the lab's cleanup runs.
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, signal.default_int_handler)
    args = sys.argv[1:] if argv is None else argv
    _sbin_on_path()
    try:
        # obj: the arguments as given, which `run` writes into its run.json
        result: Any = app.main(args=args, prog_name="sessionlab", standalone_mode=False, obj={"argv": args})
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
