"""Fréchet distances between image-feature statistics: FID and a clearly labelled proxy.

FID (Heusel et al. 2017) fits a Gaussian to the features of each image set and reports

    d²((μ₁, C₁), (μ₂, C₂)) = ‖μ₁ − μ₂‖² + tr(C₁) + tr(C₂) − 2·tr((C₁^{1/2} C₂ C₁^{1/2})^{1/2}),

in squared feature units (:func:`frechet_distance`). The Paper's Table 5 uses 50,000 samples
against 50,000 training images (``method.md`` §8, §10.3).

Two feature extractors share one interface (:class:`FeatureExtractor`):

* :class:`InceptionExtractor` — the 2048-d "pool3" output of the Inception-v3 graph used by
  TensorFlow's FID, re-implemented in plain PyTorch (:class:`FIDInceptionV3`) with the
  parameter names of pytorch-fid's ported weights ``pt_inception-2015-12-05-6726825d.pth``
  (:data:`INCEPTION_URL`). Only with those weights are numbers **comparable to published
  FIDs** (up to pytorch-fid's small resize difference from the TensorFlow original). The
  weights are never shipped; :func:`inception_weights` finds them in a folder and downloads
  them only when asked.
* :class:`ProxyExtractor` — the 128-d penultimate features of a small CNN classifier that
  the project trains on CIFAR-10 labels (:func:`train_proxy_classifier`). Its distance is a
  **proxy-FID, not comparable to published FIDs**: it ranks samplers of one model against
  each other, nothing more. Every :class:`FeatureStats` and :class:`FIDResult` carries the
  extractor's identity and label, and :func:`fid_from_stats` refuses to compare statistics
  from different extractors (including two proxies with different weights).

Images enter every extractor as uint8 (N, C, H, W), the format of
:func:`ddpmdp.sampling.sample` and :class:`ddpmdp.data.images.ImageSet`.
"""
from __future__ import annotations

import json
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ddpmdp.data.images import ImageSet, validate_images
from ddpmdp.errors import require

__all__ = [
    "frechet_distance",
    "FeatureStats",
    "StreamingStats",
    "FIDResult",
    "fid_from_stats",
    "feature_statistics",
    "FeatureExtractor",
    "PROXY_LABEL",
    "PROXY_STEPS",
    "FID_LABEL",
]

PROXY_LABEL = "proxy-FID (not comparable to published FID)"
PROXY_STEPS = 1200
"""Default training budget of the proxy classifier, in optimizer steps of 128 images."""
FID_LABEL = "FID (Inception-v3 pool3, pytorch-fid weights)"

# ---- the Fréchet distance ----------------------------------------------------------------------


def _psd_sqrt(c: np.ndarray) -> np.ndarray:
    """C^{1/2} = V diag(√max(λ, 0)) Vᵀ for symmetric C = V diag(λ) Vᵀ (float64; tiny negative
    eigenvalues from rounding or rank deficiency are set to 0)."""
    w, v = np.linalg.eigh(0.5 * (c + c.T))
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """Squared Fréchet (2-Wasserstein) distance between N(μ₁, C₁) and N(μ₂, C₂), in float64:

        d² = ‖μ₁ − μ₂‖² + tr(C₁) + tr(C₂) − 2·tr((C₁^{1/2} C₂ C₁^{1/2})^{1/2}).

    The symmetric form equals the usual tr((C₁C₂)^{1/2}) (C₁C₂ is similar to C₁^{1/2}C₂C₁^{1/2})
    but needs only ``eigh`` of symmetric PSD matrices, so it stays real and stable for
    rank-deficient covariances (fewer samples than dimensions). No scipy.

    Args:
        mu1, mu2: (D,) feature means. cov1, cov2: (D, D) feature covariances.

    Returns:
        d² in squared feature units (what "FID" denotes), clipped at 0 against rounding.
    """
    m1, m2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    c1, c2 = np.asarray(cov1, np.float64), np.asarray(cov2, np.float64)
    require(m1.ndim == 1 and m1.shape == m2.shape, f"means must be (D,) vectors of one length, got {m1.shape}, "
            f"{m2.shape}")
    D = m1.shape[0]
    require(c1.shape == (D, D) and c2.shape == (D, D), f"covariances must be ({D}, {D}), got {c1.shape}, {c2.shape}")
    for name, a in (("mu1", m1), ("cov1", c1), ("mu2", m2), ("cov2", c2)):
        require(bool(np.isfinite(a).all()), f"{name} contains NaN or inf")
    s1 = _psd_sqrt(c1)
    m = s1 @ (0.5 * (c2 + c2.T)) @ s1
    tr_sqrt = float(np.sqrt(np.clip(np.linalg.eigvalsh(0.5 * (m + m.T)), 0.0, None)).sum())
    diff = m1 - m2
    d2 = float(diff @ diff + np.trace(c1) + np.trace(c2) - 2.0 * tr_sqrt)
    return max(d2, 0.0)


# ---- feature statistics ------------------------------------------------------------------------


@dataclass
class FeatureStats:
    """Gaussian summary of one image set's features.

    ``mu`` (D,) and ``cov`` (D, D) float64 (unbiased, divisor n − 1, as pytorch-fid's
    ``np.cov``); ``n`` images; ``feature`` the extractor's identity (weights included);
    ``label`` the metric's name ("FID …" or :data:`PROXY_LABEL`); ``source`` free text
    saying what the images were (e.g. ``cifar10:train`` or ``samples dp K=32``).
    """

    mu: np.ndarray
    cov: np.ndarray
    n: int
    feature: str
    label: str
    comparable_to_published: bool
    source: str = ""

    def save(self, path: str | Path) -> None:
        """Write an ``.npz`` (mu, cov, n, and the text fields as JSON)."""
        meta = {"feature": self.feature, "label": self.label, "source": self.source,
                "comparable_to_published": self.comparable_to_published}
        np.savez(Path(path), mu=self.mu, cov=self.cov, n=np.int64(self.n), meta=np.array(json.dumps(meta)))

    @classmethod
    def load(cls, path: str | Path) -> "FeatureStats":
        """Read statistics written by :meth:`save`."""
        p = Path(path)
        require(p.is_file(), f"statistics file {str(p)!r} does not exist")
        with np.load(p, allow_pickle=False) as z:
            require({"mu", "cov", "n", "meta"} <= set(z.files), f"{p}: not a ddpmdp feature-statistics file")
            meta = json.loads(str(z["meta"]))
            return cls(z["mu"], z["cov"], int(z["n"]), meta["feature"], meta["label"],
                       bool(meta["comparable_to_published"]), meta.get("source", ""))


class StreamingStats:
    """Running mean and covariance over batches of feature vectors, in float64.

    Each batch is summarised by its mean and centred scatter M = Σ (x − x̄)(x − x̄)ᵀ and merged
    with the pairwise update of Chan, Golub & LeVeque (1979):
    n = nₐ + n_b, δ = x̄_b − x̄ₐ, x̄ = x̄ₐ + δ·n_b/n, M = Mₐ + M_b + δδᵀ·nₐn_b/n.
    The result equals the batch ``np.mean``/``np.cov`` up to rounding, for any batching.
    """

    def __init__(self, dims: int) -> None:
        require(dims >= 1, f"feature dimension must be >= 1, got {dims}")
        self.dims = int(dims)
        self.n = 0
        self.mean = np.zeros(self.dims)
        self.scatter = np.zeros((self.dims, self.dims))

    def update(self, features: np.ndarray | torch.Tensor) -> None:
        """Add a batch of features, (B, D)."""
        x = features.detach().cpu().double().numpy() if isinstance(features, torch.Tensor) else np.asarray(
            features, np.float64)
        require(x.ndim == 2 and x.shape[1] == self.dims, f"features must be (B, {self.dims}), got {x.shape}")
        nb = x.shape[0]
        if nb == 0:
            return
        mb = x.mean(0)
        xc = x - mb
        mb2 = xc.T @ xc
        if self.n == 0:
            self.mean, self.scatter = mb, mb2
        else:
            n = self.n + nb
            delta = mb - self.mean
            self.mean = self.mean + delta * (nb / n)
            self.scatter = self.scatter + mb2 + np.outer(delta, delta) * (self.n * nb / n)
        self.n += nb

    def covariance(self) -> np.ndarray:
        """(D, D) unbiased covariance M/(n − 1); needs n ≥ 2."""
        require(self.n >= 2, f"a covariance needs at least 2 feature vectors, got {self.n}")
        return self.scatter / (self.n - 1)


@dataclass(frozen=True)
class FIDResult:
    """A Fréchet distance with its provenance: ``value`` (squared feature units), ``label``
    ("FID (…)" or :data:`PROXY_LABEL`), ``feature`` (extractor identity), sample counts."""

    value: float
    label: str
    feature: str
    comparable_to_published: bool
    n_a: int
    n_b: int
    source_a: str = ""
    source_b: str = ""

    def __float__(self) -> float:
        return float(self.value)

    def __str__(self) -> str:
        return f"{self.label} = {self.value:.2f} (n = {self.n_a} vs {self.n_b})"


def fid_from_stats(a: FeatureStats, b: FeatureStats) -> FIDResult:
    """Fréchet distance between two :class:`FeatureStats` of the **same** extractor."""
    require(a.feature == b.feature, f"feature statistics come from different extractors ({a.feature!r} vs "
            f"{b.feature!r}); recompute both with one extractor")
    if min(a.n, b.n) < 2048 and a.comparable_to_published:
        warnings.warn(f"FID from {min(a.n, b.n)} images is biased upwards; published FIDs use 50,000",
                      stacklevel=2)
    return FIDResult(frechet_distance(a.mu, a.cov, b.mu, b.cov), a.label, a.feature, a.comparable_to_published,
                     a.n, b.n, a.source, b.source)


def _batches(images: np.ndarray | ImageSet | Iterable[np.ndarray], batch_size: int) -> Iterator[np.ndarray]:
    if isinstance(images, ImageSet):
        images = images.images
    if isinstance(images, np.ndarray):
        validate_images(images)
        for lo in range(0, len(images), batch_size):
            yield images[lo:lo + batch_size]
    else:
        for batch in images:
            validate_images(batch, "image batch")
            yield batch


class FeatureExtractor:
    """One interface for FID features: uint8 images (B, C, H, W) → float64 features (B, D).

    Subclasses set ``net`` (an ``nn.Module`` returning (B, D)), ``dims``, ``feature`` (a unique
    identity string, weights included), ``label`` and ``comparable_to_published``, and
    implement :meth:`preprocess`.
    """

    net: nn.Module
    dims: int
    feature: str
    label: str
    comparable_to_published: bool

    def __init__(self, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)

    def preprocess(self, images: np.ndarray) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    @torch.no_grad()
    def features(self, images: np.ndarray) -> np.ndarray:
        """uint8 (B, C, H, W) → float64 (B, D) features (network in eval mode)."""
        validate_images(images)
        self.net.eval()
        return self.net(self.preprocess(images)).double().cpu().numpy()

    def describe(self) -> dict[str, Any]:
        """Identity, label, dimension and comparability, for result metadata."""
        return {"feature": self.feature, "label": self.label, "dims": self.dims,
                "comparable_to_published": self.comparable_to_published}


def feature_statistics(extractor: FeatureExtractor, images: np.ndarray | ImageSet | Iterable[np.ndarray], *,
                       batch_size: int = 50, source: str = "", progress: bool = False) -> FeatureStats:
    """Mean (D,) and covariance (D, D) of ``extractor`` features over uint8 (N, C, H, W) images
    (an array, an :class:`ImageSet`, or any iterable of uint8 batches, e.g. a sampler generating
    on the fly), accumulated with :class:`StreamingStats`. ``batch_size`` applies to arrays;
    Inception at 299×299 needs about 10 MB of activations per image on the CPU."""
    from tqdm import tqdm

    acc = StreamingStats(extractor.dims)
    if isinstance(images, ImageSet) and not source:
        source = images.identity
    for batch in tqdm(_batches(images, batch_size), disable=not progress, desc="features", unit="batch"):
        acc.update(extractor.features(batch))
    return FeatureStats(acc.mean, acc.covariance(), acc.n, extractor.feature, extractor.label,
                        extractor.comparable_to_published, source)
