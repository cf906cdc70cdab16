"""`sessionlab report --pack RUN` and `report RUN`: one archive whose report's links all open
where it is unpacked; a run's summary with each failure's reason."""

import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from lab.errors import ConfigError
from lab.pack import linked_files, pack

SESSIONLAB = str(Path(sys.executable).with_name("sessionlab"))


def _run(tmp_path: Path) -> Path:
    from lab.report import write_report
    from lab.results import Case

    run = tmp_path / "results" / "20261129-010203"
    case = Case(name="test_s9_demo.test_one", path=run / "test_s9_demo.test_one", verdict="failed")
    case.message = "AssertionError: the client hung\nmore"
    case.path.mkdir(parents=True)
    (case.path / "c.pcap").write_bytes(b"x")
    case.keep(case.path / "c.pcap", "a capture")
    lab = run / "test_s9_demo-lab"
    lab.mkdir()
    (lab / "fw ruleset.nft").write_text("table inet x {}")
    case.keep(lab / "fw ruleset.nft", "the ruleset")
    (run / "not-linked.log").write_text("stays out")
    write_report(run, [case])
    return run


def test_the_archive_holds_the_report_and_what_it_links(tmp_path):
    run = _run(tmp_path)
    archive = tmp_path / "out.tar.gz"
    count, missing = pack(run, archive)
    assert missing == [] and count == 4  # report, summary, capture, ruleset
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        tar.extractall(tmp_path / "unpacked", filter="data")
    assert "20261129-010203/not-linked.log" not in names
    unpacked = tmp_path / "unpacked" / "20261129-010203"
    links = re.findall(r"href='([^'#][^']*)'", (unpacked / "report.html").read_text())
    assert len(links) == 2 and all((unpacked / link).is_file() for link in links)


def test_pack_and_summary_from_the_command_line(tmp_path):
    run = _run(tmp_path)
    results = str(run.parent)
    packed = subprocess.run(
        [SESSIONLAB, "report", "--pack", "latest", "--results", results, "--to", str(tmp_path / "r.tar.gz")],
        capture_output=True,
        text=True,
    )
    assert packed.returncode == 0, packed.stderr
    assert (tmp_path / "r.tar.gz").is_file() and "20261129-010203/report.html" in packed.stdout
    summary = subprocess.run(
        [SESSIONLAB, "report", "latest", "--results", results], capture_output=True, text=True
    )
    assert summary.returncode == 1  # a case failed
    assert "failed: test_s9_demo.test_one: the client hung" in summary.stdout
    assert str(run / "report.html") in summary.stdout


@pytest.mark.parametrize(
    "args, says",
    [
        (["--pack", "nowhere"], "nowhere: no such run folder"),
        (["--pack", "latest", "--to", "/nonexistent/dir/x.tar.gz"], "/nonexistent/dir is not a folder"),
        (["--to", "x.tar.gz", "latest"], "--to names --pack's archive"),
        (["latest", "--pack", "latest"], "RUN and --pack together"),
    ],
)
def test_bad_pack_input_is_one_line(tmp_path, args, says):
    run = _run(tmp_path)
    result = subprocess.run(
        [SESSIONLAB, "report", *args, "--results", str(run.parent)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and says in lines[0], result.stderr


def test_a_folder_without_a_report_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="no report.html"):
        linked_files(tmp_path)
