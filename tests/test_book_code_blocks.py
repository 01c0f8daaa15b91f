"""Every Python example a reader can copy runs: each ```` ```python ```` block of the book's chapters
(``book/*.md``) and of ``README.md`` is executed in a fresh interpreter.

An import that moves, a renamed function or a changed signature then fails here, not in the
reader's hands (the Usage page once imported ``ddpmdp.data.images.load_images`` after it had moved
to ``ddpmdp.data.specs``).

**Smoke sizes.** The blocks run as written except for the literal replacements in :data:`SMOKE`
(a 100-step schedule instead of 1000, 8 images instead of 64, a tiny random diffusers folder for
``path/to/folder``); every replacement must apply to at least one block, so a changed example cannot
silently run at full size or lose its smoke form. The examples read CIFAR-10 from ``$DDPMDP_DATA``
(skipped with a reason when it is not set) and need ``diffusers`` for the diffusers example (the
``test`` extra has it).

**Skips.** :data:`SKIP` names a block (file and first code line) with the reason it cannot run here;
it is empty. The README's command-line sections are maintained elsewhere; its Python blocks run as
they are.

``test_a_bad_import_fails`` plants a block with the old import and checks that the runner fails.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "book").glob("*.md")) + [ROOT / "README.md"]
FENCE = re.compile(r"^(?P<fence>`{3,}|~{3,})[ \t]*(?:python|py|python3)[ \t]*\n(?P<code>.*?)^(?P=fence)[ \t]*$",
                   re.M | re.S)
DIFFUSERS_FOLDER = "path/to/folder"
SMOKE: list[tuple[str, str]] = [
    ("linear_schedule(1000)", "linear_schedule(100)"),   # T = 100 instead of 1000
    ("even_stride(1000, 16)", "even_stride(100, 16)"),
    (".subset(64)", ".subset(8)"),                       # 8 images instead of 64
    (DIFFUSERS_FOLDER, "{diffusers_folder}"),            # a tiny random UNet2DModel with a T = 1000 scheduler
]
"""(text in a block, its smoke replacement); ``{diffusers_folder}`` is filled in by the test."""
SKIP: dict[tuple[str, str], str] = {}
"""(file relative to the repository, first code line) → why that block cannot run here."""
TIMEOUT = 900


def code_blocks(text: str) -> list[tuple[int, str]]:
    """(line number of the fence, code) for every ```` ```python ```` block of a Markdown text."""
    return [(text.count("\n", 0, m.start()) + 1, m.group("code")) for m in FENCE.finditer(text)]


def smoke(code: str, diffusers_folder: str = "") -> tuple[str, list[str]]:
    """``code`` with the :data:`SMOKE` replacements applied, and which of them applied."""
    used = []
    for old, new in SMOKE:
        if old in code:
            code = code.replace(old, new.format(diffusers_folder=diffusers_folder))
            used.append(old)
    return code, used


def run_block(code: str, cwd: Path, timeout: int = TIMEOUT) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter with this checkout's ``src`` first on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src")] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.setdefault("MPLBACKEND", "Agg")
    return subprocess.run([sys.executable, "-W", "ignore", "-c", code], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


BLOCKS = [(src, line, code) for src in SOURCES for line, code in code_blocks(src.read_text())]


def _id(block) -> str:
    src, line, _ = block
    return f"{src.relative_to(ROOT)}:{line}"


def test_every_source_is_scanned_and_blocks_are_found():
    names = {str(s.relative_to(ROOT)) for s, _, _ in BLOCKS}
    assert "book/usage.md" in names and "README.md" in names, names
    assert all(_id(b).split(":")[0] != "book/_generated" for b in BLOCKS)


def test_every_smoke_replacement_applies():
    used = {old for _, _, code in BLOCKS for old in smoke(code)[1]}
    unused = [old for old, _ in SMOKE if old not in used]
    assert not unused, f"smoke replacements that match no block any more (update SMOKE): {unused}"


@pytest.fixture(scope="module")
def diffusers_folder(tmp_path_factory) -> Path:
    pytest.importorskip("diffusers")
    from _diffusers import save_folder, tiny_unet

    return save_folder(tmp_path_factory.mktemp("diffusers") / "folder", tiny_unet(size=8), T=1000)


@pytest.mark.slow
@pytest.mark.parametrize("block", BLOCKS, ids=_id)
def test_code_block_runs(block, tmp_path, request):
    src, line, code = block
    key = (str(src.relative_to(ROOT)), code.strip().splitlines()[0])
    if key in SKIP:
        pytest.skip(SKIP[key])
    if "load_images(" in code and not os.environ.get("DDPMDP_DATA"):
        pytest.skip("DDPMDP_DATA is not set (the example reads CIFAR-10 from it)")
    folder = ""
    if DIFFUSERS_FOLDER in code:
        folder = str(request.getfixturevalue("diffusers_folder"))
    code, _ = smoke(code, folder)
    proc = run_block(code, tmp_path)
    assert proc.returncode == 0, (f"{_id(block)}: the example fails (exit {proc.returncode}):\n"
                                  f"{proc.stderr[-3000:]}\n--- the code as run ---\n{code}")


def test_a_bad_import_fails(tmp_path):
    """The check itself: a block with the Usage page's old import must fail."""
    planted = ("Some text.\n\n```python\nimport ddpmdp\nfrom ddpmdp.data.images import load_images\n"
               "from ddpmdp.models.adapter import GaussianDataModel\n```\n")
    (line, code), = code_blocks(planted)
    assert line == 3
    proc = run_block(code, tmp_path, timeout=300)
    assert proc.returncode != 0 and "ImportError" in proc.stderr, proc.stderr[-2000:]
