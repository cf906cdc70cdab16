"""NAT behaviour discovery: coturn's turnserver as an RFC 5780 STUN server (rendered config,
golden file), turnutils_natdiscovery's command line, its output read as RFC 4787 verdicts,
and a real run of both on loopback (127.0.0.1 and 127.0.0.2: no NAT between them).

The samples in tests/samples/natdiscovery-*.txt: "captured-" ones are real outputs of
coturn 4.6.1 (Debian 12) on loopback; "composed-" ones (the NAT cases, which loopback
cannot show) are written from the lines natdiscovery.c prints, in the order it prints them.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from lab.characterize.nat import discover, discovery_argv, discovery_timeout, parse_natdiscovery
from lab.devices.stun import StunBinding, StunServer, parse_turnserver_log
from lab.errors import ConfigError
from lab.procs import Proc, Supervisor
from lab.render.turnserver import StunConfig, render_turnserver
from lab.wait import wait_until
from tests.test_render import assert_golden

SAMPLES = Path(__file__).parent / "samples"
LAB_STUN = StunConfig("10.0.2.20", "10.0.2.21")

# sample -> (mapping, filtering, filtering without NAT, hairpinning, port preservation, mapping alive, alg)
EXPECTED: dict[str, tuple[str, str, str | None, bool | None, bool | None, bool | None, bool | None]] = {
    # turnutils_natdiscovery -m -f -p 3478 -L 127.0.0.1 127.0.0.1
    "captured-nonat": ("no-nat", "no-nat", "endpoint-independent", None, None, None, False),
    # -H: without NAT the second request goes straight to the first socket
    "captured-nonat-hairpinning": ("unknown", "unknown", None, None, None, None, False),
    # -t -T 1
    "captured-nonat-lifetime": ("unknown", "unknown", None, None, None, True, False),
    # -m -f against the server's second address: it names itself as the other address
    "captured-secondary": ("no-nat", "no-nat", None, None, None, None, False),
    # -m -f against a port nothing listens on
    "captured-timeout": ("unknown", "unknown", None, None, None, None, None),
    # -H against a port nothing listens on: the tool ends at once
    "captured-hairpinning-timeout": ("unknown", "unknown", None, None, None, None, None),
    # -m -f against a turnserver on one address (RFC 5780 off: no OTHER-ADDRESS)
    "captured-no-rfc5780": ("no-nat", "no-nat", None, None, None, None, None),
    # Composed: -m -f through a symmetric NAT (new port per destination)
    "composed-symmetric": (
        "address-and-port-dependent",
        "address-and-port-dependent",
        None,
        None,
        False,
        None,
        False,
    ),
    # Composed: -m -f, -H, -t -T 20 through a full-cone NAT keeping ports
    "composed-full-cone": ("endpoint-independent", "endpoint-independent", None, True, True, True, False),
    # Composed: -m -f, -H, -t through a restricted-cone NAT with an ALG, no hairpinning
    "composed-restricted": ("endpoint-independent", "address-dependent", None, False, False, False, True),
}


def test_every_sample_has_its_expectation():
    assert {
        p.name.removeprefix("natdiscovery-").removesuffix(".txt") for p in SAMPLES.glob("natdiscovery-*")
    } == set(EXPECTED)


@pytest.mark.parametrize("name", EXPECTED)
def test_the_parser_reads_each_sample(name):
    text = (SAMPLES / f"natdiscovery-{name}.txt").read_text()
    found = parse_natdiscovery(text)
    got = (
        found.mapping,
        found.filtering,
        found.filtering_without_nat,
        found.hairpinning,
        found.port_preservation,
        found.mapping_alive,
        found.alg,
    )
    assert got == EXPECTED[name], found
    for key, lines in found.lines.items():  # every verdict's evidence is lines of the output
        assert lines and all(line in text for line in lines), key


def test_verdicts_name_the_lines_they_come_from():
    found = parse_natdiscovery((SAMPLES / "natdiscovery-composed-symmetric.txt").read_text())
    assert found.lines["mapping"][-1] == "NAT with Address and Port Dependent Mapping!"
    assert "0: : IPv4. UDP reflexive addr: 10.0.2.1:61001" in found.lines["port_preservation"]
    assert found.mapped == "10.0.2.1:61001"
    assert found.as_dict()["mapping"] == "address-and-port-dependent"


def test_unknown_verdicts_say_why():
    secondary = parse_natdiscovery((SAMPLES / "natdiscovery-captured-secondary.txt").read_text())
    assert any("ask coturn on its first listening address" in note for note in secondary.notes)
    ended = parse_natdiscovery((SAMPLES / "natdiscovery-captured-hairpinning-timeout.txt").read_text())
    assert "tool: turnutils_natdiscovery: Address family not supported by protocol" in ended.notes
    assert "hairpinning: no answer to the first request" in ended.notes
    no_5780 = parse_natdiscovery((SAMPLES / "natdiscovery-captured-no-rfc5780.txt").read_text())
    assert any("no OTHER-ADDRESS" in note for note in no_5780.notes)


def test_joined_runs_read_as_one():
    names = ("captured-nonat", "captured-nonat-hairpinning", "captured-nonat-lifetime")
    text = "".join((SAMPLES / f"natdiscovery-{n}.txt").read_text() for n in names)
    found = parse_natdiscovery(text)
    assert (found.mapping, found.filtering, found.mapping_alive) == ("no-nat", "no-nat", True)
    assert found.notes == ("hairpinning: no NAT (the second request went straight to the first socket)",)


def test_turnserver_config_renders_to_the_golden_file():
    assert_golden(render_turnserver(LAB_STUN, "/run/sessionlab/stun-test"), "turnserver.conf")


def test_stun_config_lists_every_problem():
    bad = StunConfig("10.0.2.300", "10.0.2.300", port=3478, alt_port=3478)
    assert bad.problems() == [
        "stun.primary: '10.0.2.300' is not an IPv4 address",
        "stun.secondary: '10.0.2.300' is not an IPv4 address",
        "stun.secondary: 10.0.2.300 is also the primary (RFC 5780 needs two)",
        "stun.alt_port: 3478 is also the port (RFC 5780 needs two)",
    ]
    assert replace(LAB_STUN, alt_port=0).problems() == ["stun.alt_port: 0 is not a port number (1-65535)"]
    assert LAB_STUN.problems() == []
    assert LAB_STUN.listeners()[1] == ("10.0.2.20", 3479)


def test_discovery_argv():
    assert discovery_argv("10.0.2.20", "10.0.1.10") == [
        "turnutils_natdiscovery",
        "-m",
        "-f",
        "-p",
        "3478",
        "-L",
        "10.0.1.10",
        "10.0.2.20",
    ]
    # The tool's own order, whatever the order asked; the lifetime test with its wait.
    assert discovery_argv("10.0.2.20", "10.0.1.10", ("filtering", "lifetime"), 3500, 40000, 30)[1:9] == [
        "-t",
        "-f",
        "-T",
        "30",
        "-p",
        "3500",
        "-L",
        "10.0.1.10",
    ]
    assert discovery_argv("10.0.2.20", "10.0.1.10", ("hairpinning",), local_port=40000)[-3:] == [
        "-l",
        "40000",
        "10.0.2.20",
    ]
    assert discovery_timeout(("mapping", "filtering")) == 20
    assert discovery_timeout(("lifetime",), 30) == 38


def test_discovery_argv_refuses_bad_input():
    with pytest.raises(ConfigError) as refused:
        discovery_argv("stun", "10.0.1.10", ("mapping", "cone"), lifetime_s=5)
    assert refused.value.problems == [
        "natdiscovery.server: 'stun' is not an IPv4 address",
        "natdiscovery.tests: ['mapping', 'cone'] is not a choice of "
        "lifetime, hairpinning, mapping, filtering",
        "natdiscovery.lifetime_s: the lifetime test and its wait go together",
    ]
    with pytest.raises(ConfigError, match="lifetime_s: 0 is not a whole number"):
        discovery_argv("10.0.2.20", "10.0.1.10", ("lifetime",), lifetime_s=0)


def test_the_server_log_names_each_client_endpoint():
    log = (
        "1: : handle_udp_packet: New UDP endpoint: local addr 127.0.0.1:3478, remote addr 127.0.0.1:36832\n"
        "1: : session 000000000000000001: realm <> user <>: incoming packet BINDING processed, success\n"
    )
    assert parse_turnserver_log(log) == [StunBinding("127.0.0.1:3478", "127.0.0.1:36832")]


class LoopbackRunner:
    """What a device needs of where it runs (lab.devices.base.Runner), with every node this
    machine: the lab's own process supervision, the runtime directory a test folder."""

    def __init__(self, root: Path):
        self.root, self.logs = root, root / "logs"
        self.supervisor = Supervisor(
            self.logs, f"sltest{random.getrandbits(24):06x}", lambda node: subprocess.Popen
        )

    @property
    def paths(self) -> LoopbackRunner:
        return self

    def run(
        self, node: str, argv: Sequence[str], timeout: float = 30, check: bool = True, merge: bool = True
    ) -> str:
        return self.supervisor.run(None, argv, timeout, check, merge)

    def start(
        self, node: str, argv: Sequence[str], name: str, ready: str | None = None, ready_timeout: float = 10
    ) -> Proc:
        return self.supervisor.start(None, argv, name, ready, ready_timeout)

    def stop(self, proc: Proc) -> int | None:
        return self.supervisor.stop(proc)

    def wait(self, check: Callable[[], Any], timeout: float, what: str) -> Any:
        return wait_until(check, timeout, what)

    def runtime_dir(self) -> Path:
        return self.root


def free_port_pair() -> int:
    """A port p with p and p + 1 free for UDP on 127.0.0.1 and 127.0.0.2."""
    for _ in range(50):
        port = random.randrange(20000, 40000)
        try:
            for address in ("127.0.0.1", "127.0.0.2"):
                for p in (port, port + 1):
                    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                        sock.bind((address, p))
        except OSError:
            continue
        return port
    raise AssertionError("no free pair of UDP ports on loopback")


@pytest.fixture
def stun(tmp_path: Path) -> Iterator[StunServer]:
    if shutil.which("turnserver") is None or shutil.which("turnutils_natdiscovery") is None:
        pytest.skip("coturn is not installed (scripts/bootstrap.sh installs it)")
    port = free_port_pair()
    server = StunServer(
        LoopbackRunner(tmp_path), "stun", StunConfig("127.0.0.1", "127.0.0.2", port, port + 1), "stun"
    )
    try:
        yield server.start()
    finally:
        server.stop()


def test_discovery_against_a_real_server_on_loopback(stun):
    found, text = discover(stun.runner, "client", "127.0.0.1", "127.0.0.1", stun.config.port, lifetime_s=1)
    assert (found.mapping, found.filtering, found.filtering_without_nat) == (
        "no-nat",
        "no-nat",
        "endpoint-independent",
    ), text
    assert (found.hairpinning, found.port_preservation, found.mapping_alive, found.alg) == (
        None,
        None,
        True,
        False,
    ), text
    # Each change request was answered from the other address and port (RFC 5780 is on).
    assert f"Response origin: : 127.0.0.2:{stun.config.alt_port}" in text, text
    assert {b.server for b in stun.bindings()} >= {f"127.0.0.1:{stun.config.port}"}, stun.bindings()
    assert stun.running()
    stun.stop()
    assert not stun.running()
