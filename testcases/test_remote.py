"""Runs on other machines, for real: two OpenSSH servers on loopback (ports of their own,
keys this test generates, started in the foreground and ended by PID) stand for two VMs.
Host keys: an unknown one is refused, a changed one is refused, --accept-new records it.
Then a remote run (push, bootstrap, run, fetch), a run spread over both hosts, and one
interrupted while a host is in a lab."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab.catalog import ROOT
from lab.records import LABEL_ENV, RECORDS, Record
from lab.wait import wait_until
from testcases.common import TWO_LABS
from testcases.own_runs import own_records

SESSIONLAB = [str(Path(sys.executable).with_name("sessionlab"))]  # the installed command
SSHD = "/usr/sbin/sshd"

pytestmark = pytest.mark.usefixtures("own_label")  # its runs' labs, the records it reads
_records = own_records  # testcases/own_runs.py


@dataclass
class Server:
    port: int
    host_key: Path
    proc: subprocess.Popen[bytes]

    @property
    def spec(self) -> str:
        return f"root@127.0.0.1:{self.port}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _start_sshd(folder: Path, name: str, authorized: Path, label: str) -> Server:
    key = folder / f"host-{name}"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    port = _free_port()
    config = folder / f"sshd-{name}.conf"
    config.write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {key}",
                f"PidFile {folder}/sshd-{name}.pid",
                f"AuthorizedKeysFile {authorized}",
                "PermitRootLogin prohibit-password",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                "StrictModes no",
                "LogLevel VERBOSE",
                f"SetEnv {LABEL_ENV}={label}",  # the hosts' labs carry this module's label
            ]
        )
        + "\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation directory
    log = (folder / f"sshd-{name}.log").open("wb")
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT)
    wait_until(lambda: _listening(port) or proc.poll() is not None, 10, f"sshd {name} to listen")
    assert proc.poll() is None, (folder / f"sshd-{name}.log").read_text()
    return Server(port, key, proc)


@pytest.fixture(scope="module")
def ssh(tmp_path_factory: pytest.TempPathFactory, own_label: str) -> Iterator[tuple[Path, list[Server]]]:
    """Two sshd on loopback that accept one client key this fixture made; its folder holds
    the key (`id`) and an empty known_hosts."""
    if not Path(SSHD).exists():
        pytest.fail("openssh-server is not installed: run scripts/bootstrap.sh")
    folder = tmp_path_factory.mktemp("ssh")
    client = folder / "id"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(client)], check=True)
    authorized = folder / "authorized_keys"
    shutil.copy(client.with_suffix(".pub"), authorized)
    servers: list[Server] = []
    try:
        servers = [_start_sshd(folder, name, authorized, own_label) for name in ("a", "b")]
        yield folder, servers
    finally:
        for server in servers:
            server.proc.terminate()
            server.proc.wait(10)


def _cli(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SESSIONLAB, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def test_unknown_and_changed_host_keys_are_refused(ssh, tmp_path):
    folder, (a, b) = ssh
    known = tmp_path / "known_hosts"
    remote_dir = tmp_path / "checkout"
    common = ["--known-hosts", str(known), "--identity", str(folder / "id"), "--folder", str(remote_dir)]
    unknown = _cli("remote", *common, a.spec, "run", "s1")
    assert unknown.returncode == 2, unknown.stdout + unknown.stderr
    assert "host key not in" in unknown.stderr and "refused" in unknown.stderr
    assert not remote_dir.exists(), "something was pushed to a host whose key was refused"
    # known_hosts holds another key for a's address and port (b's): a changed key.
    known.write_text(
        f"[127.0.0.1]:{a.port} {b.host_key.with_suffix('.pub').read_text().split()[0]} "
        f"{b.host_key.with_suffix('.pub').read_text().split()[1]}\n"
    )
    changed = _cli("remote", *common, "--accept-new", a.spec, "run", "s1")
    assert changed.returncode == 2, changed.stdout + changed.stderr
    assert "differs from the one in" in changed.stderr
    assert not remote_dir.exists()
    assert "Traceback" not in unknown.stderr + changed.stderr


def test_remote_run_pushes_bootstraps_runs_and_fetches(ssh, tmp_path):
    folder, (a, _) = ssh
    known, results = tmp_path / "known_hosts", tmp_path / "results"
    remote_dir = folder / "checkout"  # kept for the next test: its .venv is built once
    out = _cli(
        "remote",
        "--known-hosts",
        str(known),
        "--accept-new",
        "--identity",
        str(folder / "id"),
        "--folder",
        str(remote_dir),
        "--results",
        str(results),
        a.spec,
        "run",
        "test_links",
        "-k",
        "delay_is_what",
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr
    # accept-new wrote the host's key, in OpenSSH's format
    line = known.read_text().split()
    assert (
        line[0] == f"[127.0.0.1]:{a.port}"
        and line[2] == a.host_key.with_suffix(".pub").read_text().split()[1]
    )
    assert "pushed the checkout" in out.stdout and "passed" in out.stdout
    fetched = [p for p in results.iterdir() if p.name.endswith(f"-127.0.0.1-{a.port}")]
    assert len(fetched) == 1, list(results.iterdir())
    summary = json.loads((fetched[0] / "summary.json").read_text())
    assert [(c["name"], c["verdict"]) for c in summary] == [
        ("test_links.test_delay_is_what_the_link_asks", "passed")
    ]
    assert (fetched[0] / "report.html").exists() and (results / "latest").resolve() == fetched[0].resolve()
    # the run happened in the pushed checkout, over the connection
    assert (remote_dir / "results" / summary[0]["path"].split("/results/")[1]).is_dir()


def _over_both(folder: Path, servers: list[Server], tmp_path: Path) -> list[str]:
    """`run` options for a run over both servers (their keys known, the key of the
    fixture, the checkout the remote run built)."""
    known = tmp_path / "known_hosts"
    known.write_text(
        "".join(
            f"[127.0.0.1]:{s.port} {' '.join(s.host_key.with_suffix('.pub').read_text().split()[:2])}\n"
            for s in servers
        )
    )
    hosts = [arg for s in servers for arg in ("--host", s.spec)]
    return [
        *hosts,
        "--known-hosts",
        str(known),
        "--identity",
        str(folder / "id"),
        "--folder",
        str(folder / "checkout"),
    ]


def test_a_run_spread_over_two_hosts_makes_one_report(ssh, tmp_path):
    folder, (a, b) = ssh
    results = tmp_path / "results"
    out = _cli(
        "run", "test_links", "s5", "-k", TWO_LABS, *_over_both(folder, [a, b], tmp_path),
        "--results", str(results),
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr
    run = (results / "latest").resolve()
    summary = json.loads((run / "summary.json").read_text())
    names = {c["name"] for c in summary}
    assert len([n for n in names if n.startswith("test_links.")]) == 2  # delay, loss (TWO_LABS)
    assert "test_s5_filters.test_same_intent_stateful_and_stateless" in names
    assert all(c["verdict"] == "passed" for c in summary), summary
    # Each module ran on one host, the two modules on different ones (sshd's port).
    ports: dict[str, set[str]] = {}
    for c in summary:
        ports.setdefault(c["name"].split(".")[0], set()).add(c["runner"]["ssh"].split()[3])
    assert all(len(p) == 1 for p in ports.values()), ports
    assert {p.pop() for p in ports.values()} == {str(a.port), str(b.port)}
    page = (run / "report.html").read_text()
    assert f"port {a.port}" in page and f"port {b.port}" in page


def test_an_interrupted_run_over_two_hosts_leaves_nothing_on_them(ssh, tmp_path):
    """Ctrl-C at the terminal while a host's worker is in a lab: the SSH connections close,
    the worker (execnet) interrupts itself and its lab is removed (both hosts are this
    machine: their labs' records are here)."""
    folder, servers = ssh
    before = _records()
    proc = subprocess.Popen(
        [*SESSIONLAB, "run", "test_failure_idle_past_timeout_hangs", *_over_both(folder, servers, tmp_path),
         "--results", str(tmp_path / "results")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT, start_new_session=True,
    )  # fmt: skip
    new: set[str] = set()
    try:
        new = wait_until(lambda: _records() - before, 120, "a host's lab to be up")
        wait_until(lambda: any(Record.load(RECORDS / f"{t}.json").processes for t in new), 30, "lab shells")
        os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the CLI and its ssh clients
        out, _ = proc.communicate(timeout=60)
        # the worker notices the closed connection, waits 5 s for its task, then interrupts it
        wait_until(lambda: not new & _records(), 60, "the hosts' labs to be removed")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for tag in new & _records():  # after a failure: what the test's labs left
            record = Record.load(RECORDS / f"{tag}.json")
            if record.orphaned():
                record.remove()
    assert proc.returncode == 130, out
    bridges = subprocess.run(["ovs-vsctl", "list-br"], capture_output=True, text=True).stdout.split()
    assert not [b for b in bridges if any(b.startswith(t) for t in new)], bridges
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not [t for t in new if t in namespaces], namespaces
