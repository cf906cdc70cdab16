"""The harness and its controller: a switch that never connects, a controller that crashes."""

from __future__ import annotations

import subprocess
import textwrap

import pytest

from lab import topology
from lab.controller import ControllerApp
from lab.errors import LabError, LabTimeout
from lab.net import Lab


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
