"""`ddpmdp reproduce` and its papermill runner (ddpmdp.book.runtime.runner) on a throw-away repository."""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import pytest

pytest.importorskip("papermill")
pytest.importorskip("jupytext")
nbformat = pytest.importorskip("nbformat")

from ddpmdp.book.runtime import runner as run_notebooks  # noqa: E402
from ddpmdp.cli import reproduce as reproduce_cli  # noqa: E402
from ddpmdp.cli.main import main as ddpmdp_main  # noqa: E402
from ddpmdp.errors import DdpmdpError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

GOOD = '''# %% [markdown]
# # A notebook

# %% tags=["parameters"]
n = 2  # how many
label = "x"  # a label

# %%
import os

print(label * n)
print("agg" if os.environ.get("MPLBACKEND") == "Agg" else "not agg", os.environ.get("DDPMDP_REPO") is not None)

# %% [markdown]
# Done.
'''

BAD = '''# %% tags=["parameters"]
x = 1  # a number

# %%
y = x + 1

# %%
raise ValueError(f"boom {y}")
'''


@pytest.fixture()
def repo(tmp_path, monkeypatch):
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: index\n")
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "good.py").write_text(GOOD)
    (tmp_path / "notebooks" / "bad.py").write_text(BAD)
    (tmp_path / "params").mkdir()
    (tmp_path / "params" / "good.yaml").write_text("n: 3\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DDPMDP_REPO", raising=False)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    return tmp_path


def test_prepare_and_parameters(repo):
    nb = run_notebooks.prepare(repo / "notebooks" / "good.py")
    assert "jupytext" not in nb.metadata and nb.metadata["kernelspec"]["name"] == "python3"
    params = run_notebooks.notebook_parameters(nb)
    assert list(params) == ["n", "label"] and params["n"]["help"] == "how many"
    (repo / "notebooks" / "two.py").write_text(GOOD + '\n# %% tags=["parameters"]\nz = 1\n')
    with pytest.raises(DdpmdpError, match="exactly one cell tagged 'parameters'"):
        run_notebooks.prepare(repo / "notebooks" / "two.py")


def test_usage_errors_exit_2(repo, capsys):
    assert ddpmdp_main(["reproduce", "good", "-p", "m", "1", "--out", "out"]) == 2
    assert "unknown parameter(s) m" in capsys.readouterr().err
    assert ddpmdp_main(["reproduce", "nope", "--out", "out"]) == 2
    assert "unknown notebook(s) nope; available: bad, good" in capsys.readouterr().err
    assert ddpmdp_main(["reproduce", "good", "bad", "-f", "params/good.yaml"]) == 2
    assert "applies to one notebook" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse: --smoke picks its own parameters
        ddpmdp_main(["reproduce", "--smoke", "--params-dir", "params"])


def test_list_shows_parameters_with_help(repo, capsys):
    assert ddpmdp_main(["reproduce", "--list", "good"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:-1] == ["good:", "  n = 2  # how many", '  label = "x"  # a label']
    assert json.loads(out[-1]) == {"event": "reproduce_done", "exit_status": 0}  # every command's last line


def test_reproduce_imports_nothing_heavy_at_module_level():
    """``ddpmdp --help`` builds every subparser: reproduce.py may import only the standard library and
    ddpmdp.errors and the command registry when it loads; the runner (papermill, jupytext, ddpmdp.book) loads when it runs."""
    import ast

    tree = ast.parse(Path(reproduce_cli.__file__).read_text())
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    names = [a.name for n in top if isinstance(n, ast.Import) for a in n.names]
    names += [n.module for n in top if isinstance(n, ast.ImportFrom) and n.module]
    assert sorted(n for n in names if n.split(".")[0] == "ddpmdp") == ["ddpmdp.cli.registry", "ddpmdp.errors"]
    heavy = {"torch", "numpy", "matplotlib", "papermill", "jupytext", "nbformat", "yaml", "IPython"}
    assert not {n.split(".")[0] for n in names} & heavy


@pytest.mark.slow
def test_execution_normalises_and_failures_name_the_cell(repo, capsys):
    assert ddpmdp_main(["reproduce", "good", "--params-dir", "params", "-p", "label", "ab", "--out", "out"]) == 0
    assert "[1/1] good: done in" in capsys.readouterr().out
    nb = nbformat.read(repo / "out" / "good.ipynb", as_version=4)
    assert [c.id for c in nb.cells] == [f"cell-{i:03d}" for i in range(len(nb.cells))]
    assert nb.metadata["papermill"] == {"parameters": {"n": 3, "label": "ab"}}
    assert all("papermill" not in c.metadata and "execution" not in c.metadata for c in nb.cells)
    printed = [o["text"] for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if "text" in o]
    assert printed == ["ababab\nnot agg True\n"]  # ipykernel sets its inline backend itself
    assert os.environ.get("MPLBACKEND") == "Agg" and "DDPMDP_REPO" not in os.environ  # restored
    assert "injected-parameters" in nb.cells[2].metadata["tags"]

    assert ddpmdp_main(["reproduce", "bad", "--out", "out"]) == 2
    err = capsys.readouterr().err
    assert "notebook bad failed in cell 3 (In [3]): ValueError: boom 2" in err
    assert "raise ValueError" in err and "out/bad.ipynb" in err
    assert (repo / "out" / "bad.ipynb").is_file()


def test_reproduce_parser_and_checks(repo, monkeypatch):
    parser = argparse.ArgumentParser(prog="ddpmdp")
    sub = parser.add_subparsers(dest="command", required=True)
    reproduce_cli.add_parser(sub)
    args = parser.parse_args(["reproduce", "--smoke", "good", "nope", "--no-build"])
    with pytest.raises(DdpmdpError, match="unknown notebook"):
        args.func(args)
    calls = []
    monkeypatch.setattr(run_notebooks, "run_all", lambda names, **kw: calls.append((names, kw)) or [])
    builds = []
    monkeypatch.setattr(reproduce_cli, "build_book", lambda root=None, strict=True: builds.append(root) or 1)
    args = parser.parse_args(["reproduce", "--smoke", "good"])
    assert args.func(args) == 0 and not builds  # smoke: no book build
    assert calls[-1][0] == ["good"] and calls[-1][1]["params_dir"] == "params/smoke"
    assert calls[-1][1]["out_dir"] == "notebooks/smoke"
    args = parser.parse_args(["reproduce", "good", "-f", "params/good.yaml", "-p", "n", "[1, 2]", "--out", "tmp"])
    assert args.func(args) == 0 and not builds  # not the book's folder: no book build
    assert calls[-1][1]["params_file"] == "params/good.yaml" and calls[-1][1]["overrides"] == {"n": [1, 2]}
    args = parser.parse_args(["reproduce"])
    with pytest.raises(DdpmdpError, match="book build failed"):
        args.func(args)
    assert calls[-1][0] == ["bad", "good"] and len(builds) == 1
    assert calls[-1][1]["out_dir"] == "notebooks/executed" and calls[-1][1]["params_dir"] is None


def test_parameter_files_name_real_parameters():
    """Every params/*/NAME.yaml sets only parameters that notebook NAME has."""
    files = sorted((ROOT / "params").glob("*/*.yaml"))
    assert files, "no parameter files"
    for f in files:
        src = ROOT / "notebooks" / f"{f.stem}.py"
        assert src.is_file(), f"{f.relative_to(ROOT)} names no notebook"
        known = run_notebooks.notebook_parameters(run_notebooks.prepare(src))
        unknown = set(run_notebooks.load_params(f)) - set(known)
        assert not unknown, f"{f.relative_to(ROOT)}: unknown parameters {sorted(unknown)}"
        json.dumps(run_notebooks.load_params(f))  # plain YAML values only
