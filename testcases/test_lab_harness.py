"""The harness and its controller: a switch that never connects, a controller that crashes."""

from __future__ import annotations

import subprocess
import textwrap

import pytest

from lab import topology
from lab.controller import ControllerApp
from lab.errors import LabError, LabTimeout
from lab.net import Lab
from testcases.s4_common import SERVERS6


def test_switch_that_never_connects_is_named(tmp_path):
    with Lab(topology.load("s2"), tmp_path, controller=topology.controller_for("s2")) as lab:
        bridge = lab.names["a2"]
        # Point one switch at a port where nothing listens, then restart the controller.
        subprocess.run(["ovs-vsctl", "set-controller", bridge, "tcp:127.0.0.1:9"], check=True)
        with pytest.raises(LabTimeout, match=r"switch a2 never connected to the controller within 3 s"):
            lab.restart_controller(timeout=3)


def test_controller_that_dies_at_start_is_reported(tmp_path):
    broken = ControllerApp(module="controllers.no_such_app", config=lambda lab: {})
    with (
        pytest.raises(
            LabError,
            match="controller on root namespace exited 2 .*cannot load app controllers.no_such_app",
        ),
        Lab(topology.load("s2"), tmp_path, controller=broken),
    ):
        pass


def test_controller_crash_fails_the_case(pytester):
    """A case during which the controller dies fails, saying so (pytest's own run of one)."""
    pytester.makepyfile(
        test_inner=textwrap.dedent("""
        LAB_TOPOLOGY = "s2"

        def test_controller_dies(lab):
            lab.controller_proc.popen.kill()
            lab.controller_proc.popen.wait(5)
    """)
    )
    result = pytester.runpytest_subprocess("--results-root", str(pytester.path / "r"))
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*lab process crashed: controller on root namespace exited -9*"])


def test_a_case_whose_capture_holds_another_cases_flow_fails_naming_it(pytester):
    """The isolation check can fail: a client outside the case's port block is named."""
    pytester.makepyfile(
        test_inner=textwrap.dedent("""
        from lab.capture import Capture
        from lab.traffic import IdleProbe, run_probes, start_echo_server

        LAB_TOPOLOGY = "s1"

        def test_leaks(lab, case):
            start_echo_server(lab, "server", [8080], "echo")
            with Capture(lab, "fw", "fw-in", case.path, "inside"):
                run_probes(lab, "client", lab.ip("server"), [IdleProbe(8080, 0.1, 2.0, sport=40123)])
    """)
    )
    result = pytester.runpytest_subprocess("--results-root", str(pytester.path / "r"))
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        ["*case evidence holds flows of another case*inside.pcap: 10.0.1.10:40123 > *"]
    )


def test_a_case_ends_with_its_sockets_cut(tmp_path):
    """end_case aborts every socket of the case's block on every host, and only those."""
    with Lab(topology.load("s1"), tmp_path) as lab:
        mark = lab.begin_case()
        lab.start(
            "server", ["python3", "-m", "http.server", "--bind", "0.0.0.0", "8080"], "web", ready="Serving"
        )
        holders = []
        for sport in (12001, 23001):  # in the block, outside it
            argv = [
                "python3",
                "-c",
                textwrap.dedent(f"""
                import socket, time
                s = socket.socket(); s.bind(("0.0.0.0", {sport})); s.connect(("{lab.ip("server")}", 8080))
                print("connected", flush=True); time.sleep(30)
            """),
            ]
            holders.append(lab.start("client", argv, f"holder-{sport}", ready="connected"))

        def ports(host: str) -> set[int]:
            out = lab.run(host, ["ss", "-tnH", "state", "established"])
            return {int(w.rsplit(":", 1)[1]) for line in out.splitlines() for w in line.split()[2:4]}

        assert {12001, 23001} <= ports("server")
        lab.cut(range(12000, 12500))
        assert 12001 not in ports("server") and 12001 not in ports("client")
        assert 23001 in ports("server")  # another block's session is left alone
        ended = lab.end_case(mark)
        assert {p.name for p in ended} == {"web", "holder-12001", "holder-23001"}
        assert all(not p.running() for p in ended)


def test_runtime_files_stay_short_whatever_the_results_path(tmp_path):
    """conntrackd's UNIX socket lives in the run's short runtime directory, not in results/
    (a socket path over 107 characters is refused), so a lab runs from any checkout path."""
    deep = tmp_path / ("a-checkout-under-a-40-character-directory" * 3) / "results"
    with Lab(topology.load("s2"), deep, controller=topology.controller_for("s2")) as lab:
        fw1 = lab.node("fw1")
        fw1.start_sync()
        assert str(lab.runtime_dir()).startswith("/run/sessionlab/")
        assert len(str(lab.runtime_dir() / "fw1-conntrackd.ctl")) < 107
        runtime = lab.runtime_dir()
    assert not runtime.exists()  # removed with the lab


def test_closing_the_lab_ends_what_a_nodes_shell_still_runs(tmp_path):
    """A command a node's shell was running when its case was interrupted (the SIGKILL
    series found a `ping -c 5000` outliving its lab) ends with the lab."""
    from lab.records import alive, descendants, start_time

    with Lab(topology.load("s1"), tmp_path) as lab:
        node = lab.net["client"]
        node.sendCmd("sleep 60")  # the shell runs it; nobody waits for it
        shell = node.pid
        found = lab.wait(lambda: descendants({shell}), 5, "the shell's sleep to start")
        running = {pid: start_time(pid) for pid in found}
        node.waiting = True  # as Mininet leaves a node whose command was interrupted
    assert not [pid for pid, started in running.items() if alive(pid, started)], running


def test_ipv6_addresses_are_usable_as_soon_as_the_lab_is_built(tmp_path):
    """No address tentative (lab.neighbours.NO_DAD): right after the build, S4's kernel balancer
    forwards a client's first IPv6 SYN at once, where its link-local address being
    tentative had held the SYNs for 2 s (clean-clone run at 3549ea2)."""
    with Lab(topology.load("s4"), tmp_path) as lab:
        tentative = {
            host.name: out
            for host in lab.net.hosts
            if (out := lab.run(host.name, ["ip", "-6", "-o", "addr", "show", "tentative"]).strip())
        }
        assert not tentative, tentative
        # the neighbour solicitation goes out at once: lb1 reaches a server in its first second
        server = next(iter(SERVERS6.values()))
        out = lab.run("lb1", ["ping", "-6", "-c", "1", "-W", "1", server], check=False)
        assert " 0% packet loss" in out, out
