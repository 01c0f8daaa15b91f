"""The built book holds no path of the machine that built it.

A module constant rendered as its value (``WEIGHTS_DIR = PosixPath('/home/me/ddpmdp/src/…')``) or a
path a notebook printed would show a reader the builder's folders. ``test_book_built_elsewhere_names_no_machine_path``
copies this checkout (its tracked files and untracked, not ignored ones: the generated and
executed files come along) into a temporary folder, builds the book there with the package
imported from that copy (``jupyter-book build --all -W -n --keep-going``), and searches every file
of the built HTML for that folder's absolute path and for the home directory.
``book/_ext/ddpmdp_sphinx.py`` (``portable_text``) is what keeps them out.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEXT_SUFFIXES = {".html", ".js", ".txt", ".ipynb", ".md", ".json", ".css", ".xml", ".inv", ""}


def machine_paths_in(folder: Path, needles: list[str]) -> list[str]:
    """``file: needle`` for every text file under ``folder`` that contains one of ``needles``."""
    hits = []
    for p in sorted(folder.rglob("*")):
        if not p.is_file() or p.suffix not in TEXT_SUFFIXES:
            continue
        try:
            text = p.read_text(errors="ignore")
        except OSError:
            continue
        hits += [f"{p.relative_to(folder)}: {n}" for n in needles if n in text]
    return hits


def _copy_checkout(dest: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


@pytest.mark.slow
def test_book_built_elsewhere_names_no_machine_path(tmp_path):
    jb = Path(sys.executable).parent / "jupyter-book"
    if not jb.is_file():
        pytest.skip("jupyter-book is not installed (pip install 'ddpmdp[book]')")
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs git and a git checkout (the copy is made from git ls-files)")
    checkout = tmp_path / "checkout"
    _copy_checkout(checkout)
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    env["PYTHONPATH"] = str(checkout / "src")
    proc = subprocess.run([str(jb), "build", "--all", "-W", "-n", "--keep-going", str(checkout)], cwd=checkout,
                          env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, f"the strict book build failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}"
    html = checkout / "_build" / "html"
    assert (html / "book" / "api.html").is_file()
    needles = sorted({str(checkout), str(checkout.resolve()), str(tmp_path.resolve())} | (
        {os.path.expanduser("~")} - {"", "/", "~"}))
    hits = machine_paths_in(html, needles)
    assert not hits, "the built book shows paths of the machine that built it:\n" + "\n".join(hits[:20])
    api = (html / "book" / "api.html").read_text()
    assert "WEIGHTS_DIR" in api and "&lt;ddpmdp&gt;/models/weights" in api  # shown, relative to the package


def test_machine_path_search_finds_a_planted_path(tmp_path):
    """The check itself: a path planted into a built page is found."""
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "api.html").write_text(f"<em>PosixPath('{tmp_path}/src/ddpmdp/models/weights')</em>")
    (tmp_path / "book" / "ok.html").write_text("<em>PosixPath('&lt;ddpmdp&gt;/models/weights')</em>")
    assert machine_paths_in(tmp_path, [str(tmp_path / "src")]) == [f"book/api.html: {tmp_path / 'src'}"]
