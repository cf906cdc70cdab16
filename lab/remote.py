"""Runs on other machines over SSH (paramiko): push this checkout, bootstrap it there, run,
stream the output back, fetch the results folder.

Host keys are checked against a known_hosts file (OpenSSH's format and default file): an
unknown key is refused unless the user asks to accept new keys (OpenSSH's `accept-new`:
the key is then written to known_hosts); a key that differs from the one on record is
always refused. Authentication is by key (a file, or the keys OpenSSH would use) or the
SSH agent; there are no passwords, so no secret can reach a log.
"""

from __future__ import annotations

import io
import logging
import re
import shlex
import subprocess
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paramiko

from lab.catalog import ROOT
from lab.errors import ConfigError, LabError

log = logging.getLogger(__name__)

REMOTE_DIR = "/var/tmp/sessionlab"  # where a checkout goes on a host (absolute: no home lookups)
KNOWN_HOSTS = Path("~/.ssh/known_hosts").expanduser()
_SPEC = re.compile(
    r"^(?:(?P<user>[A-Za-z0-9._-]+)@)?(?P<host>[A-Za-z0-9.-]+|\[[0-9a-fA-F:.]+\])(?::(?P<port>\d+))?$"
)
_SKIP = {".git", ".venv", "results", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache"}


@dataclass(frozen=True)
class Host:
    """A machine to run on: `[user@]host[:port]` (user root, port 22 by default)."""

    host: str
    user: str = "root"
    port: int = 22

    @classmethod
    def parse(cls, spec: str) -> Host:
        found = _SPEC.match(spec)
        if not found or not 0 < int(found["port"] or 22) < 65536:
            raise ConfigError(f"host {spec!r}: expected [user@]host[:port]")
        return cls(found["host"].strip("[]"), found["user"] or "root", int(found["port"] or 22))

    @property
    def known_hosts_name(self) -> str:
        """How known_hosts names it (OpenSSH writes [host]:port for other ports)."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"

    @property
    def label(self) -> str:
        """A name for folders: host, or host-port."""
        return self.host if self.port == 22 else f"{self.host}-{self.port}"

    def __str__(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"


class _AcceptNew(paramiko.MissingHostKeyPolicy):
    """OpenSSH's StrictHostKeyChecking=accept-new: a host never seen is trusted and its key
    written to known_hosts; a changed key is refused elsewhere (paramiko's own check)."""

    def __init__(self, known_hosts: Path):
        self.known_hosts = known_hosts

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        self.known_hosts.parent.mkdir(parents=True, exist_ok=True)
        with self.known_hosts.open("a") as out:
            out.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
        client.get_host_keys().add(hostname, key.get_name(), key)
        log.info("accepted the new host key of %s (%s) into %s", hostname, key.get_name(), self.known_hosts)


def connect(
    host: Host, known_hosts: Path = KNOWN_HOSTS, accept_new: bool = False, identity: Path | None = None
) -> paramiko.SSHClient:
    """An SSH connection to `host`, its key checked against `known_hosts`."""
    client = paramiko.SSHClient()
    if known_hosts.exists():
        try:
            client.load_host_keys(str(known_hosts))
        except (OSError, paramiko.SSHException) as exc:
            raise ConfigError(f"{known_hosts}: cannot read it as known_hosts ({exc})") from None
    client.set_missing_host_key_policy(_AcceptNew(known_hosts) if accept_new else paramiko.RejectPolicy())
    if identity is not None and not identity.is_file():
        raise ConfigError(f"--identity {identity}: no such file")
    try:
        client.connect(
            host.host,
            port=host.port,
            username=host.user,
            key_filename=str(identity) if identity else None,
            look_for_keys=identity is None,
            allow_agent=True,
            timeout=15,
            banner_timeout=15,
            auth_timeout=15,
        )
    except paramiko.BadHostKeyException as exc:
        raise ConfigError(
            f"{host}: its host key ({exc.key.get_name()}) differs from the one in {known_hosts}: refused "
            "(if the host was reinstalled, remove its line there)"
        ) from None
    except paramiko.AuthenticationException:
        raise ConfigError(
            f"{host}: authentication failed (by key and agent; passwords are not used)"
        ) from None
    except paramiko.SSHException as exc:
        if "not found in known_hosts" in str(exc):
            raise ConfigError(
                f"{host}: host key not in {known_hosts}: refused (check it, then --accept-new to trust it)"
            ) from None
        raise LabError(f"{host}: SSH failed ({exc})") from None
    except OSError as exc:  # refused, unreachable, timed out
        raise LabError(f"{host}: cannot connect ({exc})") from None
    return client


def checkout_files(root: Path = ROOT) -> list[Path]:
    """The checkout's files to push: git's tracked and untracked-but-not-ignored files, or
    (no git) every file outside virtual environments, results and caches."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=root,
            capture_output=True,
            check=True,
        ).stdout
        return sorted(root / name for name in listed.decode().split("\0") if name and (root / name).is_file())
    except (OSError, subprocess.CalledProcessError):
        return sorted(
            p for p in root.rglob("*") if p.is_file() and not _SKIP & set(p.relative_to(root).parts)
        )


def pack(root: Path = ROOT) -> bytes:
    """The checkout as a gzipped tar, paths relative to it."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in checkout_files(root):
            tar.add(path, arcname=path.relative_to(root).as_posix())
    return buffer.getvalue()


class Remote:
    """One host's SSH connection and its checkout folder."""

    def __init__(self, client: paramiko.SSHClient, host: Host, folder: str = REMOTE_DIR):
        self.client = client
        self.host = host
        self.folder = folder

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Remote:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stream(self, command: str, on_line: Callable[[str], None], pty: bool = False) -> int:
        """Run `command` (a shell line) on the host, every output line to `on_line` as it
        comes; its exit status. With `pty`, closing the connection (Ctrl-C here) hangs the
        remote command up, so a remote run cleans up as after a closed terminal."""
        transport = self.client.get_transport()
        if transport is None:
            raise LabError(f"{self.host}: not connected")
        channel = transport.open_session()
        try:
            if pty:
                channel.get_pty(width=160)
            channel.set_combine_stderr(True)
            channel.exec_command(command)
            for line in _lines(channel):
                on_line(line)
            return int(channel.recv_exit_status())
        finally:
            channel.close()

    def run(self, command: str) -> str:
        """Run a short command; its output; a failure is a LabError."""
        lines: list[str] = []
        status = self.stream(command, lines.append)
        if status != 0:
            raise LabError(f"{self.host}: `{command}` exited {status}: {' | '.join(lines[-3:])}")
        return "\n".join(lines)

    def push(self, root: Path = ROOT) -> int:
        """Put the checkout into the host's folder (its .venv and results stay); bytes sent.
        The archive goes through the command's own input (no SFTP needed on the host)."""
        data = pack(root)
        folder = shlex.quote(self.folder)
        keep = " ".join(f"! -name {shlex.quote(n)}" for n in (".venv", "results"))
        self.run(f"mkdir -p {folder} && find {folder} -mindepth 1 -maxdepth 1 {keep} -exec rm -rf {{}} +")
        transport = self.client.get_transport()
        if transport is None:
            raise LabError(f"{self.host}: not connected")
        channel = transport.open_session()
        try:
            channel.set_combine_stderr(True)
            channel.exec_command(f"tar -xzf - -C {folder}")
            channel.sendall(data)
            channel.shutdown_write()
            said = _read_all(channel).decode(errors="replace").strip()
            status = channel.recv_exit_status()
        finally:
            channel.close()
        if status != 0:
            raise LabError(f"{self.host}: unpacking the checkout in {self.folder} failed: {said[-300:]}")
        return len(data)

    def fetch_run(self, name: str, into: Path) -> Path:
        """Copy the host's run folder `results/<name>` to `into` (made); its path."""
        if not re.fullmatch(r"[0-9A-Za-z_.-]+", name):
            raise LabError(f"{self.host}: unexpected run name {name!r}")
        source = shlex.quote(f"{self.folder}/results")
        transport = self.client.get_transport()
        if transport is None:
            raise LabError(f"{self.host}: not connected")
        channel = transport.open_session()
        try:
            channel.exec_command(f"tar -czf - -C {source} {shlex.quote(name)}")
            data = _read_all(channel)
            status = channel.recv_exit_status()
        finally:
            channel.close()
        if status != 0:
            raise LabError(f"{self.host}: no run {name} in {self.folder}/results")
        into.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for member in tar.getmembers():
                # results/<name>/... lands in `into`
                member.name = member.name.split("/", 1)[1] if "/" in member.name else "."
            tar.extractall(into, filter="data")
        return into


def _lines(channel: Any) -> Iterator[str]:
    pending = b""
    while True:
        chunk = channel.recv(65536)
        if not chunk:
            break
        pending += chunk
        *complete, pending = re.split(rb"\r?\n", pending)
        for line in complete:
            yield line.decode(errors="replace").rstrip("\r")
    if pending:
        yield pending.decode(errors="replace")


def _read_all(channel: Any) -> bytes:
    parts: list[bytes] = []
    while True:
        chunk = channel.recv(1 << 20)
        if not chunk:
            return b"".join(parts)
        parts.append(chunk)


def prepare(
    host: Host,
    on_line: Callable[[str], None],
    known_hosts: Path = KNOWN_HOSTS,
    accept_new: bool = False,
    identity: Path | None = None,
    folder: str = REMOTE_DIR,
) -> Remote:
    """Connect to `host`, push this checkout into `folder` and bootstrap it there (packages,
    .venv, Open vSwitch; a second time it only checks). The connection, ready to run."""
    remote = Remote(connect(host, known_hosts, accept_new, identity), host, folder)
    try:
        sent = remote.push()
        on_line(f"pushed the checkout to {folder} ({sent / 1e6:.1f} MB)")
        status = remote.stream(f"cd {shlex.quote(folder)} && scripts/bootstrap.sh", on_line)
        if status != 0:
            raise LabError(f"{host}: scripts/bootstrap.sh exited {status}")
    except BaseException:
        remote.close()
        raise
    return remote


def ssh_config(hosts: list[Host], path: Path, known_hosts: Path, identity: Path | None) -> list[str]:
    """An OpenSSH client configuration naming each host `slhostN` (for pytest-xdist's SSH
    gateways, which run the `ssh` command): strict host key checking against the same
    known_hosts, key or agent only. The aliases, in order."""
    lines, aliases = [], []
    for n, host in enumerate(hosts):
        alias = f"slhost{n}"
        aliases.append(alias)
        lines += [
            f"Host {alias}",
            f"  HostName {host.host}",
            f"  Port {host.port}",
            f"  User {host.user}",
            f"  UserKnownHostsFile {known_hosts}",
            "  StrictHostKeyChecking yes",
            "  BatchMode yes",
            "  PasswordAuthentication no",
        ]
        if identity is not None:
            lines += [f"  IdentityFile {identity}", "  IdentitiesOnly yes"]
    path.write_text("\n".join(lines) + "\n")
    return aliases


def tx_specs(aliases: list[str], config: Path, folder: str = REMOTE_DIR) -> list[str]:
    """pytest-xdist gateway specs, one worker per host, each running the host's checkout
    (its .venv's Python, in its folder)."""
    return [
        f"ssh={alias}//ssh_config={config}//python={folder}/.venv/bin/python//chdir={folder}"
        for alias in aliases
    ]
