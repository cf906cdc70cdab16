"""What each finding of a behaviour profile is: its value's form, its label, how it is measured.

A `Finding` is one measured behaviour: the `value` (None: not measured), the `evidence` (files
relative to the run folder: captures on both sides of the device, probe results, the driver's
table), the `probe` details (what ran, with what parameters, each round of a search), a short
`how` (empty: the default in `SPECS`) and `notes` (anomalies a reader should know of).
`SPECS` says, per dotted key, what a value may be (checked when profile.json is read), its
label, and how it is measured; `show` puts a value in words for profile.md.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lab.characterize.bisect import IdleSearch

EXPIRY = ("silent", "rst-client", "rst-server", "rst-both")
MIDSTREAM = ("dropped", "admitted")
NAT_BEHAVIOURS = ("endpoint-independent", "address-dependent", "address-and-port-dependent")
NO_NAT = "no-nat"
FTP_OUTCOMES = ("works", "fails")
NOT_MEASURED = "not measured"


def _plain(value: Any) -> Any:
    """The JSON form of a value (tuples become lists), so a profile equals its round trip."""
    return json.loads(json.dumps(value))


@dataclass
class Finding:
    """One measured behaviour, with what proves it."""

    value: Any = None
    evidence: list[str] = field(default_factory=list)
    probe: dict[str, Any] = field(default_factory=dict)
    how: str = ""  # empty: the finding's default in SPECS
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.value = _plain(self.value)
        self.probe = _plain(self.probe)
        self.evidence = [str(p) for p in self.evidence]

    @property
    def measured(self) -> bool:
        return self.value is not None

    @classmethod
    def from_search(cls, search: IdleSearch, evidence: list[str], how: str = "", **probe: Any) -> Finding:
        """A bracket finding from a finished idle-time search: its rounds, parameters and
        anomalies kept as the probe details; `probe` adds the caller's (port, app timeout...)."""
        low, high = search.bracket
        details = {
            "maximum_s": search.maximum,
            "parallel": search.parallel,
            "first_s": search.first,
            "resolution": f"max({search.resolution_s:g} s, {100 * search.resolution_rel:g} % of the low end)",
            "rounds": [r.to_dict() for r in search.rounds],
            "anomalies": list(search.anomalies),
            **probe,
        }
        return cls([low, high], evidence, details, how, list(search.anomalies))


def base_key(key: str) -> str:
    """The key a per-port finding shares: "tcp.idle_timeout_s[port 22]" -> "tcp.idle_timeout_s"."""
    return key.split("[", 1)[0]


# -- the values each finding allows ----------------------------------------------------------------


def _bracket(v: Any) -> str | None:
    if not (isinstance(v, list) and len(v) == 2 and isinstance(v[0], int | float)):
        return "expected [low, high] seconds"
    if v[0] < 0 or (v[1] is not None and (not isinstance(v[1], int | float) or v[1] < v[0])):
        return "expected 0 <= low <= high (high null: beyond the maximum)"
    return None


def _one_of(*allowed: str) -> Callable[[Any], str | None]:
    return lambda v: None if v in allowed else f"expected one of {', '.join(allowed)}"


def _sides(keys: tuple[str, str], allowed: tuple[Any, ...]) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        if isinstance(v, dict) and set(v) <= set(keys) and all(x in allowed for x in v.values()):
            return None
        return f"expected {{{', '.join(keys)}}} each one of {', '.join(map(str, allowed))}"

    return check


def _bool(v: Any) -> str | None:
    return None if isinstance(v, bool) else "expected true or false"


def _number(v: Any) -> str | None:
    ok = isinstance(v, int | float) and not isinstance(v, bool) and v >= 0
    return None if ok else "expected a number >= 0"


@dataclass(frozen=True)
class Spec:
    """A finding's label, the check its value passes, and how it is measured (the default `how`)."""

    label: str
    check: Callable[[Any], str | None]
    how: str


_BISECTED = (
    "Round 1 probes a geometric grid of idle times up to the maximum, all at once; each later round "
    "probes evenly inside the bracket (longest survivor, shortest death) until it is within 1 s or 2 %."
)
SPECS: dict[str, Spec] = {
    "tcp.idle_timeout_s": Spec(
        "TCP established idle timeout",
        _bracket,
        "Two TCP sessions opened from inside for each idle time, left idle that long, then the "
        "client speaks on one and the server on the other: both delivered through the device means "
        "the session survived that idle time (the server's side catches a device whose loose "
        "pick-up re-opens an expired session for the client). " + _BISECTED,
    ),
    "tcp.expiry": Spec(
        "At TCP expiry",
        _one_of(*EXPIRY),
        "Data sent on a session after its idle timeout; the captures on both sides of the device "
        "show whether it answered with an RST, and to which end.",
    ),
    "tcp.rst_acceptable": Spec(
        "RST at expiry accepted by its receiver",
        _sides(("client", "server"), (True, False, None)),
        "Each RST the device sent at expiry compared with its receiver's next expected sequence "
        "number (RFC 5961 section 3.2: only an exact match resets the connection).",
    ),
    "tcp.midstream_ack": Spec(
        "Mid-stream ACK without a session",
        _sides(("inside", "outside"), (*MIDSTREAM, None)),
        "An ACK with data for a connection the device never saw open, sent from inside and from "
        "outside; captured beyond the device (admitted: loose pick-up) or not (dropped).",
    ),
    "udp.lifetime_outbound_s": Spec(
        "UDP lifetime, refreshed from inside only",
        _bracket,
        "UDP flows that sent from inside only, each left idle for a different time, then a datagram "
        "from the server to the address the flow came from: delivered means the entry lived. " + _BISECTED,
    ),
    "udp.lifetime_bidirectional_s": Spec(
        "UDP lifetime, traffic both ways",
        _bracket,
        "UDP flows with datagrams both ways before going idle, then probed as above. " + _BISECTED,
    ),
    "nat.mapping": Spec(
        "NAT mapping (UDP)",
        _one_of(*NAT_BEHAVIOURS, NO_NAT),
        "RFC 5780 discovery (turnutils_natdiscovery against coturn's STUN server on two "
        "addresses): the mapped address and port the client is seen from, towards each server "
        "address and port.",
    ),
    "nat.filtering": Spec(
        "NAT filtering (UDP)",
        _one_of(*NAT_BEHAVIOURS, NO_NAT),
        "RFC 5780 discovery: whether the client receives the STUN server's answers sent from its "
        "other address and/or port (CHANGE-REQUEST).",
    ),
    "nat.hairpinning": Spec(
        "Hairpinning (UDP)",
        _bool,
        "An inside client sends to another inside client's mapped (public) address and port; "
        "delivery inside means hairpinning.",
    ),
    "nat.port_preservation": Spec(
        "Port preservation",
        _bool,
        "The client's source port compared with the mapped port the outside sees.",
    ),
    "nat.tcp_mapping": Spec(
        "NAT mapping (TCP)",
        _one_of(*NAT_BEHAVIOURS, NO_NAT),
        "TCP connections from one inside address and port to different outside addresses and "
        "ports; the public address and port each was seen from, compared.",
    ),
    "nat.tcp_hairpinning": Spec(
        "Hairpinning (TCP)",
        _bool,
        "An inside client connects to another inside server's public address and port.",
    ),
    "ftp.active": Spec(
        "FTP active (PORT)",
        _one_of(*FTP_OUTCOMES),
        "A download from an outside FTP server in active mode, from inside.",
    ),
    "ftp.passive": Spec(
        "FTP passive (PASV)",
        _one_of(*FTP_OUTCOMES),
        "A download from an outside FTP server in passive mode, from inside.",
    ),
    "ftp.alg": Spec(
        "FTP helper (ALG)",
        _bool,
        "Whether the device admitted the data connection the control channel announced, where its "
        "policy admits no other new connection that way (captures on both sides).",
    ),
    "ftp.port_rewritten": Spec(
        "PORT rewritten under NAT",
        _bool,
        "The address in the PORT command as captured inside, compared with the one captured outside.",
    ),
    "capacity.sessions": Spec(
        "Concurrent TCP sessions held",
        lambda v: None if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else "expected an int",
        "TCP sessions opened from inside in steps and held open, up to the bound (RFC 9411 concurrent "
        "TCP connection capacity); held means still carrying data after the last step.",
    ),
    "capacity.new_per_s": Spec(
        "New TCP sessions per second",
        _number,
        "TCP sessions opened, used for one small transfer and closed, as fast as the device completes "
        "them (RFC 9411 TCP connections per second).",
    ),
    "capacity.latency_added_ms": Spec(
        "Latency added",
        _number,
        "The time a packet takes through the device: the idle probes' handshakes captured at the "
        "device's own ports (the lab's switch ports facing it; one clock), each SYN from the inside "
        "port to the outside one and each SYN-ACK back, matched by sequence number; the mean of the "
        "two medians.",
    ),
}


# -- showing values -------------------------------------------------------------------------------


def seconds_words(s: float) -> str:
    """'7440 s (2 h 4 min)': seconds, and hours and minutes where they help."""
    text = f"{s:.4g} s" if s < 10000 else f"{s:.0f} s"
    if s >= 120:
        h, m = divmod(int(round(s)) // 60, 60)
        text += f" ({h} h {m} min)" if h else f" ({m} min)"
    return text


def show_bracket(v: list[Any]) -> str:
    low, high = v
    if high is None:
        return f"> {seconds_words(low)} (alive at the search's maximum)"
    if low == 0:
        return f"< {seconds_words(high)}"
    return f"{seconds_words(low)} to {seconds_words(high)}"


_EXPIRY_WORDS = {
    "silent": "silent drop (no RST)",
    "rst-client": "RST to the client (inside) only",
    "rst-server": "RST to the server (outside) only",
    "rst-both": "RST to both ends",
}


def show(key: str, finding: Finding) -> str:
    """A finding's value in words for the tables."""
    v = finding.value
    if v is None:
        return NOT_MEASURED
    base = base_key(key)
    if SPECS[base].check is _bracket:
        return show_bracket(v)
    if base == "tcp.expiry":
        return _EXPIRY_WORDS[v]
    if isinstance(v, dict):
        words = {True: "yes", False: "no", None: NOT_MEASURED}
        return "; ".join(
            f"{side}: {words.get(x, x) if isinstance(x, bool | None) else x}" for side, x in v.items()
        )
    if isinstance(v, bool):
        return "yes" if v else "no"
    if v == NO_NAT:
        return "no NAT (addresses pass unchanged)"
    if base == "capacity.sessions":
        bound = finding.probe.get("bound")
        if finding.probe.get("bound_reached"):
            return f"{v} (the bound set: it may hold more)"
        return f"{v} of {bound} attempted" if bound else str(v)
    if base == "capacity.new_per_s":
        return f"{v:.0f} per s"
    if base == "capacity.latency_added_ms":
        return f"{v:.3g} ms"
    return str(v)


def label(key: str) -> str:
    """A finding's name for a reader: "TCP established idle timeout (port 22)"."""
    base = base_key(key)
    return SPECS[base].label + (f" ({key[len(base) + 1 : -1]})" if key != base else "")


def probe_summary(finding: Finding) -> str:
    """A line on the probes behind a finding (a search's rounds), or ''."""
    rounds = finding.probe.get("rounds")
    if not rounds:
        return ""
    count = sum(len(r["probes"]) for r in rounds)
    text = f"{len(rounds)} rounds, {count} probes, up to {finding.probe.get('maximum_s')} s idle"
    anomalies = finding.probe.get("anomalies") or []
    if anomalies:
        text += f"; {len(anomalies)} result(s) out of order, counted as noise (an alive wins)"
    return text
