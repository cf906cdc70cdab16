"""Many short TCP sessions: connect, exchange a line, close. One JSON line per session.

A session is `opened` when connect() succeeded and `data_ok` when the echo came back.
A session that failed (timeout, reset, no echo) is aborted (RST), so none of its
retransmissions outlive it; one that succeeded closes normally.
"""

from __future__ import annotations

import argparse
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from lab.apps.events import abort, report, stop_on_sigterm


def one(server: str, port: int, timeout: float, lock: threading.Lock, sport: int = 0) -> None:
    record: dict[str, object] = {"server": f"{server}:{port}", "opened": False, "data_ok": False}
    start = time.monotonic()
    record["wall_start"] = time.time()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("0.0.0.0", sport))
        record["sport"] = sock.getsockname()[1]
        sock.connect((server, port))
        record["opened"] = True
        record["connect_time"] = time.monotonic() - start
        sock.sendall(b"session\n")
        data = b""
        while b"\n" not in data:
            chunk = sock.recv(100)
            if not chunk:
                break
            data += chunk
        record["data_ok"] = data.startswith(b"session")
    except OSError as exc:
        record["error"] = "timeout" if isinstance(exc, TimeoutError) else exc.__class__.__name__
    finally:
        if record["data_ok"]:
            sock.close()
        else:
            abort(sock)
    record["elapsed"] = time.monotonic() - start
    with lock:
        report(record)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--server", action="append", required=True, help="address:port (repeat: round robin)")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=2.0, help="connect and reply timeout (s)")
    parser.add_argument(
        "--first-port",
        type=int,
        default=0,
        help="session i uses source port first-port + i (0: the kernel picks)",
    )
    args = parser.parse_args(argv)
    stop_on_sigterm()
    targets = [(s.rsplit(":", 1)[0], int(s.rsplit(":", 1)[1])) for s in args.server]
    lock = threading.Lock()
    pool = ThreadPoolExecutor(max_workers=args.concurrency)
    try:
        for i in range(args.count):
            server, port = targets[i % len(targets)]
            sport = args.first_port + i if args.first_port else 0
            pool.submit(one, server, port, args.timeout, lock, sport)
        pool.shutdown(wait=True)
    finally:
        # Stopped (SIGTERM): no new session starts; those under way end within --timeout.
        pool.shutdown(wait=True, cancel_futures=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
