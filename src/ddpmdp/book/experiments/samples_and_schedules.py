"""Samples and schedules (Paper Figs. 4–6; notebook ``samples_and_schedules``): sample grids whose
noise is shared by every path of one budget, so that the columns differ by the schedule alone.
The notebook's other figures (DP timesteps, the table heatmap) are
:func:`ddpmdp.book.reporting.plotting.plot_dp_timesteps` and
:func:`ddpmdp.book.reporting.plotting.plot_table_heatmap` of the cached selection table.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ddpmdp.book.runtime.inputs import variance_rule
from ddpmdp.data.images import ImageSet
from ddpmdp.errors import require
from ddpmdp.models.adapter import DiffusionModel

__all__ = ["shared_noise_grids"]


def shared_noise_grids(model: DiffusionModel, paths: Mapping[int, Mapping[str, np.ndarray]], n: int, *,
                       variance: str | None = None, clip: bool = True, seed: int = 0, device: str = "cpu",
                       batch_size: int = 64, full_chain: bool = False, real: ImageSet | None = None
                       ) -> dict[str, dict[str, np.ndarray]]:
    """Sample grids for :func:`ddpmdp.book.reporting.sample_grids.sample_grid_figure`: ``{"K = 32": {stride: uint8
    (n, C, H, W)}}`` from ``paths[K][stride]``, ancestral sampling with one seed, so that within a
    budget every stride starts from the same x_T and draws the same per-step noise vectors
    (Paper Figs. 4, 5). Optional rows: the full T-step chain and ``n`` real images."""
    from ddpmdp.sampling import sample

    variance = variance_rule(variance, model)
    shape = tuple(model.image_shape or (real.images.shape[1:] if real is not None else ()))
    require(len(shape) == 3, "the model does not declare its image shape; pass real images")
    out: dict[str, dict[str, np.ndarray]] = {}
    for K in sorted(paths):
        out[f"K = {K}"] = {s: sample(model, p, n, shape, variance=variance, clip=clip, seed=seed, device=device,
                                     batch_size=batch_size) for s, p in paths[K].items()}
    T = model.schedule.T
    if full_chain:
        out[f"all {T} steps"] = {"full chain": sample(model, np.arange(T + 1), n, shape, variance=variance, clip=clip,
                                                      seed=seed, device=device, batch_size=batch_size)}
    if real is not None:
        out["data"] = {"real images": real.images[:n]}
    return out
