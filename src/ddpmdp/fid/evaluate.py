"""KID ± SE (and FID) of inference paths: ``ddpmdp evaluate --metric kid`` as a function
(``method.md`` §13.5).

For each path, n samples are generated with the path's own sampler (a trajectory schedule's DDIM
η = 0 with its clip flag; an ELBO schedule's or a plain path's ancestral steps) unless one sampler
is asked for, all from the **same noise keys** (sample i starts from the x_T of key i, and ancestral
steps share the step noise by position), so paths are compared paired in the noise. Their features
and the held-out real images' features (one extractor, named by its weights hash) give KID with
its delete-a-group jackknife SE (:mod:`ddpmdp.fid.kid`), FID beside it when the extractor is
Inception, NFE = K network evaluations per sample, and paired KID differences against the first
path. Images are uint8 (N, C, H, W), the format of :func:`ddpmdp.sampling.sample`.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ddpmdp.data.images import ImageSet, validate_images
from ddpmdp.errors import require
from ddpmdp.fid.frechet import FeatureExtractor, FeatureStats, FIDResult, StreamingStats, fid_from_stats
from ddpmdp.fid.kid import GROUPS, KID_LABEL, PROXY_KID_LABEL, KIDReference, KIDResult, kid, kid_difference
from ddpmdp.inference_schedule import (InferenceSchedule, SamplerSpec, as_schedule, check_schedule_identity,
                                      resolve_sampler)
from ddpmdp.strides import PathBudget

__all__ = ["KIDScore", "evaluate_kid", "image_features", "kid_label", "load_extractor"]


@dataclass
class KIDScore(PathBudget):
    """One path's sample quality: KID ± SE, NFE (= K network evaluations per sample), the sampler
    used, FID when the extractor is Inception, and the paired KID difference against the first
    path (``paired``: minus, kid_diff, kid_diff_se, within_2se) when there is one."""

    nodes: np.ndarray
    sampler: SamplerSpec
    kid: KIDResult
    fid: FIDResult | None = None
    paired: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"K": self.K, "nfe": self.nfe, "nodes": [int(n) for n in self.nodes],
                               "sampler": self.sampler.to_json(), **self.kid.as_dict()}
        if self.fid is not None:
            out.update(fid=self.fid.value, fid_label=self.fid.label)
        if self.paired is not None:
            out["paired_vs_first"] = self.paired
        return out


def kid_label(extractor: FeatureExtractor) -> str:
    """The KID label of an extractor's features: published-comparable only with pytorch-fid's Inception."""
    if extractor.comparable_to_published:
        return KID_LABEL
    if extractor.feature.startswith("proxy"):
        return PROXY_KID_LABEL
    return f"KID of {extractor.feature} (not comparable to published KID)"


def load_extractor(spec: str = "proxy", *, device: str = "cpu") -> FeatureExtractor:
    """``proxy`` (the shipped proxy CNN, :data:`ddpmdp.fid.proxy.SHIPPED_PROXY`), ``proxy:FILE`` (other
    proxy weights) or ``inception:FILE`` (pytorch-fid's Inception weights: KID and FID comparable to
    published numbers)."""
    kind, _, arg = str(spec).partition(":")
    require(kind in ("proxy", "inception") and (kind == "proxy" or bool(arg)),
            f"--features {spec!r}: use proxy, proxy:FILE or inception:FILE")
    if kind == "inception":
        from ddpmdp.fid.inception import InceptionExtractor

        require(Path(arg).is_file(), f"--features {spec!r}: no Inception weights file {arg!r}")
        return InceptionExtractor(arg, device=device)
    from ddpmdp.fid.proxy import SHIPPED_PROXY, load_proxy_extractor

    path = arg or SHIPPED_PROXY
    require(Path(path).is_file(), f"--features {spec!r}: no proxy weights file {str(path)!r}")
    return load_proxy_extractor(path, device=device)


def image_features(extractor: FeatureExtractor, images: np.ndarray, *, batch_size: int = 250) -> np.ndarray:
    """float64 (N, D) features of uint8 (N, C, H, W) images, in batches."""
    validate_images(images)
    return np.concatenate([extractor.features(images[lo:lo + batch_size])
                           for lo in range(0, len(images), batch_size)])


def _stats(features: np.ndarray, extractor: FeatureExtractor, source: str) -> FeatureStats:
    acc = StreamingStats(features.shape[1])
    acc.update(features)
    return FeatureStats(acc.mean, acc.covariance(), acc.n, extractor.feature, extractor.label,
                        extractor.comparable_to_published, source)


def evaluate_kid(model, real: ImageSet | np.ndarray, paths: Mapping[str, Any], *, n_samples: int,
                 extractor: FeatureExtractor, sampler: str | None = None, eta: float = 0.0,
                 clip: bool | None = None, allow_other_sampler: bool = False, variance: Any = None,
                 groups: int = GROUPS, fid: bool | None = None, seed: int = 0, batch_size: int = 64,
                 device: str = "cpu", progress: bool = False) -> dict[str, KIDScore]:
    """KID ± SE of ``n_samples`` samples along each path against the ``real`` held-out images.

    Args:
        model: a :class:`~ddpmdp.models.adapter.DiffusionModel`.
        real: held-out uint8 images (N, C, H, W) or an :class:`ImageSet`, the model's image shape.
        paths: ``{name: schedule or nodes}`` (e.g. from :func:`ddpmdp.path_specs.parse_schedule_spec`).
        n_samples: samples per path, sample i from noise key i for every path.
        extractor: the feature extractor (:func:`load_extractor`).
        sampler/eta/clip: one sampler for every path; None → each path's own (its recorded sampler
            and clip flag; plain paths: ancestral, clip). A sampler a path was not solved for is
            refused unless ``allow_other_sampler``.
        variance: the variance rule of ancestral paths without per-edge variances (default: the
            model's).
        groups: jackknife groups. fid: also FID (default: when the extractor is comparable to
            published FIDs, i.e. Inception).

    Returns:
        ``{name: KIDScore}`` in the order of ``paths``; every score after the first carries its
        paired KID difference against the first.
    """
    from ddpmdp.sampling import sample

    require(n_samples >= 2, f"KID needs at least 2 samples per path, got {n_samples}")
    require(len(paths) >= 1, "no paths to evaluate")
    images = real.images if isinstance(real, ImageSet) else np.asarray(real)
    validate_images(images, "real images")
    shape = model.image_shape or tuple(images.shape[1:])
    require(tuple(images.shape[1:]) == tuple(shape), f"the real images are {tuple(images.shape[1:])}, the model's "
            f"samples {tuple(shape)}")
    schedules: dict[str, InferenceSchedule] = {}
    used: dict[str, SamplerSpec] = {}
    for name, p in paths.items():  # every check before any sampling: one line, nothing generated
        sch = as_schedule(p)
        if allow_other_sampler:
            sch = sch.for_other_sampler()
        used[name] = resolve_sampler(sch, sampler, eta, clip)
        check_schedule_identity(sch, model=model, sampler=used[name])
        schedules[name] = sch
    label = kid_label(extractor)
    real_features = image_features(extractor, images)
    ref = KIDReference(real_features, groups=groups, feature=extractor.feature, label=label,
                       comparable_to_published=extractor.comparable_to_published)
    with_fid = extractor.comparable_to_published if fid is None else fid
    real_stats = _stats(real_features, extractor, getattr(real, "identity", "real images")) if with_fid else None
    out: dict[str, KIDScore] = {}
    for name, sch in schedules.items():
        u = used[name]
        imgs = sample(model, sch, n_samples, shape, method="ddim" if u.kind == "ddim" else "ancestral",
                      variance=variance or model.variance, eta=u.eta, clip=u.clip, seed=seed, device=device,
                      batch_size=batch_size, progress=progress)
        feats = image_features(extractor, imgs)
        score = KIDScore(sch.nodes, u, kid(feats, ref))
        if real_stats is not None:
            score.fid = fid_from_stats(_stats(feats, extractor, f"samples {name}"), real_stats)
        out[name] = score
    names = list(out)
    for name in names[1:]:
        diff, se = kid_difference(out[name].kid, out[names[0]].kid)
        out[name].paired = {"minus": names[0], "kid_diff": diff, "kid_diff_se": se, "within_2se": abs(diff) <= 2 * se}
    return out
