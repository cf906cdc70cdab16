"""Deferral agent (pfsync's `defer`, for conntrackd): runs in a firewall's namespace.

The firewall's rules (lab/render/sync_defer.py) queue, after conntrack has confirmed the
entry (so conntrackd is already copying it or its change to the peer), the SYN of each
new forwarded TCP session and each SYN-ACK. The agent holds a SYN until the peer's agent
acknowledges that the peer's kernel holds the entry (ENTRY: its NEW event), and a SYN-ACK
whose SYN crossed the peer until the peer's entry has seen the reply (REPLIED: the event
whose status says so): else the SYN-ACK reaches the client first, and the client's next
packet, crossing the peer, finds the peer's entry still waiting for a reply (invalid:
dropped, and the client waits a retransmission). A SYN-ACK whose SYN crossed this
firewall goes at once. Events are read from ctnetlink directly (no `conntrack -E` in
between). The wait is bounded (`--timeout`: then it goes), nothing waits while the peer
is silent (`--dead`: no datagram from it for that long), and at most `--limit` wait (a
new one beyond lets the oldest go). Each agent tells its peer of every stage its own
kernel reaches per entry (acknowledgements), and says hello every `--hello` seconds.

An acknowledgement is one datagram; one lost (the link is a network) would leave its
packet to the timeout. So a packet still held after `--retry` seconds asks again (a
query, repeated every `--retry`), and an agent answers a query for any entry whose NEW
event it has seen in the last REMEMBER seconds.

Prints one JSON line per event: ready; `released` per packet (packet: SYN or SYN-ACK;
why: ack, own, timeout, overflow, peer down; held_ms, from the agent reading it to its
verdict; confirmed: this kernel's own event for it was read while it waited); `counters`
at exit.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import select
import socket
import struct
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from lab.apps.events import emit, stop_on_sigterm
from lab.capture import EVENT_BUFFER

Key = tuple[str, int, str, int]  # the original direction: src, sport, dst, dport
NETLINK_NETFILTER, SO_RCVBUFFORCE = 12, 33
REASONS = ("ack", "own", "timeout", "overflow", "peer down")
REMEMBER = 2.0  # s: an acknowledgement, event or own SYN kept for a packet read after it
ENTRY, REPLIED = 1, 2  # what a kernel holds: the entry; the entry having seen its reply
SYN, ACK = 0x02, 0x10


def session_name(key: Key) -> str:
    return f"{key[0]}:{key[1]}->{key[2]}:{key[3]}"


def packet_key(payload: bytes) -> tuple[Key, int] | None:
    """A queued IPv4 TCP SYN or SYN-ACK: its session's original direction (a SYN-ACK's
    reversed) and what the peer must hold before it goes; None for anything else."""
    if len(payload) < 20 or payload[0] >> 4 != 4 or payload[9] != 6:
        return None
    ihl = (payload[0] & 0x0F) * 4
    if len(payload) < ihl + 14:
        return None
    src, dst = socket.inet_ntoa(payload[12:16]), socket.inet_ntoa(payload[16:20])
    sport = int.from_bytes(payload[ihl : ihl + 2], "big")
    dport = int.from_bytes(payload[ihl + 2 : ihl + 4], "big")
    flags = payload[ihl + 13] & (SYN | ACK)
    if flags == SYN:
        return ((src, sport, dst, dport), ENTRY)
    if flags == SYN | ACK:
        return ((dst, dport, src, sport), REPLIED)
    return None


# ctnetlink (linux/netfilter/nfnetlink_conntrack.h): the NEW and UPDATE events' groups,
# the message type, the attributes of the original tuple and the status.
NFNLGRP_CONNTRACK_NEW, NFNLGRP_CONNTRACK_UPDATE = 1, 2
CT_NEW = (1 << 8) | 0  # NFNL_SUBSYS_CTNETLINK, IPCTNL_MSG_CT_NEW (both groups)
CTA_TUPLE_ORIG, CTA_STATUS, CTA_TUPLE_IP, CTA_TUPLE_PROTO = 1, 3, 1, 2
CTA_IP_V4_SRC, CTA_IP_V4_DST = 1, 2
CTA_PROTO_NUM, CTA_PROTO_SRC_PORT, CTA_PROTO_DST_PORT = 1, 2, 3
IPS_SEEN_REPLY = 1 << 1
NLMSG_HDR, NFGEN_HDR = 16, 4
EVENT_READ = 1 << 16


def attributes(data: bytes) -> dict[int, bytes]:
    """Netlink attributes (type without its flags -> payload), aligned to 4 bytes."""
    found, at = {}, 0
    while at + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, at)
        if length < 4:
            break
        found[kind & 0x3FFF] = data[at + 4 : at + length]
        at += (length + 3) & ~3
    return found


def entry_events(data: bytes) -> list[tuple[Key, int]]:
    """The IPv4 TCP entries in a datagram of ctnetlink NEW/UPDATE events: each one's
    original tuple and stage (REPLIED once its status says it has seen the reply)."""
    found, at = [], 0
    while at + NLMSG_HDR <= len(data):
        length, kind = struct.unpack_from("=IH", data, at)
        if length < NLMSG_HDR:
            break
        if kind == CT_NEW:
            top = attributes(data[at + NLMSG_HDR + NFGEN_HDR : at + length])
            orig = attributes(top.get(CTA_TUPLE_ORIG, b""))
            ip, proto = attributes(orig.get(CTA_TUPLE_IP, b"")), attributes(orig.get(CTA_TUPLE_PROTO, b""))
            if proto.get(CTA_PROTO_NUM) == b"\x06" and CTA_IP_V4_SRC in ip and CTA_PROTO_SRC_PORT in proto:
                src, dst = socket.inet_ntoa(ip[CTA_IP_V4_SRC]), socket.inet_ntoa(ip[CTA_IP_V4_DST])
                sport = int.from_bytes(proto[CTA_PROTO_SRC_PORT], "big")
                key = (src, sport, dst, int.from_bytes(proto[CTA_PROTO_DST_PORT], "big"))
                status = int.from_bytes(top.get(CTA_STATUS, b"\0\0\0\0"), "big")
                found.append((key, REPLIED if status & IPS_SEEN_REPLY else ENTRY))
        at += (length + 3) & ~3
    return found


def ct_events() -> socket.socket:
    """A socket on this namespace's conntrack NEW and UPDATE events (ctnetlink),
    non-blocking, with a large buffer: straight from the kernel, no `conntrack -E`."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, EVENT_BUFFER)
    groups = (1 << (NFNLGRP_CONNTRACK_NEW - 1)) | (1 << (NFNLGRP_CONNTRACK_UPDATE - 1))
    sock.bind((0, groups))
    sock.setblocking(False)
    return sock


def ack_message(key: Key, stage: int) -> bytes:
    return f"A {stage} {key[0]} {key[1]} {key[2]} {key[3]}".encode()


def query_message(key: Key, stage: int) -> bytes:
    return f"Q {stage} {key[0]} {key[1]} {key[2]} {key[3]}".encode()


HELLO = b"H"


def parse_message(data: bytes) -> tuple[str, int, Key | None]:
    """("A", stage, tuple) for an acknowledgement, ("Q", stage, tuple) for a query,
    ("H", 0, None) for a hello or anything else."""
    w = data.decode(errors="replace").split()
    if len(w) != 6 or w[0] not in ("A", "Q") or w[1] not in ("1", "2") or not (w[3] + w[5]).isdigit():
        return ("H", 0, None)
    return (w[0], int(w[1]), (w[2], int(w[3]), w[4], int(w[5])))


@dataclass
class Held:
    key: Key
    packet: Any  # the queue's packet object (given a verdict by the adapter)
    since: float
    need: int = ENTRY  # what the peer's kernel must hold before it goes
    confirmed: bool = False  # this kernel's own event for it was read while it waited
    asked: float = 0.0  # when the peer was last asked again (0: not yet)

    @property
    def kind(self) -> str:
        return "SYN" if self.need == ENTRY else "SYN-ACK"


@dataclass
class Release:
    """A packet to let go, and why (one of REASONS)."""

    held: Held
    why: str
    at: float

    @property
    def held_s(self) -> float:
        return self.at - self.held.since


@dataclass
class Deferrals:
    """The decisions, without sockets: each method takes `now` and returns the packets to
    let go (tested offline, as controllers/*/logic.py). A SYN waits until the peer's
    kernel holds its entry (ENTRY); a SYN-ACK of a session whose SYN crossed the peer waits
    until the peer's entry has seen the reply (REPLIED), or the client's next packet,
    crossing the peer, would find it still waiting for one there (invalid: dropped)."""

    timeout: float
    limit: int = 128
    dead: float = 1.0
    retry: float = 0.1  # s held before asking the peer again, and between asks
    heard: float = 0.0  # when the peer was last heard from (its agent's datagrams)
    held: dict[Key, list[Held]] = field(default_factory=dict)
    acked: dict[Key, tuple[int, float]] = field(default_factory=dict)  # the peer's stage per key
    seen: dict[Key, tuple[int, float]] = field(default_factory=dict)  # this kernel's stage per key
    own: dict[Key, float] = field(default_factory=dict)  # SYNs that crossed this firewall
    counts: Counter[str] = field(default_factory=Counter)

    def peer_up(self, now: float) -> bool:
        return now - self.heard <= self.dead

    def waiting(self) -> int:
        return sum(len(v) for v in self.held.values())

    def hold(self, key: Key, packet: Any, now: float, need: int = ENTRY) -> list[Release]:
        """A queued packet (`key`: its session's original direction): held, or let go at
        once (its SYN crossed this firewall, the peer is down, or it already acknowledged)."""
        self.counts["queued"] += 1
        item = Held(key, packet, now, need, confirmed=self.seen.get(key, (0, 0.0))[0] >= need)
        if need == ENTRY:
            self.own[key] = now
        elif key in self.own:  # the client's next packet comes here, not to the peer
            return self._release([item], "own", now)
        if not self.peer_up(now):
            return self._release([item], "peer down", now)
        if self.acked.get(key, (0, 0.0))[0] >= need:
            return self._release([item], "ack", now)
        out: list[Release] = []
        if self.waiting() >= self.limit:
            oldest = min((h for v in self.held.values() for h in v), key=lambda h: h.since)
            self._take(oldest)
            out = self._release([oldest], "overflow", now)
        self.held.setdefault(key, []).append(item)
        return out

    def ack(self, key: Key, stage: int, now: float) -> list[Release]:
        """The peer's kernel holds `key` at `stage`: the packets that waited for it go."""
        self.heard = now
        self.acked[key] = (max(stage, self.acked.get(key, (0, 0.0))[0]), now)
        items = self.held.get(key, [])
        ready = [h for h in items if h.need <= stage]
        for item in ready:
            self._take(item)
        return self._release(ready, "ack", now)

    def hello(self, now: float) -> None:
        self.heard = now

    def answers(self, key: Key, stage: int, now: float) -> bool:
        """The peer asks whether this kernel holds `key` at `stage`."""
        self.heard = now
        return self.seen.get(key, (0, 0.0))[0] >= stage

    def local(self, key: Key, stage: int, now: float) -> bool:
        """This kernel's event for `key` at `stage`: True when that is news for the peer
        (a stage above what this kernel showed before)."""
        before = self.seen.get(key, (0, 0.0))[0]
        for item in self.held.get(key, []):
            item.confirmed = item.confirmed or stage >= item.need
        if stage <= before:
            return False
        self.seen[key] = (stage, now)
        return True

    def queries(self, now: float) -> list[tuple[Key, int]]:
        """Held packets whose acknowledgement is late: ask the peer again (once per key)."""
        due = []
        for key, items in self.held.items():
            item = items[0]
            if now - max(item.since, item.asked) >= self.retry:
                item.asked = now
                due.append((key, max(h.need for h in items)))
        self.counts["queries"] += len(due)
        return due

    def expire(self, now: float) -> list[Release]:
        """Packets held `timeout` or longer; forget old acknowledgements and events."""
        late = [h for v in self.held.values() for h in v if now - h.since >= self.timeout]
        for item in late:
            self._take(item)
        for memory in (self.acked, self.seen):
            for key in [k for k, (_, t) in memory.items() if now - t > REMEMBER]:
                del memory[key]
        for key in [k for k, t in self.own.items() if now - t > REMEMBER]:
            del self.own[key]
        return self._release(late, "timeout", now)

    def next_deadline(self) -> float | None:
        """The next timeout or query, whichever is first."""
        times = [h.since + self.timeout for v in self.held.values() for h in v]
        times += [max(v[0].since, v[0].asked) + self.retry for v in self.held.values()]
        return min(times) if times else None

    def _take(self, item: Held) -> None:
        items = self.held[item.key]
        items.remove(item)
        if not items:
            del self.held[item.key]

    def _release(self, items: list[Held], why: str, now: float) -> list[Release]:
        self.counts[why] += len(items)
        return [Release(h, why, now) for h in items]


def run(args: argparse.Namespace) -> None:
    """The adapter: NFQUEUE (NetfilterQueue), the agents' UDP socket, conntrack's events."""
    from netfilterqueue import NetfilterQueue  # the C binding, needed only here

    logic = Deferrals(args.timeout, args.limit, args.dead, args.retry, heard=time.monotonic())
    wall = time.time() - time.monotonic()  # monotonic -> wall clock, for the log
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind((args.local, args.port))
    udp.setblocking(False)
    peer = (args.peer, args.port)

    def send(data: bytes) -> None:
        # The peer's agent not (yet) there: its silence is what counts.
        with contextlib.suppress(OSError):
            udp.sendto(data, peer)

    def let_go(releases: list[Release]) -> None:
        for r in releases:
            r.held.packet.accept()
            emit(
                "released",
                session=session_name(r.held.key),
                packet=r.held.kind,
                why=r.why,
                held_ms=round(1000 * r.held_s, 3),
                queued_at=round(wall + r.held.since, 6),
                confirmed=r.held.confirmed,
            )

    def on_packet(packet: Any) -> None:
        found = packet_key(packet.get_payload())
        if found is None:
            packet.accept()
            return
        let_go(logic.hold(found[0], packet, time.monotonic(), need=found[1]))

    events = ct_events()
    queue = NetfilterQueue()
    queue.bind(args.queue, on_packet, max_len=4 * args.limit, range=128)
    nfq_fd, ev_fd = queue.get_fd(), events.fileno()
    next_hello = 0.0
    emit("ready", queue=args.queue, peer=args.peer, timeout=args.timeout)
    try:
        while True:
            now = time.monotonic()
            if now >= next_hello:
                send(HELLO)
                next_hello = now + args.hello
            deadline = logic.next_deadline()
            wait = min(next_hello, deadline if deadline is not None else next_hello) - now
            ready, _, _ = select.select([nfq_fd, udp.fileno(), ev_fd], [], [], max(0.0, wait))
            if nfq_fd in ready:
                queue.run(block=False)
            if udp.fileno() in ready:
                while True:
                    try:
                        data = udp.recv(512)
                    except BlockingIOError:
                        break
                    kind, stage, key = parse_message(data)
                    if key is None:
                        logic.hello(time.monotonic())
                    elif kind == "A":
                        let_go(logic.ack(key, stage, time.monotonic()))
                    elif logic.answers(key, stage, time.monotonic()):
                        send(ack_message(key, stage))
            if ev_fd in ready:
                while True:
                    try:
                        data = events.recv(EVENT_READ)
                    except BlockingIOError:
                        break
                    except OSError as exc:  # ENOBUFS: events lost; their packets ask again
                        if exc.errno != errno.ENOBUFS:
                            raise
                        logic.counts["events lost"] += 1
                        continue
                    for key, stage in entry_events(data):
                        if logic.local(key, stage, time.monotonic()):
                            send(ack_message(key, stage))
            let_go(logic.expire(time.monotonic()))
            for key, stage in logic.queries(time.monotonic()):
                send(query_message(key, stage))
    finally:
        emit("counters", **dict(logic.counts), held=logic.waiting())
        for items in list(logic.held.values()):
            for item in items:
                item.packet.accept()
        queue.unbind()
        events.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--local", required=True, help="this firewall's address on the sync link")
    parser.add_argument("--peer", required=True, help="the peer firewall's address on the sync link")
    parser.add_argument("--port", type=int, default=3781, help="the agents' UDP port")
    parser.add_argument("--queue", type=int, default=5, help="the NFQUEUE number")
    parser.add_argument("--timeout", type=float, default=0.9, help="s: the longest hold")
    parser.add_argument("--limit", type=int, default=128, help="packets held at most at once")
    parser.add_argument("--hello", type=float, default=0.2, help="s between hellos to the peer")
    parser.add_argument("--dead", type=float, default=1.0, help="s of silence: the peer is down")
    parser.add_argument("--retry", type=float, default=0.1, help="s held before asking the peer again")
    args = parser.parse_args(argv)
    stop_on_sigterm()
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
