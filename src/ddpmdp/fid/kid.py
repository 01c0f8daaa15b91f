"""Kernel Inception Distance (KID) with a standard error (``method.md`` §13.5).

KID (Bińkowski et al. 2018, "Demystifying MMD GANs") is the **unbiased** estimate of the squared
maximum mean discrepancy between the feature distributions of generated images x₁..x_n and real
images y₁..y_m, with the cubic polynomial kernel on m_f-dimensional features

    k(a, b) = (aᵀb / m_f + 1)³,

    MMD²_u = 1/(n(n−1)) Σ_{i≠j} k(x_i, x_j) + 1/(m(m−1)) Σ_{i≠j} k(y_i, y_j) − 2/(nm) Σ_{i,j} k(x_i, y_j).

Unlike FID it has no bias at small sample sizes (its expectation is the population MMD², which is 0
when the distributions agree), so it can be negative. The kernel is torchmetrics' ``poly_kernel``
(degree 3, γ = 1/m_f, coefficient 1); the estimator is assembled here because torchmetrics'
``maximum_mean_discrepancy`` assumes n = m (it divides both within-set sums by m(m−1) and the cross
sum by m²), materialises the full kernel matrices, and ``KernelInceptionDistance`` reports the
spread over random subsets (drawn with the global RNG), which is not an error of the full-sample
estimate.

**Standard error: delete-a-group jackknife.** Sample i of either set belongs to group i mod G
(G groups, :data:`GROUPS` by default, at most min(n, m)); θ₍g₎ is MMD²_u with group g removed from
**both** sets, and SE² = (G − 1)/G · Σ_g (θ₍g₎ − θ̄)². Every pair enters, so it estimates the
variance of the full-sample estimate directly; disjoint subsets would give the variance of a
smaller-sample estimate, and rescaling it by the subset fraction assumes a 1/n law that the
degenerate (1/n²) part of the U-statistic breaks. Deleting the same groups from both sets keeps the
groups aligned across paths sampled from the same noise keys and scored against the same real
images, so :func:`kid_difference` gives paired differences with their own jackknife SE. (For equal
distributions, where the estimate is a degenerate U-statistic, the jackknife overestimates the
variance somewhat: conservative.)

Every kernel sum is accumulated in float64 from G × G block sums, in row chunks (memory
O(chunk·m)), so 50,000 × 50,000 pairs need no 20 GB matrix. Results name the feature extractor (its
weights hash), n generated and n real.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ddpmdp.errors import require

__all__ = ["GROUPS", "KID_LABEL", "PROXY_KID_LABEL", "KIDReference", "KIDResult", "kid", "kid_difference",
           "mmd2_unbiased", "poly3_kernel"]

GROUPS = 50
"""Default number of jackknife groups (capped at min(n, m))."""
KID_LABEL = "KID (Inception-v3 pool3, pytorch-fid weights)"
PROXY_KID_LABEL = "proxy-KID (not comparable to published KID)"
_CHUNK_ELEMENTS = 1 << 23  # kernel entries per chunk: 64 MB of float64


def _as_features(x: Any, what: str) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x), dtype=torch.float64)
    require(t.ndim == 2 and t.shape[0] >= 2 and t.shape[1] >= 1, f"{what} must be (N >= 2, D) features, got "
            f"shape {tuple(t.shape)}")
    require(bool(torch.isfinite(t).all()), f"{what} contain NaN or inf")
    return t


def poly3_kernel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """k(a, b) = (aᵀb/D + 1)³ for rows of a (p, D) and b (q, D) → (p, q), torchmetrics' ``poly_kernel``."""
    from torchmetrics.image.kid import poly_kernel

    return poly_kernel(a, b, degree=3, gamma=None, coef=1.0)


def _group_sums(a: torch.Tensor, b: torch.Tensor, G: int, same: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """S[g, h] = Σ_{i∈g, j∈h} k(a_i, b_j) (G, G), and for a = b the per-group diagonal D[g] = Σ_{i∈g} k(a_i, a_i);
    group of row i = i mod G."""
    n, m = a.shape[0], b.shape[0]
    ga, gb = torch.arange(n) % G, torch.arange(m) % G
    onehot_b = torch.nn.functional.one_hot(gb, G).to(torch.float64)  # (m, G)
    S = torch.zeros(G, G, dtype=torch.float64)
    D = torch.zeros(G, dtype=torch.float64)
    chunk = max(1, min(n, _CHUNK_ELEMENTS // max(m, 1)))
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        k = poly3_kernel(a[lo:hi], b)  # (c, m)
        S.index_add_(0, ga[lo:hi], k @ onehot_b)
        if same:
            D.index_add_(0, ga[lo:hi], k[torch.arange(hi - lo), torch.arange(lo, hi)])
    return S, D


def _leave_out(S: torch.Tensor) -> torch.Tensor:
    """Σ over the pairs left when group g is removed from both sides, for each g: (G,)."""
    return S.sum() - S.sum(1) - S.sum(0) + torch.diagonal(S)


def _counts(n: int, G: int) -> torch.Tensor:
    return torch.bincount(torch.arange(n) % G, minlength=G).to(torch.float64)


class KIDReference:
    """The real images' side of KID, computed once and shared by every path scored against it:
    features (m, D) float64, the group sums of k(y_i, y_j) and an identity (a hash of the
    features) that :func:`kid_difference` checks. ``feature``/``label``/``comparable_to_published``
    name the extractor (its weights hash) and are carried into every :class:`KIDResult`."""

    def __init__(self, features: Any, *, groups: int = GROUPS, feature: str = "", label: str = PROXY_KID_LABEL,
                 comparable_to_published: bool = False) -> None:
        y = _as_features(features, "real features")
        require(isinstance(groups, int) and groups >= 2, f"the jackknife needs groups >= 2, got {groups!r}")
        self.features = y
        self.m = int(y.shape[0])
        self.groups = int(min(groups, self.m))
        require(self.m - math.ceil(self.m / self.groups) >= 2, f"{self.m} real images are too few for a "
                f"{self.groups}-group jackknife")
        self.feature, self.label, self.comparable_to_published = feature, label, comparable_to_published
        self.identity = hashlib.sha256(y.numpy().tobytes()).hexdigest()[:16]
        self._S, self._D = _group_sums(y, y, self.groups, True)

    def within(self, G: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(Σ_{i≠j} k(y_i, y_j), its leave-group-out values (G,), m and the leave-out m's) for G groups."""
        S, D = (self._S, self._D) if G == self.groups else _group_sums(self.features, self.features, G, True)
        full = S.sum() - D.sum()
        return full, _leave_out(S) - (D.sum() - D), _counts(self.m, G)


@dataclass(frozen=True)
class KIDResult:
    """KID (unbiased MMD², cubic kernel) ± its jackknife SE. ``value``/``se`` in squared kernel
    units (published tables often show ×10³); ``replicates`` (G,) the leave-one-group-out values
    (for :func:`kid_difference`); ``feature``: the extractor's identity with its weights hash;
    ``reference``: the hash of the real features."""

    value: float
    se: float
    n_generated: int
    n_real: int
    groups: int
    feature: str
    label: str
    comparable_to_published: bool
    reference: str
    se_kind: str
    replicates: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))

    def as_dict(self) -> dict[str, Any]:
        return {"kid": self.value, "kid_se": self.se, "n_generated": self.n_generated, "n_real": self.n_real,
                "feature": self.feature, "label": self.label, "comparable_to_published": self.comparable_to_published,
                "se_kind": self.se_kind, "units": "squared kernel units (MMD², kernel (a·b/D + 1)^3)"}

    def __str__(self) -> str:
        return (f"{self.label} = {1e3 * self.value:.3f} ± {1e3 * self.se:.3f} ×10⁻³ (n = {self.n_generated} "
                f"generated vs {self.n_real} real)")


def _jackknife_se(rep: torch.Tensor) -> float:
    G = rep.numel()
    return float(math.sqrt((G - 1) / G * float(((rep - rep.mean()) ** 2).sum())))


def kid(generated: Any, reference: "KIDReference | Any", *, groups: int | None = None, feature: str | None = None,
        label: str | None = None) -> KIDResult:
    """KID between generated features (n, D) and the real side (a :class:`KIDReference`, or real
    features (m, D), then ``groups`` applies), with the delete-a-group jackknife SE.

    Args:
        generated: (n >= 2, D) features of the generated images, row i = sample i (noise key i).
        reference: the real images' :class:`KIDReference`, or their (m, D) features.
        groups: jackknife groups for a reference given as features (default :data:`GROUPS`).
        feature, label: override the reference's extractor identity and label.
    """
    ref = reference if isinstance(reference, KIDReference) else KIDReference(reference, groups=groups or GROUPS)
    x = _as_features(generated, "generated features")
    require(x.shape[1] == ref.features.shape[1], f"generated features have {x.shape[1]} dimensions, the real "
            f"ones {ref.features.shape[1]}")
    n, m = int(x.shape[0]), ref.m
    G = int(min(ref.groups, n))
    require(n - math.ceil(n / G) >= 2, f"{n} generated images are too few for a {G}-group jackknife")
    Sxx, Dx = _group_sums(x, x, G, True)
    Sxy, _ = _group_sums(x, ref.features, G, False)
    yy, yy_rep, m_rep = ref.within(G)
    xx, xx_rep, n_rep = Sxx.sum() - Dx.sum(), _leave_out(Sxx) - (Dx.sum() - Dx), _counts(n, G)
    xy, xy_rep = Sxy.sum(), _leave_out(Sxy)
    n_l, m_l = n - n_rep, m - m_rep
    value = xx / (n * (n - 1)) + yy / (m * (m - 1)) - 2 * xy / (n * m)
    rep = xx_rep / (n_l * (n_l - 1)) + yy_rep / (m_l * (m_l - 1)) - 2 * xy_rep / (n_l * m_l)
    return KIDResult(float(value), _jackknife_se(rep), n, m, G, ref.feature if feature is None else feature,
                     ref.label if label is None else label, ref.comparable_to_published, ref.identity,
                     f"delete-a-group jackknife, {G} groups (sample i in group i mod {G}, both sets)",
                     rep.numpy().copy())


def mmd2_unbiased(generated: Any, real: Any) -> float:
    """The unbiased MMD² with the cubic kernel (KID's value without the SE)."""
    x, y = _as_features(generated, "generated features"), _as_features(real, "real features")
    require(x.shape[1] == y.shape[1], f"feature dimensions differ: {x.shape[1]} vs {y.shape[1]}")
    n, m = x.shape[0], y.shape[0]
    Sxx, Dx = _group_sums(x, x, 1, True)
    Syy, Dy = _group_sums(y, y, 1, True)
    Sxy, _ = _group_sums(x, y, 1, False)
    return float((Sxx.sum() - Dx.sum()) / (n * (n - 1)) + (Syy.sum() - Dy.sum()) / (m * (m - 1))
                 - 2 * Sxy.sum() / (n * m))


def kid_difference(a: KIDResult, b: KIDResult) -> tuple[float, float]:
    """(KID_a − KID_b, its SE) for two results on the **same** real features, the same groups and
    the same number of generated samples, whose sample i came from the same noise key i: the
    jackknife of the difference (paired in the noise and the real images)."""
    require(a.reference == b.reference and a.feature == b.feature, "paired KID differences need the same real "
            "features and the same extractor")
    require(a.groups == b.groups and a.n_generated == b.n_generated and a.replicates.size == b.replicates.size,
            "paired KID differences need the same number of generated samples and groups")
    d = torch.from_numpy(a.replicates - b.replicates)
    return a.value - b.value, _jackknife_se(d)
