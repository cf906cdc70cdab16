"""Lab suites: every test here builds real networks (root, Open vSwitch)."""

import pytest

pytest_plugins = ["pytester"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "testcases" in str(item.path):
            item.add_marker(pytest.mark.lab)
