"""`sessionlab characterize`: its help, its bad input (one line, exit 2, nothing created or
attached), the plan and estimate before it starts, and its exit statuses. No network is
built: the orchestration (`lab.characterize.run`) is replaced by a stand-in where a test
goes past the checks, and interfaces are only read (`ip`)."""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from test_cli import POLICIES, sessionlab
from test_external_device import SshServer

from lab.characterize.attach import Attachment
from lab.characterize.bisect import duration_words
from lab.characterize.findings import Finding
from lab.characterize.profile import Device, Profile
from lab.characterize.target import PROBES, Bounds
from lab.errors import LabError

PORTS = ["--port", "inside=nosuch0", "--port", "outside=nosuch1"]
NETNS = ["--netns", "box", "--port", "inside=in0", "--port", "outside=out0"]

BAD_INPUT = [
    (PORTS, "--port inside=nosuch0: no such interface in the root namespace"),
    (["--port", "inside=lo", "--port", "outside=eth9nosuch"], "--port inside=lo: a loopback interface"),
    (["--port", "inside=lo", "--port", "outside=lo"], "--port: lo is named for both inside and outside"),
    (["--port", "inside=nosuch0"], "--port outside=IFACE missing"),
    (["--port", "middle=x"], "--port middle=x: no role 'middle'"),
    (["--netns", "nosuchns", "--port", "inside=in0", "--port", "outside=out0"], "no such network namespace"),
    (["--policy", str(POLICIES / "bad_values.toml"), *PORTS], "--policy and --port: a policy is for"),
    (["--policy", str(POLICIES / "latin1.toml")], "not UTF-8 text"),
    (["--driver", "linux", "--ssh", "root@box:port", *PORTS], "--ssh root@box:port: expected user@host"),
    (["--driver", "linux", *PORTS], "--driver linux reads the table over SSH: give --ssh"),
    (["--driver", "linux"], "--driver/--ssh read the table of a device the lab did not build"),
    (["--driver", "snmp", *PORTS], "--driver snmp: no such driver (known: linux, none)"),
    (["--only", "tcp,dns"], "--only: unknown dns (known: tcp, udp, nat, ftp, capacity)"),
    (["--only", ","], "--only ',': name at least one probe"),
    (["--only", ""], "--only '': name at least one probe"),
    (["--only", "udp", "--tcp-port", "22"], "--tcp-port: the tcp probe is not in --only"),
    (["--inside-gw", "10.0.3.1"], "--inside-gw 10.0.3.1: not in 10.0.1.0/24, the lab's inside network"),
    (["--outside-gw", "10.0.2.255"], "--outside-gw 10.0.2.255: the outside network's own address"),
    (["--outside-gw", "10.0.2.20"], "--outside-gw 10.0.2.20: a lab host's address"),
    (["--inside-gw", "fw"], "--inside-gw fw: not an IPv4 address"),
    (["--parallel", "1"], "--parallel: 1 is not a whole number from 2 to 64"),
    (["--parallel", "many"], "'--parallel': 'many' is not a valid integer"),
    (["--tcp-max", "0"], "--tcp-max: 0.0 is not a positive number of seconds"),
    (["--capacity", "6000"], "--capacity: 6000 is not a whole number from 1 to 5000"),
    (["--tcp-port", "70000"], "--tcp-port: 70000 is not a free TCP port"),
    (["--tcp-max", "1000000"], "--tcp-max 1000000: the characterization would take about 33.4 days"),
    (["--udp-max", "400000", "--only", "udp"], "--udp-max 400000: the characterization would take about"),
]


@pytest.mark.parametrize(("args", "says"), BAD_INPUT, ids=[" ".join(a)[:60] for a, _ in BAD_INPUT])
def test_bad_input_is_one_line_and_creates_nothing(args, says, tmp_path):
    results = tmp_path / "results"
    result = sessionlab("characterize", *args, "--results", str(results))
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], result.stderr
    assert "Traceback" not in result.stderr and not results.exists()


def test_help_says_how_to_attach_read_bound_and_address_a_device():
    result = sessionlab("characterize", "--help")
    assert result.returncode == 0
    text = result.stdout
    for needle in (
        "sessionlab characterize --port inside=ens4 --port outside=ens5",  # root-namespace ports
        "sessionlab characterize --netns box --port inside=in0 --port outside=out0",  # a namespace
        "--driver linux --ssh root@192.0.2.5",  # reading its table
        "--known-hosts",
        "--accept-new",
        "never configures, restarts or cleans a device it did not build",
        "--inside-gw   (default 10.0.1.1) the device's inside address, in 10.0.1.0/24",
        "--outside-gw  (default 10.0.2.1) its outside address, in 10.0.2.0/24",
        "--tcp-max",
        "--parallel",
        "more than 24 h are refused",
        "--dry-run",
    ):
        assert needle in text, needle
    assert "characterize" in sessionlab("--help").stdout


# --- past the checks, with a stand-in for the orchestration ------------------------------
@dataclass
class Stand:
    """What the stand-in was asked, and what it does."""

    calls: list[tuple[Any, Any, Path]] = field(default_factory=list)
    raises: BaseException | None = None

    def characterize_run(self, target: Any, bounds: Any, folder: Path) -> Profile:
        self.calls.append((target, bounds, folder))
        if self.raises is not None:
            raise self.raises
        folder.mkdir(parents=True)
        profile = Profile(Device(target.name, target.attachment is None, str(target.attachment)))
        profile.tcp.idle_timeout_s = Finding([30.0, 30.5], ["tcp/rounds.json"])
        profile.tcp.expiry = Finding("rst-both", ["captures/inside.pcap"])
        (folder / "profile.json").write_text(profile.to_json())
        return profile


@pytest.fixture
def stand(monkeypatch) -> Stand:
    """The real Bounds and Target; `characterize_run` replaced: no lab is built."""
    run = pytest.importorskip("lab.characterize.run")
    found = Stand()
    monkeypatch.setattr(run, "characterize_run", found.characterize_run)
    monkeypatch.setattr("lab.preflight.check_host", lambda: None)  # never `ovs-vsctl show` here
    return found


@pytest.fixture
def cli(capsys):
    """`sessionlab ARGS` in this process: (exit status, stdout, stderr); the signal handlers
    the CLI installs are put back."""
    from lab.cli import main

    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)}

    def run(*args: str) -> tuple[int, str, str]:
        code = main(["characterize", *args])
        out = capsys.readouterr()
        return code, out.out, out.err

    yield run
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def attached(monkeypatch, netns: str | None = None) -> None:
    """The port checks pass (they read the machine's interfaces, which no test may take)."""
    device = Attachment({"inside": "in0", "outside": "out0"}, netns)
    monkeypatch.setattr("lab.characterize.attach.attachment", lambda ports, netns=None: device)


def test_dry_run_prints_the_plan_and_estimate_and_builds_nothing(stand, cli, monkeypatch, tmp_path):
    attached(monkeypatch, "box")
    code, out, err = cli(
        *NETNS,
        "--tcp-max",
        "600",
        "--tcp-port",
        "22",
        "--dry-run",
        "--results",
        str(tmp_path / "r"),
    )
    assert (code, err) == (0, ""), err
    assert "device: box, which the lab did not build" in out
    assert "veths inside=in0, outside=out0 made into netns box" in out
    assert "its table: not read: traffic only" in out
    assert "its addresses: inside 10.0.1.1, outside 10.0.2.1" in out
    assert "TCP idle up to 600 s (and per port 22)" in out
    estimate = Bounds(tcp_max_s=600, tcp_ports=(22,)).estimate_seconds()
    assert f"estimate: at most {duration_words(estimate)} (worst case)" in out
    assert "dry run: nothing built" in out
    assert not stand.calls and not (tmp_path / "r").exists()


def test_the_lab_firewall_by_default_and_bounds_as_given(stand, cli, tmp_path):
    code, out, err = cli("--only", "udp,tcp", "--parallel", "16", "--dry-run", "--results", str(tmp_path))
    assert code == 0, err
    assert "device: the lab's own firewall, its default policy" in out
    assert "probes: tcp, udp;" in out and "16 probes per round" in out and "capacity" not in out


def test_an_estimate_over_a_day_is_refused_naming_the_bound(stand, cli, tmp_path):
    code, out, err = cli("--tcp-max", "40000", "--parallel", "2", "--results", str(tmp_path / "r"))
    assert code == 2 and out == ""
    days = Bounds(tcp_max_s=40000, parallel=2).estimate_seconds() / 86400
    assert err == (
        f"sessionlab: --tcp-max 40000: the characterization would take about {days:.1f} days "
        "(more than 24 h): lower --tcp-max or raise --parallel\n"
    )
    assert not stand.calls and not (tmp_path / "r").exists()


def test_a_characterization_writes_a_run_folder_and_shows_its_findings(stand, cli, monkeypatch, tmp_path):
    attached(monkeypatch)
    code, out, err = cli(
        "--port",
        "inside=in0",
        "--port",
        "outside=out0",
        "--name",
        "vendor box",
        "--inside-gw",
        "10.0.1.254",
        "--results",
        str(tmp_path),
    )
    assert code == 0, err
    ((target, bounds, folder),) = stand.calls
    assert target.name == "vendor box" and target.inside_gw == "10.0.1.254" and target.policy is None
    assert target.attachment.ports == {"inside": "in0", "outside": "out0"}
    assert target.driver.name == "none" and bounds.probes == PROBES
    (run,) = tmp_path.iterdir()
    assert folder == run / "characterize"
    assert f"profile: {folder / 'profile.md'}" in out and f"data:    {folder / 'profile.json'}" in out
    assert "TCP established idle timeout" in out and "30 s to 30.5 s" in out and "RST to both ends" in out


def test_a_failed_characterization_is_one_line_and_exit_1(stand, cli, tmp_path):
    stand.raises = LabError("the inside probe client did not start")
    policy = tmp_path / "p.toml"
    policy.write_text("tcp_timeout = 30\n")
    code, _, err = cli("--policy", str(policy), "--results", str(tmp_path / "r"))
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "characterization failed: the inside probe client did not start" in lines[0]
    ((target, _, _),) = stand.calls
    assert target.policy.tcp_timeout == 30


def test_an_interrupted_characterization_exits_130(stand, cli, tmp_path):
    stand.raises = KeyboardInterrupt()
    code, out, err = cli("--results", str(tmp_path))
    assert code == 130 and "interrupted" in err and "the lab is removed" in out


def test_an_unknown_host_key_is_one_line_before_anything_is_built(stand, cli, monkeypatch, tmp_path):
    server = SshServer()
    try:
        attached(monkeypatch, "box")
        known = tmp_path / "known_hosts"
        code, out, err = cli(
            *NETNS,
            "--driver",
            "linux",
            "--ssh",
            f"root@127.0.0.1:{server.port}",
            "--known-hosts",
            str(known),
            "--results",
            str(tmp_path / "r"),
        )
    finally:
        server.sock.close()
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "host key not in" in err and "--accept-new" in err
    assert not stand.calls and not (tmp_path / "r").exists() and not known.exists()
