"""An L7 balancer (ADC) device: haproxy or nginx from Debian, run by the lab.

Lifecycle (`lab.devices.base`): Adc -> `problems()` (and, for nginx, what nginx OSS
cannot do) -> render (`lab/render/haproxy.py`, `lab/render/nginx.py`) -> checked by the
daemon itself (`haproxy -c`, `nginx -t`; refused with the daemon's own words) -> started in
the foreground, owned (ended by PID with its case) -> ready when the VIP's port listens ->
its state as data: haproxy's stats socket (each server's status, sessions, checks), and
each daemon's request log on stdout.

The ADC is a full proxy: it opens its own connections to the servers. It takes their
source ports from `ports` (the node's ephemeral range is set to them for the ADC's life),
so its flows stay in the case's port block. Its connections are sockets of its node,
listed in the node's kernel table (the L4 balancer device's): it keeps no table of its own.
"""

from __future__ import annotations

import csv
import io
import re
import shutil
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from lab.config import Adc, refuse
from lab.config.balancing import host_port
from lab.config.checks import to_toml
from lab.devices.base import Device, Runner, daemon
from lab.errors import ConfigError, LabError
from lab.render.haproxy import render_haproxy
from lab.render.nginx import nginx_problems, render_nginx

if TYPE_CHECKING:
    pass

DAEMONS = ("haproxy", "nginx")
LINUX_EPHEMERAL = "32768 60999"


class AdcDaemon(Device):
    """haproxy or nginx serving `adc` on `node` (whose client side must hold the VIP)."""

    def __init__(
        self,
        runner: Runner,
        node: str,
        adc: Adc,
        daemon: str,
        name: str,
        ports: range,
        built_by_lab: bool = True,
    ):
        super().__init__(runner, node, name, built_by_lab)
        self.adc, self.daemon, self.ports = adc, daemon, ports
        runtime = runner.runtime_dir()
        self.workdir = runtime / name
        self.stats_socket = runtime / f"{name}.sock"
        self.conf_path = runner.paths.root / f"{name}.{'cfg' if daemon == 'haproxy' else 'conf'}"

    keeps_sessions: ClassVar[bool] = False
    config_scope: ClassVar[Literal["lab", "case"]] = "case"
    checker: ClassVar[str] = "haproxy -c -f <cfg> | nginx -t -c <conf>"
    ready_on: ClassVar[str] = "the VIP's port listens (ss)"

    def _argv(self, check: bool) -> list[str]:
        if self.daemon == "haproxy":
            # no -q: on an error haproxy -q prints nothing, and the error is the point
            local = ["-L", self.node] if self.adc.peers else []  # its name among the peers
            return ["haproxy", "-c", "-f", str(self.conf_path), *local] if check else [
                "haproxy", "-db", "-f", str(self.conf_path), *local
            ]  # fmt: skip
        base = ["nginx", "-c", str(self.conf_path), "-p", str(self.workdir)]
        return [*base, "-t", "-q"] if check else base

    def made_with(self) -> Any:
        return self.adc

    def configure(self, adc: Adc, timeout: float = 10) -> None:
        """Validate, render, check, then start, and wait until the VIP's port listens."""
        self._configurable()
        if self.daemon not in DAEMONS:
            raise ConfigError(f"adc daemon {self.daemon!r}: not one of {', '.join(DAEMONS)}")
        if shutil.which(self.daemon) is None:
            raise LabError(f"{self.daemon} is not installed: run scripts/bootstrap.sh")
        refuse(adc.problems() + (nginx_problems(adc) if self.daemon == "nginx" else []))
        self.adc = adc
        self.workdir.mkdir(mode=0o755, exist_ok=True)
        text = (
            render_haproxy(adc, str(self.stats_socket))
            if self.daemon == "haproxy"
            else render_nginx(adc, str(self.workdir))
        )
        self.conf_path.write_text(text)
        self.check(self.conf_path)
        first, last = self.ports.start, self.ports.stop - 1
        self.runner.run(self.node, ["sysctl", "-qw", f"net.ipv4.ip_local_port_range={first} {last}"])
        self.proc = daemon(self.runner.start(self.node, self._argv(check=False), self.name))
        where = host_port(adc.vip, adc.port)
        self._wait_listening(adc.port, self.daemon, where, timeout)

    def check(self, path: Path) -> None:
        """The daemon's own check of the rendered file, refused with its first complaint."""
        refused = f"{self.daemon} on {self.node} rejects {path}: "
        self._run_check(self._argv(check=True), lambda out: refused + first_complaint(out))

    def stop(self) -> None:
        """End the daemon by PID; the node's ephemeral ports are Linux's again."""
        super().stop()
        self.runner.run(self.node, ["sysctl", "-qw", f"net.ipv4.ip_local_port_range={LINUX_EPHEMERAL}"])

    # --- what the daemon says --------------------------------------------------------
    def command(self, text: str, timeout: float = 2.0) -> str:
        """A command on haproxy's stats socket (a UNIX socket: reachable from any namespace)."""
        if self.daemon != "haproxy":
            raise LabError(f"{self.daemon} has no stats socket")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(self.stats_socket))
            sock.sendall(text.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode(errors="replace")

    def servers(self) -> dict[str, dict[str, Any]]:
        """haproxy's view of each server (`pool/server`): status (UP, DOWN, ...), total
        sessions, the last check's status, whether a check is under way, and how many times
        it went down. haproxy marks a check under way by prefixing the last status with "* "
        ("* L4CON"); the status is the finished check's, so the mark goes to its own field."""
        rows = csv.DictReader(io.StringIO(self.command("show stat").lstrip("# ")))
        out = {}
        for row in rows:
            if row["svname"] in ("FRONTEND", "BACKEND"):
                continue
            check = row.get("check_status", "")
            out[f"{row['pxname']}/{row['svname']}"] = {
                "status": row["status"],
                "sessions": int(row["stot"] or 0),
                "check": check.removeprefix("* "),
                "checking": check.startswith("* "),
                "downs": int(row.get("chkdown") or 0),
                "address": row.get("addr", ""),
            }
        return out

    def table(self, backend: str) -> dict[str, str]:
        """haproxy's stick table of a backend: client address -> server id."""
        entries = {}
        for line in self.command(f"show table {backend}").splitlines():
            fields = dict(item.split("=", 1) for item in line.split() if "=" in item)
            if "key" in fields:
                entries[fields["key"]] = fields.get("server_id", "")
        return entries

    def log_lines(self) -> list[str]:
        return self.proc.output().splitlines() if self.proc is not None else []


def first_complaint(output: str) -> str:
    """The daemon's own first error line, without its prefix (haproxy's [ALERT], nginx's
    [emerg]): one line for the user, the rest is in the log."""
    for line in output.splitlines():
        if "[ALERT]" in line or "[emerg]" in line:
            return re.sub(r"^.*?(\[ALERT\]\s*\(\d+\)\s*:\s*|nginx: \[emerg\]\s*)", "", line).strip()
    return output.strip().splitlines()[-1] if output.strip() else "no output"


def save_config(daemon: AdcDaemon, folder: Path) -> Path:
    """A copy of the daemon's configuration beside the case's evidence, and the ADC
    configuration it was rendered from as TOML beside that (`topo --adc NODE=FILE`)."""
    copy = folder / daemon.conf_path.name
    shutil.copyfile(daemon.conf_path, copy)
    copy.with_suffix(".toml").write_text(
        to_toml(daemon.adc, f"{daemon.node}'s ADC of {copy.name}; by hand: topo ... --adc {daemon.node}=FILE")
    )
    return copy
