"""Comparing two held-out scores: their difference in bits/dim with its SE, and the one verdict
the book states about it.

A difference Δ = bpd(a) − bpd(b) is a **gain** (a is better) when Δ < −2 SE, a **loss** when
Δ > +2 SE, and **within 2 SE** (not significant) otherwise, the boundary included. The SE is
paired — per-image differences on the same images (:func:`ddpmdp.evaluate.paired_difference`) —
whenever both scores hold per-image totals of the same images, else the unpaired
√(SE_a² + SE_b²), which assumes independent estimates (conservative when they share images).
"""
from __future__ import annotations

import math
from typing import Literal, Union

from ddpmdp.errors import require
from ddpmdp.evaluate import PathScore, paired_difference

__all__ = ["ScoreLike", "Verdict", "N_SIGMA", "verdict", "can_pair", "score_difference", "score_bpd_se"]

ScoreLike = Union[PathScore, tuple[float, float]]
"""A :class:`PathScore` or a ``(bpd, se)`` pair in bits/dim."""

Verdict = Literal["gain", "loss", "within"]
"""What :func:`verdict` says about a difference."""
N_SIGMA = 2.0
"""The book's significance threshold, in standard errors."""


def verdict(diff: float, se: float, n_sigma: float = N_SIGMA) -> Verdict:
    """``"gain"`` (diff < −n_sigma·SE), ``"loss"`` (diff > +n_sigma·SE) or ``"within"`` (otherwise,
    also when diff or SE is not finite or NaN): the book's one significance rule."""
    if diff < -n_sigma * se:
        return "gain"
    if diff > n_sigma * se:
        return "loss"
    return "within"


def score_bpd_se(score: ScoreLike) -> tuple[float, float]:
    """``(bpd, se)`` in bits/dim of a :class:`PathScore` or a ``(bpd, se)`` pair."""
    if isinstance(score, PathScore):
        return float(score.bpd), float(score.bpd_se)
    require(isinstance(score, (tuple, list)) and len(score) == 2,
            f"a score must be a PathScore or a (bpd, se) pair, got {score!r}")
    return float(score[0]), float(score[1])


def can_pair(a: ScoreLike, b: ScoreLike) -> bool:
    """Whether both scores hold per-image totals of the same images (same count, split and d)."""
    return (isinstance(a, PathScore) and isinstance(b, PathScore) and a.per_image is not None
            and b.per_image is not None and len(a.per_image) == len(b.per_image) and a.split == b.split
            and a.dims == b.dims)


def score_difference(a: ScoreLike, b: ScoreLike) -> tuple[float, float, bool]:
    """``(bpd(a) − bpd(b), SE, paired)`` in bits/dim: paired when :func:`can_pair`, else unpaired."""
    if can_pair(a, b):
        diff, se = paired_difference(a, b)  # type: ignore[arg-type]
        return float(diff), float(se), True
    (ba, sa), (bb, sb) = score_bpd_se(a), score_bpd_se(b)
    return ba - bb, math.hypot(sa, sb), False
