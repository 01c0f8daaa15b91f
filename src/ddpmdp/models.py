"""One model protocol for every ε-prediction network.

An adapter maps (x_t, node t) to ε̂ and, for learned-variance models, the
interpolation fraction v ∈ [0, 1] per pixel (``method.md`` §2.2: log σ² =
v·log β_{t,s} + (1 − v)·log β̃_{t,s}). The adapter owns the network's time-input
mapping, so callers only ever speak in nodes.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable, Literal, Protocol, runtime_checkable

import numpy as np
import torch

from .errors import DdpmdpError, require
from .schedules import Schedule

__all__ = [
    "ModelOutput",
    "DiffusionModel",
    "TorchModelAdapter",
    "GaussianDataModel",
    "TimeInput",
    "state_dict_hash",
]

TimeInput = Literal["iddpm", "ho", "node"]
"""How a node n reaches the network: ``iddpm`` → float (n − 1)·1000/T (improved-diffusion's
``rescale_timesteps=True``); ``ho`` → integer n − 1 (Ho et al., diffusers); ``node`` → n."""


@dataclass
class ModelOutput:
    """ε̂ (B, C, H, W) and, for learned-range models, v = (o + 1)/2 (B, C, H, W); else None."""

    eps: torch.Tensor
    v: torch.Tensor | None = None


@runtime_checkable
class DiffusionModel(Protocol):
    """What the table estimator, evaluator and samplers need from a model."""

    schedule: Schedule
    learned_variance: bool
    identity: str

    def __call__(self, x_t: torch.Tensor, t: int) -> ModelOutput:  # pragma: no cover - protocol
        ...

    def fingerprint(self) -> str:  # pragma: no cover - protocol
        ...


def state_dict_hash(module: torch.nn.Module) -> str:
    """sha256 over the sorted (name, dtype, shape, bytes) of a module's state_dict (16 hex digits)."""
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def network_time(schedule: Schedule, t: int, time_input: TimeInput | Callable[[int], float]) -> float:
    """The scalar the network receives at node t (see :data:`TimeInput`)."""
    if callable(time_input):
        return float(time_input(t))
    if time_input == "iddpm":
        return (t - 1) * 1000.0 / schedule.T
    if time_input == "ho":
        return float(t - 1)
    if time_input == "node":
        return float(t)
    raise DdpmdpError(f"unknown time input {time_input!r}: use iddpm, ho or node")


class TorchModelAdapter:
    """Wrap an ``nn.Module`` ``net(x, timesteps) -> (B, C or 2C, H, W)``.

    ``output='eps'``: the network returns ε̂. ``output='eps+v'``: it returns 2C
    channels, ε̂ then o ∈ [−1, 1] (improved-diffusion ``learn_sigma=True``), and
    v = (o + 1)/2. The network runs in eval mode without gradients.
    """

    def __init__(
        self,
        net: torch.nn.Module,
        schedule: Schedule,
        *,
        time_input: TimeInput | Callable[[int], float] = "iddpm",
        output: Literal["eps", "eps+v"] = "eps",
        identity: str = "",
        image_shape: tuple[int, int, int] | None = None,
        bf16: bool = False,
        channels_last: bool = False,
    ) -> None:
        require(output in ("eps", "eps+v"), f"output must be 'eps' or 'eps+v', got {output!r}")
        self.net = net.eval()
        self.schedule = schedule
        self.time_input = time_input
        self.output = output
        self.learned_variance = output == "eps+v"
        self.identity = identity or type(net).__name__
        self.image_shape = image_shape
        self.bf16 = bf16
        self.channels_last = channels_last
        self.dtype = torch.float32
        if channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        self._fingerprint: str | None = None

    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = state_dict_hash(self.net)
        return self._fingerprint

    def to_dtype(self, dtype: torch.dtype) -> "TorchModelAdapter":
        """Run the network in ``dtype`` (float32 by default): inputs are cast to it and ε̂, v come
        back in it. float64 makes printed digits independent of the CPU's summation order."""
        self.net, self.dtype, self._fingerprint = self.net.to(dtype), dtype, None
        return self

    @torch.no_grad()
    def __call__(self, x_t: torch.Tensor, t: int) -> ModelOutput:
        tt = torch.full((x_t.shape[0],), network_time(self.schedule, t, self.time_input),
                        device=x_t.device, dtype=self.dtype)
        x_in = x_t.to(self.dtype)
        x_in = x_in.contiguous(memory_format=torch.channels_last) if self.channels_last else x_in
        with torch.autocast(device_type=x_t.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            out = self.net(x_in, tt)
        if hasattr(out, "sample"):  # diffusers UNet2DOutput
            out = out.sample
        C = x_t.shape[1]
        want = 2 * C if self.learned_variance else C
        if out.shape[1] != want:
            raise DdpmdpError(
                f"the network returned {out.shape[1]} channels for {C}-channel images; "
                f"output={self.output!r} expects {want}"
                + (" (is this a fixed-variance model? use --output eps)" if self.learned_variance else
                   " (is this a learned-variance model? use --output eps+v)")
            )
        out = out.to(self.dtype)
        if self.learned_variance:
            return ModelOutput(out[:, :C], (out[:, C:] + 1.0) * 0.5)
        return ModelOutput(out, None)


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
        self.image_shape = self.shape
        self.mean, self.cov, self.eigvals, self.eigvecs = mean, cov, lam, U
        self.schedule = schedule
        self.v = v
        self.learned_variance = v is not None
        self.identity = identity
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
        v = torch.full_like(eps, self.v) if self.learned_variance else None
        return ModelOutput(eps, v)
