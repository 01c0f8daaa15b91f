"""Forking the book: every notebook page carries a working papermill command (its re-run box, from
``params/paper/NAME.yaml``), a notebook downloaded from the book runs outside a checkout with that
command and the data folder as a parameter, and writes beside itself, and nothing overwrites the book's
generated files unless asked (``write_book=True``)."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from ddpmdp.book.runtime.run_config import OUTPUTS_FOLDER, resolve_out_dir
from ddpmdp.errors import DdpmdpError

jupytext = pytest.importorskip("jupytext")
pytest.importorskip("papermill")

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "notebooks").glob("*.py"))
BOX = re.compile(r"^# ```\{rerun-box\} (\w+)\n# ```$", re.M)


def rerun_command(source: Path) -> list[str]:
    """The papermill command of a notebook's re-run box (the ``rerun-box`` directive in its source,
    rendered from :func:`ddpmdp.book.runtime.rerun.rerun_markdown`), as argv."""
    from ddpmdp.book.runtime.rerun import rerun_markdown

    box = BOX.search(source.read_text())
    assert box and box.group(1) == source.stem, f"{source.name}: no re-run box for {source.stem}"
    text = rerun_markdown(source.stem, "https://github.com/owner/repo")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("papermill ")]
    assert len(lines) == 1, f"{source.name}: the box needs exactly one papermill command"
    return shlex.split(lines[0])


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_every_notebook_has_a_rerun_box_with_a_papermill_command(source):
    argv = rerun_command(source)
    assert argv[:3] == ["papermill", f"{source.stem}.ipynb", f"my_{source.stem}.ipynb"]
    # parameters from the paper's YAML file, so that mappings and lists keep their types
    assert argv[3:5] == ["-f", f"{source.stem}.yaml"] and (ROOT / "params" / "paper" / argv[4]).is_file()


def _fake_checkout(tmp: Path) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "_toc.yml").write_text("root: index\n")
    (tmp / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    (tmp / "book" / "_generated").mkdir(parents=True)
    return tmp


def test_out_dir_defaults_beside_the_notebook_and_never_overwrites_the_book_unless_asked(tmp_path, monkeypatch):
    monkeypatch.delenv("DDPMDP_REPO", raising=False)
    outside = tmp_path / "downloads"
    outside.mkdir()
    assert resolve_out_dir(None, "cifar10_nll", cwd=outside) == (outside / OUTPUTS_FOLDER / "cifar10_nll").resolve()
    assert resolve_out_dir("mine", "cifar10_nll", cwd=outside) == (outside / "mine").resolve()
    repo = _fake_checkout(tmp_path / "repo")
    with pytest.raises(DdpmdpError, match="write_book=True"):
        resolve_out_dir("book/_generated", "cifar10_nll", cwd=repo)
    with pytest.raises(DdpmdpError, match="inside the book"):
        resolve_out_dir(str(repo / "book" / "_generated"), "cifar10_nll", cwd=repo / "book")
    assert resolve_out_dir("book/_generated", "x", cwd=repo, write_book=True) == (repo / "book" / "_generated").resolve()
    assert resolve_out_dir("runs/out", "x", cwd=repo / "book") == (repo / "runs" / "out").resolve()


@pytest.mark.slow
def test_downloaded_notebook_runs_outside_a_checkout_with_the_box_command(tmp_path):
    """The cifar10_nll box command, run as a reader would: a downloaded .ipynb and the downloaded
    ``params/paper/cifar10_nll.yaml`` in a folder outside any checkout, papermill from the shell with
    ``data_dir`` set, plus one more -y that shrinks the run (random-weight model on the CPU, two
    images) so that the test is quick. Outputs land beside the notebook; the book's generated files
    are untouched."""
    if not os.environ.get("DDPMDP_DATA"):
        pytest.skip("DDPMDP_DATA is not set")
    import nbformat

    nb = jupytext.read(ROOT / "notebooks" / "cifar10_nll.py")
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata.pop("jupytext", None)
    nbformat.write(nb, tmp_path / "cifar10_nll.ipynb")
    generated = ROOT / "book" / "_generated"
    before = {p.name: p.stat().st_mtime_ns for p in generated.iterdir()}
    (tmp_path / "cifar10_nll.yaml").write_text((ROOT / "params" / "paper" / "cifar10_nll.yaml").read_text())
    shrink = ('{models: {L_simple: "iddpm:cifar10-small-fixed"}, n_table_images: 2, n_eval_images: 2, '
              'grid: "log:8", budgets: [2, 4], full_chain: false, paper_overlay: false, device: cpu, batch_size: 2, '
              'num_threads: 1}')
    argv = rerun_command(ROOT / "notebooks" / "cifar10_nll.py")
    assert argv[-3:] == ["-p", "data_dir", "/path/to/data"]
    argv[-1] = os.environ["DDPMDP_DATA"]
    papermill = str(Path(sys.executable).parent / "papermill")
    env = {k: v for k, v in os.environ.items() if k not in ("DDPMDP_REPO", "MPLBACKEND", "DDPMDP_DATA")}
    proc = subprocess.run([papermill, *argv[1:], "-y", shrink, "--cwd", str(tmp_path)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / OUTPUTS_FOLDER / "cifar10_nll"
    assert (out / "cifar10_nll_summary.md").is_file() and (out / "cifar10_nll_wide.csv").is_file()
    assert "L_simple" in (out / "cifar10_nll_summary.md").read_text()
    assert {p.name: p.stat().st_mtime_ns for p in generated.iterdir()} == before
