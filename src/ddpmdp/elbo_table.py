"""The L(t, s) table: O(T) forward passes per image fill every cell.

For each batch of images and each grid node t > 0, exactly **one** forward pass at
(x_t, t) fills the whole row L(t, ·): the decoder cell L(t, 0) and the KL cells
L(t, s) for every grid node 0 < s < t (:func:`ddpmdp.elbo_terms.kl_row`). Per cell
the estimator keeps the sum and the sum of squares of the per-image values, so
every cell carries a Monte Carlo standard error. Noise is keyed by (seed, image
index, t) (:mod:`ddpmdp.noise`), so the table does not depend on the batch size,
the device or the number of processes.

Layout (``method.md`` §5.5): ``L[i, j]`` is the cost of the edge from grid node
``nodes[i]`` down to ``nodes[j]``, nats per image, finite for j < i and +inf
elsewhere; column 0 holds the decoder terms.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from . import __version__
from .datasets import ImageSet, to_model_space, validate_images
from .elbo_terms import decoder_term, kl_row, predict_x0, prior_term, q_sample
from .errors import DdpmdpError, require
from .fileio import atomic_savez
from .gaussians import nats_to_bpd
from .models import DiffusionModel
from .noise import STREAM_TABLE, keyed_normal
from .variances import DECODER_CONVENTION, VarianceRule, check_rule

__all__ = ["TableStats", "ElboTable", "estimate_table", "make_grid", "accumulate_batch", "load_table"]

UNITS = "nats per image (summed over C*H*W dimensions)"
FORMAT = "ddpmdp-table-1"


def make_grid(T: int, stride: int = 1, nodes: np.ndarray | None = None) -> np.ndarray:
    """Grid nodes: every ``stride``-th node from 0, always holding 0 and T; or ``nodes`` validated."""
    if nodes is not None:
        g = np.asarray(nodes, dtype=np.int64)
        require(g.ndim == 1 and g.size >= 2 and g[0] == 0 and g[-1] == T and bool(np.all(np.diff(g) > 0)),
                f"grid nodes must increase strictly from 0 to T = {T}")
        return g
    require(int(stride) == stride and 1 <= stride <= T, f"grid stride must be an integer in 1..{T}, got {stride}")
    g = np.arange(0, T + 1, int(stride), dtype=np.int64)
    return g if g[-1] == T else np.append(g, T)


def parse_grid(spec: str, T: int) -> np.ndarray:
    """A grid from a spec: parts joined by ``+``, each one of ``all``, ``stride:k``, ``log:G``
    (about G nodes log-spaced from 1 to T: dense near the data, where ELBO-optimal paths put
    their steps), ``even:K1,K2,…`` / ``quadratic:K1,K2,…`` (the nodes of those strides, so that
    a held-out table can score them), ``nodes:a,b,…``. Nodes 0 and T are always included.
    Example: ``log:120+even:8,16,32+quadratic:8,16,32``."""
    from .strides import even_stride, quadratic_stride

    out = [np.array([0, T])]
    for part in spec.split("+"):
        kind, _, arg = part.strip().partition(":")
        try:
            if kind == "all":
                out.append(np.arange(T + 1))
            elif kind == "stride":
                out.append(make_grid(T, int(arg)))
            elif kind == "log":
                G = int(arg)
                require(G >= 2, f"grid {part!r}: log:G needs G >= 2")
                out.append(np.round(np.geomspace(1, T, G - 1)).astype(np.int64))
            elif kind in ("even", "quadratic"):
                fn = even_stride if kind == "even" else quadratic_stride
                out.extend(fn(T, int(k)) for k in arg.split(","))
            elif kind == "nodes":
                nodes = np.array([int(x) for x in arg.split(",")])
                require(bool(np.all((nodes >= 0) & (nodes <= T))), f"grid {part!r}: nodes must lie in 0..{T}")
                out.append(nodes)
            else:
                raise DdpmdpError(f"unknown grid part {part!r}: use all, stride:k, log:G, even:K,…, quadratic:K,…, "
                                  "nodes:a,b,…")
        except ValueError as exc:
            if isinstance(exc, DdpmdpError):
                raise
            raise DdpmdpError(f"grid part {part!r}: expected integers after the colon") from None
    return np.unique(np.concatenate(out)).astype(np.int64)


@dataclass
class TableStats:
    """Running sums over images. ``s1[i, j]``/``s2[i, j]``: Σ L and Σ L² over images of the
    cell (nodes[i] → nodes[j]); ``prior_s1/s2`` likewise for L_prior; ``mse_s1/s2[i]``:
    Σ‖x₀ − x̂₀‖² and its square at nodes[i] (for MSE-reweighted costs); ``n``: images."""

    nodes: np.ndarray
    s1: torch.Tensor
    s2: torch.Tensor
    mse_s1: torch.Tensor
    mse_s2: torch.Tensor
    prior_s1: torch.Tensor
    prior_s2: torch.Tensor
    n: int = 0

    @classmethod
    def zeros(cls, nodes: np.ndarray, device: str | torch.device = "cpu") -> "TableStats":
        G = len(nodes)
        z = lambda *shape: torch.zeros(*shape, dtype=torch.float64, device=device)  # noqa: E731
        return cls(np.asarray(nodes), z(G, G), z(G, G), z(G), z(G), z(()), z(()), 0)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {k: getattr(self, k) for k in ("s1", "s2", "mse_s1", "mse_s2", "prior_s1", "prior_s2")}

    def add_(self, other: "TableStats") -> "TableStats":
        for k, v in self.tensors().items():
            v += other.tensors()[k].to(v.device)
        self.n += other.n
        return self

    def to(self, device: str | torch.device) -> "TableStats":
        return TableStats(self.nodes, *(v.to(device) for v in self.tensors().values()), n=self.n)


def accumulate_batch(model: DiffusionModel, x0: torch.Tensor, index: torch.Tensor, nodes: np.ndarray,
                     rule: VarianceRule, clip: bool, seed: int, *, on_node: Callable[[], None] | None = None
                     ) -> TableStats:
    """Table sums for one batch: one forward pass per grid node t > 0.

    x0: float32 (B, C, H, W) in [−1, 1] on the model's device; index: int64 (B,) global
    image indices (the noise keys). Raises :class:`DdpmdpError` naming the node if the
    model returns NaN or inf (checked once after the loop, so no host sync per node).
    """
    sched = model.schedule
    stats = TableStats.zeros(nodes, x0.device)
    B = x0.shape[0]
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
        row[:, 0] = decoder_term(sched, x0, x0_hat, t, rule, out.v)
        row[:, 1:] = kl_row(sched, x0, x0_hat, t, nodes_dev[1:i], rule, out.v)
        stats.s1[i, :i] = row.sum(0)
        stats.s2[i, :i] = row.pow(2).sum(0)
        mse = (x0 - x0_hat).double().pow(2).flatten(1).sum(1)
        stats.mse_s1[i] = mse.sum()
        stats.mse_s2[i] = mse.pow(2).sum()
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


def _mean_se(s1: np.ndarray, s2: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard error of the mean from Σx, Σx², n: var = (Σx² − (Σx)²/n)/(n − 1)."""
    mean = s1 / n
    if n < 2:
        return mean, np.full_like(mean, np.nan)
    var = np.maximum(s2 - s1 * s1 / n, 0.0) / (n - 1)
    return mean, np.sqrt(var / n)


@dataclass
class ElboTable:
    """A finished table. ``L``/``L_se``: float64 (G, G) nats per image (+inf off the lower
    triangle, NaN SE there); ``nodes`` int64 (G,); ``prior``/``prior_se`` nats per image;
    ``dims`` = C·H·W; ``meta``: provenance (schedule, T, variance, clip, decoder convention,
    model, data, split, n_images, seed, version, units); ``stats``: the raw sums."""

    L: np.ndarray
    L_se: np.ndarray
    nodes: np.ndarray
    prior: float
    prior_se: float
    dims: int
    meta: dict[str, Any]
    stats: TableStats | None = field(default=None, repr=False)

    @property
    def T(self) -> int:
        return int(self.nodes[-1])

    @classmethod
    def from_stats(cls, stats: TableStats, dims: int, meta: dict[str, Any]) -> "ElboTable":
        require(stats.n >= 1, "no images were accumulated")
        s = {k: v.detach().cpu().numpy() for k, v in stats.tensors().items()}
        L, L_se = _mean_se(s["s1"], s["s2"], stats.n)
        lower = np.tril(np.ones_like(L, dtype=bool), k=-1)
        L = np.where(lower, L, np.inf)
        L_se = np.where(lower, L_se, np.nan)
        prior, prior_se = _mean_se(s["prior_s1"], s["prior_s2"], stats.n)
        meta = dict(meta, n_images=stats.n)
        return cls(L, L_se, np.asarray(stats.nodes, dtype=np.int64), float(prior), float(prior_se), int(dims), meta,
                   stats.to("cpu"))

    def mse(self) -> tuple[np.ndarray, np.ndarray]:
        """E‖x₀ − x̂₀(x_t, t)‖² per grid node and its SE ((G,) each; NaN at node 0)."""
        require(self.stats is not None, "this table has no raw sums")
        m, se = _mean_se(self.stats.mse_s1.numpy(), self.stats.mse_s2.numpy(), self.stats.n)
        m[0] = se[0] = np.nan
        return m, se

    def bpd(self, nats):
        """Convert nats per image to bits/dim for this table's d."""
        return nats_to_bpd(nats, self.dims)

    # ---- file format --------------------------------------------------------------------
    def save(self, path: str | os.PathLike, *, float32: bool = False) -> None:
        """Write an ``.npz`` atomically (temporary file, fsync, rename). ``float32`` stores L
        and L_se in float32 (the raw sums stay float64)."""
        arrays: dict[str, Any] = dict(
            L=self.L.astype(np.float32 if float32 else np.float64),
            L_se=self.L_se.astype(np.float32 if float32 else np.float64),
            nodes=self.nodes, prior=np.float64(self.prior), prior_se=np.float64(self.prior_se),
            dims=np.int64(self.dims), meta=np.array(json.dumps(self.meta, sort_keys=True)),
        )
        if self.stats is not None:
            arrays.update({f"sum_{k}": v.numpy() for k, v in self.stats.tensors().items()})
            arrays["sum_n"] = np.int64(self.stats.n)
        atomic_savez(path, arrays)


_REQUIRED_META = ("format", "schedule", "T", "variance", "clip", "decoder_convention", "model", "data",
                  "split", "n_images", "seed", "version", "units")


def load_table(path: str | os.PathLike) -> ElboTable:
    """Read and check a table file: required arrays and metadata, shapes, node range, units."""
    path = Path(path)
    require(path.is_file(), f"table file {str(path)!r} does not exist")
    try:
        z = np.load(path, allow_pickle=False)
        files = set(z.files)
    except Exception as exc:  # noqa: BLE001 - any reader failure is a user-facing bad file
        raise DdpmdpError(f"{path}: not a readable table .npz ({exc})") from None
    with z:
        missing = [k for k in ("L", "L_se", "nodes", "prior", "prior_se", "dims", "meta") if k not in files]
        require(not missing, f"{path}: not a ddpmdp table, missing {', '.join(missing)}")
        try:
            meta = json.loads(str(z["meta"]))
        except json.JSONDecodeError:
            raise DdpmdpError(f"{path}: the 'meta' entry is not valid JSON") from None
        lack = [k for k in _REQUIRED_META if k not in meta]
        require(not lack, f"{path}: table metadata lacks {', '.join(lack)}")
        L, L_se, nodes = z["L"].astype(np.float64), z["L_se"].astype(np.float64), z["nodes"].astype(np.int64)
        G = nodes.size
        require(L.shape == (G, G) and L_se.shape == (G, G),
                f"{path}: L is {L.shape} but there are {G} grid nodes (table/metadata mismatch)")
        require(G >= 2 and nodes[0] == 0 and nodes[-1] == int(meta["T"]) and bool(np.all(np.diff(nodes) > 0)),
                f"{path}: grid nodes must increase from 0 to T = {meta['T']} (table/metadata mismatch)")
        require(meta["units"] == UNITS, f"{path}: unexpected units {meta['units']!r}")
        lower = np.tril(np.ones((G, G), dtype=bool), k=-1)
        require(bool(np.all(np.isfinite(L[lower]))), f"{path}: the table has non-finite cells below the diagonal")
        stats = None
        if "sum_s1" in files:
            stats = TableStats(nodes, *(torch.from_numpy(z[f"sum_{k}"]) for k in
                                        ("s1", "s2", "mse_s1", "mse_s2", "prior_s1", "prior_s2")), n=int(z["sum_n"]))
            require(stats.n == int(meta["n_images"]), f"{path}: n_images in metadata differs from the sums")
        return ElboTable(L, L_se, nodes, float(z["prior"]), float(z["prior_se"]), int(z["dims"]), meta, stats)


def table_meta(model: DiffusionModel, data: ImageSet, nodes: np.ndarray, rule: str, clip: bool, seed: int,
               grid_stride: int | None) -> dict[str, Any]:
    """Provenance recorded with every table."""
    return {
        "format": FORMAT, "schedule": model.schedule.describe(), "schedule_hash": model.schedule.fingerprint(),
        "T": model.schedule.T, "variance": rule, "clip": bool(clip), "decoder_convention": DECODER_CONVENTION,
        "model": model.identity, "model_hash": model.fingerprint(), "data": data.identity,
        "data_hash": data.fingerprint(), "data_notes": list(data.notes), "split": data.split,
        "n_images": len(data), "seed": int(seed), "grid_stride": grid_stride, "grid_size": int(len(nodes)),
        "version": __version__, "units": UNITS, "noise": "keyed by (seed, image index, t), stream table",
        "network_bf16": bool(getattr(model, "bf16", False)),
        "network_channels_last": bool(getattr(model, "channels_last", False)),
    }


def estimate_table(model: DiffusionModel, data: ImageSet | np.ndarray, *, variance: VarianceRule,
                   clip: bool = True, grid_stride: int = 1, nodes: np.ndarray | None = None, batch_size: int = 32,
                   seed: int = 0, device: str | torch.device = "cpu", progress: bool = False) -> ElboTable:
    """Estimate the L(t, s) table of ``model`` on ``data`` (uint8 (N, C, H, W) images).

    Model calls: ⌈N/B⌉ × (G − 1) for G grid nodes. Returns an :class:`ElboTable` in
    nats per image with per-cell standard errors. For resumable and distributed
    runs see :mod:`ddpmdp.table_runner`.
    """
    from .table_runner import run_table

    if isinstance(data, np.ndarray):
        validate_images(data)
        data = ImageSet(data, "array")
    return run_table(model, data, variance=variance, out=None, clip=clip, grid_stride=grid_stride, nodes=nodes,
                     batch_size=batch_size, seed=seed, device=str(device), progress=progress)
