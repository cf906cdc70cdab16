"""A lab suite of one's own that cannot be imported (for the CLI's bad-input tests)."""

import no_such_module_anywhere  # noqa: F401


def test_never_runs(lab, case):
    """Never collected"""
