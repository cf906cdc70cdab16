"""A suite of one's own for tests/test_repeat.py: no lab, cases that record a client
timeout margin figure as the plugin does, one that fails in the repetition named by
$REPEAT_FAIL_AT, one that is interrupted (Ctrl-C) in $REPEAT_INTERRUPT_AT, one that stops
the session in $REPEAT_STOP_AT as leaving --pause-on-fail's prompt does; the repetition is
counted in the file $REPEAT_COUNTER."""

import os
from pathlib import Path

SEEN = []  # module state: a repetition that imported this module afresh starts empty


def _repetition() -> int:
    return int(Path(os.environ["REPEAT_COUNTER"]).read_text() or 0)


def test_steady(case):
    """A case that passes every time, with a margin."""
    counter = Path(os.environ["REPEAT_COUNTER"])
    counter.write_text(str(_repetition() + 1))
    SEEN.append(1)
    assert len(SEEN) == 1, "module state carried over from an earlier repetition"
    case.figure("client timeout margins", [{"load": "a", "margin (s)": 2.5}, {"load": "b", "margin (s)": 1.25}])


def test_sometimes(case):
    """A case that fails in one repetition."""
    n = _repetition()
    case.figure("client timeout margins", [{"load": "a", "margin (s)": 0.5 + n / 10}])
    if str(n) == os.environ.get("REPEAT_INTERRUPT_AT"):
        raise KeyboardInterrupt
    assert str(n) != os.environ.get("REPEAT_FAIL_AT"), f"failed in repetition {n}"


def test_no_load(case, request):
    """A case without a client load."""
    if str(_repetition()) == os.environ.get("REPEAT_STOP_AT"):
        request.session.shouldfail = "left the prompt (as --pause-on-fail's prompt does)"
