"""`sessionlab report --pack RUN`: one archive with a run's report and the evidence it links,
so the report reads, and its links open, wherever the archive is unpacked.

The archive holds `<run>/report.html`, `<run>/summary.json` (and `run.json` when the run
wrote one) and every file the report links, each at its path relative to the run folder:
the report's relative links stay true. Files the run folder holds but the report does not
link (the labs' rulesets and logs, say) stay out; `clean` and pruning never touch it.
"""

from __future__ import annotations

import re
import tarfile
from pathlib import Path
from urllib.parse import unquote

from lab.errors import ConfigError

_HREF = re.compile(r"""href=(['"])(.*?)\1""")
_ALWAYS = ("report.html", "summary.json", "run.json", "repetitions.json")


def linked_files(run: Path) -> tuple[list[Path], list[str]]:
    """The files `run/report.html` links inside the run folder (relative to it), and the
    links that point at no file (kept out, listed). A report it links (a repeated run's
    repetitions' reports, `rep-<i>/report.html`) brings the files that report links, and
    its folder's summary.json and run.json."""
    report = run / "report.html"
    if not report.is_file():
        raise ConfigError(f"{run}: no report.html (not a run folder, or a run that did not finish)")
    found: dict[Path, None] = {}
    missing: list[str] = []
    root = run.resolve()
    pages = [report.resolve()]
    while pages:
        page = pages.pop(0)
        for _, link in _HREF.findall(page.read_text(errors="replace")):
            target = unquote(link.split("#", 1)[0]).replace("&amp;", "&").replace("&#x27;", "'")
            if not target or "://" in target or target.startswith(("/", "mailto:")):
                continue
            path = (page.parent / target).resolve()
            if not path.is_relative_to(root):
                missing.append(f"{link} (outside the run folder)")
            elif path.is_file():
                inner = path.relative_to(root)
                if path.name == "report.html" and inner not in found and path != report.resolve():
                    pages.append(path)
                    found.update({inner.parent / n: None for n in _ALWAYS[1:] if (path.parent / n).is_file()})
                found[inner] = None
            else:
                missing.append(link)
    return list(found), missing


def pack(run: Path, archive: Path) -> tuple[int, list[str]]:
    """Write `archive` (.tar.gz) with the run's report, summary and linked evidence under one
    folder named as the run; how many files it holds and the links that found no file."""
    run = run.resolve()
    files, missing = linked_files(run)
    if archive.exists() and archive.is_dir():
        raise ConfigError(f"--pack: {archive} is a folder: give the archive's file name")
    if not archive.parent.is_dir():
        raise ConfigError(f"--pack: {archive.parent} is not a folder")
    members = [Path(name) for name in _ALWAYS if (run / name).is_file()]
    members += [p for p in files if p not in members]
    partial = archive.with_name(f".{archive.name}.part")
    try:
        with tarfile.open(partial, "w:gz") as tar:
            for member in members:
                tar.add(run / member, arcname=f"{run.name}/{member}", recursive=False)
        partial.replace(archive)
    except OSError as exc:
        raise ConfigError(f"--pack: cannot write {archive}: {exc.strerror or exc}") from None
    finally:
        partial.unlink(missing_ok=True)
    return len(members), missing
