"""Evidence: packet captures (tcpdump to pcap) and session-table snapshots over time."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Self

from lab import conntrack
from lab.apps.marker import ETHERTYPE as MARKER_ETHERTYPE
from lab.apps.marker import PAYLOAD as MARKER_PAYLOAD
from lab.errors import LabTimeout
from lab.packets import TcpSegment, read_tcp_pcap

if TYPE_CHECKING:
    from lab.net import Lab
    from lab.procs import Proc


IMMEDIATE_SNAPLEN = 2048  # bytes: the largest snaplen captured in immediate mode (`_immediate`)


class Capture:
    """tcpdump on one interface of a node (None: the root namespace, where switch-to-switch
    links are), written to `<folder>/<name>.pcap`."""

    def __init__(
        self,
        lab: Lab,
        node: str | None,
        intf: str,
        folder: Path,
        name: str,
        bpf: str = "tcp",
        snaplen: int = 256,
    ):
        self.lab = lab
        self.node = node
        self.intf = intf
        self.path = folder / f"{name}.pcap"
        self.name = name
        self.bpf = bpf
        self.snaplen = snaplen  # bytes kept per frame: headers and the start of the payload
        self.proc: Proc | None = None

    def __enter__(self) -> Capture:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # The marker first: after `mpls` in a filter, what follows reads the MPLS payload.
        bpf = f"(ether proto {MARKER_ETHERTYPE:#x}) or ({self.bpf})"
        argv = [
            "tcpdump",
            "-i",
            self.intf,
            "-n",
            "-U",
            *self._immediate(),
            "-s",
            str(self.snaplen),
            "-Z",
            "root",
            "-w",
            str(self.path),
            bpf,
        ]
        # "listening on" is printed once the socket is bound: nothing is missed after it.
        self.proc = self.lab.start(self.node, argv, f"tcpdump-{self.name}", ready="listening on")
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _immediate(self) -> list[str]:
        """Frames handed over as they arrive, not when the kernel's buffer times out (about
        0.7 s here): a stop then waits for its marker 0.04-0.08 s. Only with a small
        snaplen: in immediate mode libpcap's ring has one slot of snaplen bytes per frame,
        and at 65,535 its 2 MiB hold 31 frames (a 64 KiB transfer lost 6 of 72)."""
        return ["--immediate-mode"] if self.snaplen <= IMMEDIATE_SNAPLEN else []

    def stop(self) -> Path:
        """Stop once the capture holds everything sent before now (`flush`)."""
        self.flush()
        return self._end()

    def _end(self) -> Path:
        if self.proc is not None and not self.proc.stopped:
            self.lab.stop(self.proc, signal.SIGINT)  # SIGINT: tcpdump closes the file
        return self.path

    def flush(self) -> None:
        """Wait until the capture holds everything sent before now: tcpdump loses what is
        still queued in its socket when it is stopped, so a marker frame goes out of the
        interface and this waits until it is written. Apart from `stop` so that several
        captures wait at once (`stop_captures`)."""
        if self.proc is None or self.proc.stopped:
            return
        before = self._markers()
        self.lab.run(self.node, [sys.executable, "-m", "lab.apps.marker", self.intf])
        self.lab.wait(lambda: self._markers() > before, 5, f"the marker in capture {self.path.name}")

    def _markers(self) -> int:
        """The marker frames written so far: their payload counted in the file's bytes
        (reading every frame of a long transfer's capture to count them is slow)."""
        return self.path.read_bytes().count(MARKER_PAYLOAD) if self.path.exists() else 0

    def segments(self) -> list[TcpSegment]:
        return read_tcp_pcap(self.path) if self.path.exists() else []


def stop_captures(captures: list[Capture]) -> None:
    """Stop `captures` that end together: their markers awaited at once (threads: each
    waits on its own file), then each tcpdump stopped in turn (the lab's process records
    are changed by one thread)."""
    from lab.wait import at_once

    at_once([c.flush for c in captures])
    for capture in captures:
        capture._end()


@dataclass
class Snapshot:
    time: float  # wall clock when the reading returned
    sessions: list[conntrack.Session]
    started: float  # wall clock when the reading was asked for: the table was read in between

    def entry(self, sport: int) -> conntrack.Session | None:
        """The session from (or to) client port `sport`, if the table held it."""
        return next((s for s in self.sessions if s.sport == sport or s.dport == sport), None)


class Sampler:
    """Runs `sample()` every `period` seconds in a thread while the block runs, and once
    more at the end (the final state); an error in the thread is re-raised by `stop()`."""

    period = 0.2

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def sample(self) -> None:
        raise NotImplementedError

    def _loop(self) -> None:
        try:
            while True:
                last = self._stop.is_set()
                self.sample()
                if last:
                    return
                self._stop.wait(self.period)
        except BaseException as exc:  # re-raised in the test by stop()
            self._error = exc

    def __enter__(self) -> Self:
        self._thread = threading.Thread(target=self._loop, name=type(self).__name__, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(15)
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error


class SessionRecorder(Sampler):
    """Snapshots of a firewall's session table every `period` seconds."""

    def __init__(self, lab: Lab, firewall: str, period: float = 0.2):
        super().__init__()
        self.lab, self.firewall, self.period = lab, firewall, period
        self.snapshots: list[Snapshot] = []

    def sample(self) -> None:
        started = time.time()
        text = self.lab.run(self.firewall, ["conntrack", "-L"], timeout=10, merge=False)
        self.snapshots.append(Snapshot(time.time(), conntrack.parse_table(text), started))

    def save(self, path: Path) -> Path:
        data = [
            {"started": s.started, "time": s.time, "sessions": [x.to_dict() for x in s.sessions]}
            for s in self.snapshots
        ]
        path.write_text(json.dumps(data, indent=1))
        return path

    def history(self, sport: int) -> list[tuple[float, int | None, str | None]]:
        """(time, remaining timeout, state) of the session from client port `sport`; None when absent."""
        out = []
        for snap in self.snapshots:
            entry = snap.entry(sport)
            out.append((snap.time, entry.timeout, entry.state) if entry else (snap.time, None, None))
        return out

    def came_back(self, sport: int, after: float) -> tuple[float, float] | None:
        """When the session from client port `sport` re-appeared in the table after being
        absent from a reading started after `after` (wall clock): (start of the last reading
        without it, end of the first reading with it). A reading takes time, more on a busy
        machine: the entry appeared between those two moments, no later, no earlier."""
        absent: Snapshot | None = None
        for snap in self.snapshots:
            present = snap.entry(sport) is not None
            if not present and snap.started > after:
                absent = snap
            elif present and absent is not None:
                return absent.started, snap.time
        return None


@dataclass(frozen=True)
class TableSample:
    """A firewall's session table at one moment: its TCP sessions by state and by source
    address."""

    time: float
    states: dict[str, int]
    sources: dict[str, int]

    @property
    def open(self) -> int:
        """TCP sessions not closed yet (TIME_WAIT and CLOSE are closed: a session
        capacity, `ct count`, does not count them)."""
        return sum(n for state, n in self.states.items() if state not in ("TIME_WAIT", "CLOSE"))


class TableRecorder(Sampler):
    """The size of a firewall's session table every `period` seconds: what occupies it
    (counts only: a flood fills it with thousands of sessions)."""

    def __init__(self, lab: Lab, firewall: str, period: float = 0.2):
        super().__init__()
        self.lab, self.firewall, self.period = lab, firewall, period
        self.samples: list[TableSample] = []

    def sample(self) -> None:
        now = time.time()
        text = self.lab.run(self.firewall, ["conntrack", "-L", "-p", "tcp"], timeout=10, merge=False)
        sessions = conntrack.parse_table(text)
        states = Counter(s.state or "?" for s in sessions)
        sources = Counter(s.src for s in sessions)
        self.samples.append(TableSample(now, dict(states), dict(sources)))

    def save(self, path: Path) -> Path:
        path.write_text(json.dumps([s.__dict__ for s in self.samples], indent=1))
        return path

    def peak(self, source: str | None = None) -> int:
        """The most open TCP sessions seen at once; with `source`, the most TCP sessions
        from that address."""
        return max((s.open if source is None else s.sources.get(source, 0) for s in self.samples), default=0)


@dataclass(frozen=True)
class Socket:
    """One TCP socket as `ss -tan` shows it on a host."""

    state: str
    local: str
    peer: str

    @property
    def local_port(self) -> int:
        return int(self.local.rsplit(":", 1)[1])

    @property
    def peer_port(self) -> int:
        return int(self.peer.rsplit(":", 1)[1])


class SocketRecorder(Sampler):
    """Snapshots of the TCP sockets of the case's ports on some hosts (`ss -tan`): what
    each end believes of a session, e.g. still ESTABLISHED while the other end hangs."""

    def __init__(self, lab: Lab, hosts: list[str], ports: range, period: float = 0.2):
        super().__init__()
        self.lab, self.hosts, self.ports, self.period = lab, hosts, ports, period
        self.snapshots: list[tuple[float, str, list[Socket]]] = []

    def sample(self) -> None:
        for host in self.hosts:
            out = self.lab.run(host, ["ss", "-tanH"], timeout=10)
            now = time.time()
            sockets = []
            for line in out.splitlines():
                words = line.split()
                if len(words) >= 5 and words[0] != "LISTEN":
                    sock = Socket(words[0], words[3], words[4])
                    if sock.local_port in self.ports or sock.peer_port in self.ports:
                        sockets.append(sock)
            self.snapshots.append((now, host, sockets))

    def states(self, host: str, port: int, since: float, until: float, local: bool = False) -> list[str]:
        """The states `host`'s socket showed in a window; the socket is the one whose peer
        port (or, with `local`, own port) is `port`."""
        return [
            s.state
            for t, h, sockets in self.snapshots
            if h == host and since <= t <= until
            for s in sockets
            if (s.local_port if local else s.peer_port) == port
        ]

    def save(self, path: Path) -> Path:
        data = [{"time": t, "host": h, "sockets": [s.__dict__ for s in ss]} for t, h, ss in self.snapshots]
        path.write_text(json.dumps(data, indent=1))
        return path


# conntrack -E's netlink buffer: a burst of sessions overflows the default and loses events.
EVENT_BUFFER = 32 * 1024 * 1024


def event_marker(attempt: int) -> list[str]:
    """A conntrack entry of our own whose NEW event shows an event stream is live."""
    return ["-p", "udp", "-s", "127.0.0.1", "-d", "127.0.0.2", "--sport", str(9000 + attempt), "--dport", "9"]


class _EventStream:
    """A `conntrack -E ...` process in a firewall for the duration of a block; its log is
    the evidence (`<name>.log` among the lab's logs, copied to the case)."""

    def __init__(self, lab: Lab, firewall: str, name: str):
        self.lab = lab
        self.firewall = firewall
        self.name = name
        self.proc: Proc | None = None

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.lab.stop(self.proc)

    @property
    def path(self) -> Path:
        assert self.proc is not None
        return self.proc.log_path

    def output(self) -> str:
        return self.proc.output() if self.proc is not None else ""


class SessionEvents(_EventStream):
    """`conntrack -E` in a firewall for the duration of a block: every session created,
    updated and destroyed, with timestamps."""

    def __init__(self, lab: Lab, firewall: str, name: str, only: str | None = None):
        super().__init__(lab, firewall, name)
        self.only = only  # an event type (NEW, UPDATE, DESTROY): fewer messages to carry

    def __enter__(self) -> SessionEvents:
        argv = ["conntrack", "-E", "-o", "timestamp", "--buffer-size", str(EVENT_BUFFER)]
        if self.only:
            argv += ["-e", self.only]
        self.proc = self.lab.start(self.firewall, argv, self.name)
        # conntrack -E subscribes a moment after it starts: insert markers until one shows
        # (its NEW event, or its DESTROY when only those are shown).
        shown = self.only or "NEW"
        for attempt in range(20):
            marker = event_marker(attempt)
            self.lab.run(self.firewall, ["conntrack", "-I", *marker, "--timeout", "5"])
            if shown == "DESTROY":
                self.lab.run(self.firewall, ["conntrack", "-D", *marker], check=False)
            try:
                self.proc.wait_for_output(
                    rf"\[{shown}\] udp .*src=127\.0\.0\.1 .*sport={9000 + attempt} ", 0.25
                )
                return self
            except LabTimeout:
                continue
            finally:
                self.lab.run(self.firewall, ["conntrack", "-D", *marker], check=False)
        raise LabTimeout(f"conntrack -E on {self.firewall} showed none of 20 marker entries in 5 s")

    def events(self) -> list[conntrack.Session]:
        """Every TCP event so far (see `lost`)."""
        return [s for s in conntrack.parse_table(self.output()) if s.proto == "tcp"]

    def records(self) -> list[conntrack.SessionRecord]:
        """The session log so far: each session's span, counts and end reason (the
        stream's own marker entries left out)."""
        return [r for r in conntrack.session_log(self.output().splitlines()) if r.src != "127.0.0.1"]

    @property
    def lost(self) -> bool:
        """Whether the kernel reported events it could not deliver (ENOBUFS). Even with a
        large buffer this happens now and then in a burst; a case says so in its figures."""
        return self.proc is not None and "ENOBUFS" in self.proc.output()


# Netlink groups of expectation events (NFNLGRP_CONNTRACK_EXP_NEW/UPDATE/DESTROY = 4, 5, 6).
_EXPECT_GROUPS = 0b111000
_NETLINK_NETFILTER = 12


class ExpectationEvents(_EventStream):
    """`conntrack -E expect` in a firewall for the duration of a block: every opening its
    helpers (ALGs) create and remove.

    Ready once its netlink socket has joined the expectation event groups (read from the
    namespace's /proc/net/netlink): no event is missed after that."""

    def __enter__(self) -> ExpectationEvents:
        self.proc = self.lab.start(self.firewall, ["conntrack", "-E", "expect"], self.name)
        self.lab.wait(self._subscribed, 5, f"conntrack -E expect on {self.firewall} to subscribe")
        return self

    def _subscribed(self) -> bool:
        """Whether one of the process's own netlink sockets (by inode) has joined the groups."""
        sockets = set()
        for fd in Path(f"/proc/{self.proc_pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    sockets.add(target[len("socket:[") : -1])
        table = self.lab.run(self.firewall, ["cat", "/proc/net/netlink"])
        for line in table.splitlines()[1:]:
            words = line.split()  # sk Eth Pid Groups Rmem Wmem Dump Locks Drops Inode
            ours = len(words) >= 10 and words[1] == str(_NETLINK_NETFILTER) and words[9] in sockets
            if ours and int(words[3], 16) & _EXPECT_GROUPS == _EXPECT_GROUPS:
                return True
        return False

    @property
    def proc_pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def events(self) -> list[conntrack.Expectation]:
        return conntrack.parse_expectations(self.output())
