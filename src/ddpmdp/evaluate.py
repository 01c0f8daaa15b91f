"""Held-out evaluation of inference paths, in bits/dim with standard errors.

Two estimators of −ELBO(x₀) = L_prior + Σ_i L(t_i, t_{i−1}) for a path 0 = t₀ < … < t_K = T:

* :func:`path_from_table` — the sum of a **held-out** table's cells along the path plus
  its prior (``method.md`` §8). Cells in different rows come from independent noise but
  the same images, so they covary through x₀; the table keeps per-cell moments only,
  so the reported SE is the conservative bound SE ≤ Σ_i SE_i (Minkowski), stated as
  such in the result. Use :func:`evaluate_paths` for an exact SE. A table whose σ² were
  optimised on its own images (rules ``analytic``, ``optimal``, ``best``) scores only paths that
  carry their own σ² (fixed on a selection table): its cells would be optimistic (§5.2a).
* :func:`evaluate_paths` — direct evaluation with fresh noise: one forward pass per
  (image, node) over the union of the paths' nodes, each term from its own noise draw
  (as improved-diffusion's ``calc_bpd_loop``); the per-image totals give the exact SE and
  paired differences between paths.

Selection (a table on the training split) and evaluation (held-out images) are separate
calls; nothing here reads a selection table.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from typing import cast

import numpy as np
import torch

from ddpmdp.data.images import ImageSet, validate_images
from ddpmdp.table import ElboTable, objective_of, require_objective
from ddpmdp.progress import progress_bar
from ddpmdp.elbo_terms import edge_term, predict_x0, prior_term, q_sample
from ddpmdp.inference_schedule import InferenceSchedule, as_schedule, check_schedule_identity
from ddpmdp.errors import DdpmdpError, require
from ddpmdp.gaussians import nats_to_bpd
from ddpmdp.models.adapter import DiffusionModel, check_image_shape
from ddpmdp.noise import STREAM_EVAL, keyed_normal
from ddpmdp.strides import PathBudget, validate_path
from ddpmdp.variances import DERIVED_RULES, VarianceRule, check_rule, get_rule, resolve_rule
from ddpmdp.batches import batch_ranges, image_batches

__all__ = ["PathScore", "path_from_table", "evaluate_paths", "paired_difference", "full_chain_bpd"]

RULES_FIT_ON_IMAGES = DERIVED_RULES
"""Rules whose table cells use σ² optimised on the table's own images (never an honest held-out score)."""
OPTIMISTIC = "optimistic: σ² optimised on this table's images"


@dataclass
class PathScore(PathBudget):
    """bpd ± SE of one path on one split. ``per_image`` (N,) nats when directly evaluated;
    ``terms`` (K,) mean nats per edge, from t_K → t_{K−1} down to t_1 → 0 reversed to
    follow ``nodes``; ``se_kind`` says how the SE was obtained."""

    nodes: np.ndarray
    bpd: float
    bpd_se: float
    nats: float
    nats_se: float
    dims: int
    split: str
    n_images: int
    se_kind: str
    terms: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    per_image: np.ndarray | None = field(repr=False, default=None)

    def as_dict(self) -> dict:
        return {"K": self.K, "nfe": self.nfe, "nodes": [int(n) for n in self.nodes], "bpd": self.bpd,
                "bpd_se": self.bpd_se, "nats": self.nats, "nats_se": self.nats_se, "split": self.split,
                "n_images": self.n_images, "se_kind": self.se_kind, "units": "bits/dim (nats per image / (d ln 2))"}


def path_from_table(table: ElboTable, nodes) -> PathScore:
    """Σ of the table's cells along ``nodes`` (all in the table's grid) plus the prior, in bits/dim.
    ``nodes`` may be an :class:`InferenceSchedule` with per-edge variances: its σ² (fixed on the
    selection split) are then applied to this table's statistics (:func:`ddpmdp.rescore.schedule_cells`).
    Plain nodes use the table's own cells, which a table of a derived rule (σ² optimised on its
    own images) refuses: score a solved schedule instead, or rescore the table to a fixed rule."""
    require_objective(table, "elbo", "bits/dim from a table")
    check_schedule_identity(nodes, table=table)
    sch = as_schedule(nodes)
    nodes = validate_path(sch.nodes, table.T)
    pos = np.searchsorted(table.nodes, nodes)
    ok = (pos < len(table.nodes)) & (table.nodes[np.minimum(pos, len(table.nodes) - 1)] == nodes)
    require(bool(ok.all()), f"path nodes {nodes[~ok][:5].tolist()} are not in the table's grid "
            f"(grid stride {table.meta.get('grid_stride')}); snap the path or build a finer table")
    if sch.has_variances:
        from ddpmdp.rescore import schedule_cells

        terms, ses = schedule_cells(table, pos, sch.rules, sch.sigma2)
    else:
        rule = str(table.meta.get("variance"))
        if rule in RULES_FIT_ON_IMAGES:
            raise DdpmdpError(f"this table's {rule} cells use σ² optimised on its own images, so a path without "
                              "per-edge σ² would score optimistically: score a solved schedule (dp:SOLVED.json:K, or "
                              "InferenceSchedule.from_table(selection_table, nodes)), or rescore the table to a fixed "
                              "rule (ddpmdp rescore TABLE --variance fixed_large)")
        terms = table.L[pos[1:], pos[:-1]]
        ses = table.L_se[pos[1:], pos[:-1]]
    nats = float(terms.sum() + table.prior)
    nats_se = float(ses.sum() + table.prior_se)
    return PathScore(nodes, float(nats_to_bpd(nats, table.dims)), float(nats_to_bpd(nats_se, table.dims)), nats,
                     nats_se, table.dims, str(table.meta.get("split")), int(table.meta.get("n_images", 0)),
                     "table: conservative bound sum of per-cell SEs (cells covary through x0)", terms)


def full_chain_bpd(table: ElboTable) -> tuple[float | None, str | None]:
    """The full-chain (K = T) bits/dim of a table: L_prior + Σ_{t=1..T} L(t, t − 1), converted
    with the table's d, and None as the reason; or None and why there is no honest number (the
    grid lacks nodes, or the cells use σ² optimised on the table's own images)."""
    if objective_of(table.meta) != "elbo":
        return None, f"a {objective_of(table.meta)} table holds no ELBO"
    if len(table.nodes) != table.T + 1:
        return None, f"not every node in the grid ({len(table.nodes)} of {table.T + 1})"
    if str(table.meta.get("variance")) in RULES_FIT_ON_IMAGES:
        return None, OPTIMISTIC
    idx = np.arange(1, table.T + 1)
    return float(table.bpd(table.L[idx, idx - 1].sum() + table.prior)), None


def evaluate_paths(model: DiffusionModel, data: ImageSet | np.ndarray,
                   paths: Mapping[str, np.ndarray | InferenceSchedule], *,
                   variance: VarianceRule | None = None, clip: bool = True, batch_size: int = 32, seed: int = 0,
                   device: str | torch.device = "cpu", progress: bool = False) -> dict[str, PathScore]:
    """Direct held-out evaluation of several paths with shared forward passes.

    For every batch and every node t in the union of the paths (t > 0): fresh noise keyed
    by (seed, image, t) in the evaluation stream, one forward pass, and for each path that
    contains t the term L(t, predecessor). A path given as an :class:`InferenceSchedule` with
    per-edge variances uses its recorded rule and σ² on each edge; plain nodes use ``variance``.
    Model calls: ⌈N/B⌉ × (number of distinct nodes > 0 in
    the union of the paths).
    Returns a :class:`PathScore` per path with per-image totals and the exact SE.
    """
    check_schedule_identity(paths, model=model)
    if isinstance(data, np.ndarray):
        validate_images(data)
        data = ImageSet(data, "array")
    check_image_shape(model, data.images.shape[1:], f"the data {data.identity}")
    sched = model.schedule
    variance = resolve_rule(variance, model)
    require(len(paths) >= 1, "give at least one path")
    schedules = {name: as_schedule(p) for name, p in paths.items()}
    if any(not sc.has_variances for sc in schedules.values()):
        require(get_rule(variance).cells == "summed", f"variance rule {variance} takes its σ² from a selection "
                "table: pass schedules from ddpmdp solve --json (InferenceSchedule), which record each edge's σ²")
    for sc in schedules.values():
        if sc.rules is not None and "learned_range" in sc.rules:
            check_rule("learned_range", model.learned_variance)
    node_paths = {name: validate_path(sc.nodes, sched.T) for name, sc in schedules.items()}
    union = np.unique(np.concatenate(list(node_paths.values())))[1:]
    preds = {name: {int(p[i]): schedules[name].edge(int(p[i])) for i in range(1, len(p))}
             for name, p in node_paths.items()}
    N = len(data)
    totals = {name: torch.zeros(N, dtype=torch.float64) for name in node_paths}
    terms = {name: torch.zeros(len(p) - 1, dtype=torch.float64) for name, p in node_paths.items()}
    bar = progress_bar(len(batch_ranges(N, batch_size)) * len(union), batch_size, progress, "evaluate")
    for batch in image_batches(data, batch_size, device):
        lo, hi, x0, idx = batch.lo, batch.hi, batch.x0, batch.keys
        prior = prior_term(sched, x0).cpu()
        for name in node_paths:
            totals[name][lo:hi] += prior
        for t in union:
            t = int(t)
            eps = keyed_normal(seed, idx, t, tuple(x0.shape[1:]), stream=STREAM_EVAL, device=device)
            x_t = q_sample(sched, x0, t, eps)
            out = model(x_t, t)
            if not (torch.isfinite(out.eps).all() and (out.v is None or torch.isfinite(out.v).all())):
                raise DdpmdpError(f"the model returned NaN or inf at node t = {t}")
            x0_hat = predict_x0(sched, x_t, t, out.eps, clip)
            for name, pr in preds.items():
                if t not in pr:
                    continue
                s, rule, sigma2 = pr[t]
                val = edge_term(sched, x0, x0_hat, t, s, cast(VarianceRule, rule or variance), sigma2, out.v).cpu()
                totals[name][lo:hi] += val
                k = int(np.searchsorted(node_paths[name], t)) - 1
                terms[name][k] += val.sum()
            bar.update()
    bar.close()
    d = data.dims
    out_scores = {}
    for name, p in node_paths.items():
        tot = totals[name].numpy()
        mean = float(tot.mean())
        se = float(tot.std(ddof=1) / math.sqrt(N)) if N > 1 else float("nan")
        out_scores[name] = PathScore(p, float(nats_to_bpd(mean, d)), float(nats_to_bpd(se, d)), mean, se, d,
                                     data.split, N, "direct: sd of per-image totals / sqrt(N)",
                                     (terms[name] / N).numpy(), tot)
    return out_scores


def paired_difference(a: PathScore, b: PathScore) -> tuple[float, float]:
    """bpd(a) − bpd(b) and its paired SE from per-image totals of the same images."""
    require(a.per_image is not None and b.per_image is not None and len(a.per_image) == len(b.per_image),
            "paired differences need two direct evaluations on the same images")
    assert a.per_image is not None and b.per_image is not None
    diff = (a.per_image - b.per_image) / (a.dims * math.log(2.0))
    return float(diff.mean()), float(diff.std(ddof=1) / math.sqrt(len(diff)))
