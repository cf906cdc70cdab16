"""The CLI: bad input gets one clear line and exit status 2."""

import subprocess
import sys

import pytest


def sessionlab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lab.cli", *args], capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["run", "nosuch"], "unknown suite nosuch"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["run", "--results"], "expected one argument"),
        (["policy", "/nonexistent.toml"], "cannot read"),
        (["up", "nosuch"], "unknown topology 'nosuch'"),
        (["up", "s1", "--param", "colour"], "expected key=value"),
        (["up", "s1", "--param", "colour=red"], "bad parameters"),
    ],
)
def test_bad_input_is_one_line(args, says):
    result = sessionlab(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_policy_check_prints_ruleset(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text("tcp_timeout = 5\n[[timeouts]]\nport = 22\ntimeout = 3600\n")
    result = sessionlab("policy", str(path))
    assert result.returncode == 0
    assert "policy = { established : 3600 }" in result.stdout


def test_invalid_policy_lists_every_problem(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text("tcp_timeout = -1\nwhatever = 1\n")
    result = sessionlab("policy", str(path))
    assert result.returncode == 2
    assert "unknown key 'whatever'" in result.stderr and "tcp_timeout: -1" in result.stderr


def test_each_scenario_suite_lists_all_its_modules():
    from lab.cli import suites

    found = suites()
    assert {"s1", "s2", "s3", "s4"} <= set(found)
    assert [p.stem for p in found["s4"]] == [
        "test_s4_l4",
        "test_s4_l4_sdn",
        "test_s4_l7",
        "test_s4_redundant",
        "test_s4_scale",
    ]
