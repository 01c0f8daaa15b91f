"""Golden values in the style of diffusers' scheduler tests: a seeded tiny network's table cells,
its full-chain bits/dim and a DP path, pinned as literals.

Tolerance: relative 1e-6. The network runs in float64 (``Numerics(dtype="float64")``) and the
table sums in float64, so another CPU, thread count or oneDNN setting moves these numbers by about
1e-13 relative. Another batch size moves the learned-range cells by up to about 1e-7 relative
(measured here: 9e-8 on cell (30, 10) with batch 1 instead of 4), because on the CPU the row is a
Chebyshev expansion in v over the batch's own v range. The test runs three batch sizes and thread
counts; a change of the method, the noise keys or the conventions moves these numbers by far
more than 1e-6 and fails it.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from _models import TinyNet, random_images
from ddpmdp import Numerics, TorchModelAdapter, cosine_schedule, estimate_table, evaluate_paths, solve

REL = 1e-6
GOLDEN_CELLS = {(10, 0): 2623.957554555349, (30, 10): 468.0666993473853, (50, 49): 0.11762439301702733}
GOLDEN_PRIOR = 2.4723417012646244e-05
GOLDEN_PATH_K4 = [0, 3, 6, 11, 50]
GOLDEN_FULL_BPD = (18.99781810653478, 1.0319638864907126)


def _model():
    return TorchModelAdapter(TinyNet(3, True, 7), cosine_schedule(50), output="eps+v",
                             numerics=Numerics(dtype="float64"))


@pytest.mark.parametrize("batch_size,threads", [(4, None), (1, 1), (6, 2)])
def test_golden_table_cells_dp_path_and_full_chain(batch_size, threads):
    saved = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        imgs = random_images(6, seed=3)
        tab = estimate_table(_model(), imgs, variance="learned_range", batch_size=batch_size, seed=11)
        for (i, j), want in GOLDEN_CELLS.items():
            assert tab.L[i, j] == pytest.approx(want, rel=REL), (i, j)
        assert tab.prior == pytest.approx(GOLDEN_PRIOR, rel=REL)
        assert solve(tab.L, 6, tab.nodes).path(4).tolist() == GOLDEN_PATH_K4
        full = evaluate_paths(_model(), imgs, {"full": np.arange(51)}, variance="learned_range", seed=5,
                              batch_size=batch_size)["full"]
        assert (full.bpd, full.bpd_se) == pytest.approx(GOLDEN_FULL_BPD, rel=REL)
    finally:
        torch.set_num_threads(saved)


def test_golden_values_detect_a_changed_convention():
    """The same run with the clip flag flipped is far outside the tolerance (the test can fail)."""
    imgs = random_images(6, seed=3)
    tab = estimate_table(_model(), imgs, variance="learned_range", batch_size=4, seed=11, clip=False)
    assert tab.L[10, 0] != pytest.approx(GOLDEN_CELLS[(10, 0)], rel=REL)
