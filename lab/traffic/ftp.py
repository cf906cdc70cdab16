"""FTP downloads: the lab's client (`ftp_client`: one result record with its events, in
any of the four modes) and the real clients curl and lftp."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from lab.errors import CommandError, ConfigError, LabError
from lab.events import read_json_lines
from lab.traffic.load import app_argv, field_options, finish_load, start_load

if TYPE_CHECKING:
    from lab.net import Lab
    from lab.procs import Proc

FTP_TOOLS = ("curl", "lftp")


@dataclass(frozen=True)
class FtpDownload:
    """One FTP download to run: mode (PORT, EPRT, PASV, EPSV), the file, the ports the
    client uses (control source port; data: where it listens or binds), a NOOP period
    during the transfer (0: none), and a hold between announcing a data port and using it.
    Its server is named when it runs, so one list of downloads serves any server."""

    app: ClassVar[str] = "ftp_client"
    mode: str
    file: str
    sport: int
    data_port: int
    port: int = 21
    timeout: float = 5.0
    noop: float = 0.0
    label: str = ""
    hold: float = 0.0

    def argv(self, server: str) -> list[str]:
        return app_argv(
            self.app,
            *field_options(self, "hold"),
            "--server",
            server,
            *field_options(self, "port", "mode", "file", "sport", "data_port", "timeout", "noop"),
        )

    def budget(self) -> float:
        """Seconds the download may take at most (each of its steps waits `timeout`)."""
        return 6 * self.timeout + 60


def ftp_record(output: str) -> dict[str, Any] | None:
    """The ftp_client's result record (its last non-event line) with its events, or None."""
    lines = read_json_lines(output)
    records = [x for x in lines if "event" not in x]
    return {**records[-1], "events": [x for x in lines if "event" in x]} if records else None


def run_ftp(lab: Lab, client: str, server: str, downloads: list[FtpDownload]) -> list[dict[str, Any]]:
    """Run the downloads at once from `client`; each one's result record (ftp_client) with
    its events (`events`) and its download (`download`)."""

    def one(download: FtpDownload) -> dict[str, Any]:
        out = lab.run(client, download.argv(server), timeout=download.budget())
        record = ftp_record(out)
        if record is None:
            raise LabError(f"ftp_client {download.mode} on {client} reported nothing: {out[-300:]}")
        return {**record, "download": asdict(download)}

    with ThreadPoolExecutor(max_workers=max(1, len(downloads))) as pool:
        return list(pool.map(one, downloads))


def start_ftp(lab: Lab, client: str, server: str, download: FtpDownload, name: str) -> Proc:
    """Start one download in the background (owned by the case); `finish_ftp` waits for
    it and reads its record."""
    return start_load(lab, client, download.argv(server), name)


def finish_ftp(lab: Lab, proc: Proc, timeout: float) -> dict[str, Any]:
    """Wait (at most `timeout` s) for a download started with `start_ftp` to end, reap it,
    and return its record and events."""

    def parse(output: str) -> dict[str, Any]:
        record = ftp_record(output)
        if record is None:
            raise LabError(f"{proc.name} exited 0 and reported nothing: {output[-300:]}")
        return record

    return finish_load(lab, proc, timeout, parse)


def ftp_tool_argv(
    tool: str, mode: str, url: str, out: str, data_ports: range, timeout: float, address: str
) -> list[str]:
    """The command line of a real FTP client downloading `url` to `out` in `mode`: curl
    (PORT, EPRT, PASV, EPSV) or lftp (PORT, PASV). In active mode it announces `address`
    and a port of `data_ports`; every other port it takes is an ephemeral one."""
    active = f"{data_ports.start}-{data_ports.stop - 1}"
    if tool == "curl":
        argv = ["curl", "-sS", "--max-time", f"{timeout:g}", "-o", out, "-w", "%{response_code}"]
        argv += {
            # curl takes no "-" (the control session's address) with a port range
            "PORT": ["--disable-eprt", "-P", f"{address}:{active}"],
            "EPRT": ["-P", f"{address}:{active}"],
            "PASV": ["--disable-epsv"],
            "EPSV": [],
        }[mode]
        return [*argv, url]
    if tool == "lftp" and mode in ("PORT", "PASV"):
        settings = [
            f"set ftp:passive-mode {'on' if mode == 'PASV' else 'off'}",
            "set ftp:prefer-epsv off",
            f"set ftp:port-range {active}",
            f"set net:timeout {timeout:g}",
            "set net:max-retries 1",
            "set net:persist-retries 0",
            f"get {url.rsplit('/', 1)[1]} -o {out}",
            "bye",
        ]
        return ["lftp", "-e", "; ".join(settings), url.rsplit("/", 1)[0]]
    raise ConfigError(f"{tool}: no FTP mode {mode!r} (curl: PORT, EPRT, PASV, EPSV; lftp: PORT, PASV)")


def run_ftp_tool(
    lab: Lab, client: str, tool: str, mode: str, url: str, out: str, data_ports: range, timeout: float
) -> dict[str, Any]:
    """Run one download with curl or lftp on `client`; its exit code and what it printed."""
    argv = ftp_tool_argv(tool, mode, url, out, data_ports, timeout, lab.ip(client))
    try:
        text = lab.run(client, argv, timeout=4 * timeout + 30)
        code = 0
    except CommandError as exc:
        text, code = exc.output, exc.rc
    return {"tool": tool, "mode": mode, "exit": code, "output": text.strip()[-300:], "argv": argv}
