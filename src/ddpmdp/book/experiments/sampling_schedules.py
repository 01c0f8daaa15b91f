"""Sample-fidelity schedules (``method.md`` §13; notebook ``sampling_schedules``): the trajectory
table C(t, s) on selection seeds, its DP, and every baseline of §13.6 scored on **fresh** seeds by
the teacher distance (and KID against held-out real images) at equal K.

One run per model (:func:`run_sampling_schedules`):

1. the compared paths for every budget K (:func:`comparison_paths`): the strides of
   :mod:`ddpmdp.strides` (even, quadratic, DDIM's quadratic, uniform log-SNR, EDM ρ = 7), the DP path
   of the model's ELBO table and of its MSE-reweighted cost (Paper App. A.3), all sampled here with
   DDIM η = 0 like the trajectory DP path;
2. the teacher grid 𝒯 and the DP grid 𝒢 ⊆ 𝒯 (:func:`fidelity_grids`): both hold every node of
   every compared path, so that on its own selection table the trajectory DP path is never worse
   than a compared path (checked), and the teacher is coarser than every node (``stride:k``) only
   where no path puts a node;
3. the trajectory table on ``n_selection`` seeds (stream ``trajectory``) and its DP;
4. on ``n_fresh`` **fresh** seeds (stream ``teacher``, never the table's) the teacher and every
   path's K-step DDIM walk from the same x_T (:func:`teacher_run`): the teacher distance
   E(z) = ‖x̂(z) − x^𝒯₀(z)‖/√d of each path, exactly as :func:`ddpmdp.trajectory.teacher_distance`
   computes it, and the samples themselves, which give KID ± SE against held-out real images
   (:mod:`ddpmdp.fid.kid`; sample i of every path comes from the same x_T, so paired KID
   differences apply) and the shared-noise sample grids at no further network cost.

The tables, sentences and captions are in :mod:`ddpmdp.book.experiments.sampling_schedules_report`.
"""
from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ddpmdp.book.experiments.paths import solve_table
from ddpmdp.book.experiments.sample_quality import mse_reweighted_cost
from ddpmdp.data.images import ImageSet
from ddpmdp.dp import DPSolution, path_cost
from ddpmdp.errors import require
from ddpmdp.fid.kid import KIDReference, KIDResult, kid
from ddpmdp.grids import parse_grid
from ddpmdp.models.adapter import DiffusionModel
from ddpmdp.table import ElboTable

__all__ = ["STRIDES", "TRAJECTORY", "ELBO_DP", "MSE_DP", "PATHS", "KID_MODES", "comparison_paths", "fidelity_grids",
           "teacher_run", "pool2x2", "FidelityResult", "run_sampling_schedules"]

STRIDES: dict[str, str] = {"even": "even", "quadratic": "quadratic", "DDIM quadratic": "ddim-quadratic",
                           "log-SNR": "logsnr", "EDM ρ=7": "edm"}
"""The hand-designed baselines: label → :data:`ddpmdp.strides.BASELINES` name (``method.md`` §13.6)."""
ELBO_DP = "ELBO DP"
MSE_DP = "MSE-reweighted DP"
TRAJECTORY = "trajectory DP"
PATHS: tuple[str, ...] = (*STRIDES, ELBO_DP, MSE_DP, TRAJECTORY)
"""Every compared path, in table order; the last is the trajectory DP path the others are compared with."""
KID_MODES = ("proxy", "pooled", "none")
"""KID of a model's samples: ``proxy`` (the images as they are; the feature extractor must take
them), ``pooled`` (2×2 average-pooled first, e.g. 64×64 → 32×32 for the CIFAR-10 proxy) or ``none``."""


def comparison_paths(model: DiffusionModel, budgets: Sequence[int], elbo_table: ElboTable
                     ) -> dict[str, dict[int, np.ndarray]]:
    """``{label: {K: nodes}}`` of every baseline of ``method.md`` §13.6 but the trajectory DP: the five
    strides (:func:`ddpmdp.strides.baseline_stride`, log-SNR and EDM on the model's ᾱ) and the DP paths
    of ``elbo_table`` (the ELBO, and the MSE-reweighted cost
    :func:`ddpmdp.book.experiments.sample_quality.mse_reweighted_cost` of the same table)."""
    from ddpmdp.strides import baseline_stride

    T = model.schedule.T
    Ks = sorted({int(k) for k in budgets})
    require(bool(Ks) and Ks[0] >= 1 and Ks[-1] <= T, f"budgets must lie in 1..T = {T}, got {list(budgets)}")
    out = {label: {K: baseline_stride(name, T, K, model.schedule) for K in Ks} for label, name in STRIDES.items()}
    elbo = solve_table(elbo_table, Ks)
    mse = solve_table(elbo_table, Ks, mse_reweighted_cost(elbo_table))
    out[ELBO_DP] = {K: elbo.path(K) for K in Ks}
    out[MSE_DP] = {K: mse.path(K) for K in Ks}
    return out


def _nodes_spec(nodes: np.ndarray) -> str:
    return "nodes:" + ",".join(str(int(n)) for n in nodes)


def fidelity_grids(T: int, teacher_grid: str, grid: str, paths: Mapping[str, Mapping[int, np.ndarray]]
                   ) -> tuple[str, str, np.ndarray, np.ndarray]:
    """(teacher spec, DP-grid spec, 𝒯, 𝒢): 𝒢 = ``grid`` ∪ every node of ``paths``; 𝒯 = ``teacher_grid``
    ∪ 𝒢, so 𝒢 ⊆ 𝒯 (``method.md`` §13.2) and the DP can choose every compared path. Specs are
    :func:`ddpmdp.grids.parse_grid` strings (explicit ``nodes:…`` lists, which need no noise schedule)."""
    used = [np.asarray(p, dtype=np.int64) for d in paths.values() for p in d.values()]
    g = np.union1d(parse_grid(grid, T), np.concatenate(used) if used else np.array([0, T]))
    teacher = np.union1d(parse_grid(teacher_grid, T), g)
    return _nodes_spec(teacher), _nodes_spec(g), teacher.astype(np.int64), g.astype(np.int64)


@torch.no_grad()
def teacher_run(model: DiffusionModel, paths: Mapping[str, Any], n_seeds: int, *, teacher_grid: str,
                clip: bool = True, seed: int = 0, batch_size: int = 32, device: str = "cpu"
                ) -> tuple[dict[str, Any], dict[str, np.ndarray], np.ndarray]:
    """:func:`ddpmdp.trajectory.teacher_distance` that keeps the samples: for seeds 0..N−1 of stream
    :data:`~ddpmdp.noise.STREAM_TEACHER` the teacher's DDIM walk down ``teacher_grid`` and each path's
    K-step walk (η = 0, ``clip``) from the same x_T. Returns ``({name: TeacherScore}, {name: uint8
    (N, C, H, W) samples}, teacher samples)``; the scores equal ``teacher_distance``'s bit for bit (the
    same walks on the same keyed noise; tested). Identical node lists are walked once. Network calls:
    ⌈N/B⌉ × (|𝒯| − 1 + Σ K over distinct paths)."""
    from ddpmdp.ddim import ddim_walk
    from ddpmdp.noise import STREAM_TEACHER, keyed_normal
    from ddpmdp.sampling import to_uint8
    from ddpmdp.strides import validate_path
    from ddpmdp.trajectory import TeacherScore, model_shape

    require(int(n_seeds) == n_seeds and n_seeds >= 2, f"the teacher distance needs at least 2 fresh seeds, got {n_seeds}")
    require(len(paths) >= 1, "give at least one path")
    chw = model_shape(model, None)
    T = model.schedule.T
    teacher = parse_grid(teacher_grid, T)
    nodes = {name: validate_path(np.asarray(p), T) for name, p in paths.items()}
    N, d, B = int(n_seeds), math.prod(chw), int(batch_size)
    dist = {name: np.zeros(N) for name in nodes}
    samples = {name: np.empty((N, *chw), dtype=np.uint8) for name in nodes}
    teacher_samples = np.empty((N, *chw), dtype=np.uint8)
    for lo in range(0, N, B):
        hi = min(N, lo + B)
        z = keyed_normal(seed, torch.arange(lo, hi, dtype=torch.int64, device=device), 0, chw, stream=STREAM_TEACHER,
                         device=device)
        target = ddim_walk(model, z, teacher, clip)
        teacher_samples[lo:hi] = to_uint8(target)
        walked: dict[bytes, torch.Tensor] = {}
        for name, p in nodes.items():
            x = walked.get(p.tobytes())
            if x is None:
                x = walked[p.tobytes()] = ddim_walk(model, z, p, clip)
            dist[name][lo:hi] = ((x - target).flatten(1).square().sum(1).sqrt() / math.sqrt(d)).cpu().numpy()
            samples[name][lo:hi] = to_uint8(x)
    scores = {name: TeacherScore(p, float(dist[name].mean()), float(dist[name].std(ddof=1) / math.sqrt(N)), N,
                                 teacher_grid, int(len(teacher)), bool(clip), int(seed), STREAM_TEACHER, dist[name])
              for name, p in nodes.items()}
    return scores, samples, teacher_samples


def pool2x2(images: np.ndarray) -> np.ndarray:
    """uint8 (N, C, H, W) → uint8 (N, C, H/2, W/2): the mean of each 2×2 block, rounded half up (the
    64×64 samples and real images seen through a 32×32 feature network)."""
    x = np.asarray(images)
    require(x.dtype == np.uint8 and x.ndim == 4 and x.shape[2] % 2 == 0 and x.shape[3] % 2 == 0,
            f"pool2x2 needs uint8 (N, C, H, W) with even H and W, got {x.dtype} {x.shape}")
    s = x.astype(np.uint16)
    s = s[:, :, 0::2, 0::2] + s[:, :, 1::2, 0::2] + s[:, :, 0::2, 1::2] + s[:, :, 1::2, 1::2]
    return ((s + 2) // 4).astype(np.uint8)


@dataclass
class FidelityResult:
    """One model's comparison. ``paths[label][K]`` nodes; ``scores[label][K]`` held-out
    :class:`~ddpmdp.trajectory.TeacherScore`; ``kid[label][K]`` :class:`~ddpmdp.fid.kid.KIDResult` (empty
    without KID); ``samples[label][K]`` uint8 samples of the fresh seeds and ``teacher_samples``;
    ``teacher_grid``/``grid`` the full specs (node lists), ``teacher_base``/``grid_base`` the
    specs they were built from; ``table`` the selection trajectory table, ``solution`` its DP, ``selection_cost[label][K]`` each
    path's Σ C(t_i, t_{i−1}) on that table; ``elbo_meta`` the ELBO table's metadata; ``kid_info``
    what the KID used (features, real images, pooling); ``seconds`` wall times per stage."""

    label: str
    model: str
    T: int
    budgets: tuple[int, ...]
    paths: dict[str, dict[int, np.ndarray]]
    table: ElboTable
    solution: DPSolution
    selection_cost: dict[str, dict[int, float]]
    scores: dict[str, dict[int, Any]]
    samples: dict[str, dict[int, np.ndarray]]
    teacher_samples: np.ndarray
    teacher_grid: str
    grid: str
    teacher_base: str
    grid_base: str
    teacher_size: int
    grid_size: int
    n_fresh: int
    elbo_meta: dict[str, Any]
    kid: dict[str, dict[int, KIDResult]] = field(default_factory=dict)
    kid_info: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def n_selection(self) -> int:
        return int(self.table.meta.get("n_seeds", self.table.meta.get("n_images", 0)))


def _kid_block(result: FidelityResult, real: ImageSet, extractor, mode: str) -> None:
    from ddpmdp.fid.evaluate import image_features, kid_label

    prep = pool2x2 if mode == "pooled" else (lambda x: x)
    label = kid_label(extractor) + (" on 2×2-average-pooled images" if mode == "pooled" else "")
    ref = KIDReference(image_features(extractor, prep(real.images)), feature=extractor.feature, label=label,
                       comparable_to_published=extractor.comparable_to_published and mode != "pooled")
    result.kid = {name: {K: kid(image_features(extractor, prep(imgs)), ref) for K, imgs in d.items()}
                  for name, d in result.samples.items()}
    result.kid_info = {"label": label, "feature": extractor.feature, "real": real.identity, "n_real": len(real),
                       "pooled": mode == "pooled", "n_generated": result.n_fresh}


def run_sampling_schedules(model: DiffusionModel, elbo_table: ElboTable, *, label: str, budgets: Sequence[int],
                           teacher_grid: str = "stride:10", grid: str = "log:60", n_selection: int = 16,
                           n_fresh: int = 32, real: ImageSet | None = None, extractor=None, kid_mode: str = "proxy",
                           clip: bool = True, seed: int = 0, batch_size: int = 32,
                           device: str = "cpu") -> FidelityResult:
    """The comparison of the module docstring for one model.

    ``elbo_table``: the model's ELBO table on training images (the ELBO and MSE-reweighted DP paths
    come from it; reuse the NLL notebook's cached table). ``teacher_grid``/``grid``: the teacher's and
    the DP's base grids (:func:`fidelity_grids` adds every compared node). ``n_selection`` seeds for
    the trajectory table, ``n_fresh`` fresh seeds for the teacher distance, the KID samples and the
    sample grids. ``real``/``extractor``/``kid_mode`` (:data:`KID_MODES`): KID against held-out real
    images (skipped when ``kid_mode`` is ``none`` or either is None). Model calls: n_selection·(|𝒯| − 1)
    for the table, n_fresh·(|𝒯| − 1 + Σ K) for the evaluation (batches of ``batch_size``)."""
    from ddpmdp.trajectory import estimate_trajectory_table

    require(kid_mode in KID_MODES, f"unknown KID mode {kid_mode!r}: use one of {', '.join(KID_MODES)}")
    T = model.schedule.T
    t0 = time.perf_counter()
    paths = comparison_paths(model, budgets, elbo_table)
    tspec, gspec, teacher, g = fidelity_grids(T, teacher_grid, grid, paths)
    require(len(g) - 1 >= max(int(k) for k in budgets), f"the DP grid has {len(g)} nodes, too few for K = {max(budgets)}")
    table = estimate_trajectory_table(model, n_selection, teacher_grid=tspec, grid=gspec, clip=clip, seed=seed,
                                      device=device)
    t1 = time.perf_counter()
    Ks = sorted({int(k) for k in budgets})
    solution = solve_table(table, Ks)
    paths[TRAJECTORY] = {K: solution.path(K) for K in Ks}
    cost = {name: {K: float(path_cost(table.L, table.nodes, p)) for K, p in d.items()} for name, d in paths.items()}
    for name, d in cost.items():  # 𝒢 holds every compared node, so the DP optimum is never worse on its own table
        for K, c in d.items():
            require(cost[TRAJECTORY][K] <= c * (1 + 1e-9), f"the trajectory DP path for K = {K} costs more than "
                    f"the {name} path on its own selection table")
    t2 = time.perf_counter()
    named = {f"{name}|{K}": p for name, d in paths.items() for K, p in d.items()}
    flat, imgs, teacher_imgs = teacher_run(model, named, n_fresh, teacher_grid=tspec, clip=clip, seed=seed,
                                           batch_size=batch_size, device=device)
    scores: dict[str, dict[int, Any]] = {name: {} for name in paths}
    samples: dict[str, dict[int, np.ndarray]] = {name: {} for name in paths}
    for key, sc in flat.items():
        name, k = key.rsplit("|", 1)
        scores[name][int(k)], samples[name][int(k)] = sc, imgs[key]
    t3 = time.perf_counter()
    result = FidelityResult(label, model.identity, T, tuple(Ks), {n: paths[n] for n in PATHS}, table, solution,
                            {n: cost[n] for n in PATHS}, {n: scores[n] for n in PATHS}, {n: samples[n] for n in PATHS},
                            teacher_imgs, tspec, gspec, teacher_grid, grid, len(teacher), len(g), int(n_fresh), dict(elbo_table.meta))
    if kid_mode != "none" and real is not None and extractor is not None:
        _kid_block(result, real, extractor, kid_mode)
    t4 = time.perf_counter()
    result.seconds = {"trajectory table": t1 - t0, "DP": t2 - t1, "teacher distance and samples": t3 - t2,
                      "KID": t4 - t3}
    return result
