"""NAT behaviour discovery (RFC 5780) with coturn's `turnutils_natdiscovery`: its command
line, and its output read as RFC 4787 terms (mapping, filtering, hairpinning, port
preservation), each verdict with the lines it came from.

The client runs inside, behind the device; the STUN server (`lab.devices.stun`) outside,
on two addresses. What the tool does, per test (coturn 4.6.1, src/apps/natdiscovery):

- mapping (-m): binding requests from one local port to primary:port (I), to
  other-address:port (II), to other-address:alt-port (III); the mapped endpoint of II
  equal to I's is endpoint-independent, else III's equal to II's address-dependent, else
  address-and-port-dependent. Mapped == local in I prints "No NAT!".
- filtering (-f): request I, then I with CHANGE-REQUEST ip+port (II), then port only
  (III): an answer to II is endpoint-independent filtering, else to III
  address-dependent, else address-and-port-dependent.
- hairpinning (-H): asks its mapped endpoint, then sends from a second socket to that
  mapped endpoint; the first socket receiving that request is hairpinning. The tool
  prints no verdict; it is read from "Received a request".
- lifetime (-t -T s): a mapping made, then after `s` seconds a request from a second
  socket asks (RESPONSE-PORT) for the answer on the first mapping: it arrives if the
  mapping lived. One wait per run: a bracket needs several runs.
Each answer is awaited 3 s (fixed in the tool), once: a lost packet reads as filtering.

Run hairpinning on its own: when its first request goes unanswered, the tool ends
("Address family not supported") before the tests after it, and it runs them in a fixed
order (lifetime, hairpinning, mapping, filtering) whatever the flags' order. Always give
the local address (-L): the tool's "No NAT!" compares it with the mapped one, and without
it each socket takes another port.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from lab.config import checks, refuse

if TYPE_CHECKING:
    from lab.devices.base import Runner

MAPPINGS = ("endpoint-independent", "address-dependent", "address-and-port-dependent")
KINDS = (*MAPPINGS, "no-nat", "unknown")
TESTS = {"lifetime": "-t", "hairpinning": "-H", "mapping": "-m", "filtering": "-f"}
RECEIVE_WAIT_S = 3  # natdiscovery's fixed wait for each answer
_RECEIVES = {"mapping": 3, "filtering": 3, "hairpinning": 3, "lifetime": 2}  # at most, per test

_SECTION = re.compile(r"-= (Mapping Lifetime|Hairpinning|Mapping|Filtering|Collision) Behavior Discovery =-")
_ADDRESS = re.compile(
    r"IPv4\. (Response origin|Other addr|UDP reflexive addr|Local addr|Mapped Address):"
    r"(?: :)? ([\d.]+:\d+)\s*$"
)
_VERDICT = re.compile(
    r"No NAT!|NAT with (Endpoint Independent|Address Dependent|Address and Port Dependent) "
    r"(Mapping|Filtering)!"
)
_TIMEOUT = ("STUN receive timeout", "The response is not a STUN message")
_ERROR = (
    "The response is an error",
    "The response is an unrecognized error",
    "The response is not a response message",
    "Wrong type of response",
    "Cannot read the response",
)


def discovery_argv(
    server: str,
    local: str,
    tests: Sequence[str] = ("mapping", "filtering"),
    port: int = 3478,
    local_port: int | None = None,
    lifetime_s: int | None = None,
    padding: bool = False,
) -> list[str]:
    """turnutils_natdiscovery's command line: `tests` (of TESTS) against `server` (the STUN
    server's primary address: coturn names its second one as the other address) from the
    local address `local` (and `local_port`, or any); `lifetime_s`: the lifetime test's
    wait; `padding`: 1500 bytes of PADDING in each request (not with lifetime)."""
    problems: list[str] = []
    checks.host(server, "natdiscovery.server", problems)
    checks.host(local, "natdiscovery.local", problems)
    checks.port(port, "natdiscovery", problems)
    if local_port is not None:
        checks.port(local_port, "natdiscovery", problems, "local_port")
    unknown = [t for t in tests if t not in TESTS]
    if unknown or not tests:
        problems.append(f"natdiscovery.tests: {list(tests)!r} is not a choice of {', '.join(TESTS)}")
    if ("lifetime" in tests) != (lifetime_s is not None):
        problems.append("natdiscovery.lifetime_s: the lifetime test and its wait go together")
    elif lifetime_s is not None and not checks.is_count(lifetime_s):
        problems.append(f"natdiscovery.lifetime_s: {lifetime_s!r} is not a whole number of seconds")
    refuse(problems)
    argv = ["turnutils_natdiscovery", *(TESTS[t] for t in TESTS if t in tests)]
    if lifetime_s is not None:
        argv += ["-T", str(lifetime_s)]
    if padding:
        argv.append("-P")
    argv += ["-p", str(port), "-L", local]
    if local_port is not None:
        argv += ["-l", str(local_port)]
    return [*argv, server]


def discovery_timeout(tests: Sequence[str], lifetime_s: int | None = None) -> float:
    """The longest a run of `tests` can take: every answer awaited in full, and the wait."""
    return sum(_RECEIVES[t] for t in tests) * RECEIVE_WAIT_S + (lifetime_s or 0) + 2


@dataclass(frozen=True)
class StunAnswer:
    """One binding answer the tool printed: the endpoint it came from, the server's other
    endpoint (None: not an RFC 5780 answer), the mapped (XOR-MAPPED) endpoint, the local
    endpoint that asked, and whether MAPPED-ADDRESS differed (an ALG rewrote it)."""

    origin: str | None
    other: str | None
    mapped: str
    local: str
    alg: bool | None


@dataclass(frozen=True)
class Step:
    """One event of a test: an answer, a wait that ran out, a request received (the
    hairpin), the tool's verdict, or an error answer; with the lines it was printed as."""

    kind: Literal["answer", "timeout", "request", "verdict", "error"]
    lines: tuple[str, ...]
    answer: StunAnswer | None = None


def _host(endpoint: str | None) -> str | None:
    return endpoint.rsplit(":", 1)[0] if endpoint else None


def _port(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1])


def parse_sections(text: str) -> dict[str, list[Step]]:
    """The tool's output as its tests ("mapping lifetime", "hairpinning", "mapping",
    "filtering", "collision"), each the steps it printed; lines outside any test (its
    errors on stderr) under "". Outputs of several runs may be joined: a later run's test
    of the same name replaces the earlier one."""
    sections: dict[str, list[Step]] = {"": []}
    steps = sections[""]
    pending: list[str] = []
    fields: dict[str, str] = {}
    alg: bool | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if m := _SECTION.search(line):
            steps = sections[m[1].lower()] = []
            pending, fields, alg = [], {}, None
        elif line.startswith("===="):
            continue
        elif line.startswith("RFC 5780 response"):
            pending.append(line)
        elif m := _ADDRESS.search(line):
            pending.append(line)
            fields[m[1]] = m[2]
            if m[1] == "Local addr" and "UDP reflexive addr" in fields:
                found = StunAnswer(
                    fields.get("Response origin"),
                    fields.get("Other addr"),
                    fields["UDP reflexive addr"],
                    fields["Local addr"],
                    alg,
                )
                steps.append(Step("answer", tuple(pending), found))
                pending, fields, alg = [], {}, None
        elif line.startswith("-= ALG detected!") or line.startswith("No ALG:"):
            alg = line.startswith("-= ALG")
            pending.append(line)
        elif _VERDICT.search(line):
            steps.append(Step("verdict", (line,)))
        elif line.startswith(_TIMEOUT):
            steps.append(Step("timeout", (line,)))
        elif line.startswith("Received a request"):
            steps.append(Step("request", (line,)))
        elif line.startswith("turnutils_natdiscovery:"):
            # On stderr, so printed before the run's own (buffered) output: the tool's, not a test's.
            sections[""].append(Step("error", (line,)))
        elif line.startswith(_ERROR):
            steps.append(Step("error", (line,)))
    return sections


@dataclass(frozen=True)
class NatBehaviour:
    """The device's NAT behaviour in RFC 4787 terms, from the discovery tool's output.

    `mapping`, `filtering`: one of KINDS ("unknown": not run, no answer, or the server's
    answers do not allow it; `notes` says which). A device without NAT still filters:
    `filtering` is then "no-nat" and `filtering_without_nat` what was measured (a stateful
    firewall's own). `hairpinning`, `port_preservation`, `mapping_alive` (the lifetime
    test's mapping still answered after its wait), `alg` (MAPPED-ADDRESS rewritten):
    None where not measured or meaningless (without NAT). `lines`: per verdict, the
    output lines it came from."""

    mapping: str = "unknown"
    filtering: str = "unknown"
    filtering_without_nat: str | None = None
    hairpinning: bool | None = None
    port_preservation: bool | None = None
    mapping_alive: bool | None = None
    alg: bool | None = None
    mapped: str | None = None  # the first mapped endpoint the server saw
    notes: tuple[str, ...] = ()
    lines: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """As plain data (profile.json)."""
        return asdict(self)


def _answers(steps: Sequence[Step]) -> list[StunAnswer]:
    return [s.answer for s in steps if s.answer is not None]


def _behind_nat(answer: StunAnswer) -> bool:
    return answer.mapped != answer.local


def _kind_verdict(
    test: str, steps: list[Step] | None, notes: list[str]
) -> tuple[str, str | None, tuple[str, ...]]:
    """Mapping or filtering: (kind, kind measured although there is no NAT, lines)."""
    if steps is None:
        notes.append(f"{test}: not run")
        return "unknown", None, ()
    answers = _answers(steps)
    first = steps[0] if steps else None
    if first is None or first.answer is None:
        notes.append(f"{test}: no answer to the first request")
        return "unknown", None, first.lines if first else ()
    verdicts = [s for s in steps if s.kind == "verdict"]
    lines = first.lines + tuple(line for s in verdicts for line in s.lines)
    measured = None
    for step in verdicts:
        if (m := _VERDICT.search(step.lines[0])) and m[1]:
            measured = m[1].lower().replace(" ", "-")
    if first.answer.other is None:
        notes.append(f"{test}: the server's answer has no OTHER-ADDRESS (not RFC 5780)")
        measured = None
    elif _host(first.answer.other) == _host(first.answer.origin):
        notes.append(
            f"{test}: the server's other address {first.answer.other} shares the address it answered "
            f"from ({first.answer.origin}); ask coturn on its first listening address"
        )
        measured = None
    elif measured is None:
        notes.append(f"{test}: the tool gave no verdict")
    if not _behind_nat(answers[0]):
        return "no-nat", measured if test == "filtering" else None, lines
    return measured or "unknown", None, lines


def _second_event(
    test: str, steps: list[Step] | None, notes: list[str]
) -> tuple[bool | None, tuple[str, ...]]:
    """Hairpinning (the first socket received the second socket's request; meaningless
    without NAT) or lifetime (the first mapping still delivered the second answer)."""
    if steps is None:
        return None, ()
    lines = tuple(line for s in steps for line in s.lines)
    if not steps or steps[0].answer is None:
        notes.append(f"{test}: no answer to the first request")
        return None, lines
    if test == "lifetime":
        return len(_answers(steps)) > 1, lines
    if not _behind_nat(steps[0].answer):
        notes.append(f"{test}: no NAT (the second request went straight to the first socket)")
        return None, lines
    return any(s.kind == "request" for s in steps), lines


def parse_natdiscovery(text: str) -> NatBehaviour:
    """The NAT behaviour that turnutils_natdiscovery's output (of one run or several
    joined) shows; see NatBehaviour for what is None or "unknown" and why."""
    sections = parse_sections(text)
    notes: list[str] = [f"tool: {line}" for s in sections[""] for line in s.lines]
    mapping, _, mapping_lines = _kind_verdict("mapping", sections.get("mapping"), notes)
    filtering, without_nat, filtering_lines = _kind_verdict("filtering", sections.get("filtering"), notes)
    hairpinning, hairpin_lines = _second_event("hairpinning", sections.get("hairpinning"), notes)
    alive, alive_lines = _second_event("lifetime", sections.get("mapping lifetime"), notes)
    # Port preservation: the first mapping of each fresh local port, behind a NAT.
    firsts = [s[0] for s in sections.values() if s and s[0].answer is not None]
    natted = [s for s in firsts if s.answer is not None and _behind_nat(s.answer)]
    preserved = [_port(s.answer.mapped) == _port(s.answer.local) for s in natted if s.answer is not None]
    every = [a for steps in sections.values() for a in _answers(steps)]
    algs = [a.alg for a in every if a.alg is not None]
    lines = {
        "mapping": mapping_lines,
        "filtering": filtering_lines,
        "hairpinning": hairpin_lines,
        "mapping_alive": alive_lines,
        "port_preservation": tuple(line for s in natted for line in s.lines),
    }
    return NatBehaviour(
        mapping=mapping,
        filtering=filtering,
        filtering_without_nat=without_nat,
        hairpinning=hairpinning,
        port_preservation=all(preserved) if preserved else None,
        mapping_alive=alive,
        alg=any(algs) if algs else None,
        mapped=every[0].mapped if every and _behind_nat(every[0]) else None,
        notes=tuple(notes),
        lines={key: value for key, value in lines.items() if value},
    )


def discover(
    runner: Runner,
    node: str,
    server: str,
    local: str,
    port: int = 3478,
    hairpinning: bool = True,
    lifetime_s: int | None = None,
) -> tuple[NatBehaviour, str]:
    """Run the discovery from `node` (mapping and filtering; hairpinning on its own; the
    lifetime test with its wait, if given) and read it; returns it and the tool's output
    (the evidence to keep). The runs go at once, each from a local port of its own (the
    tool's choice): most of their time is waiting out STUN timeouts (about 3 s each)."""
    from concurrent.futures import ThreadPoolExecutor

    runs: list[tuple[Sequence[str], int | None]] = [(("mapping", "filtering"), None)]
    if hairpinning:
        runs.append((("hairpinning",), None))
    if lifetime_s is not None:
        runs.append((("lifetime",), lifetime_s))

    def one(tests: Sequence[str], wait: int | None) -> str:
        argv = discovery_argv(server, local, tests, port, lifetime_s=wait)
        return str(runner.run(node, argv, timeout=discovery_timeout(tests, wait), check=False))

    with ThreadPoolExecutor(len(runs)) as pool:
        outputs = list(pool.map(lambda run: one(*run), runs))  # in the runs' order
    text = "".join(outputs)
    return parse_natdiscovery(text), text
