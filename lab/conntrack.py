"""The kernel's session table as data: parsed `conntrack -L` and `conntrack -E` lines."""

from __future__ import annotations

import re
from dataclasses import dataclass, fields

_EVENT = re.compile(
    r"^(?:\[(?P<stamp>\d+\.\d+)\]\s+)?(?:\s*\[(?P<event>NEW|UPDATE|DESTROY)\]\s+)?(?P<rest>.*)$"
)
_KEYVAL = re.compile(r"(\w+)=(\S+)")


@dataclass(frozen=True)
class Session:
    """One conntrack entry: the original direction's 5-tuple, state and remaining timeout."""

    proto: str
    src: str
    dst: str
    sport: int | None
    dport: int | None
    state: str | None  # TCP state (ESTABLISHED, ...); None for other protocols or events
    timeout: int | None  # seconds left; None in DESTROY events
    flags: tuple[str, ...] = ()  # ASSURED, UNREPLIED, ...
    event: str | None = None  # NEW / UPDATE / DESTROY for event lines
    stamp: float | None = None  # event time (conntrack -E -o timestamp)
    # Accounting (nf_conntrack_acct): packets seen in the original and the reply direction.
    packets: int | None = None
    reply_packets: int | None = None
    # Which device carried each direction, where a source knows it (a fabric's table).
    via: str | None = None
    reply_via: str | None = None
    # The reply direction's addresses: differ from dst/src where the device NATs.
    reply_src: str | None = None
    reply_dst: str | None = None
    # Accounting: bytes seen in the original and the reply direction.
    bytes: int | None = None
    reply_bytes: int | None = None

    @property
    def key(self) -> tuple[str, str, int | None, str, int | None]:
        return (self.proto, self.src, self.sport, self.dst, self.dport)

    def to_dict(self) -> dict[str, object]:
        """The entry as a session table's snapshot lists it (JSON): every field in order,
        but an event's own (kind, time) and the byte counts."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _NOT_IN_DICT}
        data["flags"] = list(self.flags)
        return data


_NOT_IN_DICT = ("event", "stamp", "bytes", "reply_bytes")


def parse_line(line: str) -> Session | None:
    """A Session from one line of `conntrack -L` or `conntrack -E` output, or None."""
    match = _EVENT.match(line.strip())
    if not match:
        return None
    words = match.group("rest").split()
    if len(words) < 2 or not words[1].isdigit():
        return None
    proto = words[0]
    rest = words[2:]
    timeout = None
    if rest and rest[0].isdigit():
        timeout = int(rest[0])
        rest = rest[1:]
    state = rest[0] if rest and "=" not in rest[0] and not rest[0].startswith("[") else None
    values: dict[str, str] = {}
    reply: dict[str, str] = {}
    for key, value in _KEYVAL.findall(" ".join(rest)):
        # The first src= starts the original direction, the second the reply direction.
        side = reply if key == "src" and "src" in values or reply else values
        side.setdefault(key, value)
    if "src" not in values or "dst" not in values:
        return None
    flags = tuple(w.strip("[]") for w in rest if w.startswith("[") and w.endswith("]"))
    stamp = match.group("stamp")
    return Session(
        proto=proto,
        src=values["src"],
        dst=values["dst"],
        sport=int(values["sport"]) if "sport" in values else None,
        dport=int(values["dport"]) if "dport" in values else None,
        state=state,
        timeout=timeout,
        flags=flags,
        event=match.group("event"),
        stamp=float(stamp) if stamp else None,
        packets=int(values["packets"]) if "packets" in values else None,
        reply_packets=int(reply["packets"]) if "packets" in reply else None,
        reply_src=reply.get("src"),
        reply_dst=reply.get("dst"),
        bytes=int(values["bytes"]) if "bytes" in values else None,
        reply_bytes=int(reply["bytes"]) if "bytes" in reply else None,
    )


def parse_table(text: str) -> list[Session]:
    """Every entry of `conntrack -L` output (summary lines are skipped)."""
    return [s for s in (parse_line(line) for line in text.splitlines()) if s is not None]


@dataclass(frozen=True)
class Expectation:
    """An opening a helper (ALG) made (`conntrack -L expect`): the data session it lets
    in as related, for how many more seconds, and the control session that announced it."""

    timeout: int
    proto: str
    src: str  # who may connect (the expected source address)
    dst: str
    dport: int
    master: tuple[str, int, str, int]  # the control session: src, sport, dst, dport
    helper: str
    event: str | None = None  # NEW / DESTROY in `conntrack -E expect` lines


_PROTO_NUMBERS = {"6": "tcp", "17": "udp"}


def parse_expectations(text: str) -> list[Expectation]:
    """The lines of `conntrack -L expect`. Its keys repeat (sport/dport of the expected
    tuple, of the mask, and of the master), so they are read in order."""
    found = []
    for line in text.splitlines():
        words = line.split()
        event = None
        if words and words[0] in ("[NEW]", "[DESTROY]", "[UPDATE]"):
            event = words.pop(0).strip("[]")
        if not words or not words[0].isdigit():
            continue
        pairs = [(k, v) for k, _, v in (w.partition("=") for w in words[1:] if "=" in w)]
        ports = [int(v) for k, v in pairs if k in ("sport", "dport")]
        values: dict[str, str] = dict(pairs)
        if len(ports) < 6 or "master-src" not in values:
            continue
        proto = values.get("proto", "")
        found.append(
            Expectation(
                timeout=int(words[0]),
                proto=_PROTO_NUMBERS.get(proto, proto),
                src=values["src"],
                dst=values["dst"],
                dport=ports[1],
                master=(values["master-src"], ports[4], values["master-dst"], ports[5]),
                helper=values.get("helper", ""),
                event=event,
            )
        )
    return found


SessionKey = tuple[str, str, int | None, str, int | None]  # proto, src, sport, dst, dport
# A TCP session's end, read from the last state conntrack reported before it went.
_CLOSED_BY_FIN = {"FIN_WAIT", "CLOSE_WAIT", "LAST_ACK", "TIME_WAIT"}


@dataclass(frozen=True)
class SessionRecord:
    """One session from start to end, as a firewall's session log has it: when it began
    and ended, what each direction carried, and why it ended (FIN, RST, timeout, or
    "open" when it had not ended when the log was read)."""

    proto: str
    src: str
    sport: int | None
    dst: str
    dport: int | None
    start: float | None
    end: float | None
    packets: int | None
    bytes: int | None
    reply_packets: int | None
    reply_bytes: int | None
    end_reason: str
    last_state: str | None

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def end_reason(proto: str, last_state: str | None, ended: bool) -> str:
    """Why a session ended, from the last TCP state seen before its DESTROY event: after
    a FIN exchange (FIN_WAIT ... TIME_WAIT), after a RST (CLOSE), or in any other state
    (ESTABLISHED, SYN_SENT, ...): its timeout ran out. Other protocols end by timeout."""
    if not ended:
        return "open"
    if proto != "tcp":
        return "timeout"
    if last_state in _CLOSED_BY_FIN:
        return "FIN"
    if last_state == "CLOSE":
        return "RST"
    return "timeout"


def session_log(lines: list[str]) -> list[SessionRecord]:
    """Every session of a `conntrack -E -o timestamp` log (with accounting on), in the
    order they started: NEW gives the start, each UPDATE the state, DESTROY the end and
    the counts of each direction."""
    started: dict[SessionKey, Session] = {}
    states: dict[SessionKey, str | None] = {}
    order: list[SessionKey] = []
    ended: dict[SessionKey, Session] = {}
    records = []
    for line in lines:
        session = parse_line(line)
        if session is None or session.event is None:
            continue
        key = session.key
        if session.event == "NEW":
            if key in ended:  # the same 5-tuple again: the earlier one is done
                records.append(_record(started.pop(key), states.pop(key), ended.pop(key)))
                order.remove(key)
            started[key] = session
            states[key] = session.state
            order.append(key)
        elif key in started:
            if session.event == "UPDATE" and session.state is not None:
                states[key] = session.state
            elif session.event == "DESTROY":
                ended[key] = session
    for left in order:
        records.append(_record(started[left], states[left], ended.get(left)))
    return sorted(records, key=lambda r: r.start or 0.0)


def _record(first: Session, state: str | None, last: Session | None) -> SessionRecord:
    counts = last if last is not None else first
    return SessionRecord(
        *first.key,  # proto, src, sport, dst, dport
        start=first.stamp,
        end=last.stamp if last is not None else None,
        packets=counts.packets,
        bytes=counts.bytes,
        reply_packets=counts.reply_packets,
        reply_bytes=counts.reply_bytes,
        end_reason=end_reason(first.proto, state, last is not None),
        last_state=state,
    )
