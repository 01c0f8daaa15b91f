"""GPU checks (``pytest -m gpu``, skipped without CUDA) and the CPU behaviour of ``scripts/gpu_check.sh``.

``scripts/gpu_check.sh`` runs the gpu-marked tests, the bf16 table benchmark, the DP benchmark and
``scripts/gpu_agreement.py`` on a GPU machine and prints one summary; without a GPU it must say so
and exit 0 at once, claiming no measurement.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
CUDA = torch.cuda.is_available()
needs_cuda = [pytest.mark.gpu, pytest.mark.skipif(not CUDA, reason="needs a CUDA device")]


def _agreement():
    spec = importlib.util.spec_from_file_location("gpu_agreement", ROOT / "scripts" / "gpu_agreement.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


@pytest.mark.parametrize("case", ["float64", "float32"])
@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
def test_cuda_table_agrees_with_cpu(case):
    """One small table on both devices; tolerances and their reasons: scripts/gpu_agreement.py."""
    r = _agreement().compare(case)
    assert r["ok"], r


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
def test_bf16_table_on_cuda_is_finite_and_close_to_float32():
    """bf16 autocast (the benchmark's setting) changes the network's rounding, not the table's meaning."""
    from ddpmdp.grids import parse_grid
    from ddpmdp.models import Numerics
    from ddpmdp.models.specs import load_model
    from ddpmdp.table_estimation import estimate_table

    ag = _agreement()
    model = load_model("cifar10-hybrid", device="cuda")
    nodes = parse_grid(ag.GRID, model.schedule.T)
    full = estimate_table(model, ag.images(), variance="learned_range", nodes=nodes, batch_size=4, device="cuda")
    bf16 = load_model("cifar10-hybrid", device="cuda", numerics=Numerics(bf16=True))
    half = estimate_table(bf16, ag.images(), variance="learned_range", nodes=nodes, batch_size=4, device="cuda")
    fin = np.isfinite(full.L)
    assert np.array_equal(fin, np.isfinite(half.L))
    # every cell within 5 % of float32 (bf16 keeps 8 mantissa bits; bf16 autocast on the CPU changed
    # these cells by at most 0.3 %, median 1e-4)
    assert np.max(np.abs(half.L[fin] - full.L[fin]) / np.maximum(np.abs(full.L[fin]), 1.0)) < 0.05


def test_gpu_check_without_gpu_says_so_and_exits_0():
    if CUDA:
        pytest.skip("a GPU is present: scripts/gpu_check.sh would run the real check")
    env = {**os.environ, "PYTHON": sys.executable}
    t0 = time.perf_counter()
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh")], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    seconds = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no GPU here" in proc.stdout and "nothing measured" in proc.stdout, proc.stdout
    assert "summary" not in proc.stdout and "throughput" not in proc.stdout  # no measurement is claimed
    assert seconds < 30, f"took {seconds:.1f} s"


def test_gpu_agreement_script_without_gpu_measures_nothing():
    if CUDA:
        pytest.skip("a GPU is present")
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_agreement.py")], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "nothing measured" in proc.stdout, proc.stdout + proc.stderr
