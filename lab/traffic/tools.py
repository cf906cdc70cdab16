"""Real tools beside the lab's apps: load from wrk (and its summary as data), and one
hand-made TCP segment (`craft`)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from lab.errors import LabError
from lab.traffic.load import app_argv, cli_options

if TYPE_CHECKING:
    from lab.net import Lab

_WRK_TOTAL = re.compile(r"(\d+) requests in ([\d.]+)(us|ms|s|m)")
_WRK_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_WRK_NON2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")
_WRK_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def send_segment(lab: Lab, node: str, src: str, dst: str, sport: int, dport: int, flags: str = "A") -> None:
    """Send one hand-made TCP segment from `node` (an out-of-state ACK, say)."""
    lab.run(node, app_argv("craft", *cli_options(src=src, dst=dst, sport=sport, dport=dport, flags=flags)))


def parse_wrk(text: str) -> dict[str, Any]:
    """wrk's summary as data: requests, seconds, requests/s, socket errors, non-2xx/3xx."""
    total = _WRK_TOTAL.search(text)
    if total is None:
        raise LabError(f"wrk printed no summary: {text.strip()[-300:]}")
    requests, seconds = int(total[1]), float(total[2]) * _WRK_UNITS[total[3]]
    errors = _WRK_ERRORS.search(text)
    non2xx = _WRK_NON2XX.search(text)
    socket_errors = (
        dict(zip(("connect", "read", "write", "timeout"), map(int, errors.groups()), strict=True))
        if errors
        else {}
    )
    return {
        "requests": requests,
        "seconds": seconds,
        "requests_per_s": requests / seconds if seconds else 0.0,
        "socket_errors": socket_errors,
        "non_2xx": int(non2xx[1]) if non2xx else 0,
    }


def run_wrk(
    lab: Lab,
    node: str,
    url: str,
    seconds: float,
    connections: int,
    ports: range,
    headers: tuple[str, ...] = (),
) -> dict[str, Any]:
    """wrk (one thread) from `node` for `seconds` with `connections` kept open; its
    connections take their source ports from `ports` (the node's ephemeral range, for the
    run). With "Connection: close" in `headers` every request is a new connection."""
    first, last = ports.start, ports.stop - 1
    lab.run(node, ["sysctl", "-qw", f"net.ipv4.ip_local_port_range={first} {last}"])
    try:
        argv = ["wrk", "-t", "1", "-c", str(connections), "-d", f"{seconds:g}s", "--timeout", "2s"]
        for header in headers:
            argv += ["-H", header]
        out = lab.run(node, [*argv, url], timeout=seconds + 30)
    finally:
        lab.run(node, ["sysctl", "-qw", "net.ipv4.ip_local_port_range=32768 60999"])
    return {**parse_wrk(out), "connections": connections, "url": url}
