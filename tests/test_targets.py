"""Say exactly what will run: `run` targets match a suite, a module, a node id or a case
name exactly, an ambiguous case name is refused with its candidates, `list` fits 80
columns with names whole; and what the command finds on its own: tools off a PATH without
the sbin folders, its version."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lab.catalog import ROOT, resolve, suites
from lab.errors import ConfigError

SESSIONLAB = str(Path(sys.executable).with_name("sessionlab"))


def sessionlab(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SESSIONLAB, *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd="/",
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.parametrize("target", ["e", "]", "keepalive", "s1_keepalive", "test_s1", "estab"])
def test_no_target_matches_by_a_part_of_a_name(target):
    """`run e` selected 9 cases and `run ']'` 76: a part of a name is no target."""
    with pytest.raises(ConfigError, match=f"unknown suite or case {re.escape(target)} "):
        resolve([target])


def test_a_case_name_in_several_modules_is_refused_with_its_candidates():
    with pytest.raises(ConfigError) as refused:
        resolve(["test_distribution"])
    message = str(refused.value)
    assert "case test_distribution is in 2 modules: name one of" in message
    for module in ("test_s4_l4", "test_s4_l4_sdn"):
        assert f"testcases/{module}.py::test_distribution" in message
    # with its [params] too, each candidate a node id that `run` takes
    with pytest.raises(ConfigError, match=r"test_s4_l4_sdn.py::test_distribution\[weighted\]"):
        resolve(["test_distribution[weighted]"])
    (one,) = resolve(["testcases/test_s4_l4_sdn.py::test_distribution[weighted]"])
    assert one == f"{ROOT}/testcases/test_s4_l4_sdn.py::test_distribution[weighted]"
    assert len(resolve(["testcases/test_s4_l4.py::test_distribution"])) == 3  # every variant


def test_node_ids_are_checked_against_the_cases():
    with pytest.raises(ConfigError, match="no case 'nosuch' in testcases/test_s1_keepalive.py"):
        resolve(["testcases/test_s1_keepalive.py::nosuch"])
    with pytest.raises(ConfigError, match="no such file testcases/nosuch.py"):
        resolve(["testcases/nosuch.py::test_x"])
    absolute = str(ROOT / "testcases/test_s1_keepalive.py::test_service_direction_server_push[no-fix]")
    assert resolve([absolute]) == [absolute]


def test_suites_modules_and_exact_names_resolve():
    assert resolve(["s1"]) == [str(p) for p in suites()["s1"]]
    assert resolve(["test_s1_keepalive"]) == resolve(["test_s1_keepalive.py"])
    assert resolve(["test_s1_keepalive"]) == [str(ROOT / "testcases/test_s1_keepalive.py")]
    variants = resolve(["test_service_direction_server_push"])
    assert len(variants) == 3 and all("test_s1_keepalive.py::" in v for v in variants)
    (one,) = resolve(["test_service_direction_server_push[no-fix]"])
    assert one.endswith("::test_service_direction_server_push[no-fix]")


def test_every_problem_is_named_at_once():
    with pytest.raises(ConfigError) as refused:
        resolve(["e", "s1", "test_distribution", "x"])
    message = str(refused.value)
    assert "unknown suite or case e, x" in message and "test_distribution is in 2 modules" in message


def test_an_empty_keyword_is_refused():
    from lab.catalog import check_keyword

    for empty in ("", "  "):
        with pytest.raises(ConfigError, match="an empty expression selects every case"):
            check_keyword(empty)


def test_list_fits_80_columns_with_every_name_whole():
    from lab.catalog import collect

    cases = collect()
    result = sessionlab("list", env={"COLUMNS": "80"})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    names = {line.strip() for line in lines if line.startswith("  ") and not line.startswith("   ")}
    assert names >= {c.name for c in cases}
    # each case under its module's header, each module under its suite's
    for case in cases:
        header = lines.index(case.module)
        suite = max(n for n, line in enumerate(lines[:header]) if line.startswith("suite "))
        assert lines[suite].startswith(f"suite {case.suite}: ")
        assert f"  {case.name}" in lines[header:]


def test_tools_in_sbin_are_found_when_path_lacks_it(tmp_path):
    """A plain `su` to root leaves /usr/sbin off PATH: `run` said ethtool was missing and
    `doctor` that the kernel lacked conntrack. The command puts the sbin folders back."""
    if os.geteuid() != 0 or not shutil.which("ethtool"):
        pytest.skip("needs root and ethtool installed")
    bare = "/usr/bin:/bin"
    assert shutil.which("ethtool", path=bare) is None  # what the stripped PATH alone finds
    result = sessionlab("run", "-k", "no_case_is_called_this", "--results", str(tmp_path), env={"PATH": bare})
    assert result.stderr.strip() == "sessionlab: no case matches 'no_case_is_called_this'", result.stderr
    stripped = sessionlab("doctor", env={"PATH": bare, "COLUMNS": "200"})
    full = sessionlab("doctor", env={"COLUMNS": "200"})
    assert stripped.returncode == full.returncode, stripped.stdout


def test_sbin_folders_are_appended_to_path(monkeypatch):
    from lab.cli import SBIN, _sbin_on_path

    monkeypatch.setenv("PATH", "/opt/x/bin:/usr/bin:/sbin")
    _sbin_on_path()
    assert os.environ["PATH"] == "/opt/x/bin:/usr/bin:/sbin:/usr/local/sbin:/usr/sbin"
    _sbin_on_path()  # nothing twice
    assert os.environ["PATH"].split(":").count("/usr/sbin") == 1 and set(SBIN) <= set(
        os.environ["PATH"].split(":")
    )


def test_version_names_the_package_and_the_commit():
    from importlib.metadata import version

    result = sessionlab("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"sessionlab {version('sessionlab')}")
    if (ROOT / ".git").exists():
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
        assert f"commit {head.stdout.strip()[:12]}" in result.stdout


def test_a_module_that_cannot_be_imported_hides_only_its_own_cases(tmp_path):
    """Another module's import error does not stop `run CASE` (it is named when a target is
    not found). In a fresh interpreter: the suites' copies share their modules' names."""
    import lab.catalog

    for module in lab.catalog.SUITES_DIR.glob("*.py"):
        shutil.copy(module, tmp_path)
    (tmp_path / "test_zz_broken.py").write_text("import no_such_module_anywhere\n")
    script = f"""
import lab.catalog
from lab.errors import ConfigError
lab.catalog.SUITES_DIR = lab.catalog.Path({str(tmp_path)!r})
print(lab.catalog.resolve(["test_session_log"])[0])
try:
    lab.catalog.resolve(["nosuch"])
except ConfigError as exc:
    print(exc)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    found, refused = result.stdout.splitlines()[-2:]
    assert found.endswith("test_s5_session_log.py::test_session_log"), result.stdout + result.stderr
    assert refused.startswith("unknown suite or case nosuch ") and refused.endswith(
        "a module outside the checkout could not be collected (`run` it to see why)"
    )
