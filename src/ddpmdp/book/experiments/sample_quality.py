"""Sample quality (Paper Table 5, Fig. 2; notebook ``sample_quality``): FID (or a labelled
proxy-FID) of samples along even and quadratic strides under ancestral sampling and DDIM η = 0,
the DP path and the DP path of the MSE-reweighted cost; its FID table and generated summary.
"""
from __future__ import annotations

import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from ddpmdp.book.experiments.paths import solve_table, stride_paths
from ddpmdp.book.reporting.formatting import ranges
from ddpmdp.book.runtime.inputs import variance_rule
from ddpmdp.book.runtime.locations import find_repo_root
from ddpmdp.data.images import ImageSet
from ddpmdp.errors import require
from ddpmdp.evaluate import PathScore, evaluate_paths
from ddpmdp.models.adapter import DiffusionModel
from ddpmdp.table import ElboTable

__all__ = ["SAMPLERS", "mse_reweighted_cost", "fid_extractor", "SampleQualityResult", "run_sample_quality",
           "sample_quality_summary_markdown"]


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
    (comparable to published FIDs) or the project's proxy classifier (:func:`ddpmdp.fid.proxy.proxy_extractor`,
    trained on CIFAR-10 on first use and cached under ``proxy_cache``; **not** comparable).
    ``auto`` takes Inception when the weights file is present, the proxy otherwise.
    ``proxy_steps`` caps the proxy's training steps (smoke runs); use a separate
    ``proxy_cache`` for such runs, because a cached proxy is reused whatever the steps.
    ``dtype="float64"`` trains the proxy in float64 (the smoke runs: weights that do not depend
    on the CPU); Inception and the proxy's features run in float32 either way."""
    from ddpmdp.fid.inception import INCEPTION_FILE, InceptionExtractor
    from ddpmdp.fid.proxy import proxy_extractor

    require(kind in ("auto", "inception", "proxy"), f"unknown FID features {kind!r}: use auto, inception or proxy")
    weights = Path(inception_dir).expanduser() / INCEPTION_FILE if inception_dir else None
    if kind == "inception" or (kind == "auto" and weights is not None and weights.is_file()):
        require(weights is not None and weights.is_file(),
                f"FID Inception weights not found{' at ' + str(weights) if weights else ''}: put {INCEPTION_FILE} "
                "into inception_dir, or use fid_features='proxy'")
        return InceptionExtractor(weights, device=device)
    cache = Path(proxy_cache).expanduser()
    cache = cache if cache.is_absolute() else (find_repo_root() or Path.cwd()) / cache
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

    ``fid[sampler][K]`` (:class:`ddpmdp.fid.frechet.FIDResult`), ``bpd[sampler][K]`` (PathScore, only
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
    from ddpmdp.fid.frechet import feature_statistics, fid_from_stats
    from ddpmdp.sampling import sample

    unknown = [s for s in samplers if s not in SAMPLERS]
    require(not unknown, f"unknown sampler(s) {unknown}: use {list(SAMPLERS)}")
    variance = variance_rule(variance, model)
    T = model.schedule.T
    shape = tuple(model.image_shape or reference.images.shape[1:])
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
                s, k = key.rsplit("|", 1)
                bpd.setdefault(s, {})[int(k)] = sc
    t3 = time.perf_counter()
    return SampleQualityResult(fid, bpd, paths, full, extractor.describe(), int(n_samples), len(reference),
                               {"reference features": t1 - t0, "sampling + features": t2 - t1, "bits/dim": t3 - t2})


def sample_quality_summary_markdown(result: SampleQualityResult, label: str, precision: int = 2) -> str:
    """Per budget: the sampler with the lowest FID, and the MSE-reweighted DP path against the
    ELBO DP path. FIDs carry no SE (one sample set per cell)."""
    Ks = sorted({K for d in result.fid.values() for K in d})
    best = []
    for K in Ks:
        cand = {s: float(d[K]) for s, d in result.fid.items() if K in d}
        s = min(cand, key=cand.__getitem__)
        best.append(f"K = {K}: {s} ({cand[s]:.{precision}f})")
    text = (f"Lowest {label} per budget ({result.n_samples} samples per cell against {result.n_reference} "
            f"reference images; one sample set per cell, so no standard error): " + "; ".join(best) + ".")
    mse = next((s for s in result.fid if "MSE" in s or "mse" in s), None)
    elbo = next((s for s in result.fid if s.lower().startswith("dp") and s != mse), None)
    if mse and elbo:
        worse = [K for K in Ks if K in result.fid[mse] and K in result.fid[elbo]
                 and float(result.fid[mse][K]) > float(result.fid[elbo][K])]
        better = [K for K in Ks if K in result.fid[mse] and K in result.fid[elbo]
                  and float(result.fid[mse][K]) < float(result.fid[elbo][K])]
        text += (f" The MSE-reweighted DP path has a higher {label} than the ELBO DP path at {ranges(worse)} "
                 f"and a lower one at {ranges(better)}.")
    return text + "\n"
