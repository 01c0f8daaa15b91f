"""Experiment drivers for the book's notebooks: every computation a notebook shows lives here.

Each driver keeps selection and evaluation apart (``method.md`` §8): the L(t, s) table is
estimated on the **training** split, the DP paths are chosen from it, and every reported
number is a direct held-out evaluation (:func:`ddpmdp.evaluate.evaluate_paths`: fresh noise,
one forward pass per (image, node) shared by all paths, exact SEs and paired differences).

* :func:`run_nll` — one model: table on train → DP for every budget → even, quadratic and DP
  strides (and optionally the full chain) scored on test (the Paper's Tables 3 and 4);
* :func:`run_mc_ablation` — DP paths from tables of 1, 2, 4, … training images, scored on
  test (Paper Fig. 3); the nested tables come from a single pass over the images;
* :func:`run_sample_quality` — FID (or a labelled proxy-FID) of samples along even and
  quadratic strides under ancestral sampling and DDIM η = 0, the DP path and the DP path of
  the MSE-reweighted cost (Paper Table 5, Fig. 2);
* :func:`shared_noise_grids` — sample grids whose noise vectors are shared across strides
  within each budget (Paper Figs. 4, 5).

Helpers load data and models quietly (loader warnings become the image set's notes, printed
with the data folder written as ``$DDPMDP_DATA`` so that outputs do not depend on the machine),
cache tables on disk, and write tables (CSV + Markdown) and figures (PNG) for the book.
Units: tables in nats per image; every reported number in bits/dim (nats / (d·ln 2)).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from .datasets import ImageSet, data_root, load_images, to_model_space
from .dp import DPSolution, solve
from .elbo_table import ElboTable, TableStats, accumulate_batch, estimate_table, load_table, parse_grid, table_meta
from .errors import DdpmdpError, require
from .evaluate import PathScore, evaluate_paths
from .models import DiffusionModel
from .paths import repo_root
from .reports import ResultTable, bpd_table
from .strides import even_stride, quadratic_stride

with warnings.catch_warnings():
    # In Jupyter without ipywidgets, the first import of tqdm.auto (used by the table, evaluation and
    # sampling loops, whose bars the drivers switch off) warns on stderr with an installation path.
    warnings.simplefilter("ignore")
    import tqdm.auto  # noqa: F401

__all__ = [
    "load_data", "describe_data", "load_experiment_model", "default_variance", "describe_model", "table_grid",
    "cached_table", "solve_table", "stride_paths", "by_budget", "NLLResult", "run_nll", "nll_table", "nll_summary", "nested_tables",
    "MCAblationResult", "run_mc_ablation", "mse_reweighted_cost", "fid_extractor", "SAMPLERS",
    "SampleQualityResult", "run_sample_quality", "shared_noise_grids", "format_paths", "write_dp_json",
    "write_result_table", "markdown_table", "save_figure", "slug", "relative", "format_seconds",
    "embedded_card_table", "model_samples",
]


# ---- data and models ---------------------------------------------------------------------------
def load_data(spec: str, n: int | None = None, *, data_dir: str | os.PathLike | None = None) -> ImageSet:
    """The first ``n`` images (all when None) of a data spec (:func:`ddpmdp.datasets.load_images`).

    Warnings raised while loading (e.g. "differs from the official files") are not printed;
    they are kept in the returned set's ``notes`` (and hence in every table's metadata).
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = load_images(spec, data_dir)
    extra = [str(w.message) for w in caught if str(w.message) not in ds.notes]
    ds = ds.subset(n)
    ds.notes.extend(extra)
    return ds


def _portable(text: str, data_dir: str | os.PathLike | None = None) -> str:
    """``text`` with the data folder written as ``$DDPMDP_DATA`` (outputs independent of the machine)."""
    root = data_root(data_dir)
    if root is not None:
        for form in {str(root), str(Path(root).resolve())}:
            text = text.replace(form, "$DDPMDP_DATA")
    return text


def describe_data(ds: ImageSet, data_dir: str | os.PathLike | None = None) -> str:
    """One paragraph about an image set: identity, split, N, shape, d and its notes."""
    C, H, W = ds.images.shape[1:]
    lines = [f"{ds.identity}: split {ds.split}, {len(ds):,} images of {C}×{H}×{W} (d = {ds.dims:,})"]
    lines += [f"  note: {_portable(n, data_dir)}" for n in ds.notes]
    return "\n".join(lines)


def load_experiment_model(spec: str, *, noise_schedule: str | None = None, device: str = "cpu",
                          data_dir: str | os.PathLike | None = None, dtype: str = "float32") -> DiffusionModel:
    """A model adapter from a model spec (:func:`ddpmdp.model_specs.load_model`): an embedded
    model name, ``iddpm:PRESET[:PATH]``, ``ho[:PATH]``, ``gaussian:DATA`` or ``module:callable``.
    ``noise_schedule`` (``linear:T``, ``cosine:T``, a ``.npy`` of ᾱ) is for the specs that need
    or accept one. Loader warnings are suppressed (data notes travel with the data instead).
    ``dtype`` ``"float64"`` runs the network in float64 (the smoke runs: their printed digits then
    do not depend on the CPU, ``tests/README.md``)."""
    from .model_specs import load_model
    from .models import TorchModelAdapter

    require(dtype in ("float32", "float64"), f"dtype must be 'float32' or 'float64', got {dtype!r}")
    if device.startswith("cuda"):
        require(torch.cuda.is_available(), f"device {device!r}: CUDA is not available here; use device='cpu'")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = load_model(spec, device=device, data_dir=data_dir, schedule=noise_schedule)
    if dtype != "float32":
        require(isinstance(model, TorchModelAdapter), f"dtype {dtype!r} needs a network model; {spec!r} is a "
                f"{type(model).__name__}")
        model.to_dtype(getattr(torch, dtype))
    return model


def default_variance(model: DiffusionModel, variance: str | None = None) -> str:
    """``variance`` if given, else ``learned_range`` for learned-variance models and ``fixed_large`` otherwise."""
    return variance or ("learned_range" if model.learned_variance else "fixed_large")


def describe_model(model: DiffusionModel, variance: str | None = None) -> str:
    """One line: identity, noise schedule, T and the variance rule in use."""
    return (f"{model.identity}: {model.schedule.describe()}, T = {model.schedule.T}, "
            f"variance {default_variance(model, variance)}")


def table_grid(grid: str | None, T: int) -> np.ndarray:
    """Grid nodes (int64, 0 … T) from a grid spec (``ddpmdp.elbo_table.parse_grid``: ``log:G``,
    ``stride:k``, ``even:K1,K2``, ``quadratic:K1,K2``, ``nodes:a,b,…`` joined with ``+``);
    ``None`` or ``"all"`` is every node."""
    if grid is None or grid == "all":
        return np.arange(T + 1, dtype=np.int64)
    return parse_grid(grid, T)


def cached_table(model: DiffusionModel, data: ImageSet, *, variance: str, grid: str | None = None,
                 clip: bool = True, seed: int = 0, batch_size: int = 32, device: str = "cpu",
                 cache_dir: str | os.PathLike | None = None) -> tuple[ElboTable, bool]:
    """The L(t, s) table of ``model`` on ``data``; returns ``(table, loaded_from_cache)``.

    With ``cache_dir`` (relative paths resolve against :func:`ddpmdp.paths.repo_root`) the
    table is stored as ``TABLE-<key>.npz``, where the key hashes the model and data
    fingerprints, the grid nodes, the variance rule, the clip flag and the seed, and it is
    reused by later calls with the same key (the notebooks share tables this way). The
    batch size and device are not part of the key: they change cells only by rounding.
    """
    nodes = table_grid(grid, model.schedule.T)
    path = None
    if cache_dir is not None:
        key = json.dumps({"model": model.fingerprint(), "model_id": model.identity, "data": data.fingerprint(),
                          "n": len(data), "grid": hashlib.sha256(nodes.tobytes()).hexdigest(), "variance": variance,
                          "clip": bool(clip), "seed": int(seed)}, sort_keys=True)
        folder = Path(cache_dir).expanduser()
        folder = folder if folder.is_absolute() else repo_root() / folder
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"TABLE-{hashlib.sha256(key.encode()).hexdigest()[:20]}.npz"
        if path.is_file():
            return load_table(path), True
    table = estimate_table(model, data, variance=variance, clip=clip, nodes=nodes, batch_size=batch_size, seed=seed,
                           device=device)
    table.meta["grid"] = grid or "all"
    if path is not None:
        table.save(path)
    return table, False


def stride_paths(T: int, budgets: Sequence[int], *, solution: DPSolution | None = None,
                 strides: Sequence[str] = ("even", "quadratic"), dp_name: str = "dp"
                 ) -> dict[tuple[str, int], np.ndarray]:
    """``{(stride, K): nodes}`` for the even and quadratic strides (:mod:`ddpmdp.strides`) and,
    with a solution, the DP path of every budget (named ``dp_name``). Nodes run 0 … T."""
    fns = {"even": even_stride, "quadratic": quadratic_stride}
    out: dict[tuple[str, int], np.ndarray] = {}
    for s in strides:
        require(s in fns, f"unknown stride {s!r}: use even or quadratic")
    for K in budgets:
        for s in strides:
            out[(s, int(K))] = fns[s](T, int(K))
        if solution is not None:
            out[(dp_name, int(K))] = solution.path(int(K))
    return out


def by_budget(paths: Mapping[tuple[str, int], np.ndarray]) -> dict[int, dict[str, np.ndarray]]:
    """``{(stride, K): nodes}`` (from :func:`stride_paths`) regrouped as ``{K: {stride: nodes}}``."""
    out: dict[int, dict[str, np.ndarray]] = {}
    for (s, K), p in paths.items():
        out.setdefault(int(K), {})[s] = p
    return dict(sorted(out.items()))


def solve_table(table: ElboTable, budgets: Sequence[int], L: np.ndarray | None = None) -> DPSolution:
    """The DP (:func:`ddpmdp.dp.solve`) of ``table`` up to the largest budget, on the table's
    grid; ``L`` replaces the ELBO cells by another (G, G) edge cost (e.g.
    :func:`mse_reweighted_cost`). Fails with a clear message when the grid is too coarse."""
    G = len(table.nodes)
    k_max = max(int(k) for k in budgets)
    require(k_max <= G - 1, f"budget K = {k_max} needs at least K + 1 grid nodes, but the table's grid has {G} "
            f"({table.meta.get('grid')}); use a finer grid or smaller budgets")
    return solve(table.L if L is None else L, k_max, table.nodes)


# ---- NLL: table on train, DP, direct evaluation on test ---------------------------------------
@dataclass
class NLLResult:
    """One model's bits/dim per (stride, K) on the held-out split.

    ``paths[(stride, K)]`` and ``scores[(stride, K)]`` for strides ``even``, ``quadratic`` and
    ``dp``; ``full`` the full T-step chain (None when not evaluated); ``table`` the training
    table the DP used and ``solution`` its DP; ``seconds`` wall times of the stages; ``cached``
    whether the table came from the cache.
    """

    objective: str
    model: str
    variance: str
    table: ElboTable
    solution: DPSolution
    paths: dict[tuple[str, int], np.ndarray]
    scores: dict[tuple[str, int], PathScore]
    full: PathScore | None
    seconds: dict[str, float] = field(default_factory=dict)
    cached: bool = False

    def keyed_scores(self) -> dict[tuple[str, str, int], PathScore]:
        """``{(objective, stride, K): score}``, the input of :func:`ddpmdp.reports.bpd_table`."""
        return {(self.objective, s, K): sc for (s, K), sc in self.scores.items()}

    def dp_paths(self) -> dict[int, np.ndarray]:
        """``{K: nodes}`` of the DP paths."""
        return {K: p for (s, K), p in self.paths.items() if s == "dp"}


def run_nll(model: DiffusionModel, train: ImageSet, test: ImageSet, *, objective: str, budgets: Sequence[int],
            grid: str | None = None, variance: str | None = None, clip: bool = True, full_chain: bool = True,
            batch_size: int = 32, seed: int = 0, device: str = "cpu",
            cache_dir: str | os.PathLike | None = None) -> NLLResult:
    """Table on ``train`` → DP for every budget → even, quadratic and DP strides on ``test``.

    Model calls: ⌈N_train/B⌉·(G − 1) for the table (unless cached) and ⌈N_test/B⌉·U for the
    evaluation, where U is the number of distinct nodes t > 0 on all paths (T with ``full_chain``).
    The test scores are paired: every path sees the same images and the same noise per node.
    """
    variance = default_variance(model, variance)
    T = model.schedule.T
    require(len(budgets) >= 1 and all(1 <= int(k) <= T for k in budgets), f"budgets must lie in 1..T = {T}")
    t0 = time.perf_counter()
    table, cached = cached_table(model, train, variance=variance, grid=grid, clip=clip, seed=seed,
                                 batch_size=batch_size, device=device, cache_dir=cache_dir)
    t1 = time.perf_counter()
    sol = solve_table(table, budgets)
    paths = stride_paths(T, budgets, solution=sol)
    t2 = time.perf_counter()
    named = {f"{s}:{K}": p for (s, K), p in paths.items()}
    if full_chain:
        named["full"] = np.arange(T + 1, dtype=np.int64)
    scored = evaluate_paths(model, test, named, variance=variance, clip=clip, batch_size=batch_size, seed=seed,
                            device=device)
    t3 = time.perf_counter()
    scores = {key: scored[f"{key[0]}:{key[1]}"] for key in paths}
    return NLLResult(objective, model.identity, variance, table, sol, paths, scores, scored.get("full"),
                     {"table": t1 - t0, "dp": t2 - t1, "evaluate": t3 - t2}, cached)


def nll_table(results: Mapping[str, NLLResult], *, budgets: Sequence[int] | None = None, precision: int = 3,
              title: str = "") -> ResultTable:
    """The Table-3 layout (rows objective × stride, columns K and the full chain) of several
    :class:`NLLResult`, with DP gains within 2 SE flagged (paired SEs)."""
    scores: dict[tuple[str, str, int], PathScore] = {}
    for r in results.values():
        scores.update(r.keyed_scores())
    full = {r.objective: r.full for r in results.values() if r.full is not None}
    return bpd_table(scores, full or None, budgets=budgets, precision=precision, title=title)


def nll_summary(results: Mapping[str, NLLResult], precision: int = 3) -> list[str]:
    """One sentence per objective: at the smallest and largest budget, the DP path's bits/dim
    against the better baseline stride, with the paired SE of the difference."""
    from .evaluate import paired_difference

    out = []
    for r in results.values():
        Ks = sorted({K for (_, K) in r.scores})
        parts = []
        for K in dict.fromkeys((Ks[0], Ks[-1])):
            dp = r.scores[("dp", K)]
            base_name = min(("even", "quadratic"), key=lambda s: r.scores[(s, K)].bpd)
            diff, se = paired_difference(dp, r.scores[(base_name, K)])
            parts.append(f"at K = {K} the DP path scores {dp.bpd:.{precision}f} ± {dp.bpd_se:.{precision}f} "
                         f"bits/dim, {diff:+.{precision}f} ± {se:.{precision}f} against the {base_name} stride")
        full = (f"; the full {r.full.K}-step chain scores {r.full.bpd:.{precision}f} ± {r.full.bpd_se:.{precision}f}"
                if r.full is not None else "")
        out.append(f"{r.objective}: " + "; ".join(parts) + full + ".")
    return out


# ---- Monte Carlo ablation ---------------------------------------------------------------------
def nested_tables(model: DiffusionModel, data: ImageSet, sizes: Sequence[int], *, variance: str,
                  grid: str | None = None, clip: bool = True, seed: int = 0, batch_size: int = 32,
                  device: str = "cpu") -> dict[int, ElboTable]:
    """Tables from the first n images of ``data`` for every n in ``sizes``, in one pass over
    max(sizes) images: batches never straddle a size boundary, and the running sums are
    copied into a table at each boundary. Noise is keyed by (seed, image index, t), so each
    table equals ``estimate_table(model, data.subset(n), …)`` up to rounding (the network's
    float32 outputs can depend on how images are batched)."""
    sizes = sorted({int(n) for n in sizes})
    require(len(sizes) >= 1 and sizes[0] >= 1, "sizes must be positive image counts")
    require(sizes[-1] <= len(data), f"the largest table size {sizes[-1]} exceeds the {len(data)} images given")
    nodes = table_grid(grid, model.schedule.T)
    stats = TableStats.zeros(nodes, device)
    out: dict[int, ElboTable] = {}
    lo = 0
    for n in sizes:
        while lo < n:
            hi = min(n, lo + batch_size)
            x0 = to_model_space(data.images[lo:hi], device)
            idx = torch.arange(lo, hi, dtype=torch.int64, device=device)
            stats.add_(accumulate_batch(model, x0, idx, nodes, variance, clip, seed))  # type: ignore[arg-type]
            lo = hi
        snap = TableStats(nodes, *(v.detach().clone().cpu() for v in stats.tensors().values()), n=stats.n)
        meta = table_meta(model, data.subset(n), nodes, variance, clip, seed, None)
        meta["grid"] = grid or "all"
        out[n] = ElboTable.from_stats(snap, data.dims, meta)
    return out


@dataclass
class MCAblationResult:
    """DP paths chosen from tables of ``sizes`` training images, scored on test.

    ``paths[n][K]`` and ``scores[n][K]`` (paired: one direct evaluation for all n and K);
    ``tables[n]`` the selection tables; ``seconds`` wall times."""

    label: str
    sizes: list[int]
    tables: dict[int, ElboTable]
    paths: dict[int, dict[int, np.ndarray]]
    scores: dict[int, dict[int, PathScore]]
    seconds: dict[str, float] = field(default_factory=dict)

    def as_table(self, precision: int = 3, title: str = "") -> ResultTable:
        """Rows "table from n images", columns K: test bits/dim ± SE of the DP paths."""
        keyed = {(self.label, f"table from {n} image{'s' if n != 1 else ''}", K): sc
                 for n, d in self.scores.items() for K, sc in d.items()}
        return bpd_table(keyed, budgets=sorted({K for d in self.scores.values() for K in d}), precision=precision,
                         title=title)


def run_mc_ablation(model: DiffusionModel, train: ImageSet, test: ImageSet, *, label: str, sizes: Sequence[int],
                    budgets: Sequence[int], grid: str | None = None, variance: str | None = None, clip: bool = True,
                    batch_size: int = 32, seed: int = 0, device: str = "cpu") -> MCAblationResult:
    """Monte Carlo ablation (Paper §5.2, Fig. 3): :func:`nested_tables` on ``train``, the DP of
    each, and one direct evaluation of all DP paths on ``test`` (shared forward passes, paired)."""
    variance = default_variance(model, variance)
    t0 = time.perf_counter()
    tables = nested_tables(model, train, sizes, variance=variance, grid=grid, clip=clip, seed=seed,
                           batch_size=batch_size, device=device)
    t1 = time.perf_counter()
    paths = {n: {int(K): sol.path(int(K)) for K in budgets} for n, sol in
             ((n, solve_table(tab, budgets)) for n, tab in tables.items())}
    named = {f"{n}|{K}": p for n, d in paths.items() for K, p in d.items()}
    scored = evaluate_paths(model, test, named, variance=variance, clip=clip, batch_size=batch_size, seed=seed,
                            device=device)
    t2 = time.perf_counter()
    scores = {n: {K: scored[f"{n}|{K}"] for K in d} for n, d in paths.items()}
    return MCAblationResult(label, sorted(tables), tables, paths, scores,
                            {"tables": t1 - t0, "evaluate": t2 - t1})


# ---- sample quality ---------------------------------------------------------------------------
SAMPLERS: dict[str, tuple[str, Literal["ancestral", "ddim"]]] = {
    "even (DDPM)": ("even", "ancestral"),
    "quadratic (DDPM)": ("quadratic", "ancestral"),
    "even (DDIM η=0)": ("even", "ddim"),
    "quadratic (DDIM η=0)": ("quadratic", "ddim"),
    "dp (ELBO)": ("dp", "ancestral"),
    "dp + MSE reweighting": ("dp_mse", "ancestral"),
}
"""The samplers of Paper Table 5: name → (path kind, sampler). Quadratic is ddpmdp's rule that
ends at T (``method.md`` §7.2), for DDIM as well."""


def mse_reweighted_cost(table: ElboTable) -> np.ndarray:
    """The MSE-reweighted edge cost of Paper App. A.3: W[i, j] = (t − s)·E‖x₀ − x̂₀(x_t, t)‖²
    with t = nodes[i]/T and s = nodes[j]/T in [0, 1] (nats-free: squared pixel error in model
    space, summed over d), +∞ for j ≥ i. (G, G) float64; E‖·‖² is :meth:`ElboTable.mse`."""
    m, _ = table.mse()
    t = table.nodes.astype(np.float64) / table.T
    W = (t[:, None] - t[None, :]) * m[:, None]
    lower = np.tri(len(t), len(t), -1, dtype=bool)
    return np.where(lower, W, np.inf)


def fid_extractor(kind: Literal["auto", "inception", "proxy"] = "auto", *,
                  inception_dir: str | os.PathLike | None = None, proxy_cache: str | os.PathLike = "runs/fid",
                  proxy_steps: int | None = None, data_dir: str | os.PathLike | None = None, device: str = "cpu",
                  dtype: str = "float32"):
    """The FID feature extractor: pytorch-fid's Inception-v3 weights from ``inception_dir``
    (comparable to published FIDs) or the project's proxy classifier (:func:`ddpmdp.fid.proxy_extractor`,
    trained on CIFAR-10 on first use and cached under ``proxy_cache``; **not** comparable).
    ``auto`` takes Inception when the weights file is present, the proxy otherwise.
    ``proxy_steps`` caps the proxy's training steps (smoke runs); use a separate
    ``proxy_cache`` for such runs, because a cached proxy is reused whatever the steps.
    ``dtype="float64"`` trains the proxy in float64 (the smoke runs: weights that do not depend
    on the CPU); Inception and the proxy's features run in float32 either way."""
    from .fid import INCEPTION_FILE, InceptionExtractor, proxy_extractor

    require(kind in ("auto", "inception", "proxy"), f"unknown FID features {kind!r}: use auto, inception or proxy")
    weights = Path(inception_dir).expanduser() / INCEPTION_FILE if inception_dir else None
    if kind == "inception" or (kind == "auto" and weights is not None and weights.is_file()):
        require(weights is not None and weights.is_file(),
                f"FID Inception weights not found{' at ' + str(weights) if weights else ''}: put {INCEPTION_FILE} "
                "into inception_dir, or use fid_features='proxy'")
        return InceptionExtractor(weights, device=device)
    cache = Path(proxy_cache).expanduser()
    cache = cache if cache.is_absolute() else repo_root() / cache
    kwargs: dict[str, Any] = {} if proxy_steps is None else {"max_steps": int(proxy_steps)}
    if dtype != "float32":
        require(dtype == "float64", f"dtype must be 'float32' or 'float64', got {dtype!r}")
        kwargs["dtype"] = torch.float64
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return proxy_extractor(cache, data_dir, device=device, **kwargs)


@dataclass
class SampleQualityResult:
    """FID per sampler and budget, and the test bits/dim of the ancestral samplers' paths.

    ``fid[sampler][K]`` (:class:`ddpmdp.fid.FIDResult`), ``bpd[sampler][K]`` (PathScore, only
    for ancestral samplers: DDIM η = 0 has no likelihood), ``paths[sampler][K]``, ``full`` the
    full chain's FID (or None), ``features`` the extractor's description, ``seconds``."""

    fid: dict[str, dict[int, Any]]
    bpd: dict[str, dict[int, PathScore]]
    paths: dict[str, dict[int, np.ndarray]]
    full: Any
    features: dict[str, Any]
    n_samples: int
    n_reference: int
    seconds: dict[str, float] = field(default_factory=dict)

    def fid_table(self, precision: int = 2) -> tuple[list[str], list[list[str]]]:
        """(header, rows) of FIDs: one row per sampler, one column per K, and with a full-chain
        FID an "All" column holding it in a last row."""
        Ks = sorted({K for d in self.fid.values() for K in d})
        header = ["Sampler"] + [f"K={K}" for K in Ks] + (["All"] if self.full is not None else [])
        rows = []
        for s, d in self.fid.items():
            rows.append([s] + [f"{float(d[K]):.{precision}f}" if K in d else "—" for K in Ks]
                        + ([""] if self.full is not None else []))
        if self.full is not None:
            rows.append(["full chain (ancestral)"] + [""] * len(Ks) + [f"{float(self.full):.{precision}f}"])
        return header, rows


def run_sample_quality(model: DiffusionModel, table: ElboTable, reference: ImageSet, extractor, *,
                       budgets: Sequence[int], n_samples: int, test: ImageSet | None = None,
                       samplers: Sequence[str] = tuple(SAMPLERS), variance: str | None = None, clip: bool = True,
                       full_chain: bool = False, seed: int = 0, batch_size: int = 64,
                       device: str = "cpu") -> SampleQualityResult:
    """FID of ``n_samples`` samples per (sampler, K) against ``reference`` images (Paper Table 5).

    The DP paths come from ``table`` (the ELBO) and from :func:`mse_reweighted_cost` of the
    same table; the strides from :mod:`ddpmdp.strides`. Every sampler uses the same seed, so
    within one budget all samplers start from the same x_T (and ancestral samplers share their
    per-step noise). With ``test``, the ancestral samplers' paths are also scored in bits/dim
    (for FID against likelihood). Model calls: n_samples/B·K per (sampler, K).
    """
    from .fid import feature_statistics, fid_from_stats
    from .sampling import sample

    unknown = [s for s in samplers if s not in SAMPLERS]
    require(not unknown, f"unknown sampler(s) {unknown}: use {list(SAMPLERS)}")
    variance = default_variance(model, variance)
    T = model.schedule.T
    shape = tuple(getattr(model, "image_shape", None) or reference.images.shape[1:])
    t0 = time.perf_counter()
    kinds = {SAMPLERS[s][0] for s in samplers}
    sols = {}
    if "dp" in kinds:
        sols["dp"] = solve_table(table, budgets)
    if "dp_mse" in kinds:
        sols["dp_mse"] = solve_table(table, budgets, mse_reweighted_cost(table))
    base = stride_paths(T, budgets)
    paths = {s: {int(K): (sols[SAMPLERS[s][0]].path(int(K)) if SAMPLERS[s][0] in sols
                          else base[(SAMPLERS[s][0], int(K))]) for K in budgets} for s in samplers}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # small-n FID bias warnings: the table states n
        ref = feature_statistics(extractor, reference, batch_size=batch_size, source=reference.identity)
        t1 = time.perf_counter()
        fid: dict[str, dict[int, Any]] = {}
        for s in samplers:
            method = SAMPLERS[s][1]
            for K, nodes in paths[s].items():
                imgs = sample(model, nodes, n_samples, shape, method=method, variance=variance, eta=0.0, clip=clip,
                              seed=seed, device=device, batch_size=batch_size)
                st = feature_statistics(extractor, imgs, batch_size=batch_size, source=f"samples {s} K={K}")
                fid.setdefault(s, {})[K] = fid_from_stats(st, ref)
        full = None
        if full_chain:
            imgs = sample(model, np.arange(T + 1), n_samples, shape, method="ancestral", variance=variance, clip=clip,
                          seed=seed, device=device, batch_size=batch_size)
            full = fid_from_stats(feature_statistics(extractor, imgs, batch_size=batch_size,
                                                     source=f"samples full chain T={T}"), ref)
    t2 = time.perf_counter()
    bpd: dict[str, dict[int, PathScore]] = {}
    if test is not None:
        named = {f"{s}|{K}": p for s in samplers if SAMPLERS[s][1] == "ancestral" for K, p in paths[s].items()}
        if named:
            scored = evaluate_paths(model, test, named, variance=variance, clip=clip, batch_size=batch_size,
                                    seed=seed, device=device)
            for key, sc in scored.items():
                s, K = key.rsplit("|", 1)
                bpd.setdefault(s, {})[int(K)] = sc
    t3 = time.perf_counter()
    return SampleQualityResult(fid, bpd, paths, full, extractor.describe(), int(n_samples), len(reference),
                               {"reference features": t1 - t0, "sampling + features": t2 - t1, "bits/dim": t3 - t2})


def shared_noise_grids(model: DiffusionModel, paths: Mapping[int, Mapping[str, np.ndarray]], n: int, *,
                       variance: str | None = None, clip: bool = True, seed: int = 0, device: str = "cpu",
                       batch_size: int = 64, full_chain: bool = False, real: ImageSet | None = None
                       ) -> dict[str, dict[str, np.ndarray]]:
    """Sample grids for :func:`ddpmdp.plotting.sample_grid_figure`: ``{"K = 32": {stride: uint8
    (n, C, H, W)}}`` from ``paths[K][stride]``, ancestral sampling with one seed, so that within a
    budget every stride starts from the same x_T and draws the same per-step noise vectors
    (Paper Figs. 4, 5). Optional rows: the full T-step chain and ``n`` real images."""
    from .sampling import sample

    variance = default_variance(model, variance)
    shape = tuple(getattr(model, "image_shape", None) or (real.images.shape[1:] if real is not None else ()))
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


# ---- the embedded models ------------------------------------------------------------------------
def embedded_card_table(names: Sequence[str] | None = None, precision: int = 3) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the embedded models' cards (:func:`ddpmdp.embedded.model_table`): objective,
    the held-out full-chain bits/dim ± SE with the split and the number of images it was measured
    on, training steps and CPU minutes, noise schedule, variance rule and parameter count."""
    from .embedded import model_table

    header = ["Model", "Objective", "Held-out bits/dim (full chain)", "Split", "Images", "Steps", "Train min",
              "Schedule", "Variance", "Parameters"]
    rows = []
    for r in model_table():
        if names is not None and r["name"] not in names:
            continue
        bpd = (f"{r['heldout_bpd']:.{precision}f} ± {r['heldout_bpd_se']:.{precision}f}"
               if r["heldout_bpd"] is not None else "not measured")
        rows.append([r["name"], r["objective"], bpd, str(r["heldout_split"] or "—"), str(r["heldout_images"] or "—"),
                     f"{r['steps']:,}" if r["steps"] else "—",
                     f"{r['train_minutes']:.0f}" if r["train_minutes"] is not None else "—", r["schedule"],
                     r["variance"], f"{r['parameters']:,}" if r["parameters"] else "—"])
    return header, rows


def model_samples(model: DiffusionModel, path: str, n: int, *, method: Literal["ancestral", "ddim"] = "ancestral",
                  variance: str | None = None, clip: bool = True, seed: int = 0, device: str = "cpu",
                  batch_size: int = 64) -> np.ndarray:
    """``n`` samples, uint8 (n, C, H, W), along a path spec (``even:K``, ``quadratic:K``,
    ``dp:FILE.json:K``, ``nodes:…``; :func:`ddpmdp.cli.parse_path_spec`) with the model's variance rule by default."""
    from .cli import parse_path_spec
    from .sampling import sample

    shape = tuple(getattr(model, "image_shape", None) or ())
    require(len(shape) == 3, "the model does not declare its image shape")
    nodes = parse_path_spec(path, model.schedule.T)
    return sample(model, nodes, n, shape, method=method, variance=default_variance(model, variance),  # type: ignore[arg-type]
                  clip=clip, seed=seed, device=device, batch_size=batch_size)


# ---- writing results --------------------------------------------------------------------------
def format_paths(paths: Mapping[int, np.ndarray], max_nodes: int = 40, key: str = "K") -> str:
    """One line per entry, ``K =  8: 0, 1, 7, …, 1000`` (``key`` names the mapping's keys: the
    budget K, or e.g. the table size n); paths longer than ``max_nodes`` nodes show their first
    and last nodes around an ellipsis."""
    width = len(str(max(paths))) if paths else 1
    lines = []
    for K in sorted(paths):
        p = [int(x) for x in paths[K]]
        body = (", ".join(map(str, p)) if len(p) <= max_nodes else
                ", ".join(map(str, p[:max_nodes // 2])) + ", …, " + ", ".join(map(str, p[-max_nodes // 4:])))
        lines.append(f"{key} = {K:>{width}}: {body}")
    return "\n".join(lines)


def write_dp_json(table: ElboTable, solution: DPSolution, budgets: Sequence[int], path: str | os.PathLike,
                  L: np.ndarray | None = None) -> Path:
    """The DP paths in the format of ``ddpmdp solve --json`` (usable as ``dp:FILE.json:K``):
    T, split, variance, n_images and per budget the nodes with the selection table's own
    (optimistic) nats and bits/dim. ``L``: the cost the solution was computed from, when it is
    not the table's ELBO (then nats/bpd are omitted)."""
    res: dict[str, Any] = {"table": table.meta.get("model"), "T": table.T, "split": table.meta.get("split"),
                           "variance": table.meta.get("variance"), "n_images": table.meta.get("n_images"),
                           "note": "costs are the selection table's own values (optimistically biased); "
                                   "evaluate the paths on held-out data", "budgets": {}}
    for K in budgets:
        nodes = solution.path(int(K))
        entry: dict[str, Any] = {"nodes": [int(n) for n in nodes]}
        if L is None:
            nats = float(solution.costs[int(K)] + table.prior)
            entry.update(nats=nats, bpd=float(table.bpd(nats)))
        res["budgets"][str(int(K))] = entry
    p = Path(path)
    p.write_text(json.dumps(res, indent=1) + "\n")
    return p


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], title: str = "") -> str:
    """A Markdown table from a header and rows of cell texts, with an optional bold title line."""
    lines = ([f"**{title}**", ""] if title else []) + ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    import csv

    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def write_result_table(table: ResultTable | tuple[list[str], list[list[str]]], name: str,
                       out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write a result table for the book under ``out_dir``:

    * ``NAME.csv`` — tidy records, one per cell, numeric bpd and SE (:meth:`ResultTable.to_csv`);
    * ``NAME.md`` — the Markdown table with its caption (:meth:`ResultTable.to_markdown`);
    * ``NAME_wide.csv`` — the display layout (cells "bpd ± SE") for ``csv-table :file:``;
    * ``NAME_caption.md`` — the caption alone (units, split, image count, SE kind, flags), for
      the book to include under the table.

    A plain ``(header, rows)`` pair (e.g. :meth:`SampleQualityResult.fid_table`) is written as
    ``NAME_wide.csv`` and a Markdown ``NAME.md`` only. Returns the paths by kind."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    if isinstance(table, ResultTable):
        paths["csv"] = out / f"{name}.csv"
        table.to_csv(paths["csv"])
        paths["md"] = out / f"{name}.md"
        text = table.to_markdown()
        paths["md"].write_text(text)
        paths["caption"] = out / f"{name}_caption.md"
        paths["caption"].write_text(text.rstrip("\n").rsplit("\n\n", 1)[-1] + "\n")
        header, rows = table.wide_rows()
    else:
        header, rows = table
        paths["md"] = out / f"{name}.md"
        paths["md"].write_text(markdown_table(header, rows))
    paths["wide"] = out / f"{name}_wide.csv"
    _write_csv(paths["wide"], header, rows)
    return paths


def save_figure(fig, name: str, out_dir: str | os.PathLike, *, dpi: int = 110) -> Path:
    """Save a matplotlib figure as ``out_dir/NAME.png`` without a software-version stamp (so
    the bytes depend only on the figure). Returns the path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.png"
    fig.savefig(path, dpi=dpi, metadata={"Software": None})
    return path


def slug(text: str) -> str:
    """A file-name stem from a label: runs of non-word characters become ``_``, lower case
    (``"64×64 L_hybrid"`` → ``"64_64_l_hybrid"``)."""
    import re

    return re.sub(r"\W+", "_", text, flags=re.ASCII).strip("_").lower()


def relative(path: str | os.PathLike) -> str:
    """``path`` relative to the repository root when inside it (for machine-independent output)."""
    p = Path(path).resolve()
    try:
        return str(p.relative_to(repo_root()))
    except (ValueError, DdpmdpError):
        return str(p)


def format_seconds(seconds: Mapping[str, float]) -> str:
    """``"table 12.3 s, dp 0.1 s, …"`` (wall times; excluded from notebook output checks)."""
    return ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items()) + f" (total {math.fsum(seconds.values()):.1f} s)"
