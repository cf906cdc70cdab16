"""What every lab app shares: its output (JSON lines on stdout) and how its connections end.

- `emit`: an event, `{"event": ..., "t": <wall clock>, ...}`, one line, flushed at once so
  a harness reading the log sees it while the app runs.
- `report`: a result record (what a client app experienced), one line, no event name.
- `connect`: a client connection from a chosen source port, so each case of a suite can
  own a block of ports and its captures can be checked to hold only its own flows.
- `abort`: end a connection with RST and no TCP state left behind, so nothing of a case
  (retransmissions, FIN, TIME_WAIT) leaks into the traffic of a later case.
- `stop_on_sigterm`: SIGTERM raises SystemExit(0), so the app's `finally` blocks run
  (and abort its connections) and it exits 0 when the harness stops it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

LINGER_ABORT = struct.pack("ii", 1, 0)  # struct linger {l_onoff = 1, l_linger = 0}


_OUT = threading.Lock()


def _line(text: str) -> None:
    # One write per line, under a lock: print() writes the text and its newline apart,
    # so two threads printing at once could put two events on one line.
    with _OUT:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()


def raise_open_files() -> None:
    """Lift the soft limit of open files to the hard one: an app holding many sessions
    needs a descriptor for each."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def emit(event: str, **fields: object) -> None:
    """Print one event line: its name, the wall-clock time, then `fields`."""
    _line(json.dumps({"event": event, "t": time.time(), **fields}))


def report(record: dict[str, Any]) -> None:
    """Print one result record (the harness reads it as the app's last line)."""
    _line(json.dumps(record))


def connect(server: str, port: int, sport: int = 0, timeout: float | None = None) -> socket.socket:
    """A TCP connection to `server`:`port` (IPv4 or IPv6) from source port `sport` (0: the
    kernel picks); SO_REUSEADDR, so a port a previous case left in TIME_WAIT can be bound again."""
    six = ":" in server
    sock = socket.socket(socket.AF_INET6 if six else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("::" if six else "0.0.0.0", sport))
        sock.settimeout(timeout)
        sock.connect((server, port))
    except BaseException:
        abort(sock)
        raise
    return sock


def abort(sock: socket.socket) -> None:
    """Close `sock` with SO_LINGER (on, 0): the kernel sends RST and forgets the connection
    at once (no FIN, no retransmission of unacknowledged data, no TIME_WAIT)."""
    # Already closed or reset: then a plain close sends nothing either.
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_ABORT)
    sock.close()


def _exit(signum: int, frame: FrameType | None) -> None:
    # A second SIGTERM must not interrupt the cleanup the first one started.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise SystemExit(0)


def stop_on_sigterm() -> None:
    """Make SIGTERM raise SystemExit(0) in the main thread (cleanup runs, exit status 0)."""
    signal.signal(signal.SIGTERM, _exit)


def probe_parser(doc: str | None, idle_help: str) -> argparse.ArgumentParser:
    """The options every idle probe takes: the server, its port, the source port, the idle time."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--sport", type=int, default=0, help="source port (0: the kernel picks)")
    parser.add_argument("--idle", type=float, required=True, help=idle_help)
    return parser


def probe_record(sock: socket.socket, args: argparse.Namespace, **fields: object) -> dict[str, object]:
    """A probe's result record as it starts: the socket it used, the server, the idle time
    and the app's own timeout, and `fields`."""
    local = sock.getsockname()
    return {
        "client": f"{local[0]}:{local[1]}",
        "server": f"{args.server}:{args.port}",
        "idle": args.idle,
        "app_timeout": args.app_timeout,
        **fields,
    }


BATCH = "--batch"  # then a JSON list of probes' argument lists: all at once in this process


def run_probe(
    parser: argparse.ArgumentParser,
    run: Callable[[argparse.Namespace], dict[str, Any]],
    argv: list[str] | None,
) -> int:
    """A probe's main: parse, end cleanly on SIGTERM, print its one result. With `--batch
    <JSON list of argument lists>`: every probe at once, each in a thread of its own, its
    result (or `batch_error`, what it exited with) printed as it ends, with `batch`, its index. A
    round of probes costs one interpreter's start instead of one each (a Python start here
    takes about 60 ms of CPU; 144 at once kept 2 cores busy for seconds)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] != [BATCH]:
        args = parser.parse_args(argv)
        stop_on_sigterm()
        report(run(args))
        return 0
    if len(argv) != 2:
        parser.error(f"{BATCH} takes one JSON list of argument lists")
    batch = json.loads(argv[1])
    stop_on_sigterm()

    def one(index: int, probe_argv: list[str]) -> None:
        try:
            record = run(parser.parse_args(probe_argv))
        except SystemExit as exc:
            record = {"batch_error": f"exited: {exc.code}"}
        except Exception as exc:  # the probe's failure is its result
            record = {"batch_error": f"{type(exc).__name__}: {exc}"}
        report({**record, "batch": index})

    threads = [threading.Thread(target=one, args=(i, a), daemon=True) for i, a in enumerate(batch)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return 0
