"""Impairment relay: forwards every frame between two interfaces of its own namespace,
delayed, jittered, lost, duplicated or reordered as `lab.impair.Direction` decides.

Transparent at layer 2: packet sockets (ETH_P_ALL) on both interfaces, no address, IPv6
off, checksum offload and GRO off (frames pass as they are, never merged). Impairments can
change while it runs: a JSON datagram on the control socket ({"a": {...}, "b": {...}}, the
direction named by the interface frames arrive on) replaces them. Prints JSON events:
ready, impairment (each change), stats (on exit).
"""

from __future__ import annotations

import argparse
import json
import random
import select
import socket
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

from lab.apps.events import emit, stop_on_sigterm
from lab.config import Impairment
from lab.impair import Alarm, Direction, Wheel

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4


def quiet(intf: str) -> None:
    """The interface carries frames only: no IPv6 of its own, nothing merged or offloaded."""
    subprocess.run(["sysctl", "-qw", f"net.ipv6.conf.{intf}.disable_ipv6=1"], check=False)
    subprocess.run(["ethtool", "-K", intf, "tx", "off", "gro", "off", "gso", "off"], capture_output=True)
    subprocess.run(["ip", "link", "set", intf, "promisc", "on", "up"], check=True)


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
        intf = getattr(args, side)
        quiet(intf)
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        sock.bind((intf, 0))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        sock.setblocking(False)
        socks[side] = sock
    out = {"a": socks["b"], "b": socks["a"]}  # what arrives on a leaves by b
    directions = {side: Direction(rng=random.Random(args.seed)) for side in socks}

    def configure(text: str) -> None:
        for side, values in json.loads(text).items():
            directions[side].impairment = Impairment(**values)
            emit("impairment", side=side, **asdict(directions[side].impairment))

    configure(args.impairment)
    control = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    Path(args.control).unlink(missing_ok=True)
    control.bind(args.control)
    control.setblocking(False)
    wheel: Wheel[tuple[str, bytes]] = Wheel()
    stats = {side: {"received": 0, "sent": 0, "lost": 0} for side in socks}
    by_fd = {s.fileno(): side for side, s in socks.items()}
    # select(), not epoll: its timeout has microseconds, epoll's milliseconds (a frame
    # would leave up to 1 ms late).
    watched = [*socks.values(), control]
    alarm = Alarm()
    emit("ready", a=args.a, b=args.b)
    try:
        while True:
            timeout = alarm.timeout(wheel.next_time(), time.monotonic())
            readable, _, _ = select.select(watched, [], [], timeout)
            alarm.woke(time.monotonic(), by_timer=not readable)
            for fd in (r.fileno() for r in readable):
                if fd == control.fileno():
                    configure(control.recv(65536).decode())
                    continue
                side = by_fd[fd]
                sock = socks[side]
                while True:
                    try:
                        frame, address = sock.recvfrom(65536)
                    except BlockingIOError:
                        break
                    if address[2] == PACKET_OUTGOING:
                        continue  # our own send, seen again
                    stats[side]["received"] += 1
                    plan = directions[side].plan(time.monotonic())
                    if not plan:
                        stats[side]["lost"] += 1
                    for when in plan:
                        wheel.add(when, (side, frame))
            for side, frame in wheel.due(time.monotonic()):
                try:
                    out[side].send(frame)
                    stats[side]["sent"] += 1
                except OSError:
                    stats[side]["lost"] += 1
    except SystemExit:
        pass
    finally:
        emit("stats", early_ms=round(alarm.early * 1000, 3), **stats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
