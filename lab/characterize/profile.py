"""A session device's behaviour profile as data: profile.json, its requirement table, profile.md.

A `Profile` holds the device (how it was attached, how its table was read) and one `Finding`
per behaviour (`lab.characterize.findings`: value, evidence, probe details, how measured).
profile.json is `Profile.to_json()`:

    {"version": 1, "device": {...}, "tcp": {"idle_timeout_s": {"value": [low, high],
     "evidence": [...], "probe": {...}, "how": "...", "notes": []}, ...}, "udp": ..., ...}

Values: brackets are [low, high] seconds (alive after low, dead after high; high null: alive
at the search's maximum); `tcp.expiry` one of `EXPIRY`; `tcp.midstream_ack` {"inside":
"dropped"|"admitted", "outside": ...}; `tcp.rst_acceptable` {"client": bool, "server": bool};
`nat.mapping`/`nat.filtering` one of `NAT_BEHAVIOURS` (RFC 4787 terms) or "no-nat";
`ftp.active`/`ftp.passive` "works"|"fails"; `capacity.sessions` an int, its probe saying
"bound" and "bound_reached".

`requirements(profile)` sets each behaviour beside the RFC requirement it meets or misses
(`REQUIREMENTS`, numbers and words checked against the RFC texts); `render_markdown` writes
profile.md from `profile.md.j2`, beside this module.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import jinja2

from lab.characterize.findings import (
    EXPIRY,
    FTP_OUTCOMES,
    MIDSTREAM,
    NAT_BEHAVIOURS,
    NO_NAT,
    NOT_MEASURED,
    SPECS,
    Finding,
    base_key,
    label,
    probe_summary,
    seconds_words,
    show,
)
from lab.errors import ConfigError

__all__ = [
    "EXPIRY",
    "FTP_OUTCOMES",
    "MIDSTREAM",
    "NAT_BEHAVIOURS",
    "NO_NAT",
    "REQUIREMENTS",
    "VERDICTS",
    "Device",
    "Finding",
    "Profile",
    "Requirement",
    "Row",
    "render_markdown",
    "requirements",
]

VERSION = 1
MEETS, MISSES = "meets", "misses"
NOT_APPLICABLE, INCONCLUSIVE = "not applicable", "inconclusive"
VERDICTS = (MEETS, MISSES, NOT_MEASURED, NOT_APPLICABLE, INCONCLUSIVE)

TCP_ESTABLISHED_MIN_S = 7440.0  # RFC 5382 REQ-5: 2 h 4 min
UDP_MAPPING_MIN_S = 120.0  # RFC 4787 REQ-5: two minutes
UDP_MAPPING_RECOMMENDED_S = 300.0  # RFC 4787 REQ-5 c): five minutes or more


@dataclass
class TcpFindings:
    """TCP: the established idle timeout (and per port), what happens at expiry, mid-stream pick-up."""

    idle_timeout_s: Finding = field(default_factory=Finding)
    expiry: Finding = field(default_factory=Finding)
    rst_acceptable: Finding = field(default_factory=Finding)  # {"client": bool|None, "server": ...}
    midstream_ack: Finding = field(default_factory=Finding)
    idle_timeout_by_port: dict[str, Finding] = field(default_factory=dict)  # "22" -> bracket


@dataclass
class UdpFindings:
    """UDP: how long an idle flow's entry lives, refreshed from inside only or with traffic both ways."""

    lifetime_outbound_s: Finding = field(default_factory=Finding)
    lifetime_bidirectional_s: Finding = field(default_factory=Finding)


@dataclass
class NatFindings:
    """NAT behaviour in RFC 4787 / 5382 terms; mapping and filtering by RFC 5780 discovery (UDP)."""

    mapping: Finding = field(default_factory=Finding)  # UDP, RFC 5780 discovery
    filtering: Finding = field(default_factory=Finding)
    hairpinning: Finding = field(default_factory=Finding)
    port_preservation: Finding = field(default_factory=Finding)

    def translates(self) -> bool | None:
        """True: the device translates addresses; False: no NAT; None: not measured."""
        values = {self.mapping.value, self.filtering.value, self.tcp_mapping.value} - {None}
        return None if not values else values != {NO_NAT}

    # TCP (RFC 5382): measured where a probe does
    tcp_mapping: Finding = field(default_factory=Finding)
    tcp_hairpinning: Finding = field(default_factory=Finding)


@dataclass
class FtpFindings:
    """FTP through the device: active and passive downloads, its helper (ALG)."""

    active: Finding = field(default_factory=Finding)
    passive: Finding = field(default_factory=Finding)
    alg: Finding = field(default_factory=Finding)
    port_rewritten: Finding = field(default_factory=Finding)


@dataclass
class CapacityFindings:
    """Capacity and rate in RFC 9411's terms."""

    sessions: Finding = field(default_factory=Finding)  # probe: "bound", "bound_reached"
    new_per_s: Finding = field(default_factory=Finding)
    latency_added_ms: Finding = field(default_factory=Finding)


@dataclass
class Device:
    """The device profiled, how it was attached and how its session table was read."""

    name: str
    built_by_lab: bool
    attachment: str  # "the lab's firewall node fw", "ports inside=ens4 outside=ens5", "netns box"
    table: str = "none (traffic only)"  # "linux driver over SSH admin@192.0.2.1"
    addresses: dict[str, str] = field(default_factory=dict)  # the device's addresses the probes used


SECTIONS: dict[str, type] = {
    "tcp": TcpFindings,
    "udp": UdpFindings,
    "nat": NatFindings,
    "ftp": FtpFindings,
    "capacity": CapacityFindings,
}


@dataclass
class Profile:
    """Everything `sessionlab characterize` learnt about one device."""

    device: Device
    started: str = ""  # ISO 8601
    duration_s: float | None = None
    tcp: TcpFindings = field(default_factory=TcpFindings)
    udp: UdpFindings = field(default_factory=UdpFindings)
    nat: NatFindings = field(default_factory=NatFindings)
    ftp: FtpFindings = field(default_factory=FtpFindings)
    capacity: CapacityFindings = field(default_factory=CapacityFindings)
    figures: dict[str, str] = field(default_factory=dict)  # caption -> path relative to the run folder
    notes: list[str] = field(default_factory=list)
    version: int = VERSION

    def findings(self) -> Iterator[tuple[str, Finding]]:
        """Every finding with its dotted key ("tcp.idle_timeout_s", "tcp.idle_timeout_s[port 22]")."""
        for section in SECTIONS:
            group = getattr(self, section)
            for f in fields(group):
                item = getattr(group, f.name)
                if isinstance(item, Finding):
                    yield f"{section}.{f.name}", item
                if f.name == "idle_timeout_s":  # then per destination port, where asked
                    for port, finding in sorted(
                        self.tcp.idle_timeout_by_port.items(), key=lambda kv: int(kv[0])
                    ):
                        yield f"tcp.idle_timeout_s[port {port}]", finding

    def problems(self) -> list[str]:
        """Every value that is not what its key allows, named by key."""
        out = []
        for key, finding in self.findings():
            if finding.value is not None and (problem := SPECS[base_key(key)].check(finding.value)):
                out.append(f"{key}: {problem} (got {finding.value!r})")
        return out

    def to_json(self) -> str:
        """profile.json's text."""
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Profile:
        """The profile in profile.json; `ConfigError` naming every unknown key or bad value."""
        try:
            data = json.loads(text)
        except ValueError as e:
            raise ConfigError(f"profile.json: not JSON ({e})") from e
        problems: list[str] = []
        if not isinstance(data, dict):
            raise ConfigError("profile.json: expected an object")
        device = _build(Device, data.get("device", {}), "device", problems)
        sections = {
            name: _section(kind, data.get(name, {}), name, problems) for name, kind in SECTIONS.items()
        }
        rest = {k: v for k, v in data.items() if k not in {"device", *SECTIONS}}
        profile = _build(cls, {**rest, "device": device, **sections}, "profile", problems)
        if profile is not None:
            problems += profile.problems()
        if problems or profile is None:
            raise ConfigError(problems or ["profile.json: unreadable"])
        return profile


def _build(kind: Any, data: Any, where: str, problems: list[str]) -> Any:
    """kind(**data), unknown keys and missing ones added to `problems`."""
    if not isinstance(data, dict):
        problems.append(f"{where}: expected an object")
        return None
    known = {f.name for f in fields(kind)}
    unknown = sorted(set(data) - known)
    problems += [f"{where}.{k}: unknown key" for k in unknown]
    try:
        return kind(**{k: v for k, v in data.items() if k in known})
    except TypeError as e:
        problems.append(f"{where}: {e}")
        return None


def _section(kind: type, data: Any, where: str, problems: list[str]) -> Any:
    """A findings section from its JSON object."""
    if not isinstance(data, dict):
        problems.append(f"{where}: expected an object")
        return kind()
    built = {}
    for name, value in data.items():
        if name == "idle_timeout_by_port" and isinstance(value, dict):
            built[name] = {p: _build(Finding, v, f"{where}.{name}.{p}", problems) for p, v in value.items()}
        else:
            built[name] = _build(Finding, value, f"{where}.{name}", problems)
    return _build(kind, built, where, problems) or kind()


# -- the requirement table ------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One requirement beside the behaviour measured against it."""

    rfc: str
    req: str
    section: str
    level: str  # MUST, RECOMMENDED, or "endpoint" (a requirement on the ends, not the device)
    words: str
    finding: str  # the dotted key
    measured: str
    verdict: str  # one of VERDICTS
    note: str = ""

    @property
    def wording(self) -> str:
        """The verdict as a reader takes it: a RECOMMENDED requirement is followed, not met."""
        if self.level == "RECOMMENDED" and self.verdict in (MEETS, MISSES):
            return (
                "follows the recommendation" if self.verdict == MEETS else "departs from the recommendation"
            )
        return self.verdict


Judge = Callable[[Any, "Profile"], tuple[str, str]]  # (value, profile) -> (verdict, note)


def _at_least(limit: float) -> Judge:
    """A bracket against a minimum: meets if it survived the limit, misses if it died by it."""

    def judge(value: Any, _: Profile) -> tuple[str, str]:
        low, high = value
        if low >= limit:
            return MEETS, ""
        if high is not None and high <= limit:
            return MISSES, ""
        if high is None:
            return NOT_MEASURED, f"the search stopped at {low:g} s; a maximum of {limit:g} s would decide"
        return INCONCLUSIVE, f"the bracket spans {limit:g} s"

    return judge


def _equals(wanted: Any) -> Judge:
    return lambda value, _: (MEETS if value == wanted else MISSES, "")


def _filtering(value: Any, _: Profile) -> tuple[str, str]:
    """RFC 4787 REQ-8 names two recommendations; either one followed is a verdict of 'meets'."""
    return {
        "endpoint-independent": (MEETS, "the recommendation where application transparency matters most"),
        "address-dependent": (MEETS, "the recommendation where stricter filtering matters most"),
    }.get(value, (MISSES, "stricter than either recommendation"))


def _rst_accepted(value: Any, profile: Profile) -> tuple[str, str]:
    """Whether the RSTs the device sent at expiry were ones their receivers act on."""
    if value == "silent":
        return NOT_APPLICABLE, "no RST at expiry: each end learns of it only from its own timeouts"
    ends = {"rst-client": ["client"], "rst-server": ["server"], "rst-both": ["client", "server"]}[value]
    accepted = profile.tcp.rst_acceptable.value or {}
    refused = [end for end in ends if accepted.get(end) is False]
    if refused:
        return MISSES, f"not acceptable to the {' and '.join(refused)} (sequence number not RCV.NXT)"
    if all(accepted.get(end) is True for end in ends):
        return MEETS, f"accepted by the {' and '.join(ends)}: the ends learn of the expiry at once"
    return NOT_MEASURED, "the RSTs' sequence numbers were not compared"


@dataclass(frozen=True)
class Requirement:
    """An RFC requirement and the finding it is judged on (every key with that base)."""

    rfc: str
    req: str
    section: str  # "" where not checked against the RFC text
    level: str  # MUST, RECOMMENDED, or "endpoint" (binds the ends, not the device)
    words: str
    finding: str
    judge: Judge
    nat_only: bool = True  # a NAT requirement: not applicable to a device that does not translate


_FILTERING = (
    "endpoint-independent filtering if application transparency matters most, "
    "address-dependent if stricter filtering does"
)
REQUIREMENTS = (
    Requirement("RFC 5382", "REQ-5", "5", "MUST",
                "established connection idle-timeout not less than 2 h 4 min",
                "tcp.idle_timeout_s", _at_least(TCP_ESTABLISHED_MIN_S)),
    Requirement("RFC 4787", "REQ-5", "4.3", "MUST", "a UDP mapping timer does not expire in less than 2 min",
                "udp.lifetime_outbound_s", _at_least(UDP_MAPPING_MIN_S)),
    Requirement("RFC 4787", "REQ-5", "4.3", "MUST", "a UDP mapping timer does not expire in less than 2 min",
                "udp.lifetime_bidirectional_s", _at_least(UDP_MAPPING_MIN_S)),
    Requirement("RFC 4787", "REQ-5 c)", "4.3", "RECOMMENDED", "a UDP mapping timer of 5 min or more",
                "udp.lifetime_outbound_s", _at_least(UDP_MAPPING_RECOMMENDED_S)),
    Requirement("RFC 4787", "REQ-5 c)", "4.3", "RECOMMENDED", "a UDP mapping timer of 5 min or more",
                "udp.lifetime_bidirectional_s", _at_least(UDP_MAPPING_RECOMMENDED_S)),
    Requirement("RFC 4787", "REQ-1", "4.1", "MUST", "endpoint-independent mapping",
                "nat.mapping", _equals("endpoint-independent")),
    Requirement("RFC 5382", "REQ-1", "4.1", "MUST", "endpoint-independent mapping for TCP",
                "nat.tcp_mapping", _equals("endpoint-independent")),
    Requirement("RFC 4787", "REQ-8", "5", "RECOMMENDED", _FILTERING, "nat.filtering", _filtering),
    Requirement("RFC 4787", "REQ-9", "6", "MUST", "support hairpinning", "nat.hairpinning", _equals(True)),
    Requirement("RFC 5382", "REQ-8", "", "MUST", "support hairpinning for TCP",
                "nat.tcp_hairpinning", _equals(True)),
    Requirement("RFC 5961", "RST acceptance", "3.2", "endpoint",
                "an RST resets a connection only if its sequence number is the receiver's next expected",
                "tcp.expiry", _rst_accepted, nat_only=False),
)  # fmt: skip


def _nat_state(profile: Profile) -> bool | None:
    """True: the device translates; False: no NAT; None: not measured."""
    return profile.nat.translates()


def requirements(profile: Profile) -> list[Row]:
    """Each measured behaviour beside the RFC requirement it meets or misses (RFC 4787, RFC 5382
    for NATs, TCP idle timeouts per port included; RFC 5961 for the ends an RST at expiry reaches)."""
    nat = _nat_state(profile)
    rows = []
    for req in REQUIREMENTS:
        for key, finding in profile.findings():
            if base_key(key) != req.finding:
                continue
            verdict, note = (NOT_MEASURED, "") if finding.value is None else req.judge(finding.value, profile)
            if req.nat_only and nat is False:
                would = {MEETS: "; as a NAT it would meet it", MISSES: "; as a NAT it would miss it"}
                note, verdict = "no NAT: addresses pass unchanged" + would.get(verdict, ""), NOT_APPLICABLE
            elif req.nat_only and nat is None and verdict in (MEETS, MISSES):
                note = "; ".join(filter(None, [note, "applies if the device translates (NAT not measured)"]))
            row = Row(
                req.rfc, req.req, req.section, req.level, req.words, key, show(key, finding), verdict, note
            )
            rows.append(row)
    return rows


# -- profile.md -----------------------------------------------------------------------------------


def _cell(text: Any) -> str:
    """A value safe inside a markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _links(paths: list[str]) -> str:
    return ", ".join(f"[{p}]({p})" for p in paths) if paths else "none"


def render_markdown(profile: Profile, rows: list[Row] | None = None) -> str:
    """profile.md: the device, how it was attached and read, the findings with their evidence, the
    requirement table, and how each finding was measured."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent),
        autoescape=False,  # markdown, not HTML
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["cell"] = _cell
    env.filters["links"] = _links
    env.filters["seconds"] = seconds_words
    findings = [
        {
            "key": key,
            "label": label(key),
            "value": show(key, finding),
            "evidence": finding.evidence,
            "how": finding.how or SPECS[base_key(key)].how,
            "probes": probe_summary(finding),
            "notes": finding.notes,
            "measured": finding.measured,
        }
        for key, finding in profile.findings()
    ]
    template = env.get_template("profile.md.j2")
    return template.render(
        profile=profile,
        device=profile.device,
        findings=findings,
        rows=requirements(profile) if rows is None else rows,
    )
