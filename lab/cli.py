"""`sessionlab`: list and run the lab suites, build a scenario's lab by hand, profile a
session device, check this machine, clean up after a killed run, compare runs, check
policies.

Exit status: 0 done (every case passed), 1 a case failed, 2 bad input (one line on stderr,
nothing started), 130 interrupted.
"""

from __future__ import annotations

import signal
import sys
from typing import Any

import click
from rich.table import Table

from lab.cli_characterize import characterize
from lab.cli_common import EXIT_BAD_INPUT, EXIT_INTERRUPTED, console
from lab.cli_lab import clean, doctor
from lab.cli_policy import policy, topologies
from lab.cli_report import report
from lab.cli_run import remote, run
from lab.cli_topo import topo
from lab.cli_try import try_command
from lab.errors import ConfigError, LabError


@click.group(no_args_is_help=True, help=__doc__)
def app() -> None:
    pass


for _command in (run, remote, topo, try_command, characterize, doctor, clean, report, policy, topologies):
    app.add_command(_command)


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
