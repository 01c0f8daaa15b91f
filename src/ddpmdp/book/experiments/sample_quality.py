"""Sample quality (Paper Table 5, Fig. 2; notebook ``sample_quality``): KID ± SE (``method.md`` §13.5;
FID beside it only with Inception features) of samples along even and quadratic strides under
ancestral sampling and DDIM η = 0, the DP path and the DP path of the MSE-reweighted cost, against
held-out real images; paired differences between neighbouring budgets of a row; its table and
generated summary.
"""
from __future__ import annotations

import math
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
from ddpmdp.book.reporting.comparisons import verdict
from ddpmdp.book.reporting.formatting import pm_se_sig, ranges, times_ten
from ddpmdp.book.runtime.inputs import variance_rule
from ddpmdp.book.runtime.locations import find_repo_root
from ddpmdp.data.images import ImageSet
from ddpmdp.errors import require
from ddpmdp.evaluate import PathScore, evaluate_paths
from ddpmdp.fid.kid import KIDResult
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
    """KID ± SE per sampler and budget (and FID with Inception features), and the test bits/dim of the
    ancestral samplers' paths.

    ``kid[sampler][K]`` (:class:`ddpmdp.fid.kid.KIDResult`: samples against the held-out real images);
    ``step[sampler][K]`` the paired KID difference (KID at K − KID at the row's previous budget, its
    jackknife SE), absent for a row's first budget; ``fid[sampler][K]`` (only with Inception features);
    ``bpd[sampler][K]`` (PathScore, ancestral samplers only: DDIM η = 0 has no likelihood);
    ``paths[sampler][K]``; ``full`` the full chain's KID (or None); ``features`` the extractor's
    description; ``n_samples`` per cell; ``real`` the real images' identity and ``n_real`` their count."""

    kid: dict[str, dict[int, KIDResult]]
    step: dict[str, dict[int, tuple[float, float]]]
    fid: dict[str, dict[int, Any]]
    bpd: dict[str, dict[int, PathScore]]
    paths: dict[str, dict[int, np.ndarray]]
    full: KIDResult | None
    features: dict[str, Any]
    n_samples: int
    real: str
    n_real: int
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """The KID label (proxy-KID unless the features are pytorch-fid's Inception)."""
        return next(r.label for d in self.kid.values() for r in d.values())

    @property
    def exponent(self) -> int:
        """e with max |KID|/10^e in [1, 1000), a multiple of 3: the tables print KID × 10^−e."""
        vals = [abs(r.value) for d in self.kid.values() for r in d.values() if r.value != 0 and math.isfinite(r.value)]
        return 3 * math.floor(math.log10(max(vals)) / 3) if vals else 0

    def told_apart(self, sampler: str, K: int) -> bool:
        """Whether KID at K differs from the row's previous budget beyond 2 paired SE (True for a
        row's first budget, which has no neighbour to the left)."""
        if K not in self.step.get(sampler, {}):
            return True
        d, se = self.step[sampler][K]
        return verdict(d, se) != "within"

    def kid_table(self) -> tuple[list[str], list[list[str]]]:
        """(header, rows) of KID × 10^−e ± SE (the SE to two significant digits): one row per sampler, one column per K ("K=8 · NFE 8"),
        and with a full-chain KID an "All" column holding it in a last row; "≈" marks a cell within 2
        paired SE of its left neighbour (the same sampler at the previous budget)."""
        scale = 10.0 ** self.exponent
        Ks = sorted({K for d in self.kid.values() for K in d})
        header = ["Sampler"] + [f"K={K} · NFE {K}" for K in Ks] + (["All"] if self.full is not None else [])
        rows = []
        for s, d in self.kid.items():
            rows.append([s] + [pm_se_sig(d[K].value / scale, d[K].se / scale)
                               + ("" if self.told_apart(s, K) else " ≈") if K in d else "—" for K in Ks]
                        + ([""] if self.full is not None else []))
        if self.full is not None:
            rows.append(["full chain (ancestral)"] + [""] * len(Ks)
                        + [pm_se_sig(self.full.value / scale, self.full.se / scale)])
        return header, rows

    def fid_table(self, precision: int = 2) -> tuple[list[str], list[list[str]]] | None:
        """(header, rows) of FIDs (Inception features only; one sample set per cell, no SE), else None."""
        if not self.fid:
            return None
        Ks = sorted({K for d in self.fid.values() for K in d})
        return (["Sampler"] + [f"K={K}" for K in Ks],
                [[s] + [f"{float(d[K]):.{precision}f}" if K in d else "—" for K in Ks] for s, d in self.fid.items()])

    def kid_curves(self) -> dict[str, dict[int, tuple[float, float]]]:
        """``{sampler: {K: (KID, SE)}}`` × 10^−e, for :func:`ddpmdp.book.reporting.plotting.plot_fid`."""
        scale = 10.0 ** self.exponent
        return {s: {K: (r.value / scale, r.se / scale) for K, r in d.items()} for s, d in self.kid.items()}

    def caption(self) -> str:
        """What a cell is: metric, scale, samples, real images, features (weights hash), SE, marks."""
        e = self.exponent
        return (f"{self.label}{times_ten(-e)}: the unbiased MMD² (cubic kernel) between {self.n_samples} samples per "
                f"cell and {self.n_real} held-out real images of `{self.real}`, ± its delete-a-group jackknife SE; "
                f"features: {self.features.get('feature')}. Every cell's sample i starts from the same noise key i, "
                "so differences are paired; ≈ marks a cell within 2 paired SE of the same sampler at the previous "
                "budget (the two cannot be told apart). NFE = K network evaluations per sample.")


def run_sample_quality(model: DiffusionModel, table: ElboTable, real: ImageSet, extractor, *,
                       budgets: Sequence[int], n_samples: int, test: ImageSet | None = None,
                       samplers: Sequence[str] = tuple(SAMPLERS), variance: str | None = None, clip: bool = True,
                       full_chain: bool = False, seed: int = 0, batch_size: int = 64,
                       device: str = "cpu") -> SampleQualityResult:
    """KID ± SE of ``n_samples`` samples per (sampler, K) against the held-out ``real`` images (Paper
    Table 5 with KID; FID beside it only when the extractor is Inception).

    The DP paths come from ``table`` (the ELBO) and from :func:`mse_reweighted_cost` of the same
    table; the strides from :mod:`ddpmdp.strides`. Every cell uses the same seed, so sample i of every
    cell starts from the same x_T (and ancestral samplers share their per-step noise by position):
    KID differences between cells are paired (:func:`ddpmdp.fid.kid.kid_difference`). With ``test``,
    the ancestral samplers' paths are also scored in bits/dim (KID against likelihood). Model calls:
    n_samples·K per (sampler, K).
    """
    from ddpmdp.fid.evaluate import evaluate_kid
    from ddpmdp.fid.kid import kid_difference

    unknown = [s for s in samplers if s not in SAMPLERS]
    require(not unknown, f"unknown sampler(s) {unknown}: use {list(SAMPLERS)}")
    variance = variance_rule(variance, model)
    T = model.schedule.T
    t0 = time.perf_counter()
    kinds = {SAMPLERS[s][0] for s in samplers}
    sols = {}
    if "dp" in kinds:
        sols["dp"] = solve_table(table, budgets)
    if "dp_mse" in kinds:
        sols["dp_mse"] = solve_table(table, budgets, mse_reweighted_cost(table))
    base = stride_paths(T, budgets)
    paths = {s: {int(K): (sols[SAMPLERS[s][0]].path(int(K)) if SAMPLERS[s][0] in sols
                          else base[(SAMPLERS[s][0], int(K))]) for K in sorted(budgets)} for s in samplers}
    kw = dict(n_samples=n_samples, extractor=extractor, variance=variance, clip=clip, seed=seed,
              batch_size=batch_size, device=device)
    kids: dict[str, dict[int, KIDResult]] = {}
    fid: dict[str, dict[int, Any]] = {}
    step: dict[str, dict[int, tuple[float, float]]] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # small-n FID bias warnings: the caption states n
        for s in samplers:
            scored = evaluate_kid(model, real, {str(K): p for K, p in paths[s].items()}, sampler=SAMPLERS[s][1], **kw)
            kids[s] = {int(K): sc.kid for K, sc in scored.items()}
            if any(sc.fid is not None for sc in scored.values()):
                fid[s] = {int(K): sc.fid for K, sc in scored.items()}
            Ks = sorted(kids[s])
            step[s] = {K: kid_difference(kids[s][K], kids[s][prev]) for prev, K in zip(Ks, Ks[1:])}
        full = None
        if full_chain:
            full = evaluate_kid(model, real, {"full": np.arange(T + 1)}, sampler="ancestral", **kw)["full"].kid
    t1 = time.perf_counter()
    bpd: dict[str, dict[int, PathScore]] = {}
    if test is not None:
        named = {f"{s}|{K}": p for s in samplers if SAMPLERS[s][1] == "ancestral" for K, p in paths[s].items()}
        if named:
            scored_bpd = evaluate_paths(model, test, named, variance=variance, clip=clip, batch_size=batch_size,
                                        seed=seed, device=device)
            for key, sc in scored_bpd.items():
                s, k = key.rsplit("|", 1)
                bpd.setdefault(s, {})[int(k)] = sc
    t2 = time.perf_counter()
    return SampleQualityResult(kids, step, fid, bpd, paths, full, extractor.describe(), int(n_samples),
                               real.identity, len(real), {"sampling + KID": t1 - t0, "bits/dim": t2 - t1})


def _k_text(d: float, se: float, scale: float) -> str:
    return pm_se_sig(d / scale, se / scale, signed=True)


def sample_quality_summary_markdown(result: SampleQualityResult) -> str:
    """Per budget: the sampler with the lowest KID and whether the runner-up is told apart from it
    beyond 2 paired SE; the MSE-reweighted DP path against the ELBO DP path (paired, the book's 2-SE
    verdict); and where a row's KID does not change beyond 2 paired SE from one budget to the next."""
    from ddpmdp.fid.kid import kid_difference

    scale = 10.0 ** result.exponent
    unit = f"{result.label}{times_ten(-result.exponent)}"
    Ks = sorted({K for d in result.kid.values() for K in d})
    best = []
    for K in Ks:
        cand = sorted((r.value, s) for s, d in result.kid.items() if K in d for r in [d[K]])
        (v0, s0), rest = cand[0], cand[1:]
        text = f"K = {K} (NFE {K}): {s0} ({pm_se_sig(v0 / scale, result.kid[s0][K].se / scale)})"
        if rest:
            s1 = rest[0][1]
            d, se = kid_difference(result.kid[s1][K], result.kid[s0][K])
            text += (f", ahead of {s1} by {_k_text(d, se, scale)} (paired): "
                     + ("beyond 2 SE" if verdict(d, se) == "loss" else "within 2 SE, so the two are not told apart"))
        best.append(text)
    out = (f"Lowest {unit} per budget ({result.n_samples} samples per cell against {result.n_real} held-out real "
           f"images): " + "; ".join(best) + ".")
    mse = next((s for s in result.kid if "MSE" in s), None)
    elbo = next((s for s in result.kid if s.lower().startswith("dp") and s != mse), None)
    if mse and elbo:
        by: dict[str, list[int]] = {"gain": [], "loss": [], "within": []}
        for K in Ks:
            if K in result.kid[mse] and K in result.kid[elbo]:
                by[verdict(*kid_difference(result.kid[mse][K], result.kid[elbo][K]))].append(K)
        out += (f" The MSE-reweighted DP path has a lower KID than the ELBO DP path beyond 2 paired SE at "
                f"{ranges(by['gain'])}, a higher one at {ranges(by['loss'])}, and is within 2 SE at "
                f"{ranges(by['within'])}.")
    flat = [f"{s} at K = {K}" for s, d in result.step.items() for K in d if not result.told_apart(s, K)]
    out += (" Within 2 paired SE of the previous budget (marked ≈): " + "; ".join(flat) + "." if flat else
            " Every cell differs from the previous budget of its row beyond 2 paired SE.")
    return out + "\n"
