"""HTTP through balancers: the lab's server (`http_server`) and what it saw, the lab's
client (`http_client`: one record per request) and one request with curl."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from lab.errors import CommandError, LabError
from lab.events import proc_events, read_json_lines
from lab.traffic.load import (
    Records,
    app_argv,
    field_options,
    finish_measured,
    listening,
    run_load,
    start_load,
)

if TYPE_CHECKING:
    from lab.net import Lab
    from lab.procs import Proc


def start_http_server(lab: Lab, node: str, name: str, port: int = 80, tls: str | None = None) -> Proc:
    """A real server on `node` answering as `name` (see lab.apps.http_server), HTTPS with
    the PEM `tls`; ready when it listens. Ended with the case."""
    argv = app_argv("http_server", "--name", name, "--port", str(port)) + (["--tls", tls] if tls else [])
    return lab.start(node, argv, f"http-{name}", ready=listening(), daemon=True)


def http_log(proc: Proc) -> list[dict[str, Any]]:
    """The requests a server saw (its `request` events), in order."""
    return proc_events(proc, "request")


@dataclass(frozen=True)
class HttpLoad:
    """HTTP requests from one client to `server`:`port`: `count` of them, each a new
    connection from source port `first_port` + i (or all over one, `keepalive`), started
    `rate` per second (0: as fast as `concurrency` allows)."""

    app: ClassVar[str] = "http_client"
    server: str
    count: int
    first_port: int
    port: int = 80
    path: str = "/"
    rate: float = 0.0
    concurrency: int = 4
    timeout: float = 2.0
    keepalive: bool = False
    headers: tuple[str, ...] = ()

    def argv(self) -> list[str]:
        argv = app_argv(
            self.app,
            *field_options(
                self, "server", "port", "path", "count", "rate", "concurrency", "timeout", "first_port"
            ),
        )
        for header in self.headers:
            argv += ["--header", header]
        return argv + (["--keepalive"] if self.keepalive else [])

    def budget(self) -> float:
        """How long the whole load may take (s), generously."""
        paced = self.count / self.rate if self.rate else 0.0
        return paced + self.count * (self.timeout + 0.5) / max(1, self.concurrency) + 30

    def parse(self, output: str) -> list[dict[str, Any]]:
        return http_records(output)


def http_records(output: str) -> list[dict[str, Any]]:
    """The http_client's records (one per request, in start order); raises without its
    closing line (it was cut short)."""
    rows = read_json_lines(output)
    if not rows or not rows[-1].get("done"):
        raise LabError(f"http_client ended early: {output.strip()[-300:]}")
    return sorted((r for r in rows if "i" in r), key=lambda r: r["i"])


def run_http(lab: Lab, loads: dict[str, HttpLoad]) -> dict[str, Records]:
    """Run each client's load at once (client node -> load); each client's records and margin."""

    def one(item: tuple[str, HttpLoad]) -> tuple[str, Records]:
        client, load = item
        return client, run_load(lab, client, load)

    with ThreadPoolExecutor(max_workers=max(1, len(loads))) as pool:
        return dict(pool.map(one, loads.items()))


def start_http(lab: Lab, client: str, load: HttpLoad, name: str) -> Proc:
    """Start one client's load in the background (owned by the case); `finish_http` reads it."""
    return start_load(lab, client, load.argv(), name)


def finish_http(lab: Lab, proc: Proc, timeout: float) -> Records:
    """Wait (at most `timeout` s: the load's budget) for a load started with `start_http`
    to end; its records and margin."""
    return finish_measured(lab, proc, timeout, http_records)


def curl(lab: Lab, node: str, url: str, ports: range, *options: str, timeout: float = 5.0) -> dict[str, Any]:
    """One request with curl from `node`, its local port from `ports`: what curl reports
    (`-w %{json}`: http_code, size_download, exitcode, ...) and the response's headers
    (lower-case names; the last response's when curl follows redirects)."""
    argv = ["curl", "-sS", "--max-time", f"{timeout:g}", "--local-port", f"{ports.start}-{ports.stop - 1}"]
    argv += ["-o", "/dev/null", "-D", "-", "-w", "\\n%{json}\\n", *options, url]
    try:
        out = lab.run(node, argv, timeout=timeout + 10)
    except CommandError as exc:
        out = exc.output
    # curl's own report, not a lab app's log: a failure's output comes stripped, so its
    # last line counts without a newline
    lines = out.splitlines()
    report = next((json.loads(line) for line in reversed(lines) if line.startswith("{")), None)
    if report is None:
        raise LabError(f"curl on {node} reported nothing: {out.strip()[-300:]}")
    headers: dict[str, str] = {}
    for line in lines:
        if line.startswith("HTTP/"):
            headers = {}  # a new response (after a redirect or a 100)
        elif ":" in line and not line.startswith("{"):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return {**report, "headers": headers}
