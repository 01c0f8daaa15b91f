"""Noise schedules as data, in the node convention.

The chain is indexed by **nodes** n = 0..T (``method.md`` §1.3): node 0 is the
data x₀ with ᾱ₀ = 1, node n ≥ 1 is the latent at paper time n. A
:class:`Schedule` holds ᾱ over the nodes in float64 and derives every stride
quantity of a jump t → s (0 ≤ s < t ≤ T) from it:

* β_{t,s}  = 1 − ᾱ_t/ᾱ_s                       (``beta``; the "fixed large" variance)
* β̃_{t,s} = β_{t,s}·(1 − ᾱ_s)/(1 − ᾱ_t)        (``beta_tilde``; posterior variance)
* SNR(t)   = ᾱ_t/(1 − ᾱ_t), SNR(0) = ∞           (``snr``)
* c_{t,s}  = √ᾱ_s·β_{t,s}/(1 − ᾱ_t)             (posterior-mean weight on x₀)
* e_{t,s}  = √(ᾱ_t/ᾱ_s)·(1 − ᾱ_s)/(1 − ᾱ_t)     (posterior-mean weight on x_t)

:func:`stride_quantities` is the one implementation of β, β̃ and c² (numpy or torch); the
schedule's methods, the table rows (:mod:`ddpmdp.elbo_terms`) and the rescoring grid
(:mod:`ddpmdp.rescore`) all call it. Conversions to other index conventions are explicit
functions at the bottom.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ddpmdp.errors import DdpmdpError, require

__all__ = [
    "Schedule",
    "Stride",
    "stride_quantities",
    "linear_schedule",
    "cosine_schedule",
    "parse_schedule",
    "node_to_iddpm_index",
    "iddpm_index_to_node",
    "node_to_diffusers_timestep",
    "diffusers_timestep_to_node",
]


class Stride(NamedTuple):
    """β_{t,s}, β̃_{t,s} and c²_{t,s} of jumps t → s, each shaped like the broadcast of ᾱ_t and ᾱ_s."""

    beta: Any
    beta_tilde: Any
    c2: Any


def stride_quantities(abar_t, abar_s) -> Stride:
    """The stride quantities of ``method.md`` §1.4 from ᾱ_t and ᾱ_s (0 ≤ s < t):

    β_{t,s} = 1 − ᾱ_t/ᾱ_s,   β̃_{t,s} = β_{t,s}(1 − ᾱ_s)/(1 − ᾱ_t),   c²_{t,s} = ᾱ_s β²_{t,s}/(1 − ᾱ_t)².

    Floats, numpy arrays or torch tensors (float64), broadcasting; the same expressions in every
    caller, so a cell computed by the table row and by the rescoring grid sees the same floats.
    β̃_{t,0} = 0 and c²_{t,0} = 1 (up to rounding)."""
    beta = 1.0 - abar_t / abar_s
    beta_tilde = beta * (1.0 - abar_s) / (1.0 - abar_t)
    c2 = abar_s * beta ** 2 / (1.0 - abar_t) ** 2
    return Stride(beta, beta_tilde, c2)


@dataclass(frozen=True, eq=False)
class Schedule:
    """ᾱ over nodes 0..T (float64, ᾱ₀ = 1, strictly decreasing, ᾱ_T > 0).

    Build it with :func:`linear_schedule`, :func:`cosine_schedule`,
    :meth:`from_betas` or :meth:`from_alphas_cumprod`. Index arrays of nodes are
    accepted wherever a node is (numpy broadcasting applies).
    """

    alphas_cumprod: np.ndarray
    name: str = "custom"
    _hash: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        a = np.asarray(self.alphas_cumprod, dtype=np.float64)
        require(a.ndim == 1 and a.size >= 2, "a schedule needs ᾱ for nodes 0..T with T >= 1")
        require(a[0] == 1.0, f"ᾱ at node 0 (the data) must be exactly 1, got {a[0]!r}")
        require(bool(np.all(np.isfinite(a))), "ᾱ contains NaN or inf")
        require(bool(np.all(np.diff(a) < 0)), "ᾱ must be strictly decreasing over nodes 0..T")
        require(bool(a[-1] > 0), "ᾱ_T must be > 0 (cap β below 1, e.g. at 0.999)")
        a.setflags(write=False)
        object.__setattr__(self, "alphas_cumprod", a)

    # ---- constructors -------------------------------------------------
    @classmethod
    def from_betas(cls, betas: np.ndarray, name: str = "custom") -> "Schedule":
        """From β_1..β_T (length T, each in (0, 1)): ᾱ_n = ∏_{i≤n}(1 − β_i)."""
        b = np.asarray(betas, dtype=np.float64)
        require(b.ndim == 1 and b.size >= 1, "betas must be a 1-D array β_1..β_T")
        require(bool(np.all((b > 0) & (b < 1))), "every β_t must lie in (0, 1)")
        return cls(np.concatenate([[1.0], np.cumprod(1.0 - b)]), name)

    @classmethod
    def from_alphas_cumprod(cls, abar: np.ndarray, name: str = "custom") -> "Schedule":
        """From ᾱ. Length T+1 starting with 1 is taken as nodes 0..T; length T
        (improved-diffusion's ``alphas_cumprod``, ᾱ_1..ᾱ_T) gets ᾱ₀ = 1 prepended."""
        a = np.asarray(abar, dtype=np.float64)
        if a.ndim == 1 and a.size and a[0] != 1.0:
            a = np.concatenate([[1.0], a])
        return cls(a, name)

    # ---- basic quantities ----------------------------------------------
    @property
    def T(self) -> int:
        """Number of diffusion steps; nodes are 0..T."""
        return int(self.alphas_cumprod.size - 1)

    @property
    def betas(self) -> np.ndarray:
        """β_1..β_T, float64 (T,)."""
        a = self.alphas_cumprod
        return 1.0 - a[1:] / a[:-1]

    def abar(self, n) -> np.ndarray:
        """ᾱ at node(s) n."""
        return self.alphas_cumprod[np.asarray(n)]

    def snr(self, n) -> np.ndarray:
        """SNR(n) = ᾱ_n/(1 − ᾱ_n); +inf at node 0."""
        a = self.abar(n)
        with np.errstate(divide="ignore"):
            return a / (1.0 - a)

    def beta(self, t, s) -> np.ndarray:
        """β_{t,s} = 1 − ᾱ_t/ᾱ_s, the variance of q(x_t | x_s) (:func:`stride_quantities`)."""
        return self.stride(t, s).beta

    def beta_tilde(self, t, s) -> np.ndarray:
        """β̃_{t,s} = β_{t,s}(1 − ᾱ_s)/(1 − ᾱ_t), the variance of q(x_s | x_t, x₀); 0 at s = 0."""
        return self.stride(t, s).beta_tilde

    def stride(self, t, s) -> Stride:
        """β_{t,s}, β̃_{t,s} and c²_{t,s} of jumps t → s (:func:`stride_quantities`), float64."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return stride_quantities(self.abar(t), self.abar(s))

    def posterior_coefficients(self, t, s) -> tuple[np.ndarray, np.ndarray]:
        """(c_{t,s}, e_{t,s}): the mean of q(x_s | x_t, x₀) is c·x₀ + e·x_t, with
        c = √ᾱ_s·β_{t,s}/(1 − ᾱ_t) (β from :func:`stride_quantities`) and
        e = √(ᾱ_t/ᾱ_s)(1 − ᾱ_s)/(1 − ᾱ_t)."""
        at, as_ = self.abar(t), self.abar(s)
        c = np.sqrt(as_) * self.stride(t, s).beta / (1.0 - at)
        e = np.sqrt(at / as_) * (1.0 - as_) / (1.0 - at)
        return c, e

    @property
    def beta_tilde_min(self) -> float:
        """β̃_{2,1} = β₂(1 − ᾱ₁)/(1 − ᾱ₂): the smallest non-zero posterior variance
        (improved-diffusion's ``posterior_variance[1]``). Needs T ≥ 2."""
        require(self.T >= 2, "β̃_min needs T >= 2")
        return float(self.beta_tilde(2, 1))

    def fingerprint(self) -> str:
        """sha256 of the float64 ᾱ bytes (first 16 hex digits)."""
        import hashlib

        return hashlib.sha256(self.alphas_cumprod.tobytes()).hexdigest()[:16]

    def describe(self) -> str:
        """Short spec string such as ``cosine:4000``."""
        return self.name if ":" in self.name else f"{self.name}:{self.T}"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Schedule) and np.array_equal(self.alphas_cumprod, other.alphas_cumprod)

    def __hash__(self) -> int:
        return hash(self.alphas_cumprod.tobytes())


def linear_schedule(T: int) -> Schedule:
    """Ho et al.'s linear β from 1e-4·(1000/T) to 0.02·(1000/T) (improved-diffusion's scaling)."""
    require(int(T) == T and T >= 1, f"T must be a positive integer, got {T!r}")
    require(T > 20, f"the linear schedule needs T > 20 (its last β is 20/T), got T = {T}")
    scale = 1000.0 / T
    return Schedule.from_betas(np.linspace(scale * 1e-4, scale * 0.02, int(T), dtype=np.float64), f"linear:{T}")


def cosine_schedule(T: int, s: float = 0.008, max_beta: float = 0.999) -> Schedule:
    """Nichol & Dhariwal's cosine schedule: β_{i+1} = min(1 − f((i+1)/T)/f(i/T), 0.999),
    f(u) = cos²(((u + s)/(1 + s))·π/2)."""
    require(int(T) == T and T >= 1, f"T must be a positive integer, got {T!r}")

    def f(u: np.ndarray) -> np.ndarray:
        return np.cos((u + s) / (1 + s) * math.pi / 2) ** 2

    i = np.arange(int(T), dtype=np.float64)
    betas = np.minimum(1.0 - f((i + 1) / T) / f(i / T), max_beta)
    return Schedule.from_betas(betas, f"cosine:{T}")


def parse_schedule(spec: str) -> Schedule:
    """``linear:T``, ``cosine:T`` or a ``.npy`` file of ᾱ (length T+1 with ᾱ₀ = 1, or length T)."""
    name, _, arg = spec.partition(":")
    if name in ("linear", "cosine"):
        try:
            T = int(arg)
        except ValueError:
            raise DdpmdpError(f"schedule {spec!r}: expected {name}:T with an integer T, e.g. {name}:1000") from None
        return (linear_schedule if name == "linear" else cosine_schedule)(T)
    path = Path(spec)
    if path.suffix == ".npy":
        require(path.is_file(), f"schedule file {spec!r} does not exist")
        return Schedule.from_alphas_cumprod(np.load(path), f"file:{path.name}")
    raise DdpmdpError(f"unknown schedule {spec!r}: use linear:T, cosine:T or a .npy file of ᾱ")


# ---- index conventions ------------------------------------------------------
def node_to_iddpm_index(n):
    """improved-diffusion's 0-based array index i of node n ≥ 1 (i = n − 1)."""
    n = np.asarray(n)
    require(bool(np.all(n >= 1)), "node 0 (the data) has no improved-diffusion index")
    return n - 1


def iddpm_index_to_node(i):
    """Node of improved-diffusion's 0-based index i (n = i + 1)."""
    return np.asarray(i) + 1


def node_to_diffusers_timestep(n):
    """diffusers' 0-based timestep of node n ≥ 1 (timestep = n − 1)."""
    return node_to_iddpm_index(n)


def diffusers_timestep_to_node(ts):
    """Node of a diffusers 0-based timestep (n = timestep + 1)."""
    return iddpm_index_to_node(ts)
