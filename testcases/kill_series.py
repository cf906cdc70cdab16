"""SIGKILL at any moment (issue 26): runs of `sessionlab` killed at a random moment, each
followed by `sessionlab clean`; afterwards nothing of the run may be left.

A run is one of a few selections (`sessionlab run` of one lab; two labs side by side
under pytest-xdist; a lab with the os-ken controller and OVS's conntrack; `sessionlab
characterize` of a device the lab did not build, plugged into its namespace or through
two root-namespace interfaces), killed either at the CLI (pytest runs
inside it) or at one pytest-xdist worker under it, at a moment drawn uniformly from the
first seconds of its run: start-up, collection, the lab's build, traffic, teardown and the
report all get their share. While the run lives, its process tree and the labs it
recorded are sampled (a lab's record names its owner: only the run's own labs count, not
another lab on the machine). After the kill, every process of the tree gets a bounded
time to end, `clean` runs, and the checks read the machine itself: no record, OVS
bridge, root-namespace interface, named namespace or runtime directory of the run's
labs, and no process of its tree.

The device the lab did not build (S6) is an s6_device.sh namespace its owner brings up
before the run and takes down after the checks (testcases/kill_device.py): the lab
plugs veths into it (or attaches the two root-namespace veths its owner made into it) and
reads its table over SSH. After `clean` it must be as its owner left it (interfaces,
addresses, ruleset, sysctls, processes, sshd answering), with no veth of the lab attached
and its root-namespace ports attached to nothing, and its owner's `down` must then remove it.

`python -m testcases.kill_series --runs 30` runs a series and writes its table as JSON
(`--selection NAME` draws only that selection); testcases/test_kill_anywhere.py runs 5 as
a lab test.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lab.procs import RUNTIME_ROOT
from lab.records import RECORDS, Record, alive, descendants, root_links, start_time
from lab.records import command as cmdline
from testcases.kill_device import OwnedDevice

SESSIONLAB = [str(Path(sys.executable).with_name("sessionlab"))]
DEVICE = "device the lab did not build"
ROOT_DEVICE = "device by root-namespace ports"
# name -> (the command's arguments, s within which the kill falls: about 75 % of the run's
# time alone on the faster VMs of this kind, so start-up, the lab's build, traffic and most
# of the teardown get their share, and a faster machine still kills most runs. At 90 % of
# an older VM's times, 2 of 5 runs ended first in a clean-clone run at 4d98052: S2 symmetric
# took 8.9-9.2 s against a span of 10, the two labs 22 s against 20, the root-namespace
# device under 21.3 s against 24)
SELECTIONS = {
    "one lab": (["run", "s1", "-k", "failure_idle_past_timeout_hangs", "-n", "1"], 10.0),
    # test_links' loss case runs the long ping that outlived its run (series 1 and 2)
    "two labs side by side": (
        ["run", "-n", "2", "test_links", "s5", "-k", "loss_one_way or same_intent"],
        16.0,
    ),
    "controller and OVS conntrack": (["run", "test_s2_modes", "-k", "symmetric", "-n", "1"], 7.0),
    # S6 as the engineer runs it: veths plugged into the device's namespace, its table read
    # over SSH, TCP probes through it (about 13 s alone); {fields} are the device's (kill_device)
    DEVICE: (
        [
            "characterize",
            "--netns", "{name}", "--port", "inside=in0", "--port", "outside=out0",
            "--driver", "linux", "--ssh", "root@127.0.0.1:{port}",
            "--known-hosts", "{known_hosts}", "--identity", "{identity}",
            "--only", "tcp", "--tcp-max", "3", "--parallel", "4", "--app-timeout", "1",
        ],
        9.5,
    ),
    # the same device reached through two root-namespace interfaces (a VM's taps), which the
    # lab attaches to its switches as they are and must leave attached to nothing (about
    # 21-27 s alone: the check that no interface is an Open vSwitch port asks every bridge)
    ROOT_DEVICE: (
        [
            "characterize", "--port", "inside={inside}", "--port", "outside={outside}",
            "--driver", "linux", "--ssh", "root@127.0.0.1:{port}",
            "--known-hosts", "{known_hosts}", "--identity", "{identity}",
            "--only", "tcp", "--tcp-max", "3", "--parallel", "4", "--app-timeout", "1",
        ],
        16.0,
    ),
}  # fmt: skip
QUIET = 30.0  # s: how long the killed run's processes may take to end after the CLI, before `clean`
RUN_BOUND = 300.0  # s: how long a run whose worker was killed may take to end (xdist replaces it)
SAMPLE = 0.1  # s between samples of the run's process tree and records
WORKER = "exec(eval(sys.stdin.readline()))"  # how execnet starts a pytest-xdist worker


@dataclass
class Kill:
    """One killed run and what the machine held after `clean`."""

    selection: str
    target: str  # "cli" or "worker"
    moment_s: float
    killed: bool = False  # False: the run ended before the moment (or had no worker yet)
    last_output: str = ""  # the CLI's last line before the kill: where the run was
    exit: int | None = None  # the CLI's exit status (-9: killed itself)
    end_output: str = ""  # a worker killed: the CLI's last line at the end of its run
    # a worker killed: s from the kill until the CLI ended its run by itself (None: it was
    # still running at RUN_BOUND, a hang: seen at 630643b, a replacement worker left idle)
    run_ended_in_s: float | None = None
    labs: list[str] = field(default_factory=list)
    processes: int = 0  # processes of the run's tree seen while it ran
    ended_in_s: float | None = None  # from the kill until the last of them ended (None: left to clean)
    survivors: list[str] = field(default_factory=list)  # still running after QUIET
    cleaned: list[str] = field(default_factory=list)  # what `clean` said it removed
    left: list[str] = field(default_factory=list)  # anything of the run after `clean`: must be empty
    # a device the lab did not build: its name, whether the lab's veths were in it while the
    # run lived and at the kill, and what was read of it after `clean` (kill_device)
    device: dict[str, Any] = field(default_factory=dict)


def owned_labs(tree: set[int]) -> set[str]:
    """The tags of labs whose record names an owner in `tree`."""
    tags = set()
    for path in RECORDS.glob("*.json") if RECORDS.exists() else []:
        try:
            if Record.load(path).owner in tree:
                tags.add(path.stem)
        except (OSError, ValueError, KeyError, TypeError):
            continue  # being written, or gone between glob and read
    return tags


def orphaned_processes(tags: set[str]) -> set[int]:
    """The processes recorded by these labs whose owner is gone, and what they started:
    what `clean` ends."""
    recorded = set()
    for tag in tags:
        try:
            record = Record.load(RECORDS / f"{tag}.json")
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if record.orphaned():
            recorded |= {pid for pid, p in record.processes.items() if alive(pid, p["start"])}
    return recorded | descendants(recorded)


def leftovers(tags: set[str], tree: dict[int, int | None]) -> list[str]:
    """What of the run is still on the machine: its labs' records, bridges, root-namespace
    interfaces, named namespaces and runtime directories, and its processes."""
    left = [f"record {t}" for t in tags if (RECORDS / f"{t}.json").exists()]
    bridges = subprocess.run(["ovs-vsctl", "--timeout=10", "list-br"], capture_output=True, text=True).stdout
    left += [f"bridge {b}" for b in bridges.split() if any(b.startswith(t) for t in tags)]
    left += [f"interface {n}" for n in root_links() if any(n.startswith(t) for t in tags)]
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    left += [f"namespace {n.split()[0]}" for n in netns.splitlines() if n and any(t in n for t in tags)]
    left += [f"runtime directory {t}" for t in tags if (RUNTIME_ROOT / t).exists()]
    left += [f"process {pid} {cmdline(pid)[:80]}" for pid, started in tree.items() if alive(pid, started)]
    return left


def workers(args: list[str]) -> int:
    """How many pytest-xdist workers a selection's arguments ask for (`-n N`; else 1)."""
    return int(args[args.index("-n") + 1]) if "-n" in args else 1


def kill_one(selection: str, target: str, moment: float, results: Path) -> Kill:
    """One run of `selection`, SIGKILLed at `moment` s (CLI or a worker), then `clean`; for
    a device the lab did not build, its owner brings it up before and down after, and the
    checks read it too."""
    if selection not in (DEVICE, ROOT_DEVICE):
        return _kill_one(selection, target, moment, results)
    with tempfile.TemporaryDirectory(prefix="s6k-") as folder:
        device = OwnedDevice.up(Path(folder), root_ports=selection == ROOT_DEVICE)
        try:
            before = device.state()
            kill = _kill_one(selection, target, moment, results, device)
            seen, wrong = device.check(before)
            kill.device.update(seen)
            kill.left += wrong
        finally:
            gone = device.down()
        kill.device["down"] = "removed it" if not gone else "; ".join(gone)
        kill.left += gone
    return kill


def _kill_one(
    selection: str, target: str, moment: float, results: Path, device: OwnedDevice | None = None
) -> Kill:
    kill = Kill(selection, target, round(moment, 2))
    args = SELECTIONS[selection][0]
    if device is not None:
        args = [arg.format(**device.fields()) for arg in args]
        kill.device = {
            "name": device.name,
            "plugged while the run lived": False,
            "plugged at the kill": False,
        }
    argv = [*SESSIONLAB, *args, "--results", str(results)]
    results.mkdir(parents=True, exist_ok=True)
    out_path = results / f"cli-{os.getpid()}.out"
    with out_path.open("w") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, text=True)
    tree: dict[int, int | None] = {proc.pid: start_time(proc.pid)}
    tags: set[str] = set()
    begin = time.monotonic()
    try:
        while proc.poll() is None and time.monotonic() - begin < moment:
            for pid in descendants(set(tree)):
                tree.setdefault(pid, start_time(pid))
            tags |= owned_labs(set(tree))
            if device is not None and device.plugged():
                kill.device["plugged while the run lived"] = True
            time.sleep(SAMPLE)
        if proc.poll() is None:
            if device is not None:
                kill.device["plugged at the kill"] = device.plugged()
            if target == "cli":
                victim: int = proc.pid
            else:
                workers = [p for p in descendants({proc.pid}) if WORKER in cmdline(p)]
                victim = min(workers) if workers else proc.pid  # no worker yet: the CLI
            kill.target = "worker" if victim != proc.pid else "cli"
            killed_at = time.monotonic()
            os.kill(victim, signal.SIGKILL)
            kill.killed = True
        else:
            killed_at = time.monotonic()
        output = out_path.read_text(errors="replace")
        kill.last_output = next((line for line in reversed(output.splitlines()) if line.strip()), "")
        # Until the tree has ended (a worker whose CLI died finds out; a CLI whose worker
        # died goes on with a new worker and ends its run): samples go on, so late
        # children and labs count too. The run itself gets RUN_BOUND, the rest QUIET after it.
        run_deadline, deadline = killed_at + RUN_BOUND, None
        while True:
            now = time.monotonic()
            if deadline is None and (proc.poll() is not None or now > run_deadline):
                deadline = now + QUIET
            if deadline is not None and now > deadline:
                break
            for pid in descendants({p for p, s in tree.items() if alive(p, s)}):
                tree.setdefault(pid, start_time(pid))
            tags |= owned_labs(set(tree))
            left = {p for p, s in tree.items() if alive(p, s)}
            if proc.poll() is not None and kill.target == "worker" and kill.run_ended_in_s is None:
                kill.run_ended_in_s = round(time.monotonic() - killed_at, 2)
            if not left:
                kill.ended_in_s = round(time.monotonic() - killed_at, 2)
                break
            if proc.poll() is not None and left <= orphaned_processes(tags):
                break  # what runs on is in the records of labs whose owner is gone: clean's
            time.sleep(SAMPLE)
        kill.survivors = [f"{p} {cmdline(p)[:80]}" for p, s in tree.items() if alive(p, s)]
    finally:
        if proc.poll() is None:
            proc.kill()
        kill.exit = proc.wait(30)
        lines = [line for line in out_path.read_text(errors="replace").splitlines() if line.strip()]
        if kill.target == "worker" and lines:
            crashed = [line for line in lines if "crashed" in line or "replacing" in line.lower()]
            kill.end_output = (crashed or lines)[-1][:200]
        out_path.unlink(missing_ok=True)
    kill.labs = sorted(tags)
    kill.processes = len(tree)
    done = subprocess.run([*SESSIONLAB, "clean"], capture_output=True, text=True, timeout=180)
    kill.cleaned = [
        " ".join(line.split()) for line in done.stdout.splitlines() if any(t in line for t in tags)
    ]
    kill.left = leftovers(tags, tree)
    return kill


def draw(rng: random.Random, selection: str) -> tuple[str, str, float]:
    """What to kill in a run of `selection` and when: the CLI, or (with two workers) either
    the CLI or a worker; a moment within the selection's span."""
    args, span = SELECTIONS[selection]
    target = rng.choice(("cli", "worker")) if workers(args) > 1 else "cli"
    return selection, target, rng.uniform(0.2, span)


def series(
    runs: int, seed: int, results: Path, log: Path | None = None, selection: str | None = None
) -> list[Kill]:
    """`runs` killed runs, selections (unless one is given), targets and moments drawn from `seed`."""
    rng = random.Random(seed)
    kills = []
    for i in range(runs):
        kill = kill_one(*draw(rng, selection or rng.choice(sorted(SELECTIONS))), results)
        kills.append(kill)
        if log is not None:
            log.write_text(json.dumps([asdict(k) for k in kills], indent=1) + "\n")
        print(
            f"{i + 1:2d}/{runs} {kill.selection:30s} {kill.target:6s} at {kill.moment_s:5.2f}s "
            f"killed={kill.killed} labs={len(kill.labs)} ended_in={kill.ended_in_s} left={kill.left}",
            flush=True,
        )
    return kills


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--results", type=Path, default=Path("results/kill-series"))
    parser.add_argument("--selection", choices=sorted(SELECTIONS), help="draw only this selection")
    args = parser.parse_args(argv)
    args.results.mkdir(parents=True, exist_ok=True)
    log = args.results / f"kills-{time.strftime('%Y%m%d-%H%M%S')}-seed{args.seed}.json"
    kills = series(args.runs, args.seed, args.results, log, args.selection)
    bad = [k for k in kills if k.left]
    print(
        f"{len(kills)} runs, {sum(k.killed for k in kills)} killed, {len(bad)} left something; table: {log}"
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
