"""Nothing of the lab reaches outside it (lab/outside.py): during a whole scenario, its lab
built, its traffic run and its lab removed, no lab process listens on a root-namespace
address other than loopback, no route or address of the lab's ranges appears in the root
namespace, and every capture holds only lab addresses.

Each case builds its own lab inside the root-namespace sampler, so the first sample (the
baseline) is taken before the lab exists and the last after it is gone: the build and the
removal, where interfaces come and go in the root namespace, are sampled too. S1 runs a
sweep (firewall, echo servers, captures on both sides and on a switch port in the root
namespace); S2 runs sessions through the os-ken fabric with conntrackd syncing the
firewalls (the controller listens in the root namespace: on loopback, and the samples must
show it as the lab's). One more case shows the check failing on a lab process listening on
every address and a lab address in the root namespace; the last reads every capture of the
run. The module samples the whole root namespace: other workers' labs would be in it
(testcases/scheduling.py: ALONE).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from lab import topology
from lab.capture import Capture, stop_captures
from lab.net import Lab
from lab.outside import RootSampler, check_captures, lab_ranges, root_addresses, violations
from lab.procs import host_run
from lab.results import Case
from lab.traffic import run_sessions_from, start_echo_server
from testcases.s1_common import ECHOES, SWEEPS, assert_as_expected, run_sweep
from testcases.s2_common import CLIENTS, ECHO_PORTS, Mode, prepare, servers_of

RANGES = lab_ranges()
EVERYTHING = "ip or ip6 or arp"  # what a capture keeps here: every packet with an address
SESSIONS = 200  # S2: sessions from the three outside hosts, 8 at a time (about 2 s)
# S2's fabric pins both directions of a session to one firewall; conntrackd copies each
# session to the peer all the same: its UDP crosses the FW1-FW2 link.
SYNCED = Mode("symmetric, synced", "symmetric", sync=True, client_timeout=5.0)


@contextmanager
def sampled_lab(case: Case, name: str, period: float = 0.5) -> Iterator[tuple[Lab, RootSampler]]:
    """Topology `name`'s lab in the case's folder, built and removed inside a sampler of
    the root namespace (every `period` s); the samples are kept in the case folder
    whatever happens."""
    sampler = RootSampler(period)
    try:
        with sampler:
            controller = topology.controller_for(name)
            with Lab(topology.load(name), case.path / "lab", controller=controller) as lab:
                mark = lab.begin_case()  # as the plugin's `lab` fixture runs a case
                try:
                    yield lab, sampler
                    dead = [f"{p.name} on {p.node} exited {p.popen.returncode}" for p in lab.crashed()]
                    assert not dead, f"lab process crashed: {'; '.join(dead)}"
                finally:
                    lab.end_case(mark, case.ports)
    finally:
        case.keep(sampler.save(case.path / "root-samples.json", RANGES), "root-namespace samples")


def assert_nothing_outside(case: Case, sampler: RootSampler, during: tuple[float, float]) -> None:
    """No sample showed anything of the lab outside it, several samples were taken while
    the scenario ran (`during`), and every capture of the case holds lab addresses only:
    none of the root namespace's own either."""
    evidence = case.path / "root-samples.json"
    seen = sampler.violations(RANGES)
    in_traffic = [s for s in sampler.samples if during[0] <= s.time <= during[1]]
    counts = {"in all": len(sampler.samples), "while the scenario ran": len(in_traffic)}
    case.figure("root-namespace samples", counts)
    case.figure("root-namespace violations", seen)
    assert len(in_traffic) >= 3, f"only {len(in_traffic)} samples while the scenario ran ({evidence})"
    assert not seen, f"the lab reached the root namespace: {'; '.join(seen)} ({evidence})"
    captures = check_captures(case.path, RANGES, root=root_addresses(sampler.samples))
    case.figure("packets checked in the case's captures", captures.by_file)
    assert captures.files >= 3 and all(captures.by_file.values()), (
        f"captures of the case: {captures.by_file} (each should hold packets)"
    )
    named = "; ".join(f"{f}: {', '.join(pairs[:5])}" for f, pairs in captures.outside.items())
    assert not captures.outside, f"captures hold addresses outside the lab: {named} ({case.path})"


def lab_listeners(sampler: RootSampler) -> set[str]:
    """The root-namespace listeners the samples attributed to a lab."""
    return {str(x) for s in sampler.samples for x in s.listeners if x.lab}


def test_s1_sweep_stays_inside(case: Case):
    """S1's failure sweep, its lab built and removed: nothing of it outside the lab"""
    with sampled_lab(case, "s1") as (lab, sampler), ExitStack() as stack:
        started = time.time()  # the scenario: its servers, captures and traffic
        for node, ports in ECHOES.items():
            start_echo_server(lab, node, list(ports), f"echo-{node}")
        switch, port = lab.link_intf("s1", "client")  # a switch port: the root namespace's side
        wide = [
            stack.enter_context(Capture(lab, switch, port, case.path, "root-switch-port", bpf=EVERYTHING)),
            stack.enter_context(Capture(lab, "server", "server-eth0", case.path, "server", bpf=EVERYTHING)),
        ]
        run = run_sweep(lab, lab.node("fw"), case, SWEEPS["no fix"], {})
        ended = time.time()
        stop_captures(wide)
        case.figure("outcomes", assert_as_expected(run))
    assert_nothing_outside(case, sampler, (started, ended))


def test_s2_fabric_stays_inside(case: Case):
    """S2's fabric and synced firewalls under sessions: nothing of them outside the lab"""
    # sampled more often: the sessions take about 2 s (a sample about 0.05 s)
    with sampled_lab(case, "s2", period=0.2) as (lab, sampler), ExitStack() as stack:
        started = time.time()  # the scenario: its servers, controller mode, sync, captures, traffic
        for node, ports in ECHO_PORTS.items():
            start_echo_server(lab, node, list(ports), f"echo-{node}")
        prepare(lab, SYNCED)
        switch, port = lab.link_intf("so", "h1")
        captures = [
            Capture(lab, switch, port, case.path, "root-switch-port", bpf=EVERYTHING),
            Capture(lab, "fw1", "fw1-sync", case.path, "fw1-sync", bpf=EVERYTHING),
            Capture(lab, "fw2", "fw2-in", case.path, "fw2-in", bpf=EVERYTHING),
        ]
        for capture in captures:
            stack.enter_context(capture)
        first = case.take_ports(SESSIONS).start
        results = run_sessions_from(
            lab,
            CLIENTS,
            servers_of(lab),
            SESSIONS,
            concurrency=8,
            timeout=SYNCED.client_timeout,
            first_port=first,
        )
        ended = time.time()
        stop_captures(captures)
        opened = sum(1 for r in results if r["data_ok"])
        case.figure("sessions that exchanged data", f"{opened} of {SESSIONS}")
        assert opened == SESSIONS, f"{SESSIONS - opened} sessions failed through the symmetric fabric"
        controller = f"127.0.0.1:{lab.controller.port}" if lab.controller is not None else "no controller"
    mine = lab_listeners(sampler)
    case.figure("lab listeners in the root namespace", sorted(mine))
    assert any(controller in x for x in mine), (
        f"the controller's listener {controller} was never attributed to the lab: {mine} (root-samples.json)"
    )
    assert_nothing_outside(case, sampler, (started, ended))


def test_the_check_names_a_lab_listener_and_a_lab_address_outside(case: Case):
    """The check fails where it should: a lab process listening on every address and a
    lab address in the root namespace are both named"""
    port = case.take_port()
    address = "10.0.1.250"  # in S1's inside network, owned by no node
    with sampled_lab(case, "s1") as (lab, sampler):
        # a veth pair of the lab's interface prefix (`sessionlab clean` removes it after a
        # kill), its peer left down: no carrier, so the root namespace sends nothing on it
        link = f"{lab.tag}o0"
        # a socket that listens on every address and accepts nothing: it serves no one
        listen = f"import socket, time; s = socket.socket(); s.bind(('0.0.0.0', {port})); s.listen()"
        argv = [sys.executable, "-c", f"{listen}; print('listening', flush=True); time.sleep(60)"]
        first = len(sampler.samples)
        stray = lab.start(None, argv, "stray-listener", ready="listening")
        try:
            host_run(["ip", "link", "add", link, "type", "veth", "peer", "name", f"{lab.tag}o1"])
            host_run(["ip", "addr", "add", f"{address}/32", "dev", link])
            host_run(["ip", "link", "set", link, "up"])
            lab.wait(
                lambda: any(
                    any(x.port == port and x.lab for x in s.listeners)
                    and any(a.ifname == link for a in s.addresses)
                    for s in sampler.samples[first:]
                ),
                10,
                "a sample showing the stray listener and the address",
            )
        finally:
            host_run(["ip", "link", "del", link], check=False)  # its peer goes with it
            lab.stop(stray)
    seen = sampler.violations(RANGES)
    case.figure("violations the check named", seen)
    kinds = sorted(text.split(" ", 1)[0] for text in seen)
    assert kinds == ["address", "listener", "route"], f"expected one of each, the check named {seen}"
    listener = next(text for text in seen if text.startswith("listener"))
    assert f"0.0.0.0:{port}" in listener and "stray-listener" in listener, listener
    assert f"address {address}/32 on {link}" in seen, seen
    assert f"route local {address} dev {link} table local" in seen, seen
    before, last = sampler.samples[0], sampler.samples[-1]  # before the lab, after it
    assert not violations(before, RANGES) and not violations(last, RANGES, before), (
        f"the root namespace was not clean before the lab or after it ({case.path / 'root-samples.json'})"
    )


def test_every_capture_of_the_run_holds_only_lab_addresses(run_dir: Path, case: Case):
    """Every capture of this run so far (the whole run's, where this module runs last)
    holds lab addresses only"""
    captures = check_captures(run_dir, RANGES)
    if not captures.files:
        pytest.skip(f"no capture in {run_dir} yet")
    case.figure("captures and packets checked", {"files": captures.files, "packets": captures.packets})
    assert captures.packets > 0, f"{captures.files} captures, none holding a packet ({run_dir})"
    named = "; ".join(f"{f}: {', '.join(pairs[:5])}" for f, pairs in captures.outside.items())
    assert not captures.outside, f"captures hold addresses outside the lab: {named} ({run_dir})"
