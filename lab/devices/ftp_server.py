"""An FTP server: vsftpd from Debian on a lab host.

Lifecycle: FtpServerConfig -> render (`lab/render/vsftpd.py`) -> start in the foreground,
owned by the lab (ended by PID with its case) -> ready when its port listens (vsftpd says
nothing when it is up; a bad configuration makes it exit at once with "500 OOPS", which is
reported) -> its log as data: every command and reply it saw, and every transfer.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lab.config import FtpServerConfig, ftp_server_problems
from lab.errors import ConfigError, LabError
from lab.render.vsftpd import render_vsftpd

if TYPE_CHECKING:
    from lab.net import Lab
    from lab.procs import Proc

_LINE = re.compile(r'\[pid (\d+)\] (?:\[\S+\] )?(.*?): Client "([\d.]+)"(?:, "(.*)")?')


@dataclass(frozen=True)
class FtpLogLine:
    """One line of vsftpd's log: its session process, what kind (FTP command, FTP
    response, OK DOWNLOAD, FAIL DOWNLOAD, CONNECT), the client's address and the text."""

    pid: int
    kind: str
    client: str
    text: str


def parse_vsftpd_log(text: str) -> list[FtpLogLine]:
    lines = []
    for raw in text.splitlines():
        match = _LINE.search(raw)
        if match:
            lines.append(FtpLogLine(int(match[1]), match[2], match[3], match[4] or ""))
    return lines


def make_file(folder: Path, name: str, size: int) -> str:
    """A file of `size` random bytes to serve; returns its SHA-256."""
    data = os.urandom(size)
    (folder / name).write_bytes(data)
    (folder / name).chmod(0o644)
    return hashlib.sha256(data).hexdigest()


class FtpServer:
    """vsftpd running on `node` with `config`; its log is `log_path`."""

    def __init__(self, lab: Lab, node: str, config: FtpServerConfig, name: str):
        problems = ftp_server_problems(config)
        if problems:
            raise ConfigError(problems)
        if shutil.which("vsftpd") is None:
            raise LabError("vsftpd is not installed: run scripts/bootstrap.sh")
        self.lab, self.node, self.config, self.name = lab, node, config, name
        runtime = lab.runtime_dir()
        empty = runtime / "vsftpd-empty"
        empty.mkdir(mode=0o755, exist_ok=True)
        self.log_path = lab.paths.logs / f"{name}.ftp.log"
        self.log_path.write_text("")
        self.conf_path = runtime / f"{name}.conf"
        self.conf_path.write_text(render_vsftpd(config, str(self.log_path), str(empty)))
        self.proc: Proc | None = None

    def start(self, timeout: float = 5) -> FtpServer:
        self.proc = self.lab.start(self.node, ["vsftpd", str(self.conf_path)], self.name)
        proc = self.proc

        def listening() -> bool:
            if not proc.running():
                raise LabError(f"vsftpd on {self.node} exited at start: {proc.output().strip()[-300:]}")
            out = self.lab.run(self.node, ["ss", "-Hltn", f"sport = :{self.config.port}"], check=False)
            return bool(out.strip())

        self.lab.wait(listening, timeout, f"vsftpd on {self.node} to listen on port {self.config.port}")
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.lab.stop(self.proc)

    def log(self) -> list[FtpLogLine]:
        return parse_vsftpd_log(self.log_path.read_text(errors="replace"))
