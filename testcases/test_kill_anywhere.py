"""SIGKILL at any moment (issue 26): five runs of `sessionlab`, each killed at a random
moment (the CLI, or a pytest-xdist worker under it), each followed by `sessionlab clean`;
after each, nothing of that run is left on the machine: no lab record, OVS bridge,
root-namespace interface, named namespace, runtime directory or process of its tree
(testcases/kill_series.py reads them off the machine). Every selection runs at least
once, so two of the five are always `sessionlab characterize` of a device the lab did not
build (an s6_device.sh namespace, plugged by the lab or reached through two root-namespace
interfaces): after `clean` it is as its owner left it, with no veth of the lab attached,
its root-namespace ports attached to nothing and its sshd answering, and its owner's
`down` removes it (testcases/kill_device.py). A run whose worker was killed ends by itself
(xdist replaces the worker, which runs what the dead one left). `python -m
testcases.kill_series --runs 30` runs the longer series the README reports.

It runs beside other workers' labs, one at a time with the other modules that run
`sessionlab` themselves (testcases/scheduling.py's TOGETHER): it reads only the labs whose
owner is in its runs' process trees, and `clean` touches no lab whose owner is alive.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import asdict

from lab.results import Case
from testcases.kill_series import DEVICE, ROOT_DEVICE, RUN_BOUND, SELECTIONS, draw, kill_one

KILLS = 5


def test_killed_at_random_moments_clean_leaves_nothing(case: Case, tmp_path):
    """Five runs killed with SIGKILL at random moments: after `clean`, nothing of them is left"""
    seed = int(time.time())
    rng = random.Random(seed)
    # every selection at least once (both ways to a device the lab did not build among
    # them), then at random while there are kills left; a worker killed in the runs with two
    selections = [
        *sorted(SELECTIONS),
        *(rng.choice(sorted(SELECTIONS)) for _ in range(KILLS - len(SELECTIONS))),
    ]
    kills = []
    for selection in selections:
        kills.append(kill_one(*draw(rng, selection), tmp_path / "results"))
    table = [asdict(k) for k in kills]
    (case.path / "kills.json").write_text(json.dumps(table, indent=1) + "\n")
    case.keep(case.path / "kills.json", "each killed run: where it was, what clean removed, what was left")
    case.figure("seed (replays the moments)", seed)
    case.figure(
        "killed runs",
        [
            {
                "selection": k.selection,
                "killed": f"{k.target} at {k.moment_s} s" if k.killed else f"ended before {k.moment_s} s",
                "labs": len(k.labs),
                "processes of the run": k.processes,
                "all ended after (s)": k.ended_in_s,
                **({"its run ended by itself after (s)": k.run_ended_in_s} if k.target == "worker" else {}),
                "still running for clean (its labs' recorded processes)": len(k.survivors),
                "left after clean": len(k.left),
                **({"device": k.device} if k.device else {}),
            }
            for k in kills
        ],
    )
    left = {f"{k.selection} ({k.target} at {k.moment_s} s)": k.left for k in kills if k.left}
    assert not left, f"left after clean: {left} (kills.json in {case.path}, seed {seed})"
    hung = [
        f"{k.selection} at {k.moment_s} s"
        for k in kills
        if k.killed and k.target == "worker" and k.run_ended_in_s is None
    ]
    assert not hung, f"a run whose worker was killed did not end within {RUN_BOUND:.0f} s: {hung}"
    assert sum(k.killed for k in kills) >= KILLS - 1, f"most runs should be killed, not end first: {table}"
    checked = {k.selection for k in kills if k.device.get("namespace") == "kept"}
    assert checked == {DEVICE, ROOT_DEVICE}, (
        f"a device the lab did not build was not killed and checked: {table}"
    )
