"""From controller start to every switch configured (issue 12), per S2 fabric mode: the lab
(`lab.phases`: the app given its configuration, the switches started, every switch
reported configured after its barrier) against raw Mininet running the same app with the
same configuration and the same dpids, timed twice in that raw run: until Mininet's
`waitConnected` returns (every switch connected, nothing configured yet) and until the app
reports every switch configured (the lab's own readiness signal). The lab starts the app's
process before Mininet builds the network, so loading os-ken (about 0.5 s of the 0.7 s a
fresh process takes here) happens beside the build; raw Mininet starts it when its
network is built, as a user would. Then the controller's CPU while the lab idles (its
session-table poll), from /proc.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

from bench.paired import Figure

REPEAT = 3
TARGET = 0.5  # s from controller start to every switch configured
IDLE_SECONDS = 10
IDLE_TARGET = 0.05  # cores
PHASE = "controller start to every switch configured"


def lab_ready(mode: str, folder: Path) -> dict[str, Any]:
    """One S2 lab with the app in `mode`: its readiness time, the app's configuration and
    each switch's dpid (for the raw run), and the controller's CPU while idle."""
    from lab import topology
    from lab.net import Lab

    with Lab(topology.load("s2"), folder, controller=topology.controller_for("s2", mode=mode)) as lab:
        assert lab.controller is not None and lab.controller.proc is not None
        config = json.loads((lab.paths.root / f"{lab.controller.app.name}-config.json").read_text())
        dpids = {lab.logical(sw.name): sw.dpid for sw in lab.net.switches}
        pid = lab.controller.proc.popen.pid
        before, t0 = cpu_seconds(pid), time.monotonic()
        time.sleep(IDLE_SECONDS)  # the subject: what the controller costs while nothing happens
        idle = (cpu_seconds(pid) - before) / (time.monotonic() - t0)
        return {"seconds": lab.phases[PHASE], "config": config, "dpids": dpids, "idle_cores": idle}


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def raw_ready(config: dict[str, Any], dpids: dict[str, str], folder: Path) -> dict[str, float]:
    """Raw Mininet of the S2 topology (the lab's dpids) with the app started by hand on the
    same configuration: seconds from the app's start to `waitConnected` returning and to
    the app's "switch_ready" for every dpid."""
    from mininet.link import TCLink
    from mininet.log import setLogLevel
    from mininet.net import Mininet
    from mininet.node import OVSSwitch, RemoteController

    from lab import topology
    from lab.controller import free_port
    from lab.errors import LabError
    from lab.events import read_events
    from lab.procs import host_run

    topo = topology.load("s2")
    for name, dpid in dpids.items():
        topo.nodeInfo(name)["dpid"] = dpid
    taken = set(host_run(["ovs-vsctl", "list-br"]).split()) & set(topo.switches())
    if taken:
        raise LabError(f"raw Mininet baseline: bridges {', '.join(sorted(taken))} exist already")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.json"
    path.write_text(json.dumps({**config, "session_file": str(folder / "sessions.json")}))
    port = free_port()
    setLogLevel("error")
    net = Mininet(
        topo=topo,
        switch=partial(OVSSwitch, datapath="user", failMode="secure", protocols="OpenFlow13"),
        controller=partial(RemoteController, ip="127.0.0.1", port=port),
        link=TCLink,
        build=False,
    )
    log = (folder / "controller.log").open("w+")
    app = None
    try:
        net.build()
        started = time.monotonic()
        app = subprocess.Popen(
            [sys.executable, "-m", "controllers.run", "controllers.fwlb.app", "--port", str(port)]
            + ["--config", str(path)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        _wait(lambda: "controller listening" in _read(log), 20, "the app to listen")
        net.start()
        if not net.waitConnected(timeout=20):
            raise LabError("raw Mininet baseline: a switch never connected")
        connected = time.monotonic() - started
        wanted = {int(d, 16) for d in dpids.values()}
        _wait(
            lambda: wanted <= {e["dpid"] for e in read_events(_read(log)) if e["event"] == "switch_ready"},
            20,
            "every switch configured",
        )
        return {"waitConnected": connected, "configured": time.monotonic() - started}
    finally:
        if app is not None:
            app.terminate()
            try:
                app.wait(10)
            except subprocess.TimeoutExpired:
                app.kill()
                app.wait()
        net.stop()
        log.close()


def _read(log: Any) -> str:
    log.flush()
    return Path(log.name).read_text()


def _wait(condition: Any, timeout: float, what: str) -> None:
    from lab.wait import wait_until

    wait_until(condition, timeout, what)


def run(out: Path) -> dict[str, Any]:
    from controllers.fwlb.logic import MODES

    out.mkdir(parents=True, exist_ok=True)
    figures = []
    idle = Figure("controller CPU while idle (session-table poll)", "cores", max_value=IDLE_TARGET)
    for mode in MODES:
        ready = Figure(f"{mode}: controller start to every switch configured", "s", max_value=TARGET)
        ready.baseline_name = "raw Mininet, same signal"
        connected = Figure(f"{mode}: raw Mininet until waitConnected", "s")
        for n in range(REPEAT):
            lab = lab_ready(mode, out / f"{mode}-lab-{n}")
            raw = raw_ready(lab["config"], lab["dpids"], out / f"{mode}-raw-{n}")
            ready.samples.append(lab["seconds"])
            ready.baseline.append(raw["configured"])
            connected.samples.append(raw["waitConnected"])
            idle.samples.append(lab["idle_cores"])
        figures += [ready, connected]
    figures.append(idle)
    return {"rows": [f.to_dict() for f in figures]}


def plot(data: dict[str, Any], path: Path) -> None:
    """Each mode's readiness times: the lab's, raw Mininet's with the same signal, and raw
    Mininet's waitConnected."""
    from lab.plot import plt, save

    rows = [r for r in data["rows"] if r["unit"] == "s"]
    fig, ax = plt.subplots(figsize=(9, 4))
    for i, row in enumerate(rows):
        ax.scatter(
            [i] * len(row["samples"]), row["samples"], color="tab:orange", label="lab" if i == 0 else None
        )
        if row["baseline"]:
            ax.scatter([i + 0.15] * len(row["baseline"]), row["baseline"], color="tab:blue",
                       label="raw Mininet, same signal" if i == 0 else None)  # fmt: skip
    ax.axhline(TARGET, color="gray", linestyle="--", linewidth=1, label=f"target {TARGET} s")
    ax.set_xticks(range(len(rows)), [r["what"].replace(": ", "\n", 1) for r in rows], fontsize=7, rotation=30)
    ax.set_ylabel("seconds")
    ax.legend(fontsize=8)
    ax.set_title("controller start to every switch configured")
    save(fig, path)
