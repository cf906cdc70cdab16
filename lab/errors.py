"""One error tree for the harness; the CLI turns any of these into one line and exit 2."""

from __future__ import annotations

from collections.abc import Sequence


class LabError(Exception):
    """Anything the harness can explain in one line."""


class ConfigError(LabError):
    """Bad input: a topology, a policy, a CLI argument. Collects every problem found."""

    def __init__(self, problems: str | Sequence[str]):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))


class CommandError(LabError):
    """A command the lab ran failed."""

    def __init__(self, cmd: Sequence[str] | str, rc: int, output: str = ""):
        self.cmd = cmd if isinstance(cmd, str) else " ".join(cmd)
        self.rc = rc
        self.output = output.strip()
        last = self.output.splitlines()[-1] if self.output else "no output"
        super().__init__(f"`{self.cmd}` exited {rc}: {last}")


class LabTimeout(LabError):
    """A bounded wait ran out."""


class ProcessDied(LabError):
    """A process the lab runs until it stops it (a server, a daemon, an agent, the
    controller) ended on its own; `deaths` names each (`lab.procs.Death`)."""

    def __init__(self, message: str, deaths: Sequence[object] = ()):
        self.deaths = list(deaths)
        super().__init__(message)
