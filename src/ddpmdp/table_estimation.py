"""Estimating the L(t, s) table: one forward pass per node fills a row; resumable and distributed.

For each batch of images and each grid node t > 0, exactly **one** forward pass at
(x_t, t) fills the whole row L(t, ·) (:func:`accumulate_batch`): the decoder cell L(t, 0)
and the KL cells L(t, s) for every grid node 0 < s < t (:func:`ddpmdp.elbo_terms.kl_row`).
Per cell the sums of the per-image values and of their squares give a Monte Carlo standard
error. :func:`estimate_table` runs in memory; :func:`run_table` is what ``ddpmdp table`` runs.
Images are processed in batches of a fixed size by the driver every table shares
(:func:`ddpmdp.table_runs.drive`): batch b goes to rank b mod W (W = world size, 1 without
torchrun), progress is saved atomically every ``save_every`` batches to
``OUT.progress[.rankRofW].npz``, a resumed run is bitwise identical to an uninterrupted one,
resuming with different arguments is refused, and rank 0 alone writes the reduced table.

Because noise is keyed by (seed, image index, t), sharding changes only the order in which
sums are added: a W-process table equals the single-process table to float64 rounding.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ddpmdp.data.images import ImageSet
from ddpmdp.grids import make_grid
from ddpmdp.table import ElboTable, TableStats, table_meta
from ddpmdp.errors import DdpmdpError, require
from ddpmdp.models.adapter import DiffusionModel, check_image_shape
from ddpmdp.variances import (N_DECODER_CANDIDATES, VarianceRule, decoder_candidates, get_rule, resolve_rule,
                               sums_rule)
from ddpmdp.rescore import attach_variances
from ddpmdp.data.images import validate_images
from ddpmdp.elbo_terms import decoder_node, decoder_term, kl_row, predict_x0, prior_term, q_sample
from ddpmdp.gaussians import discretized_gaussian_nll
from ddpmdp.noise import STREAM_TABLE, keyed_normal
from ddpmdp.batches import batch_ranges, image_batches
from ddpmdp.table_runs import TableRun, check_output_folder, drive, progress_path

__all__ = ["accumulate_batch", "estimate_table", "run_table", "progress_path"]


def accumulate_batch(model: DiffusionModel, x0: torch.Tensor, index: torch.Tensor, nodes: np.ndarray,
                     rule: VarianceRule, clip: bool, seed: int, *, on_node: Callable[[], None] | None = None
                     ) -> TableStats:
    """Table sums for one batch: one forward pass per grid node t > 0.

    x0: float32 (B, C, H, W) in [−1, 1] on the model's device; index: int64 (B,) global
    image indices (the noise keys). The cells summed in ``s1``/``s2`` use
    :func:`ddpmdp.variances.sums_rule`; every pass also sums M(t) and Γ_t, and for a rule whose σ²
    need them (``Rule.node_stats``: ``analytic``, ``optimal``, ``best``) the decoder NLL of each
    decoder candidate, (B, 8) per node in one batched call
    (:func:`ddpmdp.gaussians.discretized_gaussian_nll`) — all from the same forward pass
    (``method.md`` §5.5). A scalar summed rule's decoder cell is then its own candidate's column
    (the same floats, not computed twice). Raises :class:`DdpmdpError` naming the node if the
    model returns NaN or inf (checked once after the loop, so no host sync per node).
    """
    sched = model.schedule
    candidates = "decoder_candidates" in get_rule(rule).node_stats
    summed = get_rule(sums_rule(rule, model.learned_variance))
    rule = summed.name
    stats = TableStats.zeros(nodes, x0.device, N_DECODER_CANDIDATES if candidates else 0)
    B, d = x0.shape[0], x0[0].numel()
    nonfinite = torch.zeros(len(nodes), dtype=torch.bool, device=x0.device)
    nodes_dev = torch.as_tensor(np.asarray(nodes), dtype=torch.int64, device=x0.device)
    for i in range(1, len(nodes)):
        t = int(nodes[i])
        eps = keyed_normal(seed, index, t, tuple(x0.shape[1:]), stream=STREAM_TABLE, device=x0.device)
        x_t = q_sample(sched, x0, t, eps)
        out = model(x_t, t)
        nonfinite[i] = ~torch.isfinite(out.eps).all() | (
            ~torch.isfinite(out.v).all() if out.v is not None else torch.zeros((), dtype=torch.bool, device=x0.device))
        x0_hat = predict_x0(sched, x_t, t, out.eps, clip)
        row = torch.empty(B, i, dtype=torch.float64, device=x0.device)
        if candidates:
            dec = discretized_gaussian_nll(x0, x0_hat, decoder_candidates(sched, t))  # (B, N)
            stats.dec_s1[i], stats.dec_s2[i] = dec.sum(0), dec.pow(2).sum(0)
        if candidates and summed.scalar:
            row[:, 0] = dec[:, int(summed.decoder_choice(decoder_node(sched, t)))]
        else:
            row[:, 0] = decoder_term(sched, x0, x0_hat, t, rule, out.v)
        row[:, 1:] = kl_row(sched, x0, x0_hat, t, nodes_dev[1:i], rule, out.v)
        stats.s1[i, :i] = row.sum(0)
        stats.s2[i, :i] = row.pow(2).sum(0)
        mse = (x0 - x0_hat).double().pow(2).flatten(1).sum(1)
        stats.mse_s1[i] = mse.sum()
        stats.mse_s2[i] = mse.pow(2).sum()
        gam = out.eps.double().pow(2).flatten(1).sum(1) / d
        stats.gamma_s1[i], stats.gamma_s2[i] = gam.sum(), gam.pow(2).sum()
        if on_node is not None:
            on_node()
    if bool(nonfinite.any()):
        bad = int(nodes[int(torch.nonzero(nonfinite)[0])])
        raise DdpmdpError(f"the model returned NaN or inf at node t = {bad} (network time input for that node); "
                          "nothing from this batch was added")
    prior = prior_term(sched, x0)
    stats.prior_s1, stats.prior_s2 = prior.sum(), prior.pow(2).sum()
    stats.n = B
    return stats


def _config(model: DiffusionModel, data: ImageSet, grid: np.ndarray, variance: str, clip: bool, batch_size: int,
            seed: int) -> dict:
    """The arguments a resumed run must share with the run it continues."""
    return {"model": model.identity, "model_hash": model.fingerprint(), "data": data.identity,
            "data_hash": data.fingerprint(), "n_images": len(data), "variance": variance, "clip": bool(clip),
            "grid": hashlib.sha256(grid.tobytes()).hexdigest()[:16], "grid_size": int(len(grid)),
            "batch_size": int(batch_size), "seed": int(seed), "bf16": model.numerics.bf16}


def run_table(model: DiffusionModel, data: ImageSet, *, variance: VarianceRule | None = None, out: Path | None,
              clip: bool = True,
              grid_stride: int = 1, nodes: np.ndarray | None = None, batch_size: int = 32, seed: int = 0,
              device: str = "cpu", resume: bool = False, save_every: int = 10, float32: bool = False,
              progress: bool = True, grid_spec: str | None = None) -> ElboTable:
    """Estimate a table; with ``out``, write it with atomic progress and resume. Sharded over ranks
    under torchrun (the driver :func:`ddpmdp.table_runs.drive`). ``out=None`` keeps everything in
    memory (no progress files). ``variance``: a rule name, else the model's own
    (:func:`ddpmdp.variances.resolve_rule`)."""
    variance = resolve_rule(variance, model)
    check_image_shape(model, data.images.shape[1:], f"the data {data.identity}")
    require(int(batch_size) == batch_size and batch_size >= 1, f"batch size must be a positive integer, got {batch_size}")
    out = None if out is None else Path(out)
    check_output_folder(out)
    grid = make_grid(model.schedule.T, grid_stride, nodes)
    n_dec = N_DECODER_CANDIDATES if "decoder_candidates" in get_rule(variance).node_stats else 0

    def batches(numbers, dev, on_pass):
        for batch in image_batches(data, batch_size, dev, numbers=numbers):
            yield batch.number, accumulate_batch(model, batch.x0, batch.keys, grid, variance, clip, seed,
                                                 on_node=on_pass)

    def finish(stats: TableStats, extra: dict) -> ElboTable:
        meta = table_meta(model, data, grid, variance, clip, seed, None if nodes is not None else grid_stride)
        meta.update(extra, grid=grid_spec, sums_variance=sums_rule(variance, model.learned_variance))
        return attach_variances(ElboTable.from_stats(stats, data.dims, meta), variance)

    run = TableRun("table", grid, len(batch_ranges(len(data), batch_size)), int(batch_size), len(grid) - 1,
                   _config(model, data, grid, variance, clip, batch_size, seed),
                   lambda dev: TableStats.zeros(grid, dev, n_dec), batches, finish)
    return drive(run, out=out, device=device, resume=resume, save_every=save_every, float32=float32,
                 progress=progress)


def estimate_table(model: DiffusionModel, data: ImageSet | np.ndarray, *, variance: VarianceRule | None = None,
                   clip: bool = True, grid_stride: int = 1, nodes: np.ndarray | None = None, batch_size: int = 32,
                   seed: int = 0, device: str | torch.device = "cpu", progress: bool = False) -> ElboTable:
    """Estimate the L(t, s) table of ``model`` on ``data`` (uint8 (N, C, H, W) images).

    Model calls: ⌈N/B⌉ × (G − 1) for G grid nodes. Returns an :class:`ElboTable` in
    nats per image with per-cell standard errors. ``variance``: a rule name, else the model's
    own (:func:`ddpmdp.variances.resolve_rule`). For resumable and distributed
    runs see :mod:`ddpmdp.table_estimation`.
    """
    if isinstance(data, np.ndarray):
        validate_images(data)
        data = ImageSet(data, "array")
    return run_table(model, data, variance=variance, out=None, clip=clip, grid_stride=grid_stride, nodes=nodes,
                     batch_size=batch_size, seed=seed, device=str(device), progress=progress)
