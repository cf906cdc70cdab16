"""Reset-at-expiry agent: runs in a firewall's namespace.

When an ESTABLISHED session expires in conntrack, send an RST to each end so that both
applications learn at once instead of hanging. Linux accepts an RST only with exactly the
next expected sequence number (RFC 5961), which conntrack does not expose; so the agent
provokes each end with an out-of-window ACK, which Linux answers with a duplicate ACK
carrying its own next expected number, and sends the RST with that number. The agent's
packets carry a mark the ruleset exempts from conntrack. Sessions of either family: an
IPv6 session's probes and RSTs go out of an IPv6 raw socket, the same way.

Linux reaps expired entries lazily (a GC worker that may run seconds late, or the next
packet's lookup), so no DESTROY event comes at the timeout itself. A real firewall expires
on a timer; to behave like one the agent sweeps the table with a dump every --sweep
seconds, and a dump evicts what has expired, so expiry is seen within that period.

Prints one JSON line per event: ready, reset, and what could not be reset and why.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import select
import signal
import socket
import subprocess
import sys
import threading
import time

from lab import conntrack
from lab.apps.events import emit
from lab.capture import EVENT_BUFFER, event_marker
from lab.packets import ETH_P_IP, ETH_P_IPV6, TcpSegment, build_tcp, parse_ethernet_tcp

SO_MARK = 36
PROBE_TIMEOUT = 1.0


def route_dev(address: str) -> str:
    out = subprocess.run(
        ["ip", "-o", "route", "get", address], capture_output=True, text=True, check=True
    ).stdout
    words = out.split()
    return words[words.index("dev") + 1]


def raw_sender(family: int, mark: int) -> socket.socket:
    """A raw socket that sends whole IP packets of `family` (IPPROTO_RAW: the header is
    ours, IPv6's too), each carrying the firewall mark `mark`."""
    tx = socket.socket(family, socket.SOCK_RAW, socket.IPPROTO_RAW)
    tx.setsockopt(socket.SOL_SOCKET, SO_MARK, mark)
    return tx


def probe_and_reset(tx: socket.socket, a: tuple[str, int], b: tuple[str, int]) -> dict[str, object]:
    """Provoke both ends of the A<->B session, then RST each with its expected number
    (`tx`: a raw sender of the session's family)."""
    ends = {a: b, b: a}
    ethertype = ETH_P_IPV6 if tx.family == socket.AF_INET6 else ETH_P_IP
    sniffers = {}
    for end in ends:
        rx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ethertype))
        rx.bind((route_dev(end[0]), 0))
        sniffers[rx] = end
    try:
        for end, peer in ends.items():
            # Far outside any window: the end answers with an ACK of its rcv_nxt.
            probe = TcpSegment(peer[0], end[0], peer[1], end[1], random.getrandbits(32), 0, "A", 0)
            tx.sendto(build_tcp(probe), (end[0], 0))
        answers: dict[tuple[str, int], TcpSegment] = {}
        deadline = time.monotonic() + PROBE_TIMEOUT
        while len(answers) < len(ends) and time.monotonic() < deadline:
            ready, _, _ = select.select(list(sniffers), [], [], max(0.0, deadline - time.monotonic()))
            for rx in ready:
                seg = parse_ethernet_tcp(rx.recv(65535))
                end = sniffers[rx]
                peer = ends[end]
                if seg and (seg.src, seg.sport, seg.dst, seg.dport) == (*end, *peer):
                    answers[end] = seg
    finally:
        for rx in sniffers:
            rx.close()
    result: dict[str, object] = {}
    for end, peer in ends.items():
        seg = answers.get(end)
        label = f"{end[0]}:{end[1]}"
        if seg is None:
            result[label] = "no answer"
        elif "R" in seg.flags:
            result[label] = "no socket (answered RST)"
        else:
            rst = TcpSegment(peer[0], end[0], peer[1], end[1], seg.ack, 0, "R", 0)
            tx.sendto(build_tcp(rst), (end[0], 0))
            result[label] = {"rst_seq": seg.ack}
    return result


def insert_markers(ready: threading.Event) -> None:
    for attempt in range(50):
        marker = event_marker(attempt)
        subprocess.run(["conntrack", "-I", *marker, "--timeout", "5"], capture_output=True)
        ready.wait(0.1)
        subprocess.run(["conntrack", "-D", *marker], capture_output=True)
        if ready.is_set():
            return


def sweep(period: float, stop: threading.Event) -> None:
    """Dump the table every `period` s: the dump evicts expired entries (DESTROY events)."""
    while not stop.wait(period):
        subprocess.run(["conntrack", "-L", "-p", "tcp"], capture_output=True)


def die_with_parent() -> None:
    """In a child: end it when the agent ends, even by SIGKILL (prctl PR_SET_PDEATHSIG)."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mark", type=int, required=True, help="firewall mark of the agent's packets")
    parser.add_argument("--sweep", type=float, default=0.2, help="seconds between table sweeps")
    args = parser.parse_args(argv)

    senders = {4: raw_sender(socket.AF_INET, args.mark)}
    with contextlib.suppress(OSError):  # a kernel without IPv6: its sessions cannot come
        senders[6] = raw_sender(socket.AF_INET6, args.mark)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    events = subprocess.Popen(
        ["conntrack", "-E", "-o", "timestamp", "--buffer-size", str(EVENT_BUFFER)],
        stdout=subprocess.PIPE,
        text=True,
        bufsize=1,
        preexec_fn=die_with_parent,
    )
    assert events.stdout is not None
    # Ready once the event stream is live: a marker entry of our own shows up in it.
    # conntrack -E subscribes a moment after it starts, so markers go in until one shows.
    ready = threading.Event()
    threading.Thread(target=insert_markers, args=(ready,), daemon=True).start()
    last_state: dict[tuple[object, ...], str] = {}
    stop = threading.Event()
    threading.Thread(target=sweep, args=(args.sweep, stop), daemon=True).start()
    try:
        for line in events.stdout:
            session = conntrack.parse_line(line)
            if session is None or session.proto != "tcp":
                marker = session is not None and session.src == "127.0.0.1" and session.event == "NEW"
                if marker and not ready.is_set():
                    ready.set()
                    emit("ready")
                continue
            if session.event in ("NEW", "UPDATE") and session.state:
                last_state[session.key] = session.state
            elif session.event == "DESTROY":
                state = last_state.pop(session.key, None)
                if state != "ESTABLISHED" or session.sport is None or session.dport is None:
                    continue
                a = (session.src, session.sport)
                b = (session.dst, session.dport)
                emit("expired", session=f"{a[0]}:{a[1]}->{b[0]}:{b[1]}", expired_at=session.stamp)
                tx = senders[6 if ":" in a[0] else 4]
                emit("reset", session=f"{a[0]}:{a[1]}->{b[0]}:{b[1]}", ends=probe_and_reset(tx, a, b))
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        events.terminate()
        events.wait(5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
