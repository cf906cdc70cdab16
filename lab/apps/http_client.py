"""HTTP requests to a balancer's VIP, one record per request: who answered, how, when.

Each request is a new TCP connection from its own source port (`--first-port` + i), so a
case's flows stay in its port block and each request is a new session to the balancer;
`--keepalive` sends every request over one connection instead (one session). Requests
start at `--rate` per second (0: as fast as `--concurrency` allows). A record names the
server from the answer's X-Served-By header, its status, and the error when it failed.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from lab.apps.events import abort, connect, report, stop_on_sigterm


def request(
    conn: http.client.HTTPConnection, path: str, headers: dict[str, str]
) -> tuple[int, str | None, int, dict[str, str]]:
    conn.request("GET", path, headers=headers)
    response = conn.getresponse()
    body = response.read()
    return response.status, response.getheader("X-Served-By"), len(body), dict(response.getheaders())


def one(args: argparse.Namespace, i: int, headers: dict[str, str], lock: threading.Lock, t0: float) -> None:
    if args.rate:
        time.sleep(max(0.0, t0 + i / args.rate - time.monotonic()))
    sport = args.first_port + i if args.first_port else 0
    record: dict[str, Any] = {
        "i": i,
        "sport": sport,
        "wall_start": time.time(),
        "ok": False,
        "timeout": args.timeout,
    }
    start = time.monotonic()
    sock = None
    try:
        sock = connect(args.server, args.port, sport, args.timeout)
        conn = http.client.HTTPConnection(args.server, args.port, timeout=args.timeout)
        conn.sock = sock
        status, served_by, size, _ = request(conn, args.path, headers)
        record.update(status=status, served_by=served_by, bytes=size, ok=200 <= status < 400)
        sock.close()
        sock = None
    except (OSError, http.client.HTTPException) as exc:
        record["error"] = "timeout" if isinstance(exc, TimeoutError) else exc.__class__.__name__
    finally:
        if sock is not None:
            abort(sock)
    record["elapsed"] = time.monotonic() - start
    with lock:
        report(record)


def keepalive(args: argparse.Namespace, headers: dict[str, str]) -> None:
    """Every request over one connection, `1 / rate` apart; stops at the first failure."""
    sock = connect(args.server, args.port, args.first_port, args.timeout)
    conn = http.client.HTTPConnection(args.server, args.port, timeout=args.timeout)
    conn.sock = sock
    t0 = time.monotonic()
    try:
        for i in range(args.count):
            if args.rate:
                time.sleep(max(0.0, t0 + i / args.rate - time.monotonic()))
            record: dict[str, Any] = {
                "i": i,
                "sport": args.first_port,
                "wall_start": time.time(),
                "timeout": args.timeout,
            }
            start = time.monotonic()
            try:
                status, served_by, size, _ = request(conn, args.path, headers)
                record.update(status=status, served_by=served_by, bytes=size, ok=200 <= status < 400)
            except (OSError, http.client.HTTPException) as exc:
                record.update(ok=False, error=exc.__class__.__name__)
            record["elapsed"] = time.monotonic() - start
            report(record)
            if not record["ok"]:
                return
    finally:
        abort(sock)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--server", required=True, help="the VIP's address")
    parser.add_argument("--port", type=int, default=80)
    parser.add_argument("--path", default="/")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--rate", type=float, default=0.0, help="requests started per second (0: no pacing)")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=2.0)
    parser.add_argument("--first-port", type=int, default=0, help="request i from source port first+i")
    parser.add_argument("--header", action="append", default=[], help="Name: value")
    parser.add_argument("--keepalive", action="store_true", help="all requests over one connection")
    args = parser.parse_args(argv)
    stop_on_sigterm()
    headers = dict(h.split(":", 1) for h in args.header)
    headers = {k.strip(): v.strip() for k, v in headers.items()}
    if args.keepalive:
        keepalive(args, headers)
    else:
        lock, t0 = threading.Lock(), time.monotonic()
        with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
            for i in range(args.count):
                pool.submit(one, args, i, headers, lock, t0)
    sys.stdout.write(json.dumps({"done": True}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
