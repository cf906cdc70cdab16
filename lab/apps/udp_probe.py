"""UDP lifetime probe: how long a session device keeps a UDP flow open for its answers.

Linux conntrack (and many devices) keep two lifetimes: a flow that has never seen a
reply (nf_conntrack_udp_timeout) and one with traffic both ways that stayed active a
while (nf_conntrack_udp_timeout_stream, after 2 s). The modes probe one each:
- outbound: ONE datagram `push <idle>` and nothing more; the flow is refreshed only from
  inside and never answered before the server's `pushed` comes back <idle> s later;
- bidirectional: `echo <n>` every --interval s for --warmup s, each answered (none
  answered: the outcome is no-path), then `push <idle>`.
The probe then waits idle + app timeout for `pushed` (the server: `udp_server`).

Outcomes: delivered (`pushed` came), lost (it did not), no-path (the server never took
the request: no echo answered, or an ICMP port unreachable for a datagram of the probe).
Prints one JSON object; `learned_after` counts from its last datagram (the push), until
`pushed` came or the probe gave up; `wall_start` is that datagram's wall-clock time.
"""

from __future__ import annotations

import argparse
import errno
import socket
import sys
import time

from lab.apps.events import probe_parser, probe_record, run_probe

MODES = ("outbound", "bidirectional")


def receive(sock: socket.socket, deadline: float) -> bytes | None:
    """The next datagram, or None if the deadline passed first; raises
    ConnectionRefusedError when an ICMP port unreachable came for a datagram sent."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return None
    sock.settimeout(remaining)
    try:
        return sock.recv(65535)
    except TimeoutError:
        return None


def warm_up(sock: socket.socket, warmup: float, interval: float) -> tuple[int, int, float]:
    """Exchange `echo <n>` every `interval` s for `warmup` s: (sent, answered, monotonic
    time of the last datagram sent)."""
    start = time.monotonic()
    end = start + warmup
    sent, last = 0, start
    answered: set[bytes] = set()
    next_send = start
    while (now := time.monotonic()) < end:
        if now >= next_send:
            sock.send(f"echo {sent}".encode())
            last = time.monotonic()
            sent += 1
            next_send += interval
            continue
        data = receive(sock, min(next_send, end))
        words = data.split() if data else []
        if len(words) == 2 and words[0] == b"echo":
            answered.add(words[1])
    return sent, len(answered), last


def wait_pushed(sock: socket.socket, deadline: float) -> bool:
    """Wait until `deadline` for `pushed` (late echo answers are skipped)."""
    while (data := receive(sock, deadline)) is not None:
        if data.strip() == b"pushed":
            return True
    return False


def probe(sock: socket.socket, args: argparse.Namespace) -> dict[str, object]:
    """The warm-up (bidirectional), the push and the wait for its answer, as a result record."""
    result = probe_record(sock, args, mode=args.mode, echoes_sent=0, echoes_answered=0)
    last = time.monotonic()
    result["wall_start"] = time.time()
    try:
        if args.mode == "bidirectional":
            sent, answered, last = warm_up(sock, args.warmup, args.interval)
            result.update(echoes_sent=sent, echoes_answered=answered)
            if not answered:
                result.update(outcome="no-path", learned_after=time.monotonic() - last)
                return result
        sock.send(f"push {args.idle}".encode())
        last = time.monotonic()
        result["wall_start"] = time.time()
        delivered = wait_pushed(sock, last + args.idle + args.app_timeout)
        result["outcome"] = "delivered" if delivered else "lost"
    except ConnectionRefusedError as exc:
        result.update(outcome="no-path", error=errno.errorcode.get(exc.errno or 0, str(exc)))
    result["learned_after"] = time.monotonic() - last
    return result


def run(args: argparse.Namespace) -> dict[str, object]:
    """One probe from its own socket, closed at the end (UDP leaves no state behind)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind(("0.0.0.0", args.sport))
        # Connected: only the server's datagrams are taken, and an ICMP port unreachable
        # for one of ours is reported (ECONNREFUSED) instead of passing unseen.
        sock.connect((args.server, args.port))
        return probe(sock, args)
    finally:
        sock.close()


def positive(text: str) -> float:
    """An argparse type: a number above 0 (a zero interval would send without end)."""
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be above 0, not {text}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = probe_parser(__doc__, "seconds the server waits before `pushed`")
    parser.add_argument("--mode", choices=MODES, required=True)
    parser.add_argument(
        "--app-timeout", type=float, default=2.0, help="seconds to wait for `pushed` beyond the idle time"
    )
    parser.add_argument(
        "--warmup", type=positive, default=2.5, help="bidirectional: seconds of echoes (over 2: a stream)"
    )
    parser.add_argument(
        "--interval", type=positive, default=0.5, help="bidirectional: seconds between echoes"
    )
    return run_probe(parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
