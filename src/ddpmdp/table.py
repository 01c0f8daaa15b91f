"""The L(t, s) table type, its running sums and its file format.

A table is estimated by :mod:`ddpmdp.table_estimation` (O(T) forward passes per image fill
every cell). Per cell it keeps the sum and the sum of squares of the per-image values, so
every cell carries a Monte Carlo standard error. Noise is keyed by (seed, image index, t)
(:mod:`ddpmdp.noise`), so the table does not depend on the batch size, the device or the
number of processes.

Layout (``method.md`` §5.5): ``L[i, j]`` is the cost of the edge from grid node
``nodes[i]`` down to ``nodes[j]``, nats per image, finite for j < i and +inf
elsewhere; column 0 holds the decoder terms.

Objectives (``meta['objective']``, absent = ``elbo``): an ELBO table holds L(t, s) in nats per
image over images; a **trajectory** table (:mod:`ddpmdp.trajectory`, ``method.md`` §13) holds
C(t, s), the RMS distance per dimension of one deterministic DDIM step from the teacher, over
seeds (``meta['n_seeds']``), with prior 0 and no node statistics. Both share this type and file
format; each objective has its own units and required metadata (:data:`UNITS_BY_OBJECTIVE`),
and :func:`require_objective` refuses a table of the other objective in one line.

File format ``ddpmdp-table-2`` (:data:`FORMAT`): an ``.npz`` with L, L_se, nodes, prior, prior_se,
dims, a JSON ``meta`` entry and optionally the raw sums (``sum_*``), per-cell σ² (``sigma2``) and
per-cell rule codes (``edge_rule``, int8, −1 off the lower triangle). The codes mean what the
file's own ``meta['edge_rule_names']`` says (code k is ``edge_rule_names[k]``); format-1 files
have no map and use the frozen :data:`FORMAT1_RULE_ORDER`. Readers refuse unknown or newer formats.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ddpmdp.version import __version__
from ddpmdp.data.images import ImageSet
from ddpmdp.errors import DdpmdpError, require
from ddpmdp.fileio import atomic_savez
from ddpmdp.gaussians import nats_to_bpd
from ddpmdp.models.adapter import DiffusionModel
from ddpmdp.variances import DECODER_CONVENTION, VARIANCE_RULES

__all__ = ["TableStats", "ElboTable", "load_table", "table_meta", "UNITS", "FORMAT", "READABLE_FORMATS",
           "FORMAT1_RULE_ORDER", "TRAJECTORY_UNITS", "UNITS_BY_OBJECTIVE", "objective_of", "require_objective"]

UNITS = "nats per image (summed over C*H*W dimensions)"
TRAJECTORY_UNITS = "RMS distance per dimension, data in [-1, 1]"
UNITS_BY_OBJECTIVE = {"elbo": UNITS, "trajectory": TRAJECTORY_UNITS}
"""The units of each objective's cells (``meta['units']``, checked by :func:`load_table`)."""
FORMAT = "ddpmdp-table-2"
"""The format this ddpmdp writes: format 1 plus ``meta['edge_rule_names']``, the names of the rule codes."""
READABLE_FORMATS = ("ddpmdp-table-1", "ddpmdp-table-2")
FORMAT1_RULE_ORDER = ("fixed_small", "fixed_large", "learned_range", "analytic", "optimal", "best")
"""What the ``edge_rule`` codes of a format-1 file mean (frozen: the rule order when format 1 was written)."""


@dataclass
class TableStats:
    """Running sums over images. ``s1[i, j]``/``s2[i, j]``: Σ L and Σ L² over images of the
    cell (nodes[i] → nodes[j]); ``prior_s1/s2`` likewise for L_prior; ``mse_s1/s2[i]``:
    Σ‖x₀ − x̂₀‖² and its square at nodes[i] (M(t), for scalar rules and MSE-reweighted costs);
    ``gamma_s1/s2[i]``: Σ‖ε_θ‖²/d and its square (Γ_t, Analytic-DPM); ``dec_s1/s2[i, c]``: Σ of
    the decoder NLL with σ² = decoder candidate c at nodes[i] (width 0 when not accumulated);
    ``n``: images. The cells in ``s1``/``s2`` are those of the table's ``sums_variance``."""

    nodes: np.ndarray
    s1: torch.Tensor
    s2: torch.Tensor
    mse_s1: torch.Tensor
    mse_s2: torch.Tensor
    prior_s1: torch.Tensor
    prior_s2: torch.Tensor
    gamma_s1: torch.Tensor
    gamma_s2: torch.Tensor
    dec_s1: torch.Tensor
    dec_s2: torch.Tensor
    n: int = 0

    @classmethod
    def zeros(cls, nodes: np.ndarray, device: str | torch.device = "cpu", n_decoder: int = 0) -> "TableStats":
        G = len(nodes)
        z = lambda *shape: torch.zeros(*shape, dtype=torch.float64, device=device)  # noqa: E731
        return cls(np.asarray(nodes), z(G, G), z(G, G), z(G), z(G), z(()), z(()), z(G), z(G),
                   z(G, n_decoder), z(G, n_decoder), 0)

    FIELDS = ("s1", "s2", "mse_s1", "mse_s2", "prior_s1", "prior_s2", "gamma_s1", "gamma_s2", "dec_s1", "dec_s2")
    """The summed tensors, in constructor order; stored in files as ``sum_NAME`` plus ``sum_n``.
    Files written before Γ and the decoder candidates existed read them as zeros of width 0
    (``gamma`` then reports NaN)."""

    def tensors(self) -> dict[str, torch.Tensor]:
        return {k: getattr(self, k) for k in self.FIELDS}

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The one writer: ``sum_NAME`` float64 arrays and ``sum_n`` (tables and progress files)."""
        arrays: dict[str, np.ndarray] = {f"sum_{k}": v.detach().cpu().numpy() for k, v in self.tensors().items()}
        arrays["sum_n"] = np.asarray(self.n, dtype=np.int64)
        return arrays

    @classmethod
    def from_arrays(cls, arrays: Any, nodes: np.ndarray, device: str | torch.device = "cpu") -> "TableStats":
        """The one reader: the inverse of :meth:`to_arrays` (``arrays``: an open ``.npz`` or a dict)."""
        G = len(nodes)
        files = set(getattr(arrays, "files", None) or arrays.keys())
        legacy = {"gamma_s1": (G,), "gamma_s2": (G,), "dec_s1": (G, 0), "dec_s2": (G, 0)}
        vals = [torch.from_numpy(np.asarray(arrays[f"sum_{k}"])) if f"sum_{k}" in files
                else torch.full(legacy[k], np.nan if k.startswith("gamma") else 0.0, dtype=torch.float64)
                for k in cls.FIELDS]
        tensors: dict[str, Any] = {k: v.to(device) for k, v in zip(cls.FIELDS, vals)}
        return cls(np.asarray(nodes), **tensors, n=int(arrays["sum_n"]))

    def add_(self, other: "TableStats") -> "TableStats":
        for k, v in self.tensors().items():
            v += other.tensors()[k].to(v.device)
        self.n += other.n
        return self

    def to(self, device: str | torch.device) -> "TableStats":
        tensors: dict[str, Any] = {k: v.to(device) for k, v in self.tensors().items()}
        return TableStats(self.nodes, **tensors, n=self.n)


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
    model, data, split, n_images, seed, version, units); ``stats``: the raw sums; ``sigma2`` (G, G)
    float64 per-cell σ² (NaN for learned-range cells and off the lower triangle); ``edge_rule`` (G, G)
    int8 per-cell rule codes, code k meaning rule ``edge_rule_names[k]`` (:meth:`cell_rules`)."""

    L: np.ndarray
    L_se: np.ndarray
    nodes: np.ndarray
    prior: float
    prior_se: float
    dims: int
    meta: dict[str, Any]
    stats: TableStats | None = field(default=None, repr=False)
    sigma2: np.ndarray | None = field(default=None, repr=False)
    edge_rule: np.ndarray | None = field(default=None, repr=False)
    edge_rule_names: tuple[str, ...] = field(default=VARIANCE_RULES, repr=False)

    @property
    def T(self) -> int:
        return int(self.nodes[-1])

    def cell_rules(self, i, j) -> tuple[str, ...]:
        """The rule names of cells (i[k], j[k]) (grid indices), mapped through this table's own code map."""
        require(self.edge_rule is not None, "this table records no per-cell rules (an old table): rescore it with "
                "ddpmdp rescore")
        assert self.edge_rule is not None
        return tuple(self.edge_rule_names[int(c)] for c in np.atleast_1d(self.edge_rule[i, j]))

    @classmethod
    def from_stats(cls, stats: TableStats, dims: int, meta: dict[str, Any]) -> "ElboTable":
        require(stats.n >= 1, "no images or seeds were accumulated")
        s = {k: v.detach().cpu().numpy() for k, v in stats.tensors().items()}
        L, L_se = _mean_se(s["s1"], s["s2"], stats.n)
        lower = np.tril(np.ones_like(L, dtype=bool), k=-1)
        L = np.where(lower, L, np.inf)
        L_se = np.where(lower, L_se, np.nan)
        prior, prior_se = _mean_se(s["prior_s1"], s["prior_s2"], stats.n)
        meta = dict(meta, **{_COUNT_KEY[objective_of(meta)]: stats.n})
        return cls(L, L_se, np.asarray(stats.nodes, dtype=np.int64), float(prior), float(prior_se), int(dims), meta,
                   stats.to("cpu"))

    def sums_cells(self) -> tuple[np.ndarray, np.ndarray]:
        """L and L_se of the cells summed in the raw sums (rule ``meta['sums_variance']``)."""
        require(self.stats is not None, "this table has no raw sums")
        assert self.stats is not None
        L, L_se = _mean_se(self.stats.s1.numpy(), self.stats.s2.numpy(), self.stats.n)
        lower = np.tril(np.ones_like(L, dtype=bool), k=-1)
        return np.where(lower, L, np.inf), np.where(lower, L_se, np.nan)

    def mse(self) -> tuple[np.ndarray, np.ndarray]:
        """E‖x₀ − x̂₀(x_t, t)‖² per grid node and its SE ((G,) each; NaN at node 0)."""
        require(self.stats is not None, "this table has no raw sums")
        assert self.stats is not None
        m, se = _mean_se(self.stats.mse_s1.numpy(), self.stats.mse_s2.numpy(), self.stats.n)
        m[0] = se[0] = np.nan
        return m, se

    def gamma(self) -> tuple[np.ndarray, np.ndarray]:
        """Γ_t = E‖ε_θ(x_t, t)‖²/d per grid node and its SE ((G,) each; NaN at node 0)."""
        require(self.stats is not None, "this table has no raw sums")
        assert self.stats is not None
        m, se = _mean_se(self.stats.gamma_s1.numpy(), self.stats.gamma_s2.numpy(), self.stats.n)
        m[0] = se[0] = np.nan
        return m, se

    def decoder_candidate_nll(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean decoder NLL (nats per image) per grid node and decoder candidate, and its SE, (G, N)."""
        require(self.stats is not None and self.stats.dec_s1.shape[1] > 0,
                "this table has no decoder-candidate sums: rebuild it with --variance analytic, optimal or best")
        assert self.stats is not None
        return _mean_se(self.stats.dec_s1.numpy(), self.stats.dec_s2.numpy(), self.stats.n)

    def bpd(self, nats):
        """Convert nats per image to bits/dim for this table's d."""
        return nats_to_bpd(nats, self.dims)

    # ---- file format --------------------------------------------------------------------
    def save(self, path: str | os.PathLike, *, float32: bool = False) -> None:
        """Write an ``.npz`` atomically (temporary file, fsync, rename). ``float32`` stores L
        and L_se in float32 (the raw sums stay float64)."""
        meta = dict(self.meta, format=FORMAT)
        if self.edge_rule is not None:
            meta["edge_rule_names"] = list(self.edge_rule_names)
        arrays: dict[str, Any] = dict(
            L=self.L.astype(np.float32 if float32 else np.float64),
            L_se=self.L_se.astype(np.float32 if float32 else np.float64),
            nodes=self.nodes, prior=np.float64(self.prior), prior_se=np.float64(self.prior_se),
            dims=np.int64(self.dims), meta=np.array(json.dumps(meta, sort_keys=True)),
        )
        if self.stats is not None:
            arrays.update(self.stats.to_arrays())
        if self.sigma2 is not None:
            arrays.update(sigma2=self.sigma2, edge_rule=self.edge_rule)
        atomic_savez(path, arrays)


_REQUIRED_META = {
    "elbo": ("format", "schedule", "T", "variance", "clip", "decoder_convention", "model", "data", "split",
             "n_images", "seed", "version", "units"),
    "trajectory": ("format", "objective", "sampler", "schedule", "T", "clip", "model", "n_seeds", "seed",
                   "teacher_grid", "teacher_grid_size", "version", "units"),
}
_COUNT_KEY = {"elbo": "n_images", "trajectory": "n_seeds"}
"""The metadata key that counts what was summed: images, or the teacher's seeds."""
_KIND = {"elbo": "an ELBO table (nats per image)",
         "trajectory": "a trajectory table (RMS distances of deterministic DDIM steps from a teacher)"}


def objective_of(meta: dict[str, Any]) -> str:
    """A table's objective: ``meta['objective']``, absent in ELBO tables (``elbo``)."""
    return str(meta.get("objective") or "elbo")


def require_objective(table: "ElboTable", objective: str, what: str, name: str = "this table") -> None:
    """Refuse, in one line, a table of another objective where ``what`` needs ``objective``
    (``name``: the table's file, for the message)."""
    got = objective_of(table.meta)
    require(got == objective, f"{what} needs {_KIND.get(objective, objective)}, but {name} is "
            f"{_KIND.get(got, repr(got))}")


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
        _check_format(path, meta)
        objective = objective_of(meta)
        require(objective in _REQUIRED_META, f"{path}: unknown table objective {objective!r} (this ddpmdp "
                f"({__version__}) reads {' and '.join(_REQUIRED_META)} tables): upgrade ddpmdp")
        lack = [k for k in _REQUIRED_META[objective] if k not in meta]
        require(not lack, f"{path}: table metadata lacks {', '.join(lack)}")
        L, L_se, nodes = z["L"].astype(np.float64), z["L_se"].astype(np.float64), z["nodes"].astype(np.int64)
        G = nodes.size
        require(L.shape == (G, G) and L_se.shape == (G, G),
                f"{path}: L is {L.shape} but there are {G} grid nodes (table/metadata mismatch)")
        require(G >= 2 and nodes[0] == 0 and nodes[-1] == int(meta["T"]) and bool(np.all(np.diff(nodes) > 0)),
                f"{path}: grid nodes must increase from 0 to T = {meta['T']} (table/metadata mismatch)")
        require(meta["units"] == UNITS_BY_OBJECTIVE[objective],
                f"{path}: unexpected units {meta['units']!r} for a{'n' if objective == 'elbo' else ''} {objective} "
                f"table (expected {UNITS_BY_OBJECTIVE[objective]!r})")
        lower = np.tril(np.ones((G, G), dtype=bool), k=-1)
        require(bool(np.all(np.isfinite(L[lower]))), f"{path}: the table has non-finite cells below the diagonal")
        stats = None
        if "sum_s1" in files:
            stats = TableStats.from_arrays(z, nodes)
            count = _COUNT_KEY[objective]
            require(stats.n == int(meta[count]), f"{path}: {count} in metadata differs from the sums")
        extra: dict[str, Any] = {k: z[k] for k in ("sigma2", "edge_rule") if k in files}
        names = meta.pop("edge_rule_names", None)
        if "edge_rule" in extra:
            extra["edge_rule_names"] = _rule_names(path, meta, names, extra["edge_rule"])
        return ElboTable(L, L_se, nodes, float(z["prior"]), float(z["prior_se"]), int(z["dims"]), meta, stats,
                         **extra)


def _check_format(path: Path, meta: dict[str, Any]) -> None:
    """Refuse, in one line, a table format this ddpmdp cannot read (unknown or newer)."""
    fmt = meta.get("format")
    if fmt in READABLE_FORMATS:
        return
    prefix, _, number = str(fmt).rpartition("-")
    newer = prefix == "ddpmdp-table" and number.isdigit() and int(number) > int(FORMAT.rpartition("-")[2])
    raise DdpmdpError(f"{path}: written by ddpmdp {meta.get('version', '(unknown version)')} in "
                      + (f"format {fmt}" if newer else f"an unknown format {fmt!r}")
                      + f"; this ddpmdp ({__version__}) reads {' and '.join(READABLE_FORMATS)}"
                      + (": upgrade ddpmdp" if newer else ": not a table file this ddpmdp can read"))


def _rule_names(path: Path, meta: dict[str, Any], names: Any, codes: np.ndarray) -> tuple[str, ...]:
    """The file's map from ``edge_rule`` codes to rule names, checked against the rules this ddpmdp knows."""
    if meta["format"] == "ddpmdp-table-1":
        names = FORMAT1_RULE_ORDER
    require(isinstance(names, list | tuple) and all(isinstance(n, str) for n in names),
            f"{path}: format {meta['format']} needs meta['edge_rule_names'] (the rule of each edge_rule code)")
    used = np.unique(codes[codes >= 0])
    require(bool(np.all(used < len(names))), f"{path}: edge_rule codes {used.tolist()} exceed its "
            f"{len(names)} rule names")
    unknown = sorted({names[int(c)] for c in used} - set(VARIANCE_RULES))
    require(not unknown, f"{path}: cells use variance rules {', '.join(unknown)} that this ddpmdp ({__version__}) "
            "does not know: upgrade ddpmdp")
    return tuple(names)


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
        "network_bf16": model.numerics.bf16, "network_channels_last": model.numerics.channels_last,
        "network_dtype": model.numerics.dtype,
        "abar_grid": [float(a) for a in model.schedule.abar(np.asarray(nodes))],
        "beta_tilde_min": float(model.schedule.beta_tilde_min),
    }
