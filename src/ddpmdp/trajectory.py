"""The trajectory table C(t, s) of ``method.md`` §13: sample-fidelity costs for the same DP.

Seeds z₁..z_N give x_T = z (keyed noise, stream :data:`~ddpmdp.noise.STREAM_TRAJECTORY`, keyed
by seed index, so the table does not depend on the batch size). The teacher walks the
deterministic DDIM step Φ (:mod:`ddpmdp.ddim`) down the teacher grid 𝒯 ∋ 0, T (default every
node), one network evaluation per teacher node t > 0. For t in the DP grid 𝒢 ⊆ 𝒯 it keeps
(x̂₀,t, ε̃_t); when it reaches s ∈ 𝒢 it costs every kept t > s:

    e_z(t, s) = ‖Φ(x^𝒯_t; t → s) − x^𝒯_s‖/√d     (RMS distance per dimension, data in [−1, 1]),

and C(t, s) is the mean over seeds with its standard error (running sums of e and e², float64,
in :class:`~ddpmdp.table.TableStats`). The table costs exactly the teacher run, |𝒯| − 1
evaluations per seed; column 0 holds the edges t → 0 (Φ = x̂₀,t); the prior is 0. States are
float64 and every Φ is the same element-wise computation as the teacher's own step, so
C(t, s) = 0 **exactly** when s follows t on 𝒯, and the K = |𝒯| − 1 path costs 0 when 𝒢 = 𝒯.
The distances are direct float64 subtractions (exact zeros, no Gram-matrix cancellation).

Memory grows with 𝒢, not 𝒯: 2·(|𝒢| − 1)·d float64 per seed of a batch (the kept pairs), plus
tiles of at most :data:`TILE_ELEMENTS` while costing. The default batch size
(:func:`default_batch_size`) keeps the pairs within :data:`STATE_BUDGET_BYTES` (1 GiB): 27 seeds
for a 201-node grid on 64×64 images (37 for the 147 nodes of ``log:200`` at T = 4000), 64 (the
cap) on CIFAR-10. The default DP grid (:data:`DEFAULT_GRID`, ``log:200`` snapped to 𝒯; rounding
leaves 131 nodes at T = 1000, 147 at T = 4000) holds every node near the data and steps of
≈ 3.5–4.3 % in t near T (finer than the spacing of any K ≤ 64 path there), and never more than
200 nodes whatever T: ``all`` at T = 4000 would keep 2·4000·12288·8 B ≈ 786 MB per 64×64 seed. Runs go through the driver every table
shares (:func:`ddpmdp.table_runs.drive`): progress files, bitwise resume, torchrun sharding.

Held-out evaluation (§13.5): :func:`teacher_distance` runs the teacher and each path's K-step DDIM
(η = 0) from the same fresh seeds (stream :data:`~ddpmdp.noise.STREAM_TEACHER`) and reports
E(z) = ‖x̂(z) − x^𝒯₀(z)‖/√d, mean ± SE, with paired differences between paths
(:func:`paired_teacher_difference`) and NFE = K beside every number.
"""
from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ddpmdp.ddim import STATE_DTYPE, ddim_step, ddim_walk, teacher_steps
from ddpmdp.errors import DdpmdpError, require
from ddpmdp.grids import parse_grid
from ddpmdp.models.adapter import DiffusionModel, check_image_shape
from ddpmdp.noise import STREAM_TEACHER, STREAM_TRAJECTORY, keyed_normal
from ddpmdp.strides import PathBudget
from ddpmdp.table import FORMAT, TRAJECTORY_UNITS, ElboTable, TableStats, require_objective
from ddpmdp.table_runs import TableRun, check_output_folder, drive
from ddpmdp.version import __version__

__all__ = ["DEFAULT_GRID", "DEFAULT_TEACHER_GRID", "STATE_BUDGET_BYTES", "TILE_ELEMENTS", "teacher_grids",
           "default_batch_size", "model_shape", "accumulate_trajectory_batch", "trajectory_meta",
           "run_trajectory_table", "estimate_trajectory_table", "TeacherScore", "teacher_distance",
           "paired_teacher_difference", "path_local_error"]

DEFAULT_TEACHER_GRID = "all"
DEFAULT_GRID = "log:200"
STATE_BUDGET_BYTES = 1 << 30
"""Bytes the kept (x̂₀, ε̃) pairs of one batch may take under the default batch size."""
MAX_DEFAULT_BATCH = 64
TILE_ELEMENTS = 1 << 18
"""Elements of one float64 tile of Φ − x_s while costing (2 MiB: the temporaries stay in cache; a tile
holds at least one grid node's batch)."""


def teacher_grids(T, teacher_grid: str | None = None, grid: str | None = None
                  ) -> tuple[np.ndarray, np.ndarray, str, str]:
    """(teacher nodes 𝒯, DP grid 𝒢, their specs) from grid specs (:func:`ddpmdp.grids.parse_grid`).
    ``T``: the number of steps, or the noise schedule (which ``logsnr:`` and ``edm:`` parts need).
    ``teacher_grid`` None: every node. ``grid`` None: :data:`DEFAULT_GRID`, each node moved to the
    nearest teacher node. A given ``grid`` must lie in 𝒯: a node outside it is refused in one line."""
    tspec = teacher_grid or DEFAULT_TEACHER_GRID
    teacher = parse_grid(tspec, T)
    if grid is None:
        want = parse_grid(DEFAULT_GRID, T)
        hi = np.clip(np.searchsorted(teacher, want), 1, len(teacher) - 1)
        lo_near = (want - teacher[hi - 1]) <= (teacher[hi] - want)
        nodes = np.unique(np.where(lo_near, teacher[hi - 1], teacher[hi]))
        gspec = DEFAULT_GRID if teacher_grid is None else f"{DEFAULT_GRID} (snapped to the teacher grid)"
    else:
        nodes, gspec = parse_grid(grid, T), grid
        outside = np.setdiff1d(nodes, teacher)
        if outside.size:
            raise DdpmdpError(f"the DP grid {grid!r} holds node {int(outside[0])}, which is not in the teacher grid "
                              f"{tspec!r} ({len(teacher)} nodes): the DP grid must be a subset of the teacher grid")
    return teacher, nodes.astype(np.int64), tspec, gspec


def default_batch_size(grid_size: int, dims: int) -> int:
    """Seeds per batch such that the kept pairs, 2·(G − 1)·d float64 per seed, fit in
    :data:`STATE_BUDGET_BYTES`; between 1 and :data:`MAX_DEFAULT_BATCH`."""
    per_seed = 2 * max(1, grid_size - 1) * dims * 8
    return int(min(MAX_DEFAULT_BATCH, max(1, STATE_BUDGET_BYTES // per_seed)))


def model_shape(model: DiffusionModel, shape: tuple[int, int, int] | None) -> tuple[int, int, int]:
    """The (C, H, W) of x_T: ``shape``, else the model's declared image shape."""
    got = shape if shape is not None else model.image_shape
    require(got is not None and len(got) == 3, "give the image shape C,H,W (the model does not declare it)")
    assert got is not None
    chw = (int(got[0]), int(got[1]), int(got[2]))
    check_image_shape(model, chw, "the requested image shape")
    return chw


@torch.no_grad()
def accumulate_trajectory_batch(model: DiffusionModel, keys: torch.Tensor, teacher: np.ndarray, grid: np.ndarray,
                                clip: bool, seed: int, shape: tuple[int, int, int], *,
                                on_node: Callable[[], None] | None = None) -> TableStats:
    """Trajectory sums for the seeds ``keys`` (int64 (B,), on the model's device): one teacher run,
    |𝒯| − 1 network evaluations. ``s1[i, j]``/``s2[i, j]`` = Σ e and Σ e² over the batch of the
    edge grid[i] → grid[j]; the other sums stay 0. Raises :class:`~ddpmdp.errors.DdpmdpError`
    naming the node where the model returns NaN or inf."""
    device = keys.device
    B, d, G = int(keys.shape[0]), math.prod(shape), len(grid)
    pos = {int(n): i for i, n in enumerate(grid)}
    stats = TableStats.zeros(grid, device)
    x0_kept = torch.empty((G - 1, B, *shape), dtype=STATE_DTYPE, device=device)  # row i − 1: grid node i
    eps_kept = torch.empty_like(x0_kept)
    rows = min(G - 1, max(1, TILE_ELEMENTS // (B * d)))
    tile = torch.empty((2, rows, B, *shape), dtype=STATE_DTYPE, device=device)  # Φ and a scratch, reused
    root_d = math.sqrt(d)
    z = keyed_normal(seed, keys, 0, shape, stream=STREAM_TRAJECTORY, device=device)
    for t, s, x0_hat, eps_tilde, x_s in teacher_steps(model, z, teacher, clip, on_step=on_node):
        if t in pos:
            x0_kept[pos[t] - 1] = x0_hat
            eps_kept[pos[t] - 1] = eps_tilde
        j = pos.get(s)
        if j is None:
            continue
        for lo in range(j + 1, G, rows):  # every kept t > s: Φ(x_t; t → s), the same arithmetic as the teacher's
            hi = min(G, lo + rows)
            buf = (tile[0, :hi - lo], tile[1, :hi - lo])
            diff = ddim_step(model.schedule, x0_kept[lo - 1:hi - 1], eps_kept[lo - 1:hi - 1], s, out=buf)
            e = torch.linalg.vector_norm(diff.sub_(x_s).flatten(2), dim=2) / root_d  # (hi − lo, B)
            stats.s1[lo:hi, j] = e.sum(1)
            stats.s2[lo:hi, j] = e.square().sum(1)
    stats.n = B
    return stats


def trajectory_meta(model: DiffusionModel, teacher: np.ndarray, grid: np.ndarray, teacher_spec: str,
                    grid_spec: str, clip: bool, seed: int, shape: tuple[int, int, int]) -> dict[str, Any]:
    """Provenance recorded with every trajectory table (``n_seeds`` is added from the sums)."""
    sched = model.schedule
    return {
        "format": FORMAT, "objective": "trajectory", "sampler": {"kind": "ddim", "eta": 0.0, "clip": bool(clip)},
        "schedule": sched.describe(), "schedule_hash": sched.fingerprint(), "T": sched.T, "clip": bool(clip),
        "model": model.identity, "model_hash": model.fingerprint(), "seed": int(seed),
        "noise": "x_T = z keyed by (seed, seed index), stream trajectory", "noise_stream": STREAM_TRAJECTORY,
        "teacher_grid": teacher_spec, "teacher_grid_size": int(len(teacher)),
        "teacher_grid_hash": _hash(teacher), "grid": grid_spec, "grid_size": int(len(grid)), "grid_stride": None,
        "abar_grid": [float(a) for a in sched.abar(np.asarray(grid))], "image_shape": list(shape),
        "cost": "e(t, s) = ||Phi(x_t; t -> s) - x_s|| / sqrt(d) on the teacher trajectory; cell = mean over seeds",
        "units": TRAJECTORY_UNITS, "cost_units": TRAJECTORY_UNITS, "state_dtype": "float64",
        "split": "trajectory seeds", "version": __version__, "network_bf16": model.numerics.bf16,
        "network_channels_last": model.numerics.channels_last, "network_dtype": model.numerics.dtype,
    }


def _hash(nodes: np.ndarray) -> str:
    return hashlib.sha256(np.asarray(nodes, dtype=np.int64).tobytes()).hexdigest()[:16]


def run_trajectory_table(model: DiffusionModel, *, n_seeds: int, out: Path | None = None,
                         shape: tuple[int, int, int] | None = None, teacher_grid: str | None = None,
                         grid: str | None = None, clip: bool = True, batch_size: int | None = None, seed: int = 0,
                         device: str = "cpu", resume: bool = False, save_every: int = 10, float32: bool = False,
                         progress: bool = True) -> ElboTable:
    """The trajectory table C(t, s) of ``model`` from ``n_seeds`` teacher runs.

    ``teacher_grid``/``grid``: grid specs (:func:`teacher_grids`; defaults every node and
    :data:`DEFAULT_GRID`). ``batch_size`` None: :func:`default_batch_size`. With ``out``, the
    table is written with atomic progress files and ``resume`` continues a run bitwise; under
    torchrun, batches of seeds are sharded over the ranks. Network calls:
    ⌈n_seeds/B⌉ × (|𝒯| − 1). Returns an :class:`~ddpmdp.table.ElboTable` whose ``L`` is C in
    RMS distance per dimension (``meta['objective'] == 'trajectory'``)."""
    require(int(n_seeds) == n_seeds and n_seeds >= 1, f"--n-seeds must be a positive integer, got {n_seeds}")
    chw = model_shape(model, shape)
    teacher, nodes, tspec, gspec = teacher_grids(model.schedule, teacher_grid, grid)
    d = math.prod(chw)
    bs = default_batch_size(len(nodes), d) if batch_size is None else batch_size
    require(int(bs) == bs and bs >= 1, f"batch size must be a positive integer, got {bs}")
    bs = int(bs)
    out = None if out is None else Path(out)
    check_output_folder(out)
    ranges = [(lo, min(int(n_seeds), lo + bs)) for lo in range(0, int(n_seeds), bs)]

    def batches(numbers, dev, on_pass):
        for b in numbers:
            keys = torch.arange(*ranges[b], dtype=torch.int64, device=dev)
            yield b, accumulate_trajectory_batch(model, keys, teacher, nodes, clip, seed, chw, on_node=on_pass)

    def finish(stats: TableStats, extra: dict) -> ElboTable:
        meta = trajectory_meta(model, teacher, nodes, tspec, gspec, clip, seed, chw)
        meta.update(extra, state_bytes_per_seed=2 * (len(nodes) - 1) * d * 8)
        return ElboTable.from_stats(stats, d, meta)

    config = {"objective": "trajectory", "model": model.identity, "model_hash": model.fingerprint(),
              "teacher_grid": _hash(teacher), "grid": _hash(nodes), "grid_size": int(len(nodes)), "clip": bool(clip),
              "n_seeds": int(n_seeds), "shape": list(chw), "batch_size": bs, "seed": int(seed),
              "bf16": model.numerics.bf16}
    run = TableRun("trajectory", nodes, len(ranges), bs, len(teacher) - 1, config,
                   lambda dev: TableStats.zeros(nodes, dev), batches, finish)
    return drive(run, out=out, device=device, resume=resume, save_every=save_every, float32=float32,
                 progress=progress)


def estimate_trajectory_table(model: DiffusionModel, n_seeds: int, *, teacher_grid: str | None = None,
                              grid: str | None = None, clip: bool = True, batch_size: int | None = None,
                              seed: int = 0, shape: tuple[int, int, int] | None = None,
                              device: str | torch.device = "cpu", progress: bool = False) -> ElboTable:
    """:func:`run_trajectory_table` in memory (no files): C(t, s) for the DP,
    ``solve(table.L, K_max, table.nodes)``."""
    return run_trajectory_table(model, n_seeds=n_seeds, shape=shape, teacher_grid=teacher_grid, grid=grid, clip=clip,
                                batch_size=batch_size, seed=seed, device=str(device), progress=progress)


# ---- held-out evaluation (method.md §13.5) ---------------------------------------------------
@dataclass(frozen=True, eq=False)
class TeacherScore(PathBudget):
    """Held-out teacher distance of one path: E(z) = ‖x̂(z) − x^𝒯₀(z)‖/√d, the RMS distance per
    dimension (data in [−1, 1]) between the path's K-step DDIM (η = 0) sample and the teacher's,
    from the same z. ``mean``/``se``: over ``n_seeds`` fresh seeds (stream ``stream``, never the
    table's); ``per_seed`` (N,) float64 for paired differences; NFE = K network evaluations."""

    nodes: np.ndarray
    mean: float
    se: float
    n_seeds: int
    teacher_grid: str
    teacher_grid_size: int
    clip: bool
    seed: int
    stream: int = STREAM_TEACHER
    per_seed: np.ndarray | None = field(default=None, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {"K": self.K, "nfe": self.nfe, "nodes": [int(n) for n in self.nodes], "teacher_distance": self.mean,
                "teacher_distance_se": self.se, "n_seeds": self.n_seeds, "teacher_grid": self.teacher_grid,
                "teacher_grid_size": self.teacher_grid_size, "sampler": {"kind": "ddim", "eta": 0.0, "clip": self.clip},
                "seed": self.seed, "noise_stream": self.stream, "units": TRAJECTORY_UNITS}


@torch.no_grad()
def teacher_distance(model: DiffusionModel, paths: Mapping[str, Any], n_seeds: int, *,
                     teacher_grid: str | None = None, clip: bool = True, seed: int = 0, batch_size: int = 32,
                     shape: tuple[int, int, int] | None = None, device: str | torch.device = "cpu",
                     progress: bool = False) -> dict[str, TeacherScore]:
    """Held-out teacher distance of each path (nodes or an :class:`~ddpmdp.inference_schedule.InferenceSchedule`).

    For seeds 0..N−1 of stream :data:`~ddpmdp.noise.STREAM_TEACHER` (keyed by (seed, seed index),
    so the result does not depend on the batch size, and never the trajectory table's stream):
    x_T = z, the teacher's DDIM walk down the teacher grid (default every node) and each path's
    K-step walk (:func:`ddpmdp.ddim.ddim_walk`, η = 0, the same ``clip``). Network calls:
    ⌈N/B⌉ × (|𝒯| − 1 + Σ K). Returns a :class:`TeacherScore` per path; compare paths with
    :func:`paired_teacher_difference` (same seeds)."""
    from ddpmdp.inference_schedule import as_schedule, check_schedule_identity
    from ddpmdp.progress import progress_bar
    from ddpmdp.strides import validate_path

    require(int(n_seeds) == n_seeds and n_seeds >= 1, f"--n-seeds must be a positive integer, got {n_seeds}")
    require(int(batch_size) == batch_size and batch_size >= 1, f"batch size must be a positive integer, got {batch_size}")
    require(len(paths) >= 1, "give at least one path")
    check_schedule_identity(paths, model=model, sampler="ddim")
    chw = model_shape(model, shape)
    T = model.schedule.T
    tspec = teacher_grid or DEFAULT_TEACHER_GRID
    teacher = parse_grid(tspec, model.schedule)
    nodes = {name: validate_path(as_schedule(p).nodes, T) for name, p in paths.items()}
    N, d = int(n_seeds), math.prod(chw)
    dist = {name: np.zeros(N) for name in nodes}
    n_batches = -(-N // int(batch_size))
    bar = progress_bar(n_batches * (len(teacher) - 1 + sum(len(p) - 1 for p in nodes.values())), int(batch_size),
                       progress, "teacher distance")
    for lo in range(0, N, int(batch_size)):
        keys = torch.arange(lo, min(N, lo + int(batch_size)), dtype=torch.int64, device=device)
        z = keyed_normal(seed, keys, 0, chw, stream=STREAM_TEACHER, device=device)
        target = ddim_walk(model, z, teacher, clip, on_step=bar.update)
        for name, p in nodes.items():
            x = ddim_walk(model, z, p, clip, on_step=bar.update)
            dist[name][lo:lo + len(keys)] = ((x - target).flatten(1).square().sum(1).sqrt() / math.sqrt(d)).cpu().numpy()
    bar.close()
    out = {}
    for name, p in nodes.items():
        e = dist[name]
        se = float(e.std(ddof=1) / math.sqrt(N)) if N > 1 else float("nan")
        out[name] = TeacherScore(p, float(e.mean()), se, N, tspec, int(len(teacher)), bool(clip), int(seed),
                                 STREAM_TEACHER, e)
    return out


def paired_teacher_difference(a: TeacherScore, b: TeacherScore) -> tuple[float, float]:
    """mean E_a − E_b and its paired SE, sd(E_a(z) − E_b(z))/√N over the same seeds."""
    require(a.per_seed is not None and b.per_seed is not None and len(a.per_seed) == len(b.per_seed)
            and (a.seed, a.stream, a.teacher_grid, a.clip) == (b.seed, b.stream, b.teacher_grid, b.clip),
            "paired differences need two teacher distances on the same seeds and teacher")
    assert a.per_seed is not None and b.per_seed is not None
    diff = a.per_seed - b.per_seed
    se = float(diff.std(ddof=1) / math.sqrt(len(diff))) if len(diff) > 1 else float("nan")
    return float(diff.mean()), se


def path_local_error(table: ElboTable, nodes) -> tuple[float, float]:
    """Σ C(t_i, t_{i−1}) along ``nodes`` (all in the table's grid) on a (held-out) trajectory table,
    and the conservative SE bound Σ SE_i (cells covary through the seeds): the additive cost the DP
    minimises, **not** the teacher distance E(z) (local errors add only when the flow does not
    expand them; :func:`teacher_distance` measures E(z) itself)."""
    from ddpmdp.inference_schedule import as_schedule
    from ddpmdp.strides import validate_path

    require_objective(table, "trajectory", "the sum of local errors along a path")
    p = validate_path(as_schedule(nodes).nodes, table.T)
    pos = np.searchsorted(table.nodes, p)
    ok = (pos < len(table.nodes)) & (table.nodes[np.minimum(pos, len(table.nodes) - 1)] == p)
    require(bool(ok.all()), f"path nodes {p[~ok][:5].tolist()} are not in the trajectory table's grid")
    return float(table.L[pos[1:], pos[:-1]].sum()), float(table.L_se[pos[1:], pos[:-1]].sum())
