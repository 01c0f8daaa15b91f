"""The book's configuration and its Pages workflow (no build needed).

- notebook Markdown output is parsed as MyST, so tables printed with ``IPython.display.Markdown``
  become HTML tables (myst-nb's default, CommonMark, has no tables);
- the repository URL is written in one place (``_config.yml`` ``repository.url``) and the
  repository and source buttons are on;
- chapters come in an order in which every equation is defined before another chapter uses it;
- the Pages workflow: deployments in concurrency group ``pages`` never cancelled, no Pages
  permissions outside the deploy job, deploy only on a push to main, pip cache keyed on the lock
  file, and the repository setting it needs written down.
"""
from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
WORKFLOW_PATH = ROOT / ".github" / "workflows" / "book.yml"
WORKFLOW = yaml.safe_load(WORKFLOW_PATH.read_text())
ON = WORKFLOW.get("on", WORKFLOW.get(True))  # PyYAML reads the key `on` as True


def test_notebook_markdown_output_is_myst():
    assert CONFIG["sphinx"]["config"]["nb_render_markdown_format"] == "myst"


def test_repository_url_in_one_place_and_buttons_on():
    url = CONFIG["repository"]["url"]
    assert url.startswith("https://github.com/")
    assert CONFIG["html"]["use_repository_button"] is True
    assert CONFIG["sphinx"]["config"]["html_theme_options"]["use_source_button"] is True
    assert CONFIG["sphinx"].get("recursive_update") is True, (
        "without recursive_update, sphinx.config.html_theme_options replaces the repository_url Jupyter Book sets")
    owner_repo = url.removeprefix("https://github.com/")
    skip = {"_build", ".git", ".venv", "venv", "runs", "node_modules", "mathjax"}
    hits = []
    for p in ROOT.rglob("*"):
        if any(part in skip for part in p.relative_to(ROOT).parts) or not p.is_file():
            continue
        if p.suffix not in {".md", ".py", ".yml", ".yaml", ".toml", ".cfg", ".txt", ".js", ".css", ".ipynb", ""}:
            continue
        try:
            text = p.read_text()
        except (UnicodeDecodeError, OSError):
            continue
        if owner_repo in text and p != ROOT / "_config.yml":
            hits.append(str(p.relative_to(ROOT)))
    assert not hits, f"the repository URL must be set only in _config.yml (read it from there): {hits}"


def _labels_and_uses(md: str) -> tuple[set[str], set[str]]:
    defined = set(re.findall(r"^\$\$ \(([\w-]+)\)\s*$", md, re.M))
    used = set(re.findall(r"\{eq\}`([\w-]+)`", md))
    return defined, used


def test_equations_are_defined_before_use():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]] + [ch["file"] for part in toc["parts"] for ch in part["chapters"]]
    defined: set[str] = set()
    for f in files:
        path = ROOT / f"{f}.md"
        if not path.is_file():
            continue  # notebooks
        here, used = _labels_and_uses(path.read_text())
        missing = used - defined - here
        assert not missing, f"{f}.md uses equations defined only in a later chapter: {sorted(missing)}"
        defined |= here


def test_pages_workflow():
    assert set(ON) >= {"push", "pull_request"}
    assert WORKFLOW["permissions"] == {"contents": "read"}, "top-level token must not carry Pages permissions"
    build, deploy = WORKFLOW["jobs"]["build"], WORKFLOW["jobs"]["deploy"]
    assert "pages" not in build.get("permissions", {}) and "id-token" not in build.get("permissions", {})
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}
    assert deploy["if"] == "github.event_name == 'push' && github.ref == 'refs/heads/main'"
    assert deploy["needs"] == "build"
    assert deploy["concurrency"] == {"group": "pages", "cancel-in-progress": False}
    setup = next(s for s in build["steps"] if str(s.get("uses", "")).startswith("actions/setup-python"))
    assert setup["with"]["cache"] == "pip" and setup["with"]["cache-dependency-path"] == "requirements-lock.txt"
    upload = next(s for s in build["steps"] if str(s.get("uses", "")).startswith("actions/upload-pages-artifact"))
    assert "push" in upload["if"] and "refs/heads/main" in upload["if"]
    text = WORKFLOW_PATH.read_text()
    assert "Settings → Pages" in text and "GitHub Actions" in text, "write down the repository setting Pages needs"


def test_result_cells_with_a_mark_are_split_into_mean_and_se():
    """The book's compact cells (book/_ext/ddpmdp_sphinx.py): "mean ± SE" with a trailing mark (‡, †, ≈)
    still splits, the mark staying with the mean; text that is not a number ± SE does not."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "book" / "_ext" / "ddpmdp_sphinx.py"
    spec = importlib.util.spec_from_file_location("ddpmdp_sphinx_cells", path)
    ext = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(ext)  # type: ignore[union-attr]
    assert ext._PM_CELL.match("0.199 ± 0.053 ≈").groups() == ("0.199", "", "0.053", "≈")
    assert ext._PM_CELL.match("3.387‡ ± 0.061").groups() == ("3.387", "‡", "0.061", "")
    assert ext._PM_CELL.match("0.207 ± 0.053").groups() == ("0.207", "", "0.053", "")
    assert ext._PM_CELL.match("even ± 0.1") is None and ext._NUM_CELL.match("4.2 ≈")
