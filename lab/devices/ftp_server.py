"""An FTP server device: vsftpd from Debian on a lab host.

Lifecycle (`lab.devices.base`): FtpServerConfig -> `problems()` -> render
(`lab/render/vsftpd.py`) -> no check: vsftpd has no dry run, and a bad configuration makes
it exit at once with "500 OOPS", which the wait for its port reports -> start in the
foreground, owned by the lab (ended by PID with its case) -> ready when its port listens
(vsftpd says nothing when it is up) -> its log as data: every command and reply it saw,
and every transfer. Its sessions are its host's sockets: it keeps no table of its own.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from lab.config import FtpServerConfig, refuse
from lab.devices.base import Device, Runner, daemon
from lab.render.vsftpd import render_vsftpd

_LINE = re.compile(r'\[pid (\d+)\] (?:\[\S+\] )?(.*?): Client "([\w.:]+)"(?:, "(.*)")?')
_MAPPED = "::ffff:"  # an IPv4 client of a socket listening on [::]


@dataclass(frozen=True)
class FtpLogLine:
    """One line of vsftpd's log: its session process, what kind (FTP command, FTP
    response, OK DOWNLOAD, FAIL DOWNLOAD, CONNECT), the client's address (IPv4 or IPv6;
    an IPv4-mapped one as the IPv4 address it maps) and the text."""

    pid: int
    kind: str
    client: str
    text: str


def parse_vsftpd_log(text: str) -> list[FtpLogLine]:
    """The lines of vsftpd's log that name a session process and a client, in order."""
    found = (_LINE.search(raw) for raw in text.splitlines())
    return [FtpLogLine(int(m[1]), m[2], m[3].removeprefix(_MAPPED), m[4] or "") for m in found if m]


def make_file(folder: Path, name: str, size: int) -> str:
    """A file of `size` random bytes to serve; returns its SHA-256."""
    data = os.urandom(size)
    (folder / name).write_bytes(data)
    (folder / name).chmod(0o644)
    return hashlib.sha256(data).hexdigest()


class FtpServer(Device):
    """vsftpd running on `node` with `config`; its log is `log_path`."""

    def __init__(
        self, runner: Runner, node: str, config: FtpServerConfig, name: str, built_by_lab: bool = True
    ):
        super().__init__(runner, node, name, built_by_lab)
        self.config = config
        self.log_path = runner.paths.logs / f"{name}.ftp.log"
        self.conf_path = runner.runtime_dir() / f"{name}.conf"

    keeps_sessions: ClassVar[bool] = False
    config_scope: ClassVar[Literal["lab", "case"]] = "case"
    checker: ClassVar[str] = "none: vsftpd has no dry run; a bad file ends it at once (500 OOPS), reported"
    ready_on: ClassVar[str] = "its control port listens (ss)"

    def made_with(self) -> Any:
        return self.config

    def configure(self, config: FtpServerConfig, timeout: float = 5) -> None:
        """Validate, render, start, and wait until the control port listens."""
        self._configurable()
        refuse(config.problems())
        self._installed("vsftpd")
        self.config = config
        empty = self.runner.runtime_dir() / "vsftpd-empty"
        empty.mkdir(mode=0o755, exist_ok=True)
        self.log_path.write_text("")
        self.conf_path.write_text(render_vsftpd(config, str(self.log_path), str(empty)))
        self.check(self.conf_path)
        argv = ["vsftpd", str(self.conf_path)]
        self.proc = daemon(self.runner.start(self.node, argv, self.name), own_log=self.log_path)
        where = f"port {config.port}"
        self._wait_listening(config.port, "vsftpd", where, timeout)

    def check(self, path: Path) -> None:
        """Nothing to run: vsftpd has no dry run (see `checker`)."""

    def log(self) -> list[FtpLogLine]:
        return parse_vsftpd_log(self.log_path.read_text(errors="replace"))
