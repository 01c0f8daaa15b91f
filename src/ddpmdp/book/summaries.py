"""Generated words for generated numbers: the sentences and captions the book includes.

Each function turns a notebook's results into Markdown (written to ``_generated/NAME.md`` by
:meth:`ddpmdp.book.run_config.RunConfig.text`), so no chapter types a number by hand and a
re-run never leaves stale prose. A DP-versus-stride comparison is called a *gain* when the
paired difference is below −2 SE, a *loss* when above +2 SE, and a *tie* otherwise.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ddpmdp.book.reports import mean_pm_se
from ddpmdp.data.images import ImageSet
from ddpmdp.evaluate import PathScore, paired_difference
from ddpmdp.table import ElboTable

__all__ = ["verdict", "provenance", "nll_summary_markdown", "mc_ablation_summary_markdown",
           "sample_quality_summary_markdown", "ranges"]


def verdict(diff: float, se: float) -> str:
    """``gain`` (diff < −2 SE), ``loss`` (diff > +2 SE) or ``tie``."""
    return "gain" if diff < -2 * se else ("loss" if diff > 2 * se else "tie")


def ranges(values: Sequence[int]) -> str:
    """``[8, 16, 32]`` → ``"K = 8, 16, 32"``; empty → ``"no K"``."""
    return "K = " + ", ".join(str(v) for v in values) if values else "no K"


def _data_origin(ds: ImageSet) -> str:
    copy = any("differs from the official" in n or "MD5 mismatch" in n for n in ds.notes)
    origin = " (a local copy that differs from the official files)" if copy else ""
    if copy and ds.identity.startswith("cifar10:"):
        origin = " (the shared copy decoded from JPEG, not the official pixels)"
    if ds.identity.startswith("tiny-imagenet64"):
        origin = " (Tiny-ImageNet 64×64, standing in for ImageNet 64×64)"
    return f"{len(ds):,} {ds.split} images of `{ds.identity}`{origin}"


def provenance(models: Mapping[str, str], train: ImageSet | None, test: ImageSet | None,
               table: ElboTable | None = None) -> str:
    """One sentence: models with hashes, selection and evaluation data (origin, split, n), grid."""
    parts = ["Models: " + "; ".join(f"{k} = `{v}`" for k, v in models.items()) + "."]
    if train is not None:
        parts.append(f"Selection (table and DP): {_data_origin(train)}.")
    if test is not None:
        parts.append(f"Evaluation: {_data_origin(test)}, fresh noise, paired across paths.")
    if table is not None:
        parts.append(f"Grid `{table.meta.get('grid', 'all')}`: {len(table.nodes)} nodes of T = {table.T}.")
    return " ".join(parts)


def _fmt(diff: float, se: float, p: int) -> str:
    return mean_pm_se(diff, se, p, signed=True)


def nll_summary_markdown(results: Mapping[str, Any], precision: int = 3) -> str:
    """Where the DP path wins, ties and loses against each stride (paired SE), per objective, and
    each path's gap to the full chain at the largest budget. ``results``: objective → NLLResult."""
    lines = []
    for objective, r in results.items():
        Ks = sorted({K for (_, K) in r.scores})
        by: dict[str, list[int]] = {"gain": [], "tie": [], "loss": []}
        worst: dict[str, tuple[int, float, float]] = {}
        for K in Ks:
            dp = r.scores[("dp", K)]
            per_stride = {s: paired_difference(dp, r.scores[(s, K)]) for s in ("even", "quadratic")}
            status = [verdict(d, se) for d, se in per_stride.values()]
            overall = "loss" if "loss" in status else ("tie" if "tie" in status else "gain")
            by[overall].append(K)
            for s, (d, se) in per_stride.items():
                if s not in worst or d > worst[s][1]:
                    worst[s] = (K, d, se)
        K0 = Ks[0]
        d0, se0 = paired_difference(r.scores[("dp", K0)], r.scores[("quadratic", K0)])
        text = (f"**{objective}** (`{r.model}`, variance {r.variance}): the DP path beats both strides at "
                f"{ranges(by['gain'])}; at K = {K0} it is {_fmt(d0, se0, precision)} bits/dim against the "
                f"quadratic stride.")
        if by["tie"]:
            text += f" Within 2 paired SE of a stride at {ranges(by['tie'])}."
        if by["loss"]:
            worst_s = max(worst, key=lambda s: worst[s][1])
            K, d, se = worst[worst_s]
            text += (f" **Worse** than a stride at {ranges(by['loss'])} (largest: {_fmt(d, se, precision)} "
                     f"against the {worst_s} stride at K = {K}).")
        if r.full is not None:
            K = Ks[-1]
            gaps = ", ".join(f"{s} {_fmt(*paired_difference(r.scores[(s, K)], r.full), precision)}"
                             for s in ("even", "quadratic", "dp"))
            text += f" At K = {K}, bits/dim above the full {r.full.K}-step chain: {gaps}."
        lines.append(text)
    return "\n\n".join(lines) + "\n"


def mc_ablation_summary_markdown(result: Any, precision: int = 3) -> str:
    """The largest paired difference between DP paths chosen from small tables and from the
    largest table, with its SE. ``result``: an MCAblationResult."""
    ref = max(result.sizes)
    worst: tuple[float, float, int, int] | None = None
    for n in result.sizes:
        if n == ref:
            continue
        for K, sc in result.scores[n].items():
            d, se = paired_difference(sc, result.scores[ref][K])
            if worst is None or abs(d) > abs(worst[0]):
                worst = (d, se, n, K)
    if worst is None:
        return f"**{result.label}**: only one table size ({ref} images).\n"
    d, se, n, K = worst
    return (f"**{result.label}**: the largest difference from the paths chosen with a {ref}-image table is "
            f"{_fmt(d, se, precision)} bits/dim (paired SE), for the table of {n} image{'s' if n != 1 else ''} "
            f"at K = {K}; every other table size and budget is closer.\n")


def sample_quality_summary_markdown(result: Any, label: str, precision: int = 2) -> str:
    """Per budget: the sampler with the lowest FID, and the MSE-reweighted DP path against the
    ELBO DP path. FIDs carry no SE (one sample set per cell). ``result``: a SampleQualityResult."""
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


def score_line(name: str, s: PathScore, precision: int = 3) -> str:
    return f"{name}: {mean_pm_se(s.bpd, s.bpd_se, precision)} bits/dim ({s.split}, {s.n_images} images)"
