"""A notebook's ``models`` parameter takes ``diffusers:DIR``: a smoke-size ``cifar10_nll`` run with papermill
on a saved random 32×32 ``UNet2DModel`` folder (issue 14, must show)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("diffusers")
pytest.importorskip("papermill")
nbformat = pytest.importorskip("nbformat")

from _diffusers import save_folder, tiny_unet  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_cifar10_nll_smoke_with_a_diffusers_folder(tmp_path):
    if not os.environ.get("DDPMDP_DATA"):
        pytest.skip("DDPMDP_DATA is not set: cifar10_nll reads CIFAR-10 from it")
    folder = save_folder(tmp_path / "unet", tiny_unet(size=32, seed=0), T=1000, variance_type="fixed_large")
    out = tmp_path / "executed"
    models = json.dumps({"L_simple": f"diffusers:{folder}"})
    env = {**os.environ, "MPLBACKEND": "Agg"}
    proc = subprocess.run(
        [sys.executable, "-m", "ddpmdp", "reproduce", "cifar10_nll",
         "-f", str(ROOT / "params/smoke/cifar10_nll.yaml"), "-p", "models", models, "-p", "cache_dir",
         str(tmp_path / "cache"), "-p", "out_dir", str(tmp_path / "gen"), "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    nb = nbformat.read(out / "cifar10_nll.ipynb", as_version=4)
    assert nb.metadata["papermill"]["parameters"]["models"] == {"L_simple": f"diffusers:{folder}"}
    text = "\n".join(str(o.get("text", "")) + json.dumps(o.get("data", {})) for c in nb.cells if c.cell_type == "code"
                     for o in c.get("outputs", []))
    assert "diffusers:" in text and "linear:1000" in text
