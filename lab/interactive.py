"""`sessionlab topo`: a scenario's lab, its devices configured, under Mininet's CLI.

Ctrl-C interrupts the command running on a node, as in Mininet; at an empty prompt it
leaves, like Ctrl-D and `exit`. A closed terminal (SIGHUP) or SIGTERM leaves at once. The
lab is removed on every one of these ways out.
"""

from __future__ import annotations

import signal
import sys
from typing import Any

from mininet.cli import CLI
from mininet.log import output, setLogLevel


class Hangup(BaseException):
    """The terminal went away (SIGHUP) or we were asked to stop (SIGTERM): leave now,
    whatever runs (a BaseException, so that no command's handler swallows it)."""


def _hangup(signum: int, frame: Any) -> None:
    raise Hangup(signal.Signals(signum).name)


class LabCLI(CLI):  # type: ignore[misc]
    """Mininet's CLI on a Lab: Ctrl-C at the prompt leaves instead of looping."""

    prompt = "sessionlab> "

    def __init__(self, lab: Any, stdin: Any = sys.stdin) -> None:
        self.lab = lab
        self.busy = False
        super().__init__(lab.net, stdin=stdin)

    def precmd(self, line: str) -> str:
        self.busy = True
        return str(line)

    def postcmd(self, stop: bool, line: str) -> bool:
        self.busy = False
        return stop

    def run(self) -> None:
        while True:
            try:
                self.cmdloop()
                return
            except KeyboardInterrupt:
                if not self.busy:
                    output("\n")
                    return
                self.busy = False
                output("\nInterrupt\n")
                for node in self.mn.values():
                    while node.waiting:
                        node.sendInt()
                        node.waitOutput()


def serve(lab: Any, banner: str) -> None:
    """Print `banner`, then the CLI until the user leaves; SIGHUP and SIGTERM leave too."""
    for sig in (signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, _hangup)
    # The lab keeps Mininet quiet (errors only); here its CLI prints commands' output.
    setLogLevel("output")
    print(banner, flush=True)
    LabCLI(lab)
