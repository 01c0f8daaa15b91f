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
:func:`ddpmdp.sampling.sample` and :class:`ddpmdp.datasets.ImageSet`.
"""
from __future__ import annotations

import hashlib
import json
import math
import time
import urllib.request
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .datasets import ImageSet, data_root, validate_images
from .errors import DdpmdpError, require

__all__ = [
    "frechet_distance", "FeatureStats", "StreamingStats", "FIDResult", "fid_from_stats", "feature_statistics",
    "FeatureExtractor", "FIDInceptionV3", "InceptionExtractor", "inception_weights", "check_inception_state_dict",
    "inception_spec", "INCEPTION_URL", "INCEPTION_FILE", "INCEPTION_SHA256_PREFIX", "INCEPTION_PARAMETERS",
    "INCEPTION_STATE_SCALARS", "INCEPTION_STATE_KEYS", "INCEPTION_FINGERPRINT", "ProxyCNN", "ProxyExtractor",
    "ProxyTrainingReport", "train_proxy_classifier", "classifier_accuracy", "load_proxy_extractor",
    "proxy_extractor", "load_cifar10_labelled", "PROXY_LABEL", "PROXY_STEPS", "FID_LABEL",
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
    from tqdm.auto import tqdm

    acc = StreamingStats(extractor.dims)
    if isinstance(images, ImageSet) and not source:
        source = images.identity
    for batch in tqdm(_batches(images, batch_size), disable=not progress, desc="features", unit="batch"):
        acc.update(extractor.features(batch))
    return FeatureStats(acc.mean, acc.covariance(), acc.n, extractor.feature, extractor.label,
                        extractor.comparable_to_published, source)


# ---- Inception-v3 pool3 (the FID network) ------------------------------------------------------

INCEPTION_URL = ("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
                 "pt_inception-2015-12-05-6726825d.pth")
"""pytorch-fid's port of TensorFlow's ``inception-2015-12-05`` graph (the FID network)."""
INCEPTION_FILE = "pt_inception-2015-12-05-6726825d.pth"
INCEPTION_SHA256_PREFIX = "6726825d"
"""torch.hub naming: the file name ends with the first hex digits of the file's sha256. The
full digest is not recorded here (unverified); :func:`inception_weights` checks the prefix."""
INCEPTION_PARAMETERS = 23_850_960
"""Learnable parameters of :class:`FIDInceptionV3`: torchvision's ``Inception3`` without the
auxiliary head (27,161,264 − 3,326,696 = 23,834,568 at 1000 classes) plus 8 × 2049 for the
1008-class ``fc`` of the TensorFlow graph. 21,785,568 of them precede ``fc`` (pool3)."""
INCEPTION_STATE_SCALARS = 23_885_392
"""Scalars in the state_dict (parameters plus BatchNorm running means and variances)."""
INCEPTION_STATE_KEYS = 472
"""state_dict entries of :class:`FIDInceptionV3`, excluding BatchNorm ``num_batches_tracked``
(the port may or may not contain those; they are ignored)."""
INCEPTION_FINGERPRINT = "954403df03f5a6d824cbccdc11f2b359003e906b126822a8a9a1afc4b6c8b849"
"""sha256 of the sorted ``key:shape`` lines (:func:`ddpmdp.nets.key_shape_fingerprint`), same keys."""


class _Conv(nn.Module):
    """Conv (no bias) → BatchNorm(eps = 1e-3) → ReLU; torchvision's ``BasicConv2d`` names."""

    def __init__(self, cin: int, cout: int, kernel: int | tuple[int, int], stride: int = 1,
                 padding: int | tuple[int, int] = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _tf_avg_pool(x: torch.Tensor) -> torch.Tensor:
    """3×3 stride-1 average pool that, like TensorFlow, ignores the zero padding."""
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class _MixedA(nn.Module):
    """Mixed_5b/5c/5d: 1×1 | 1×1→5×5 | 1×1→3×3→3×3 | avgpool→1×1; out 224 + pool_features."""

    def __init__(self, cin: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = _Conv(cin, 64, 1)
        self.branch5x5_1 = _Conv(cin, 48, 1)
        self.branch5x5_2 = _Conv(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = _Conv(cin, 64, 1)
        self.branch3x3dbl_2 = _Conv(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _Conv(96, 96, 3, padding=1)
        self.branch_pool = _Conv(cin, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1x1(x), self.branch5x5_2(self.branch5x5_1(x)),
                          self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                          self.branch_pool(_tf_avg_pool(x))], 1)


class _MixedB(nn.Module):
    """Mixed_6a (grid reduction 35 → 17): 3×3/2 | 1×1→3×3→3×3/2 | maxpool/2; out 480 + cin."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3 = _Conv(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = _Conv(cin, 64, 1)
        self.branch3x3dbl_2 = _Conv(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _Conv(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch3x3(x), self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                          F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class _MixedC(nn.Module):
    """Mixed_6b..6e: factorised 7×7 branches with c7 channels; out 768."""

    def __init__(self, cin: int, c7: int) -> None:
        super().__init__()
        self.branch1x1 = _Conv(cin, 192, 1)
        self.branch7x7_1 = _Conv(cin, c7, 1)
        self.branch7x7_2 = _Conv(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = _Conv(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = _Conv(cin, c7, 1)
        self.branch7x7dbl_2 = _Conv(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = _Conv(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = _Conv(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = _Conv(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = _Conv(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            d = layer(d)
        return torch.cat([self.branch1x1(x), b7, d, self.branch_pool(_tf_avg_pool(x))], 1)


class _MixedD(nn.Module):
    """Mixed_7a (grid reduction 17 → 8): 1×1→3×3/2 | 1×1→1×7→7×1→3×3/2 | maxpool/2; out 512 + cin."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3_1 = _Conv(cin, 192, 1)
        self.branch3x3_2 = _Conv(192, 320, 3, stride=2)
        self.branch7x7x3_1 = _Conv(cin, 192, 1)
        self.branch7x7x3_2 = _Conv(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = _Conv(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = _Conv(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.branch7x7x3_1(x)
        for layer in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            b = layer(b)
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), b, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class _MixedE(nn.Module):
    """Mixed_7b/7c: expanded 3×3 branches; out 2048. The FID graph pools with a TF-style
    average in Mixed_7b and with a 3×3 **max** pool in Mixed_7c (a quirk of that graph)."""

    def __init__(self, cin: int, pool: Literal["avg", "max"]) -> None:
        super().__init__()
        self.pool = pool
        self.branch1x1 = _Conv(cin, 320, 1)
        self.branch3x3_1 = _Conv(cin, 384, 1)
        self.branch3x3_2a = _Conv(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = _Conv(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = _Conv(cin, 448, 1)
        self.branch3x3dbl_2 = _Conv(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = _Conv(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = _Conv(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = _Conv(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_1(x)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = _tf_avg_pool(x) if self.pool == "avg" else F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        return torch.cat([self.branch1x1(x), self.branch3x3_2a(b3), self.branch3x3_2b(b3),
                          self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d), self.branch_pool(pooled)], 1)


class FIDInceptionV3(nn.Module):
    """The Inception-v3 graph of TensorFlow's FID (``inception-2015-12-05``), plain PyTorch.

    Parameter names follow torchvision's ``Inception3(num_classes=1008, aux_logits=False)``
    with pytorch-fid's patched blocks, so pytorch-fid's ported weights load strictly.
    ``fc`` (1008 logits) is kept only so that the key list matches; it is unused.

    forward: x float32 (B, 3, 299, 299) in [−1, 1] → pool3 features (B, 2048) (the global
    average of Mixed_7c, after ReLU).
    """

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = _Conv(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = _Conv(32, 32, 3)
        self.Conv2d_2b_3x3 = _Conv(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = _Conv(64, 80, 1)
        self.Conv2d_4a_3x3 = _Conv(80, 192, 3)
        self.Mixed_5b = _MixedA(192, 32)
        self.Mixed_5c = _MixedA(256, 64)
        self.Mixed_5d = _MixedA(288, 64)
        self.Mixed_6a = _MixedB(288)
        self.Mixed_6b = _MixedC(768, 128)
        self.Mixed_6c = _MixedC(768, 160)
        self.Mixed_6d = _MixedC(768, 160)
        self.Mixed_6e = _MixedC(768, 192)
        self.Mixed_7a = _MixedD(768)
        self.Mixed_7b = _MixedE(1280, "avg")
        self.Mixed_7c = _MixedE(2048, "max")
        self.fc = nn.Linear(2048, 1008)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c,
                      self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
            x = block(x)
        return x.mean(dim=(2, 3))


def inception_spec() -> dict[str, tuple[int, ...]]:
    """state_dict key → shape of :class:`FIDInceptionV3` without ``num_batches_tracked``
    (built on the meta device: no memory, no time)."""
    with torch.device("meta"):
        net = FIDInceptionV3()
    return {k: tuple(v.shape) for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}


def check_inception_state_dict(sd: dict[str, torch.Tensor], what: str = "state_dict") -> dict[str, torch.Tensor]:
    """Check a state_dict against :class:`FIDInceptionV3`: every key, every shape, and the
    parameter count; ``num_batches_tracked`` entries are dropped. Returns the filtered dict.
    Raises :class:`DdpmdpError` naming the first missing, unexpected or misshapen key."""
    from .nets import count_parameters, key_shape_fingerprint

    spec = inception_spec()
    sd = {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    missing = [k for k in spec if k not in sd]
    extra = [k for k in sd if k not in spec]
    if missing or extra:
        aux = " (it has AuxLogits: a torchvision ImageNet Inception, not the FID one)" if any(
            k.startswith("AuxLogits") for k in extra) else ""
        raise DdpmdpError(f"{what} is not the FID Inception-v3: "
                          + (f"first missing key {missing[0]!r} ({len(missing)} missing); " if missing else "")
                          + (f"first unexpected key {extra[0]!r} ({len(extra)} unexpected)" if extra else "") + aux)
    for k, shape in spec.items():
        if tuple(sd[k].shape) != shape:
            raise DdpmdpError(f"{what}: {k!r} has shape {tuple(sd[k].shape)}, the FID Inception-v3 needs {shape}"
                              + (" (1000 classes: torchvision's ImageNet weights, not the FID port)"
                                 if k.startswith("fc.") and sd[k].shape[0] == 1000 else ""))
    require(count_parameters(sd) == INCEPTION_STATE_SCALARS and key_shape_fingerprint(sd) == INCEPTION_FINGERPRINT,
            f"{what}: parameter count or key fingerprint differs from the FID Inception-v3")
    return sd


def inception_weights(folder: str | Path, *, download: bool = False,
                      urlopen: Callable[..., Any] | None = None) -> Path:
    """Path of pytorch-fid's FID Inception weights in ``folder``, downloaded from
    :data:`INCEPTION_URL` only when ``download=True`` and the file is absent.

    The file's sha256 must start with :data:`INCEPTION_SHA256_PREFIX` (checked after a
    download; a mismatching download is deleted). Raises :class:`DdpmdpError` saying where
    to put the file when it is absent and downloading was not asked for or failed.
    """
    folder = Path(folder)
    path = folder / INCEPTION_FILE
    if path.is_file():
        return path
    require(download, f"the FID Inception weights are not at {path}; download {INCEPTION_URL} there "
            "(or pass download=True on a machine with network access)")
    folder.mkdir(parents=True, exist_ok=True)
    part = path.with_suffix(".part")
    h = hashlib.sha256()
    try:
        with (urlopen or urllib.request.urlopen)(INCEPTION_URL, timeout=60) as resp, open(part, "wb") as out:
            for chunk in iter(lambda: resp.read(1 << 20), b""):
                h.update(chunk)
                out.write(chunk)
    except OSError as exc:
        part.unlink(missing_ok=True)
        raise DdpmdpError(f"downloading {INCEPTION_URL} failed ({exc}); put {INCEPTION_FILE} into {folder} "
                          "by hand") from None
    if not h.hexdigest().startswith(INCEPTION_SHA256_PREFIX):
        part.unlink(missing_ok=True)
        raise DdpmdpError(f"the downloaded Inception weights have sha256 {h.hexdigest()[:16]}…, expected a digest "
                          f"starting with {INCEPTION_SHA256_PREFIX}; the download is corrupt or the URL changed")
    part.replace(path)
    return path


class InceptionExtractor(FeatureExtractor):
    """FID features: uint8 (B, C, H, W) → x = u8/127.5 − 1 ∈ [−1, 1] (pytorch-fid's 2·(u8/255) − 1;
    grey images repeated to 3 channels) → bilinear resize to 299×299 (``align_corners=False``,
    as pytorch-fid; TensorFlow's resize differs slightly) → pool3 (B, 2048).

    ``weights``: a path to pytorch-fid's file (keys, shapes, parameter count and, unless
    ``check_hash=False``, the sha256 prefix are checked), or ``None`` for **random**
    weights, which only test plumbing and are labelled so.
    """

    dims = 2048

    def __init__(self, weights: str | Path | None, *, device: str | torch.device = "cpu",
                 check_hash: bool = True) -> None:
        super().__init__(device)
        from .checkpoints import file_sha256, read_state_dict

        self.net = FIDInceptionV3()
        if weights is None:
            self.feature = "inception-v3-pool3 RANDOM WEIGHTS (plumbing only)"
            self.label = "Fréchet distance of random-weight Inception features (meaningless)"
            self.comparable_to_published = False
        else:
            p = Path(weights)
            sha = file_sha256(p) if p.is_file() else ""
            if check_hash and p.is_file():
                require(sha.startswith(INCEPTION_SHA256_PREFIX), f"{p} has sha256 {sha[:16]}…, not the FID "
                        f"Inception weights (expected {INCEPTION_SHA256_PREFIX}…); pass check_hash=False to "
                        "use another port of the same graph")
            sd = check_inception_state_dict(read_state_dict(p), str(p))
            result = self.net.load_state_dict(sd, strict=False)
            assert not result.unexpected_keys and all(k.endswith("num_batches_tracked") for k in result.missing_keys)
            self.comparable_to_published = sha.startswith(INCEPTION_SHA256_PREFIX)
            self.feature = f"inception-v3-pool3 (weights sha256 {sha[:16]})"
            self.label = FID_LABEL if self.comparable_to_published else (
                "FID with unverified Inception weights (not comparable to published FID)")
        self.net.to(self.device).eval()

    def preprocess(self, images: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(images)).to(self.device).float().div_(127.5).sub_(1.0)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)


# ---- the proxy: a small CIFAR-10 classifier ----------------------------------------------------


class ProxyCNN(nn.Module):
    """A small CIFAR-10 classifier (≈ 0.36M parameters) whose penultimate layer gives proxy
    features: three [3×3 conv → BatchNorm → ReLU → 2×2 max pool] stages (32, 64, 128 channels;
    32 → 4 pixels), a 2048 → 128 linear layer with ReLU (the **features**), and a 128 → 10 head.

    forward: x float32 (B, 3, 32, 32) in [−1, 1] → logits (B, 10); :meth:`features` → (B, 128).
    """

    feature_dims = 128

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for cin, cout in ((3, 32), (32, 64), (64, 128)):
            layers += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                       nn.MaxPool2d(2)]
        self.body = nn.Sequential(*layers)
        self.penultimate = nn.Linear(128 * 4 * 4, self.feature_dims)
        self.head = nn.Linear(self.feature_dims, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, 32, 32) in [−1, 1] → penultimate features ReLU(W·body(x) + b), (B, 128)."""
        return F.relu(self.penultimate(self.body(x).flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, 32, 32) in [−1, 1] → class logits (B, 10)."""
        return self.head(self.features(x))


class _FeatureHead(nn.Module):
    def __init__(self, net: ProxyCNN) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.features(x)


def _to_model_space(images: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).to(device).float().div_(127.5).sub_(1.0)


class ProxyExtractor(FeatureExtractor):
    """Proxy features: uint8 (B, 3, 32, 32) → x = u8/127.5 − 1 → :class:`ProxyCNN` penultimate
    (B, 128). Labelled :data:`PROXY_LABEL`; ``feature`` names the weights' sha256 so that
    statistics from differently trained proxies are never compared."""

    dims = ProxyCNN.feature_dims
    label = PROXY_LABEL
    comparable_to_published = False

    def __init__(self, net: ProxyCNN, weights_sha256: str, *, device: str | torch.device = "cpu",
                 report: dict[str, Any] | None = None) -> None:
        super().__init__(device)
        self.classifier = net.to(self.device).eval()
        self.net = _FeatureHead(self.classifier)
        self.feature = f"proxy-cnn-penultimate-128 (ddpmdp ProxyCNN trained on CIFAR-10, sha256 {weights_sha256[:16]})"
        self.report = report or {}

    def preprocess(self, images: np.ndarray) -> torch.Tensor:
        require(images.shape[1:] == (3, 32, 32), f"the proxy classifier takes CIFAR-10-sized images "
                f"(3, 32, 32), got {images.shape[1:]}")
        return _to_model_space(images, self.device)

    def describe(self) -> dict[str, Any]:
        return dict(super().describe(), proxy_training=self.report)


@dataclass
class ProxyTrainingReport:
    """How a proxy classifier was trained: accuracies (fractions) on the test split and on the
    last epoch's training batches, counts, seconds of wall time, and the saved file."""

    test_accuracy: float
    train_accuracy: float
    n_train: int
    n_test: int
    epochs: float
    steps: int
    batch_size: int
    lr: float
    seed: int
    threads: int
    seconds: float
    weights: str | None = None
    weights_sha256: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


def load_cifar10_labelled(split: str, data_dir: str | Path | None = None, *, download: bool = True
                          ) -> tuple[ImageSet, np.ndarray]:
    """CIFAR-10 images **and labels**: (ImageSet uint8 (N, 3, 32, 32), int64 (N,) in 0..9).

    :func:`ddpmdp.cifar10.load_cifar10` drops the labels, so they are read here with the same
    restricted reader (:func:`ddpmdp.cifar10.read_batch`) from the same files, in the same
    order; the images of both reads must agree.
    """
    from .cifar10 import FOLDER, SPLIT_FILES, load_cifar10, read_batch

    images = load_cifar10(split, data_dir, download=download)
    root = data_root(data_dir)
    assert root is not None
    present = [f for f in SPLIT_FILES[split] if (root / FOLDER / f).is_file()]
    parts = [read_batch(root / FOLDER / f) for f in present]
    x = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    require(x.shape == images.images.shape and np.array_equal(x, images.images),
            f"CIFAR-10 files under {root / FOLDER} changed while reading; retry")
    require(bool(((labels >= 0) & (labels <= 9)).all()), "CIFAR-10 labels must lie in 0..9")
    return images, labels


@torch.no_grad()
def classifier_accuracy(net: ProxyCNN, images: np.ndarray, labels: np.ndarray, *, batch_size: int = 500) -> float:
    """Top-1 accuracy (fraction in [0, 1]) of ``net`` on uint8 (N, 3, 32, 32) images."""
    net.eval()
    device = next(net.parameters()).device
    correct = 0
    for lo in range(0, len(images), batch_size):
        logits = net(_to_model_space(images[lo:lo + batch_size], device))
        correct += int((logits.argmax(1).cpu().numpy() == labels[lo:lo + batch_size]).sum())
    return correct / max(len(images), 1)


def train_proxy_classifier(train_images: np.ndarray, train_labels: np.ndarray,
                           test_images: np.ndarray | None = None, test_labels: np.ndarray | None = None, *,
                           epochs: float | None = None, batch_size: int = 128, lr: float = 3e-3,
                           weight_decay: float = 5e-4, seed: int = 0, threads: int = 1, max_steps: int | None = None,
                           out: str | Path | None = None, progress: bool = False,
                           data_info: dict[str, Any] | None = None, dtype: torch.dtype = torch.float32
                           ) -> tuple[ProxyCNN, ProxyTrainingReport]:
    """Train :class:`ProxyCNN` with cross-entropy: AdamW (``lr``, ``weight_decay``), cosine decay to 0,
    random horizontal flips, minibatches of ``batch_size`` from a seeded permutation per epoch.

    Args:
        train_images: uint8 (N, 3, 32, 32); train_labels: int (N,) in 0..9.
        test_images, test_labels: held-out split for the reported accuracy (optional).
        epochs: passes over the training set (fractions allowed). Default: a fixed budget of
            :data:`PROXY_STEPS` = 1200 steps (≈ 3 epochs of the 50,000 CIFAR-10 training images,
            about 3 minutes on one CPU thread), and at least one epoch. ``max_steps`` caps the steps.
        seed: seeds the initialisation, the permutations and the flips (global RNG untouched).
        threads: torch intra-op threads during training (restored afterwards).
        out: if given, ``state_dict`` is saved there (``torch.save``) with a ``.json`` report beside it.
        dtype: training precision; float64 makes the weights independent of the CPU's summation
            order (AdamW's first steps turn tiny float32 gradient differences into whole steps).
            The returned and saved weights are float32 either way (rounded).

    Returns:
        (network in eval mode, :class:`ProxyTrainingReport`).
    """
    validate_images(train_images, "proxy training images")
    require(train_images.shape[1:] == (3, 32, 32), f"proxy training images must be (N, 3, 32, 32), "
            f"got {train_images.shape}")
    y_all = np.asarray(train_labels, dtype=np.int64)
    require(y_all.shape == (len(train_images),) and bool(((y_all >= 0) & (y_all <= 9)).all()),
            "train_labels must be (N,) integers in 0..9")
    require((epochs is None or epochs > 0) and batch_size >= 1 and threads >= 1,
            "epochs, batch_size and threads must be positive")
    n = len(train_images)
    steps_per_epoch = max(1, math.ceil(n / batch_size))
    if epochs is None:
        epochs = max(1.0, PROXY_STEPS / steps_per_epoch)
    steps = max(1, math.ceil(epochs * steps_per_epoch))
    if max_steps is not None:
        steps = min(steps, int(max_steps))
    rng = np.random.default_rng(seed)
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    start = time.perf_counter()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = ProxyCNN().to(dtype)
        opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 0.5 * (1 + math.cos(math.pi * min(k, steps) / steps)))
        net.train()
        order = np.empty(0, dtype=np.int64)
        correct = seen = 0
        from tqdm.auto import tqdm

        for step in tqdm(range(steps), disable=not progress, desc="proxy classifier", unit="step"):
            if step % steps_per_epoch == 0:
                order = rng.permutation(n)
                correct = seen = 0
            lo = (step % steps_per_epoch) * batch_size
            idx = np.sort(order[lo:lo + batch_size])
            xb = train_images[idx]
            flip = rng.random(len(idx)) < 0.5
            xb = np.where(flip[:, None, None, None], xb[..., ::-1], xb)
            x = _to_model_space(xb).to(dtype)
            y = torch.from_numpy(y_all[idx])
            logits = net(x)
            loss = F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            correct += int((logits.argmax(1) == y).sum())
            seen += len(idx)
        net = net.float().eval()
        seconds = time.perf_counter() - start
        test_acc = float("nan")
        if test_images is not None and test_labels is not None:
            test_acc = classifier_accuracy(net, test_images, np.asarray(test_labels, dtype=np.int64))
    finally:
        torch.set_num_threads(old_threads)
    report = ProxyTrainingReport(test_acc, correct / max(seen, 1), n, 0 if test_images is None else len(test_images),
                                 steps / steps_per_epoch, steps, batch_size, lr, seed, threads, seconds,
                                 data=dict(data_info or {}))
    if out is not None:
        out = Path(out)
        torch.save(net.state_dict(), out)
        from .checkpoints import file_sha256

        report.weights, report.weights_sha256 = str(out), file_sha256(out)
        out.with_suffix(".json").write_text(json.dumps(asdict(report), indent=1, sort_keys=True))
    return net, report


def load_proxy_extractor(path: str | Path, *, device: str | torch.device = "cpu") -> ProxyExtractor:
    """A :class:`ProxyExtractor` from weights saved by :func:`train_proxy_classifier`."""
    from .checkpoints import file_sha256, read_state_dict

    p = Path(path)
    sd = read_state_dict(p)
    net = ProxyCNN()
    try:
        net.load_state_dict(sd)
    except RuntimeError as exc:
        raise DdpmdpError(f"{p} does not hold ProxyCNN weights ({str(exc).splitlines()[0]})") from None
    side = p.with_suffix(".json")
    report = json.loads(side.read_text()) if side.is_file() else {}
    return ProxyExtractor(net, file_sha256(p), device=device, report=report)


def proxy_extractor(cache_dir: str | Path, data_dir: str | Path | None = None, *, seed: int = 0,
                    train_if_missing: bool = True, device: str | torch.device = "cpu", progress: bool = False,
                    **train_kwargs: Any) -> ProxyExtractor:
    """The proxy extractor cached under ``cache_dir`` (``proxy_cnn_seed{seed}.pt`` plus its
    ``.json`` training report), trained on the CIFAR-10 training split and scored on the test
    split on first use (:func:`train_proxy_classifier`, ``train_kwargs`` passed through; about
    3 minutes on one CPU thread). An existing file is reused whatever ``train_kwargs`` say:
    delete it to retrain. ``dtype=torch.float64`` in ``train_kwargs`` trains in float64 and caches
    ``proxy_cnn_seed{seed}_float64.pt`` (its weights are stored, and used, in float32)."""
    cache = Path(cache_dir)
    dtype = train_kwargs.get("dtype", torch.float32)
    path = cache / (f"proxy_cnn_seed{seed}.pt" if dtype == torch.float32 else
                    f"proxy_cnn_seed{seed}_{str(dtype).removeprefix('torch.')}.pt")
    if not path.is_file():
        require(train_if_missing, f"no proxy classifier at {path}; call with train_if_missing=True")
        cache.mkdir(parents=True, exist_ok=True)
        train, y = load_cifar10_labelled("train", data_dir)
        test, y_test = load_cifar10_labelled("test", data_dir)
        info = {"train": train.identity, "train_sha": train.fingerprint(), "test": test.identity,
                "notes": train.notes + test.notes}
        train_proxy_classifier(train.images, y, test.images, y_test, seed=seed, out=path, progress=progress,
                               data_info=info, **train_kwargs)
    return load_proxy_extractor(path, device=device)
