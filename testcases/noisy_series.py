"""A noisy neighbour (issue 26): `sessionlab run --repeat N` while other processes keep CPU
cores busy for the whole series, and what it did to the cases' margins.

The neighbour is a plain busy loop per core asked for (`--busy 1`: one core of this 2-core
machine kind; `--busy 2`: the lab gets about a third of the machine), at normal priority,
started before the run and ended by PID after it (and by the kernel if this script dies:
each loop asks for SIGKILL when its parent goes). What the series shows comes from the
run's own evidence: every case's verdict and smallest client timeout margin per repetition
(`lab.series`, the flake table of the run's report); what the neighbour took is read from
the kernel, not assumed: each loop's CPU seconds over the series' wall time (its share of a
core), and the machine's timer lateness and CPU shares measured with the loops running
(`lab.machine_load`, what `sessionlab doctor` reports) just before the run starts.

    python -m testcases.noisy_series --busy 1 --repeat 3 [--results DIR] [-- run arguments]

writes `noisy.json` into the run folder: the neighbour, the series line, flaky cases, the
cases that failed (with their first failure's message) and every case whose smallest margin
came under `lab.traffic.MIN_MARGIN`.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from lab.machine_load import measure
from lab.results import SUMMARY_FILE
from lab.series import Repetition, Series, read_series
from lab.traffic import MIN_MARGIN

SESSIONLAB = [str(Path(sys.executable).with_name("sessionlab"))]
LOOP = "while True: pass"  # the neighbour: a plain busy loop, normal priority
PR_SET_PDEATHSIG = 1
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (/proc/<pid>/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


@dataclass
class Neighbour:
    """The busy loops and what they took: CPU seconds over the wall time they ran."""

    loops: int
    wall_s: float = 0.0
    cpu_s: tuple[float, ...] = ()
    before_run: str = ""  # lab.machine_load's summary with the loops running

    @property
    def cores(self) -> float:
        """How many cores the loops held on average (1.0 per loop that was never preempted)."""
        return sum(self.cpu_s) / self.wall_s if self.wall_s else 0.0


def run_series(busy: int, repeat: int, results: Path, run_args: list[str]) -> tuple[Neighbour, Path | None]:
    """The series under `busy` loops; returns the neighbour and the run folder (None: the
    run made none)."""
    results.mkdir(parents=True, exist_ok=True)
    before = set(results.iterdir())
    neighbour = Neighbour(busy)
    loops = [
        subprocess.Popen([sys.executable, "-c", LOOP], preexec_fn=_die_with_parent)  # noqa: PLW1509
        for _ in range(busy)
    ]
    start = time.monotonic()
    try:
        neighbour.before_run = measure(2.0).summary()
        repeating = ["--repeat", str(repeat)] if repeat > 1 else []
        argv = [*SESSIONLAB, "run", *repeating, "--results", str(results), *run_args]
        subprocess.run(argv, check=False)
    finally:
        neighbour.wall_s = round(time.monotonic() - start, 1)
        neighbour.cpu_s = tuple(round(cpu_seconds(p.pid), 1) for p in loops if p.poll() is None)
        for loop in loops:
            loop.kill()
            loop.wait(10)
    made = sorted(set(results.iterdir()) - before, key=lambda p: p.stat().st_mtime)
    folders = [p for p in made if (p / SUMMARY_FILE).is_file()]
    return neighbour, (folders[-1] if folders else None)


def read(run: Path) -> Series:
    """The run as a series: a repeated run's own, or a plain run (--repeat 1) as one repetition."""
    series = read_series(run)
    if series is not None:
        return series
    return Series.read(run, 1, False, [Repetition(1, run, "finished")])


def verdict(run: Path, neighbour: Neighbour) -> dict[str, object]:
    """noisy.json: the neighbour, the series' line, and the cases it troubled."""
    series = read(run)
    under = {
        row.name: row.margin for row in series.rows if row.margin is not None and row.margin < MIN_MARGIN
    }
    failed = {
        row.name: f"repetition {n}: {cell.message[:300]}"
        for row in series.rows
        if (first := row.first_failure()) is not None
        for n, cell in [first]
    }
    return {
        "neighbour": {**asdict(neighbour), "cores held": round(neighbour.cores, 2)},
        "series": series.line(),
        "cases": len(series.rows),
        "flaky": [row.name for row in series.flaky],
        "failed": failed,
        f"margins under {MIN_MARGIN} s": under,
        "smallest margin (s)": min((r.margin for r in series.rows if r.margin is not None), default=None),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--busy", type=int, choices=(1, 2), default=1, help="busy loops (cores kept busy)")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions of the selection")
    parser.add_argument("--results", type=Path, default=Path("results"), help="where the run folder goes")
    parser.add_argument("run_args", nargs="*", help="`sessionlab run` arguments after --: the selection")
    args = parser.parse_args(argv)
    if not 1 <= args.repeat <= 100:  # 1: a plain run, read as a series of one
        parser.error(f"--repeat {args.repeat}: give 1-100")
    neighbour, run = run_series(args.busy, args.repeat, args.results, args.run_args)
    if run is None:
        print(f"noisy_series: the run wrote no series under {args.results}", file=sys.stderr)
        return 1
    found = verdict(run, neighbour)
    (run / "noisy.json").write_text(json.dumps(found, indent=2, default=str))
    print(json.dumps(found, indent=2, default=str))
    print(f"noisy_series: {run / 'noisy.json'}")
    return 0 if not found["failed"] and not found[f"margins under {MIN_MARGIN} s"] else 1


if __name__ == "__main__":
    sys.exit(main())
