"""Impairment relay: forwards every frame between two interfaces of its own namespace,
delayed, jittered, lost, duplicated or reordered as `lab.impair.Direction` decides.

Transparent at layer 2: packet sockets (ETH_P_ALL) on both interfaces, no address, IPv6
off, checksum offload and GRO off (frames pass as they are, never merged). Impairments can
change while it runs: a JSON datagram on the control socket ({"a": {...}, "b": {...}}, the
direction named by the interface frames arrive on) replaces them. Prints JSON events:
ready, impairment (each change), stats (on exit; `dropped`: frames the kernel dropped
because the relay's receive queue was full; `late_max_ms`: the most a due frame waited).

The cost per frame bounds the element's packets/s on a small VM, so a direction with no
impairment forwards each frame as it is read, from one reused buffer, without the timing
wheel; and a busy socket is read a batch at a time, the due frames sent between batches,
so frames leave as spread out as they came (a burst would overflow the next hop's queue).
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import select
import socket
import struct
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

from lab.apps.events import emit, stop_on_sigterm
from lab.config import Impairment
from lab.impair import Alarm, Direction, Wheel

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_STATISTICS = 6
PACKET_IGNORE_OUTGOING = 23  # Linux 4.20: the socket never sees frames sent on its interface
BATCH = 64  # frames read from one socket before the due ones are sent
FRAME_MAX = 65536


def quiet(intf: str) -> None:
    """The interface carries frames only: no IPv6 of its own, nothing merged or offloaded."""
    subprocess.run(["sysctl", "-qw", f"net.ipv6.conf.{intf}.disable_ipv6=1"], check=False)
    subprocess.run(["ethtool", "-K", intf, "tx", "off", "gro", "off", "gso", "off"], capture_output=True)
    subprocess.run(["ip", "link", "set", intf, "promisc", "on", "up"], check=True)


def packet_socket(intf: str) -> socket.socket:
    """A non-blocking packet socket that reads every frame arriving on `intf` and none it
    sends (so a plain recv() suffices: no address to build per frame)."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)  # protocol 0: nothing until bound
    sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.bind((intf, ETH_P_ALL))
    sock.setblocking(False)
    return sock


def dropped(sock: socket.socket) -> int:
    """Frames the kernel dropped on `sock`'s full receive queue (struct tpacket_stats)."""
    _packets, drops = struct.unpack("II", sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
    return int(drops)


class Relay:
    """Both directions: what arrives on side a leaves by side b, and the other way."""

    def __init__(self, socks: dict[str, socket.socket], seed: int | None) -> None:
        self.socks = socks
        self.out = {"a": socks["b"], "b": socks["a"]}
        self.directions = {side: Direction(rng=random.Random(seed)) for side in socks}
        self.wheel: Wheel[tuple[str, bytes]] = Wheel()
        self.stats = {side: {"received": 0, "sent": 0, "lost": 0} for side in socks}
        self.late = 0.0  # s: the most a due frame waited for the relay
        self.buffer = bytearray(FRAME_MAX)
        self.view = memoryview(self.buffer)

    def configure(self, text: str) -> None:
        """New impairments from a control datagram ({"a": {...}, "b": {...}})."""
        for side, values in json.loads(text).items():
            self.directions[side].impairment = Impairment(**values)
            emit("impairment", side=side, **asdict(self.directions[side].impairment))

    def read(self, side: str) -> None:
        """Up to BATCH frames from `side`: forwarded at once if its direction has no
        impairment, else planned on the wheel."""
        sock, out, direction, wheel = self.socks[side], self.out[side], self.directions[side], self.wheel
        passes = not direction.impairment.active
        recv_into, view = sock.recv_into, self.view
        received = sent = lost = 0
        for _ in range(BATCH):
            try:
                size = recv_into(view)
            except BlockingIOError:
                break
            received += 1
            if passes:
                due = wheel.next_time()
                if due is not None and due <= time.monotonic():
                    self.send_due(time.monotonic())  # frames due before this one leave first
                try:
                    out.send(view[:size])
                    sent += 1
                except OSError:
                    lost += 1
                continue
            plan = direction.plan(time.monotonic())
            if not plan:
                lost += 1
                continue
            frame = bytes(view[:size])
            for when in plan:
                wheel.add(when, (side, frame))
        counts = self.stats[side]
        counts["received"] += received
        counts["sent"] += sent
        counts["lost"] += lost

    def send_due(self, now: float) -> None:
        """Send every planned frame whose time has come (and keep how late the relay got
        to the earliest: a stalled relay, not the network, would show there)."""
        head = self.wheel.next_time()
        if head is None or head > now:
            return
        self.late = max(self.late, now - head)
        for side, frame in self.wheel.due(now):
            try:
                self.out[side].send(frame)
                self.stats[side]["sent"] += 1
            except OSError:
                self.stats[side]["lost"] += 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--a", required=True, help="one interface")
    parser.add_argument("--b", required=True, help="the other interface")
    parser.add_argument("--control", required=True, help="path of the control socket (UNIX datagram)")
    parser.add_argument("--impairment", default="{}", help='initial JSON: {"a": {...}, "b": {...}}')
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    stop_on_sigterm()

    socks = {}
    for side in ("a", "b"):
        quiet(getattr(args, side))
        socks[side] = packet_socket(getattr(args, side))
    relay = Relay(socks, args.seed)
    relay.configure(args.impairment)
    control = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    Path(args.control).unlink(missing_ok=True)
    control.bind(args.control)
    control.setblocking(False)
    by_fd = {s.fileno(): side for side, s in socks.items()}
    # select(), not epoll: its timeout has microseconds, epoll's milliseconds (a frame
    # would leave up to 1 ms late).
    watched = [*socks.values(), control]
    alarm = Alarm()
    # The wheel's tuples would start a collection every few hundred frames; the relay
    # makes no reference cycles worth a pause.
    gc.freeze()
    gc.set_threshold(100_000, 50, 50)
    emit("ready", a=args.a, b=args.b)
    try:
        while True:
            timeout = alarm.timeout(relay.wheel.next_time(), time.monotonic())
            readable, _, _ = select.select(watched, [], [], timeout)
            alarm.woke(time.monotonic(), by_timer=not readable)
            for sock in readable:
                if sock is control:
                    relay.configure(control.recv(65536).decode())
                else:
                    relay.read(by_fd[sock.fileno()])
            relay.send_due(time.monotonic())
    except SystemExit:
        pass
    finally:
        drops = {side: {"dropped": dropped(s)} for side, s in socks.items()}
        stats = {side: {**relay.stats[side], **drops[side]} for side in socks}
        emit("stats", early_ms=round(alarm.early * 1000, 3), late_max_ms=round(relay.late * 1000, 3), **stats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
