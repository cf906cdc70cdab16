"""S1, session idle timeout (SCENARIOS.md): the outcome of every variant.

client (inside) -- fw -- server (outside), the firewall's TCP idle timeout is T seconds.
A client opens TCP to the server, exchanges data, stays idle for I seconds, then sends
again (idle probes, testcases/s1_common.py).

Figures: outcome (delivered / hung / reset) against I/T for every variant, from the
sweeps of every S1 case (testcases/common.py: the variants a selection left out, the
closing case runs itself).
"""

from __future__ import annotations

import json

from lab.plot import outcome_figure
from testcases.common import rerun_missing
from testcases.s1_common import ECHOES, IDLES, STRICT, SWEEPS, T, run_sweep

# This module's lab, every S1 module's: the plugin builds it, the shared `fw` and `servers`
# fixtures set the firewall and the echo servers up (the s2-server link can become a WAN link).
LAB_TOPOLOGY, LAB_TOPOLOGY_PARAMS, FIREWALL_POLICY, ECHO_SERVERS = "s1", {"wan_delay": "0ms"}, STRICT, ECHOES


def test_outcome_figure(lab, fw, servers, case, collected):
    """Outcome against idle time / timeout for every variant"""
    # the sweeps this selection did not run: run them now (one rule, testcases/common.py)
    ran_here = rerun_missing(
        collected, SWEEPS, lambda name: run_sweep(lab, fw, case, SWEEPS[name], collected)
    )
    case.figure("sweeps run by this case (not selected on their own)", ran_here)
    rows = [row for name in SWEEPS for row in collected[name]]
    expected = {
        (s.label, idle): outcome
        for sweep in SWEEPS.values()
        for s in sweep.series
        for idle, outcome in zip(IDLES, s.expected, strict=True)
    }
    got = {(row["variant"], row["idle"]): row["outcome"] for row in rows}
    assert got == expected, (
        f"outcomes differ from what each variant predicts: {sorted(set(got.items()) ^ set(expected.items()))}"
    )
    table = {}
    for (label, idle), outcome in got.items():
        table.setdefault(label, {})[f"{idle / T:g} T"] = outcome
    case.figure("outcome per variant and idle time", table)
    outcome_figure(rows, T, case.plot_path("outcomes", "outcome against idle/timeout per variant"))
    (case.path / "outcomes.json").write_text(json.dumps(rows, indent=1))
    case.keep(case.path / "outcomes.json", "the plotted outcomes")
