"""A device the lab did not build, with no network: its drivers (conntrack's counters as
the Linux driver reads them, an SSH host whose key is unknown refused by a real SSH server
on loopback), the device class, and what `attach` refuses before plugging anything."""

import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paramiko
import pytest

from lab.characterize.attach import (
    Attachment,
    attachment,
    netns_port_problems,
    parse_ports,
    plug_netns,
    root_names,
    root_port_problems,
)
from lab.conntrack import Session
from lab.devices import DEVICE_CLASSES, SessionDevice
from lab.devices.drivers import (
    CONNTRACK_LIST,
    CONNTRACK_STATS,
    Driver,
    LinuxDriver,
    NoneDriver,
    driver_from,
    parse_stats,
)
from lab.devices.external import ExternalDevice
from lab.errors import ConfigError, LabError
from lab.records import Record

# `conntrack -S` as conntrack-tools 1.4.7 prints it on a 6.x kernel (a tab after cpu=N).
STATS = (
    "cpu=0   \tfound=2 invalid=14 insert=0 insert_failed=1 drop=1 early_drop=0 error=0 "
    "search_restart=3 clash_resolve=0 chaintoolong=0 \n"
    "cpu=1   \tfound=5 invalid=6 insert=0 insert_failed=0 drop=2 early_drop=4 error=0 "
    "search_restart=0 clash_resolve=1 chaintoolong=0 \n"
)
# An older kernel's line counts more (searched, new, ignore, delete, ...).
OLD_STATS = (
    "cpu=0 searched=10 found=7 new=3 invalid=1 ignore=20 delete=2 delete_list=2 insert=3 "
    "insert_failed=0 drop=0 early_drop=0 error=0 search_restart=0\n"
)
TABLE = (
    "tcp      6 3 ESTABLISHED src=10.0.1.10 dst=10.0.2.10 sport=40000 dport=80 src=10.0.2.10 "
    "dst=10.0.2.1 sport=80 dport=40000 [ASSURED] mark=0 use=1\n"
    "udp      17 2 src=10.0.1.10 dst=10.0.2.20 sport=5000 dport=3478 [UNREPLIED] src=10.0.2.20 "
    "dst=10.0.2.1 sport=3478 dport=5000 mark=0 use=1\n"
)
SUMMARY = "conntrack v1.4.7 (conntrack-tools): 2 flow entries have been shown.\n"


# --- drivers ----------------------------------------------------------------------------
def test_conntrack_counters_are_summed_over_the_cpus():
    assert parse_stats(STATS) == {
        "found": 7,
        "invalid": 20,
        "insert": 0,
        "insert_failed": 1,
        "drop": 3,
        "early_drop": 4,
        "error": 0,
        "search_restart": 3,
        "clash_resolve": 1,
        "chaintoolong": 0,
        "cpus": 2,
    }


def test_conntrack_counters_of_an_older_kernel_keep_its_own_keys():
    totals = parse_stats("conntrack v1.4.7 (conntrack-tools): ignored\n" + OLD_STATS)
    assert totals["searched"] == 10 and totals["new"] == 3 and totals["cpus"] == 1
    assert parse_stats("") == {}


def test_the_drivers_follow_the_driver_protocol():
    assert isinstance(NoneDriver(), Driver)
    for member in ("name", "reads_table", "sessions", "counters", "close"):
        assert hasattr(LinuxDriver, member), member
    none = NoneDriver()
    assert none.sessions() == [] and none.counters() == {} and none.reads_table is False
    assert "traffic only" in none.table


@pytest.mark.parametrize(
    "spec, ssh, problem",
    [
        ("cisco", None, "--driver cisco: no such driver (known: linux, none)"),
        ("linux", None, "--driver linux reads the table over SSH: give --ssh"),
        ("none", "root@10.0.0.5", "--driver none reads no table"),
        ("linux", "root@bad host", "expected [user@]host[:port]"),
    ],
)
def test_driver_from_refuses_bad_input_in_one_line(spec, ssh, problem):
    with pytest.raises(ConfigError) as error:
        driver_from(spec, ssh)
    assert problem in str(error.value) and "\n" not in str(error.value)


def test_driver_from_none_is_traffic_only():
    assert isinstance(driver_from("none"), NoneDriver)


# --- a real SSH server on loopback ------------------------------------------------------
class _Server(paramiko.ServerInterface):
    """Accepts one public key; answers exec requests with canned output."""

    def __init__(self, client_key: paramiko.PKey, commands: list[str]):
        self.client_key = client_key
        self.commands = commands
        self.asked = threading.Event()

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        ok = username == "root" and key == self.client_key
        return paramiko.AUTH_SUCCESSFUL if ok else paramiko.AUTH_FAILED

    def check_channel_request(self, kind: str, chanid: int) -> int:
        return (
            paramiko.OPEN_SUCCEEDED if kind == "session" else paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED
        )

    def check_channel_exec_request(self, channel: Any, command: bytes) -> bool:
        self.commands.append(command.decode())
        self.asked.set()
        return True


ANSWERS = {CONNTRACK_LIST: (TABLE, SUMMARY, 0), CONNTRACK_STATS: (STATS, "", 0)}


class SshServer:
    """An SSH server on 127.0.0.1 (a thread per connection), its host key and the one
    client key it accepts; the commands it was asked to run."""

    def __init__(self) -> None:
        self.host_key = paramiko.RSAKey.generate(2048)
        self.client_key = paramiko.RSAKey.generate(2048)
        self.commands: list[str] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        transport = paramiko.Transport(conn)
        transport.add_server_key(self.host_key)
        server = _Server(self.client_key, self.commands)
        try:
            transport.start_server(server=server)
            while transport.is_active():
                channel = transport.accept(timeout=0.5)
                if channel is None:
                    continue
                server.asked.wait(5)
                server.asked.clear()
                out, err, status = ANSWERS.get(self.commands[-1], ("", "not here\n", 127))
                channel.sendall(out.encode())
                channel.sendall_stderr(err.encode())
                channel.send_exit_status(status)
                channel.close()
        except (paramiko.SSHException, EOFError, OSError):
            pass  # the client refused the host key and hung up
        finally:
            transport.close()

    def known_hosts_line(self, key: paramiko.PKey | None = None) -> str:
        key = key or self.host_key
        return f"[127.0.0.1]:{self.port} {key.get_name()} {key.get_base64()}\n"


@pytest.fixture(scope="module")
def ssh_server() -> Iterator[SshServer]:
    server = SshServer()
    yield server
    server.sock.close()


@pytest.fixture
def identity(ssh_server, tmp_path, monkeypatch) -> Path:
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)  # only the key file, never the user's agent
    path = tmp_path / "id_rsa"
    ssh_server.client_key.write_private_key_file(str(path))
    return path


def test_an_unknown_host_key_is_refused_in_one_line(ssh_server, identity, tmp_path):
    known = tmp_path / "known_hosts"
    with pytest.raises(ConfigError) as error:
        LinuxDriver(f"root@127.0.0.1:{ssh_server.port}", known, identity)
    assert f"host key not in {known}: refused" in str(error.value)
    assert not known.exists(), "an unknown key is never written to known_hosts"


def test_a_changed_host_key_is_refused(ssh_server, identity, tmp_path):
    known = tmp_path / "known_hosts"
    known.write_text(ssh_server.known_hosts_line(paramiko.RSAKey.generate(1024)))
    with pytest.raises(ConfigError, match="differs from the one in"):
        LinuxDriver(f"root@127.0.0.1:{ssh_server.port}", known, identity)


def test_the_linux_driver_reads_the_table_and_counters(ssh_server, identity, tmp_path):
    known = tmp_path / "known_hosts"
    known.write_text(ssh_server.known_hosts_line())
    driver = driver_from("linux", f"root@127.0.0.1:{ssh_server.port}", known, identity)
    assert isinstance(driver, Driver) and driver.reads_table
    try:
        sessions = driver.sessions()
        counters = driver.counters()
        with pytest.raises(LabError, match="not one of the driver's read-only commands"):
            driver._run("conntrack -F")  # type: ignore[attr-defined]
    finally:
        driver.close()
    assert [(s.proto, s.src, s.dport, s.reply_dst) for s in sessions] == [
        ("tcp", "10.0.1.10", 80, "10.0.2.1"),
        ("udp", "10.0.1.10", 3478, "10.0.2.1"),
    ]
    assert counters["drop"] == 3 and counters["invalid"] == 20
    assert set(ssh_server.commands) <= {CONNTRACK_LIST, CONNTRACK_STATS}
    with pytest.raises(LabError, match="connection is closed"):
        driver.sessions()


# --- the device -------------------------------------------------------------------------
class FakeDriver:
    name = "fake"
    reads_table = True
    table = "canned"

    def __init__(self) -> None:
        self.closed = False

    def sessions(self) -> list[Session]:
        return [Session("tcp", "10.0.1.10", "10.0.2.10", 40000, 80, "ESTABLISHED", 3)]

    def counters(self) -> dict[str, int]:
        return {"drop": 1}

    def close(self) -> None:
        self.closed = True


class NoRunner:
    """A runner the external device must never use."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the external device used its runner: {name}")


def test_the_external_device_reads_through_its_driver_and_touches_nothing():
    assert ExternalDevice in DEVICE_CLASSES
    driver = FakeDriver()
    device = ExternalDevice(NoRunner(), "dut", driver)  # type: ignore[arg-type]
    assert isinstance(device, SessionDevice) and device.built_by_lab is False
    assert [s.dport for s in device.sessions()] == [80] and device.counters() == {"drop": 1}
    with pytest.raises(LabError, match="not built by the lab"):
        device.configure(object())
    with pytest.raises(LabError, match="not built by the lab"):
        device.check(Path("x"))
    device.reset()
    device.stop()
    assert driver.closed


def test_the_external_device_says_when_its_table_is_not_read():
    device = ExternalDevice(NoRunner(), "dut", NoneDriver())  # type: ignore[arg-type]
    assert device.sessions() == [] and device.table_read is False


# --- attaching ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "values, problem",
    [
        (["inside=eth1"], "--port outside=IFACE missing"),
        (["inside", "outside=b"], "--port inside: expected ROLE=IFACE"),
        (["middle=eth1", "inside=a", "outside=b"], "--port middle=eth1: no role 'middle'"),
        (["inside=a", "inside=b", "outside=c"], "--port inside=b: inside given twice (a and b)"),
        (["inside=eth1", "outside=eth1"], "--port: eth1 is named for both inside and outside"),
    ],
)
def test_port_values_are_checked(values, problem):
    problems = parse_ports(values)[1]
    assert any(p.startswith(problem) for p in problems), problems
    assert len(problems) == 1, problems


def test_a_missing_interface_and_loopback_are_refused_together():
    with pytest.raises(ConfigError) as error:
        attachment(["inside=nosuch0", "outside=lo"])  # reads `ip -j addr show` only
    assert error.value.problems == [
        "--port inside=nosuch0: no such interface in the root namespace",
        "--port outside=lo: a loopback interface",
    ]


def test_the_same_interface_twice_is_refused():
    with pytest.raises(ConfigError) as error:
        attachment(["inside=lo", "outside=lo"])
    assert "--port: lo is named for both inside and outside" in error.value.problems


def _link(name: str, address: str | None = None, **extra: Any) -> dict[str, Any]:
    addrs = [{"family": "inet", "local": address.split("/")[0], "prefixlen": 24}] if address else []
    return {"ifname": name, "flags": ["UP"], "link_type": "ether", "addr_info": addrs, **extra}


def test_interfaces_in_use_are_refused():
    links = [
        _link("eth1", master="br0"),
        _link("eth2", "10.0.1.1/24"),
        _link("eth3", "192.168.5.1/24"),
        _link("sl1c79s1-eth4"),
    ]
    ports = {"inside": "eth1", "outside": "eth2"}
    assert root_port_problems(ports, links, lambda: {}) == [
        "--port inside=eth1: in use, enslaved to br0",
        "--port outside=eth2: in use, it carries 10.0.1.1/24, in the lab's range 10.0.0.0/8",
    ]
    ovs = {"eth3": "br-ext"}
    assert root_port_problems({"inside": "eth3"}, links, lambda: ovs) == [
        "--port inside=eth3: in use, a port of the Open vSwitch bridge br-ext"
    ]
    assert root_port_problems({"outside": "sl1c79s1-eth4"}, links, lambda: {}) == [
        "--port outside=sl1c79s1-eth4: an interface a lab created (its tag sl1c79)"
    ]
    assert root_port_problems({"inside": "eth3"}, links, lambda: {}) == []


def test_netns_ports_are_checked():
    asked: list[str] = []

    def present() -> list[str]:
        asked.append("present")
        return ["lo", "in0"]

    ports = {"inside": "in0", "outside": "a-very-long-name0"}
    assert netns_port_problems("dut", ports, ["other"], present) == [
        "--port outside=a-very-long-name0: 'a-very-long-name0' is 17 bytes; "
        "Linux interface names have at most 15",
        "--netns dut: no such network namespace (ip netns list)",
    ]
    assert asked == []  # nothing read in a namespace that is not there
    assert netns_port_problems("dut", {"inside": "in0", "outside": "out0"}, ["dut"], present) == [
        "--port inside=in0: in0 already exists in netns dut"
    ]


def test_plugging_names_and_refusals_run_nothing(tmp_path):
    device = Attachment({"inside": "in0", "outside": "out0"}, "dut")
    assert root_names(device, "sl1a2b") == {"inside": "sl1a2b-in", "outside": "sl1a2b-out"}
    with pytest.raises(LabError, match="over 15 characters"):
        root_names(device, "a-long-prefix")
    with pytest.raises(LabError, match="attached as they are, not plugged"):
        plug_netns(Attachment({"inside": "eth1", "outside": "eth2"}), Record("sl1a2b", folder=tmp_path))
    assert str(device) == "inside=in0, outside=out0 in netns dut"
