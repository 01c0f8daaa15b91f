"""The exact denoiser for Gaussian data: closed forms for every table cell."""
from __future__ import annotations

import hashlib

import numpy as np
import torch

from ddpmdp.errors import require
from ddpmdp.models.adapter import ModelInfo, ModelOutput, Numerics
from ddpmdp.schedules import Schedule
from ddpmdp.variances import VarianceRule, default_rule

__all__ = ["GaussianDataModel"]


class GaussianDataModel:
    """The exact denoiser for data x₀ ~ N(μ, Σ) in [−1, 1] coordinates.

    With Σ = U diag(λ) Uᵀ and x_t = √ᾱ_t x₀ + √(1 − ᾱ_t) ε:
    E[x₀ | x_t] = μ + U diag(√ᾱ λ/(ᾱ λ + 1 − ᾱ)) Uᵀ (x_t − √ᾱ μ), and
    ε̂ = (x_t − √ᾱ E[x₀ | x_t])/√(1 − ᾱ). The posterior covariance of x₀ is
    U diag(λ(1 − ᾱ)/(ᾱ λ + 1 − ᾱ)) Uᵀ, which gives closed forms for every table cell.

    ``v``: a constant interpolation fraction for a learned-range variant (None =
    fixed-variance model). Fit to images with :meth:`fit`.
    """

    def __init__(self, mean: np.ndarray, cov: np.ndarray, shape: tuple[int, int, int], schedule: Schedule,
                 *, v: float | None = None, identity: str = "gaussian") -> None:
        d = int(np.prod(shape))
        mean = np.asarray(mean, dtype=np.float64).reshape(d)
        cov = np.asarray(cov, dtype=np.float64)
        require(cov.shape == (d, d), f"covariance must be ({d}, {d}), got {cov.shape}")
        lam, U = np.linalg.eigh(0.5 * (cov + cov.T))
        require(bool(lam.min() > 0), "the covariance must be positive definite (add a ridge)")
        self.shape, self.d = tuple(shape), d
        self.mean, self.cov, self.eigvals, self.eigvecs = mean, cov, lam, U
        self.schedule = schedule
        self.v = v
        self.learned_variance = v is not None
        self.variance: VarianceRule = default_rule(self.learned_variance)
        self.image_shape: tuple[int, int, int] | None = (int(shape[0]), int(shape[1]), int(shape[2]))
        self.identity = identity
        self.numerics = Numerics("float64")  # closed form in float64, cast to x_t's dtype
        self.info: ModelInfo = {"spec": identity, "architecture": "Gaussian data (closed form)",
                                "schedule": schedule.describe(), "T": schedule.T, "variance": self.variance}
        self._U = torch.from_numpy(U)
        self._mu = torch.from_numpy(mean)

    @classmethod
    def fit(cls, images: np.ndarray, schedule: Schedule, *, ridge: float = 1e-4, v: float | None = None,
            identity: str = "gaussian") -> "GaussianDataModel":
        """Fit μ and Σ (+ ridge·I) to uint8 images (N, C, H, W) mapped to [−1, 1]."""
        x = images.reshape(images.shape[0], -1).astype(np.float64) / 127.5 - 1.0
        require(x.shape[0] >= 2, "fitting a Gaussian needs at least 2 images")
        cov = np.cov(x, rowvar=False) + ridge * np.eye(x.shape[1])
        return cls(x.mean(0), cov, images.shape[1:], schedule, v=v, identity=identity)

    def fingerprint(self) -> str:
        h = hashlib.sha256(self.mean.tobytes() + self.cov.tobytes() + self.schedule.alphas_cumprod.tobytes())
        h.update(repr(self.v).encode())
        return h.hexdigest()[:16]

    def shrink(self, t: int) -> np.ndarray:
        """Per-eigendirection gain √ᾱ λ/(ᾱ λ + 1 − ᾱ) of E[x₀ | x_t]."""
        a = float(self.schedule.abar(t))
        return np.sqrt(a) * self.eigvals / (a * self.eigvals + 1.0 - a)

    def posterior_variances(self, t: int) -> np.ndarray:
        """Eigenvalues λ(1 − ᾱ)/(ᾱ λ + 1 − ᾱ) of Cov[x₀ | x_t]."""
        a = float(self.schedule.abar(t))
        return self.eigvals * (1.0 - a) / (a * self.eigvals + 1.0 - a)

    def posterior_pixel_variances(self, t: int) -> np.ndarray:
        """diag Cov[x₀ | x_t] per pixel, (d,)."""
        return (self.eigvecs ** 2) @ self.posterior_variances(t)

    @torch.no_grad()
    def __call__(self, x_t: torch.Tensor, t: int) -> ModelOutput:
        a = float(self.schedule.abar(t))
        B = x_t.shape[0]
        xt = x_t.reshape(B, -1).double()
        U, mu = self._U.to(x_t.device), self._mu.to(x_t.device)
        g = torch.from_numpy(self.shrink(t)).to(x_t.device)
        x0 = mu + ((xt - np.sqrt(a) * mu) @ U * g) @ U.T
        eps = (xt - np.sqrt(a) * x0) / np.sqrt(1.0 - a)
        eps = eps.reshape(x_t.shape).to(x_t.dtype)
        v = torch.full_like(eps, self.v) if self.learned_variance and self.v is not None else None
        return ModelOutput(eps, v)
