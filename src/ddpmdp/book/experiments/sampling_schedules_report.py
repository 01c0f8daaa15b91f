"""What the ``sampling_schedules`` notebook shows of a :class:`~ddpmdp.book.experiments.sampling_schedules.FidelityResult`:
the teacher-distance and KID tables (mean ± SE per path and K, NFE = K), the paired differences
against the trajectory DP path with the book's one 2-SE verdict
(:func:`ddpmdp.book.reporting.comparisons.verdict`), the generated sentences (per K, and the
issue's must-show at K = 4, 8, 16, which says where it fails and why), captions, and the inputs of
the figures (curves against K, shared-noise sample grids).

A difference Δ is always *trajectory DP − other path* (negative: the trajectory DP path is closer to
the teacher, or has the lower KID); teacher distances pair by seed
(:func:`ddpmdp.trajectory.paired_teacher_difference`), KIDs by the jackknife groups of the same
noise keys and real images (:func:`ddpmdp.fid.kid.kid_difference`).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ddpmdp.book.experiments.sampling_schedules import PATHS, TRAJECTORY, FidelityResult
from ddpmdp.book.reporting.comparisons import Verdict, verdict
from ddpmdp.book.reporting.formatting import mean_pm_se, pm_se_sig, times_ten

__all__ = ["Metric", "Comparison", "metric_value", "comparisons", "kid_exponent", "metric_table", "difference_table",
           "summary_lines", "must_show_lines", "distance_caption", "kid_caption", "curves", "grid_images",
           "selection_line"]

Metric = Literal["teacher", "kid"]
"""``teacher``: the held-out teacher distance; ``kid``: KID against held-out real images."""
_WORDS = {"teacher": ("is closer to the teacher than", "is farther from the teacher than"),
          "kid": ("has a lower KID than", "has a higher KID than")}


@dataclass(frozen=True)
class Comparison:
    """Trajectory DP − ``other`` at one K: ``diff`` ± ``se`` (paired), the :func:`verdict` (``gain``:
    the trajectory DP path is better), ``same_path`` (the two node lists are identical)."""

    other: str
    K: int
    diff: float
    se: float
    verdict: Verdict
    same_path: bool


def metric_value(result: FidelityResult, metric: Metric, name: str, K: int) -> tuple[float, float]:
    """(mean, SE) of one cell: teacher distance (RMS per dimension) or KID (squared kernel units)."""
    if metric == "teacher":
        sc = result.scores[name][K]
        return float(sc.mean), float(sc.se)
    r = result.kid[name][K]
    return float(r.value), float(r.se)


def comparisons(result: FidelityResult, metric: Metric = "teacher") -> dict[int, list[Comparison]]:
    """``{K: [Comparison per other path]}``: the trajectory DP path against each other path, paired."""
    from ddpmdp.fid.kid import kid_difference
    from ddpmdp.trajectory import paired_teacher_difference

    out: dict[int, list[Comparison]] = {}
    for K in result.budgets:
        row = []
        for name in PATHS:
            if name == TRAJECTORY:
                continue
            same = bool(np.array_equal(result.paths[name][K], result.paths[TRAJECTORY][K]))
            if metric == "teacher":
                d, se = paired_teacher_difference(result.scores[TRAJECTORY][K], result.scores[name][K])
            else:
                d, se = kid_difference(result.kid[TRAJECTORY][K], result.kid[name][K])
            row.append(Comparison(name, K, float(d), float(se), verdict(d, se), same))
        out[K] = row
    return out


def kid_exponent(result: FidelityResult) -> int:
    """The power of ten e such that the largest |KID| of ``result`` divided by 10^e lies in [1, 1000)
    (e a multiple of 3; 0 without KID): the tables print KID × 10^−e."""
    vals = [abs(r.value) for d in result.kid.values() for r in d.values() if math.isfinite(r.value) and r.value != 0]
    return 3 * math.floor(math.log10(max(vals)) / 3) if vals else 0


def _num(value: float, se: float, metric: Metric, scale: float = 1.0, signed: bool = False) -> str:
    """Teacher distances at 3 decimals (more where the SE needs them); KID with its SE to two
    significant digits."""
    if metric == "teacher":
        return mean_pm_se(value / scale, se / scale, 3, signed=signed)
    return pm_se_sig(value / scale, se / scale, signed=signed)


def _marks(comps: Iterable[Comparison]) -> str:
    v = {c.verdict for c in comps}
    return ("†" if "loss" in v else "") + ("‡" if "within" in v else "")


def metric_table(result: FidelityResult, metric: Metric = "teacher") -> tuple[list[str], list[list[str]]]:
    """(header, rows): one row per path, one column per K ("K=4 · NFE 4"), cells mean ± SE (KID scaled
    by :func:`kid_exponent`). The trajectory DP row marks ‡ where it is within 2 paired SE of some other
    path at that K and † where some other path is better beyond 2 paired SE."""
    scale = 10.0 ** kid_exponent(result) if metric == "kid" else 1.0
    comps = comparisons(result, metric)
    header = ["Path"] + [f"K={K} · NFE {K}" for K in result.budgets]
    rows = []
    for name in PATHS:
        cells = [_num(*metric_value(result, metric, name, K), metric, scale) for K in result.budgets]
        if name == TRAJECTORY:
            cells = [c + _marks(comps[K]) for c, K in zip(cells, result.budgets)]
        rows.append([name] + cells)
    return header, rows


_VERDICT_MARK = {"gain": "", "within": "‡", "loss": "†"}


def difference_table(result: FidelityResult, metric: Metric = "teacher") -> tuple[list[str], list[list[str]]]:
    """(header, rows): trajectory DP − each other path per K, paired Δ ± SE; ‡ within 2 SE, † the other
    path better beyond 2 SE, "same path" where the DP chose the other path's nodes."""
    scale = 10.0 ** kid_exponent(result) if metric == "kid" else 1.0
    comps = comparisons(result, metric)
    header = ["Trajectory DP −"] + [f"K={K}" for K in result.budgets]
    rows = []
    for i, name in enumerate(n for n in PATHS if n != TRAJECTORY):
        row = [name]
        for K in result.budgets:
            c = comps[K][i]
            row.append("same path" if c.same_path else _num(c.diff, c.se, metric, scale, signed=True)
                       + _VERDICT_MARK[c.verdict])
        rows.append(row)
    return header, rows


def _delta(c: Comparison, metric: Metric, scale: float) -> str:
    return f"Δ = {_num(c.diff, c.se, metric, scale, signed=True)}"


def _join(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _k_sentence(comps: Sequence[Comparison], metric: Metric, scale: float) -> str:
    better, worse = _WORDS[metric]
    gain = [c for c in comps if c.verdict == "gain"]
    within = [c for c in comps if c.verdict == "within"]
    loss = [c for c in comps if c.verdict == "loss"]
    K = comps[0].K
    if len(gain) == len(comps):
        tight = min(gain, key=lambda c: abs(c.diff) / c.se if c.se > 0 else math.inf)
        return (f"K = {K} (NFE {K}): the trajectory DP path {better} every other path beyond 2 paired SE "
                f"(closest call: {tight.other}, {_delta(tight, metric, scale)}).")
    parts = []
    if gain:
        parts.append(f"{better} {_join([c.other for c in gain])} beyond 2 paired SE")
    if within:
        parts.append("is within 2 SE of " + _join([f"{c.other} ({'the same path' if c.same_path else _delta(c, metric, scale)})"
                                                for c in within]))
    if loss:
        parts.append(f"{worse} " + _join([f"{c.other} ({_delta(c, metric, scale)})" for c in loss]) + " beyond 2 SE")
    return f"K = {K} (NFE {K}): the trajectory DP path " + "; ".join(parts) + "."


def summary_lines(result: FidelityResult, metric: Metric = "teacher") -> list[str]:
    """One sentence per K: where the trajectory DP path wins, ties (within 2 paired SE) or loses (Δ
    in the units of the tables; KID scaled by :func:`kid_exponent`)."""
    if metric == "kid" and not result.kid:
        return []
    scale = 10.0 ** kid_exponent(result) if metric == "kid" else 1.0
    return [_k_sentence(c, metric, scale) for c in comparisons(result, metric).values()]


def _why(result: FidelityResult, c: Comparison) -> str:
    if c.same_path:
        return f"the DP chose the same nodes as {c.other}, so the two tie exactly"
    if c.verdict == "within":
        return (f"against {c.other} the paired difference ({_delta(c, 'teacher', 1.0)}) is within 2 SE: "
                f"{result.n_fresh} fresh seeds do not tell the two paths apart")
    own, other = result.selection_cost[TRAJECTORY][c.K], result.selection_cost[c.other][c.K]
    e_own, e_other = result.scores[TRAJECTORY][c.K].mean, result.scores[c.other][c.K].mean
    return (f"{c.other} is closer to the teacher ({_delta(c, 'teacher', 1.0)}) although its summed local error on "
            f"the selection seeds is larger ({other:.4g} against the DP's {own:.4g}); the teacher distance is "
            f"{e_own / own:.2f} times the summed local error along the DP path and {e_other / other:.2f} times along "
            f"{c.other}: the sampler's flow amplifies or cancels local errors instead of adding them up, as the DP's "
            "additive cost assumes (the method chapter's section on sample fidelity)")


def must_show_lines(result: FidelityResult, Ks: Sequence[int] = (4, 8, 16)) -> list[str]:
    """The issue's must-show as sentences: on fresh seeds the trajectory DP path has a smaller teacher
    distance than every baseline at each K of ``Ks``, beyond 2 paired SE. Says where it holds, and
    for every K where it does not, each baseline that prevents it and why (the same path, within 2 SE,
    or a baseline closer to the teacher despite a larger summed local error)."""
    comps = comparisons(result, "teacher")
    run = [int(K) for K in Ks if int(K) in comps]
    missing = [int(K) for K in Ks if int(K) not in comps]
    held = [K for K in run if all(c.verdict == "gain" for c in comps[K])]
    failed = [K for K in run if K not in held]
    lead = (f"{result.label}, must-show (held-out teacher distance on {result.n_fresh} fresh seeds; the trajectory DP "
            f"path closer than every baseline beyond 2 paired SE at K = {', '.join(map(str, Ks))}): ")
    if not failed and not missing:
        return [lead + "**holds** at every one of these K."]
    lines = [lead + (f"holds at K = {', '.join(map(str, held))}; " if held else "")
             + (f"**does not hold** at K = {', '.join(map(str, failed))}" if failed else "")
             + (f"; K = {', '.join(map(str, missing))} not run" if missing else "") + "."]
    for K in failed:
        lines.append(f"At K = {K}: " + "; ".join(_why(result, c) for c in comps[K] if c.verdict != "gain") + ".")
    return lines


def selection_line(result: FidelityResult) -> str:
    """One sentence: the trajectory table behind the DP (seeds, grids) and that on it the DP path is never
    worse than a compared path (checked when the result was made)."""
    return (f"{result.label}: trajectory table C(t, s) from {result.n_selection} selection seeds (stream trajectory) "
            f"on a DP grid of {result.grid_size} nodes (`{result.grid_base}` plus every node of every compared path) "
            f"inside a teacher grid of {result.teacher_size} nodes (`{result.teacher_base}` plus the DP grid); "
            "on this table the DP path of every K costs no more than any compared path.")


def _paths_note(result: FidelityResult) -> str:
    m = result.elbo_meta
    return (f"ELBO and MSE-reweighted DP paths from the ELBO table of {m.get('n_images', '?')} {m.get('split', '?')} "
            f"images of `{m.get('data', '?')}` (variance {m.get('variance', '?')}, grid `{m.get('grid', '?')}`); "
            "every path, theirs included, sampled with DDIM η = 0" + (" and x̂₀ clipped" if result.table.meta.get("clip")
                                                                       else "") + ".")


def distance_caption(result: FidelityResult) -> str:
    """Caption of the teacher-distance tables: metric, seeds (selection vs fresh), grids, marks, model."""
    return (f"{result.label}: held-out teacher distance E(z) = ‖x̂(z) − x^𝒯₀(z)‖/√d (RMS per dimension, data in "
            f"[−1, 1]) between each path's K-step sample and the teacher's from the same x_T, mean ± SE over "
            f"{result.n_fresh} fresh seeds (stream teacher), never the {result.n_selection} selection seeds of the "
            f"trajectory table; NFE = K network evaluations per sample. Teacher: DDIM η = 0 along "
            f"{result.teacher_size} nodes (`{result.teacher_base}` plus the DP grid). {_paths_note(result)} "
            "‡: the trajectory DP path is within 2 paired SE of another path at that K; †: another path is better "
            f"beyond 2 paired SE. Model `{result.model}`.")


def kid_caption(result: FidelityResult) -> str:
    """Caption of the KID tables: estimator, scale, samples, real images, features and their hash."""
    if not result.kid:
        return ""
    k, e = result.kid_info, kid_exponent(result)
    return (f"{result.label}: {k['label']}{times_ten(-e)} (the unbiased MMD² with the cubic kernel; SE: delete-a-group "
            f"jackknife) between {k['n_generated']} samples per path (the fresh seeds of the teacher distance: sample i "
            f"of every path from the same x_T, so differences are paired) and {k['n_real']} held-out real images of "
            f"`{k['real']}`" + (", both 2×2-average-pooled to feed the 32×32 features" if k["pooled"] else "")
            + f"; features: {k['feature']}; NFE = K. ‡/†: as for the teacher distance, paired KID differences. "
            f"Model `{result.model}`.")


def curves(result: FidelityResult, metric: Metric = "teacher") -> dict[str, dict[int, tuple[float, float]]]:
    """``{path: {K: (mean, SE)}}`` for :func:`ddpmdp.book.reporting.plotting.plot_bpd_vs_budget` (KID scaled
    by :func:`kid_exponent`)."""
    scale = 10.0 ** kid_exponent(result) if metric == "kid" else 1.0
    return {name: {K: (v / scale, s / scale) for K in result.budgets
                   for v, s in [metric_value(result, metric, name, K)]} for name in PATHS}


def grid_images(result: FidelityResult, budgets: Sequence[int], n: int,
                names: Sequence[str] = PATHS) -> dict[str, dict[str, np.ndarray]]:
    """``{path: {"K = 4": uint8 (n, C, H, W)}}`` plus a teacher row, for
    :func:`ddpmdp.book.reporting.sample_grids.sample_grid_figure`: the first ``n`` fresh seeds, so every
    panel starts from the same n vectors x_T."""
    Ks = [int(K) for K in budgets if int(K) in result.budgets]
    out: dict[str, dict[str, np.ndarray]] = {name: {f"K = {K}": result.samples[name][K][:n] for K in Ks}
                                             for name in names}
    out["teacher"] = {f"teacher ({result.teacher_size - 1} steps)": result.teacher_samples[:n]}
    return out

