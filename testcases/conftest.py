"""Lab suites: every test here builds real networks (root, Open vSwitch).

The fixtures the scenario modules share, set by module constants beside LAB_TOPOLOGY:
`fw` (node "fw" with the module's FIREWALL_POLICY), `servers` (the module's ECHO_SERVERS,
node -> ports, started for each case) and `collected` (the scenario's closing-figure
collection, see testcases/common.py); and `own_label` (testcases/own_runs.py) for the
harness's modules that run `sessionlab` themselves.
"""

from __future__ import annotations

from typing import Any

import pytest

from testcases.common import Collections
from testcases.own_runs import own_label  # noqa: F401  (a fixture, used by name)

pytest_plugins = ["pytester"]


@pytest.hookimpl(tryfirst=True)  # the marks before `-m` deselects by them
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Lab cases marked `lab` (and `alone` in modules that need the machine to themselves);
    with labs side by side (pytest-xdist), in testcases/scheduling.py's order."""
    from testcases.scheduling import is_alone, order, scope_of

    for item in items:
        if "testcases" in str(item.path):
            item.add_marker(pytest.mark.lab)
            if is_alone(scope_of(item.nodeid)):
                item.add_marker(pytest.mark.alone)
    workers = config.getoption("numprocesses", None) if config.pluginmanager.has_plugin("xdist") else None
    if workers or hasattr(config, "workerinput"):
        items[:] = order(items)


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
    """`--dist loadscope` (`sessionlab run -n`, `--host`): testcases/scheduling.py's scopes,
    order and rule for modules that need the machine to themselves."""
    if config.getvalue("dist") != "loadscope":
        return None
    from testcases.scheduling import scheduler

    return scheduler(config, log)
