"""Many short TCP sessions: connect, exchange a line, close. One JSON line per session.

A session is `opened` when connect() succeeded and `data_ok` when the echo came back.
A session that failed (timeout, reset, no echo) is aborted (RST), so none of its
retransmissions outlive it; one that succeeded closes normally (FIN), or with `--end
reset` is aborted too, after `--hold` seconds idle. With `--rate`, sessions start at that
pace (a steady load beside an attack) instead of as fast as `--concurrency` allows.
"""

from __future__ import annotations

import argparse
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from lab.apps.events import abort, raise_open_files, report, stop_on_sigterm


@dataclass(frozen=True)
class Ending:
    """How a session that got its echo ends: idle for `hold` seconds, then closed (FIN)
    or aborted (RST)."""

    hold: float = 0.0
    reset: bool = False


def one(
    server: str, port: int, timeout: float, lock: threading.Lock, sport: int = 0, ending: Ending = Ending()
) -> None:
    record: dict[str, object] = {
        "server": f"{server}:{port}",
        "opened": False,
        "data_ok": False,
        "timeout": timeout,
    }
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
        connected = time.monotonic()
        record["connect_time"] = connected - start
        sock.sendall(b"session\n")
        data = b""
        while b"\n" not in data:
            chunk = sock.recv(100)
            if not chunk:
                break
            data += chunk
        record["data_ok"] = data.startswith(b"session")
        record["echo_time"] = time.monotonic() - connected  # each wait is bounded by the timeout
        if record["data_ok"] and ending.hold:
            record["held"] = True  # idle now: what a timeout may take away
            time.sleep(ending.hold)
    except OSError as exc:
        record["error"] = "timeout" if isinstance(exc, TimeoutError) else exc.__class__.__name__
    finally:
        if record["data_ok"] and not ending.reset:
            sock.close()
        else:
            abort(sock)
    record["elapsed"] = time.monotonic() - start
    record["wall_end"] = time.time()
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
    parser.add_argument("--rate", type=float, default=0.0, help="sessions started per second (0: at once)")
    parser.add_argument("--hold", type=float, default=0.0, help="idle seconds after the echo")
    parser.add_argument("--end", choices=("close", "reset"), default="close", help="FIN or RST at the end")
    args = parser.parse_args(argv)
    if args.hold:
        raise_open_files()
        threading.stack_size(256 * 1024)  # a held session is a thread: many of them
    ending = Ending(args.hold, args.end == "reset")
    stop_on_sigterm()
    targets = [(s.rsplit(":", 1)[0], int(s.rsplit(":", 1)[1])) for s in args.server]
    lock = threading.Lock()
    pool = ThreadPoolExecutor(max_workers=args.concurrency)
    begin = time.monotonic()
    try:
        for i in range(args.count):
            if args.rate:
                time.sleep(max(0.0, begin + i / args.rate - time.monotonic()))
            server, port = targets[i % len(targets)]
            sport = args.first_port + i if args.first_port else 0
            pool.submit(one, server, port, args.timeout, lock, sport, ending)
        pool.shutdown(wait=True)
    finally:
        # Stopped (SIGTERM): no new session starts; those under way end within --timeout.
        pool.shutdown(wait=True, cancel_futures=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
