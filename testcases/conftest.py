"""Lab suites: every test here builds real networks (root, Open vSwitch).

The fixtures the scenario modules share, set by module constants beside LAB_TOPOLOGY:
`fw` (node "fw" with the module's FIREWALL_POLICY), `servers` (the module's ECHO_SERVERS,
node -> ports, started for each case) and `collected` (the scenario's closing-figure
collection, see testcases/common.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from testcases.common import Collections

pytest_plugins = ["pytester"]

# Scenarios whose closing case is in another module than the cases it collects from (S1's
# test_s1_summary): under pytest-xdist their modules stay on one worker, in order, as when
# the scenario was one module. (S2, S3 and S5 close in the module of their variants.)
SHARED_COLLECTION = ("s1",)
# Modules whose cases share nothing but the lab's topology, the longest in the suite: under
# pytest-xdist each case is a scope of its own, so that two workers run them at once (each
# worker builds the module's lab for the cases it gets: about a second).
BY_CASE = ("test_s2_sync", "test_s6_known_firewall", "test_s6_external_device")


def scope_of(nodeid: str) -> str | None:
    """The xdist scope of a lab case, where it is not its module (None): a scenario in
    SHARED_COLLECTION, or the case itself in a BY_CASE module."""
    from lab.catalog import suite_of

    stem = Path(nodeid.split("::", 1)[0]).stem
    suite = suite_of(stem)
    if suite in SHARED_COLLECTION:
        return f"scenario {suite}"
    if stem in BY_CASE:
        return nodeid
    return None


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Lab cases marked `lab`; with labs side by side (pytest-xdist), the longest scopes
    first (lab/schedule.py), the same order on every worker."""
    for item in items:
        if "testcases" in str(item.path):
            item.add_marker(pytest.mark.lab)
    workers = config.getoption("numprocesses", None) if config.pluginmanager.has_plugin("xdist") else None
    if not (workers or hasattr(config, "workerinput")):
        return
    from lab.results import safe_name
    from lab.schedule import expected_seconds, longest_first

    def scope(item: pytest.Item) -> str:
        return scope_of(item.nodeid) or item.nodeid.split("::", 1)[0]

    def case(item: pytest.Item) -> str:
        return safe_name(f"{item.path.stem}.{item.name}")

    items[:] = longest_first(items, scope, case, expected_seconds())


def _module_setting(request: pytest.FixtureRequest, name: str) -> Any:
    module = request.module
    if not hasattr(module, name):
        raise pytest.UsageError(
            f"{module.__name__} uses the {request.fixturename} fixture but sets no {name}"
        )
    return getattr(module, name)


@pytest.fixture
def fw(request: pytest.FixtureRequest, lab: Any) -> Any:
    """The firewall (node "fw") with the module's FIREWALL_POLICY loaded."""
    node = lab.node("fw")
    node.apply_policy(_module_setting(request, "FIREWALL_POLICY"))
    return node


@pytest.fixture
def servers(request: pytest.FixtureRequest, lab: Any) -> dict[str, Any]:
    """This case's echo servers (ended with the case), one per node of the module's
    ECHO_SERVERS (node -> ports), named echo-<node>: their logs hold only its sessions."""
    from lab.traffic import start_echo_server

    wanted: dict[str, tuple[int, ...]] = _module_setting(request, "ECHO_SERVERS")
    return {node: start_echo_server(lab, node, list(ports), f"echo-{node}") for node, ports in wanted.items()}


@pytest.fixture(scope="session")
def collections() -> Collections:
    """The run's closing-figure collections, one per scenario."""
    return Collections()


@pytest.fixture
def collected(request: pytest.FixtureRequest, collections: Collections) -> dict[str, Any]:
    """The closing-figure collection of this module's scenario (its LAB_TOPOLOGY), shared
    with the scenario's other modules: variant name -> what its case measured."""
    return collections.of(_module_setting(request, "LAB_TOPOLOGY"))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`--dist loadscope` (`sessionlab run -n`, `--host`), with the modules of a scenario
    in SHARED_COLLECTION as one scope (its closing case sees every variant's case) and each
    case of a BY_CASE module a scope of its own (`scope_of`)."""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ScenarioScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return scope_of(nodeid) or str(super()._split_scope(nodeid))

    return ScenarioScheduling(config, log)
