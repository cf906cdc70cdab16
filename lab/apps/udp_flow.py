"""A UDP flow through a session device, refreshed in a chosen way, then idle: does the
server's answer still get in, and does the server still know the client?

The client (one connected socket, against `udp_server`) first refreshes the flow for
--warmup s, one datagram every --interval s, as --refresh says:
- none: nothing (the push below is the flow's first datagram);
- inside: `keep <n>`, never answered: the flow is refreshed from inside only;
- replied-once: `echo 0`, answered once, then `keep <n>`: answered once, refreshed from
  inside after that (Linux: the reply makes it "seen reply"; a datagram more than 2 s
  after the flow's first one then gives it the stream timeout);
- both: `echo <n>`, each answered: traffic both ways.
Then `push <idle>`: the server answers `pushed` <idle> s later, to the address:port it saw
the push come from. While waiting for it (idle + --app-timeout s) the client may send
`keep <n>` every --keepalive s (an application keepalive, never answered), and once,
--resend-after s after the push, `echo again` (answered by the server to wherever it
came from: behind a NAT that has forgotten the flow, a new mapping).

Outcome: delivered (`pushed` came), lost (it did not), no-path (an echo of the refresh was
never answered, or an ICMP port unreachable came). Prints one JSON object: `learned_after`
counts from the push until `pushed` came or the client gave up, `wall_start` is the push's
wall-clock time; `keepalives` sent; `resent`, `resend_answered_after` (s after the push);
`unasked`: what came while the flow was refreshed from inside, where nothing is answered
(behind a NAT, another host's datagram delivered to this socket: `[wall time, text]`).
"""

from __future__ import annotations

import argparse
import errno
import math
import socket
import sys
import time
from typing import Any

from lab.apps.events import probe_parser, probe_record, run_probe
from lab.apps.udp_probe import positive, receive, warm_up

REFRESHES = ("none", "inside", "replied-once", "both")


def keep_inside(
    sock: socket.socket,
    until: float,
    interval: float,
    sent: int = 0,
    unasked: list[list[object]] | None = None,
) -> int:
    """Send `keep <n>` every `interval` s until `until` (monotonic); answers are not
    expected: any that come are added to `unasked` as [wall time, text]. The number of
    datagrams sent so far."""
    next_send = time.monotonic()
    while (now := time.monotonic()) < until:
        if now >= next_send:
            sock.send(f"keep {sent}".encode())
            sent += 1
            next_send += interval
            continue
        data = receive(sock, min(next_send, until))
        if data is not None and unasked is not None:
            unasked.append([time.time(), data.decode(errors="replace")])
    return sent


def refresh(
    sock: socket.socket, args: argparse.Namespace, unasked: list[list[object]]
) -> tuple[int, int, int]:
    """The warm-up --refresh asks for: (echoes sent, echoes answered, keeps sent); what
    came unasked while keeping it from inside added to `unasked`."""
    end = time.monotonic() + args.warmup
    if args.refresh == "both":
        sent, answered, _ = warm_up(sock, args.warmup, args.interval)
        return sent, answered, 0
    if args.refresh == "replied-once":
        sock.send(b"echo 0")
        data = receive(sock, time.monotonic() + max(args.interval, 1.0))
        answered = int(data is not None and data.strip() == b"echo 0")
        return 1, answered, keep_inside(sock, end, args.interval, unasked=unasked)
    if args.refresh == "inside":
        return 0, 0, keep_inside(sock, end, args.interval, unasked=unasked)
    return 0, 0, 0


def wait_pushed(
    sock: socket.socket, args: argparse.Namespace, pushed_at: float, result: dict[str, Any]
) -> bool:
    """Wait for `pushed` until idle + app timeout after the push, sending the keepalives
    and the resend on their schedule meanwhile; True if `pushed` came (its time in
    `result`, as the resend's answer)."""
    deadline = pushed_at + args.idle + args.app_timeout
    next_keep = pushed_at + args.keepalive if args.keepalive else math.inf
    resend = pushed_at + args.resend_after if args.resend_after else math.inf
    delivered = False
    while (now := time.monotonic()) < deadline:
        if now >= next_keep:
            sock.send(f"keep {result['keepalives']}".encode())
            result["keepalives"] += 1
            next_keep += args.keepalive
            continue
        if now >= resend:
            sock.send(b"echo again")
            result["resent"], resend = True, math.inf
            continue
        if delivered and (not args.resend_after or result["resend_answered_after"] is not None):
            break
        data = receive(sock, min(deadline, next_keep, resend))
        if data is not None and data.strip() == b"pushed" and not delivered:
            delivered = True
            result["learned_after"] = time.monotonic() - pushed_at
        elif data is not None and data.strip() == b"echo again":
            result["resend_answered_after"] = time.monotonic() - pushed_at
    return delivered


def probe(sock: socket.socket, args: argparse.Namespace) -> dict[str, object]:
    """The refresh, the push and the wait for its answer, as a result record."""
    unasked: list[list[object]] = []
    result = probe_record(
        sock,
        args,
        refresh=args.refresh,
        echoes_sent=0,
        echoes_answered=0,
        keeps_sent=0,
        keepalives=0,
        resent=False,
        resend_answered_after=None,
        unasked=unasked,
    )
    pushed_at = time.monotonic()
    result["wall_start"] = time.time()
    try:
        sent, answered, keeps = refresh(sock, args, unasked)
        result.update(echoes_sent=sent, echoes_answered=answered, keeps_sent=keeps)
        if sent and not answered:
            result.update(outcome="no-path", learned_after=time.monotonic() - pushed_at)
            return result
        sock.send(f"push {args.idle}".encode())
        pushed_at = time.monotonic()
        result["wall_start"] = time.time()
        delivered = wait_pushed(sock, args, pushed_at, result)
        result["outcome"] = "delivered" if delivered else "lost"
        if not delivered:
            result["learned_after"] = time.monotonic() - pushed_at
    except ConnectionRefusedError as exc:
        result.update(
            outcome="no-path",
            error=errno.errorcode.get(exc.errno or 0, str(exc)),
            learned_after=time.monotonic() - pushed_at,
        )
    return result


def run(args: argparse.Namespace) -> dict[str, object]:
    """One flow from its own socket, closed at the end."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind(("0.0.0.0", args.sport))
        sock.connect((args.server, args.port))  # only the server's datagrams; ICMP errors reported
        return probe(sock, args)
    finally:
        sock.close()


def main(argv: list[str] | None = None) -> int:
    parser = probe_parser(__doc__, "seconds the server waits before `pushed`")
    parser.add_argument("--refresh", choices=REFRESHES, required=True)
    parser.add_argument(
        "--app-timeout", type=float, default=1.0, help="seconds to wait for `pushed` beyond the idle time"
    )
    parser.add_argument("--warmup", type=float, default=2.5, help="seconds of the refresh before the push")
    parser.add_argument("--interval", type=positive, default=0.5, help="seconds between refresh datagrams")
    parser.add_argument(
        "--keepalive",
        type=float,
        default=0.0,
        help="send `keep <n>` every this many s after the push (0: never)",
    )
    parser.add_argument(
        "--resend-after",
        type=float,
        default=0.0,
        help="send `echo again` this many s after the push (0: never)",
    )
    return run_probe(parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
