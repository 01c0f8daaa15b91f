"""The per-image ELBO terms of ``method.md`` §3, §4 and §5.

−ELBO(x₀) = L_prior(x₀) + Σ_i L(t_i, t_{i−1}) for a path 0 = t₀ < … < t_K = T, with

* L(t, s) = KL(q(x_s | x_t, x₀) ‖ p_θ(x_s | x_t)) for s ≥ 1, and
* L(t, 0) = −log p_θ(x₀ | x_t), the discretised-Gaussian decoder term.

One forward pass at (x_t, t) gives L(t, s) for **every** s < t (Paper §4.3): the
means differ by c_{t,s}·(x₀ − x̂₀(x_t, t)) and the network output does not depend
on s. :func:`kl_row` uses that. Every function returns **nats per image**
(summed over the d = C·H·W dimensions) as float64 tensors of shape (B, …).
"""
from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch

from ddpmdp.gaussians import discretized_gaussian_log_likelihood
from ddpmdp.schedules import Schedule
from ddpmdp.variances import VarianceRule, decoder_log_variance, decoder_variance

__all__ = ["q_sample", "predict_x0", "q_posterior", "prior_term", "kl_row", "decoder_term", "row_chunk_size",
           "kl_scalar", "decoder_nll_scalar", "edge_term"]


def q_sample(schedule: Schedule, x0: torch.Tensor, t: int | torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """x_t = √ᾱ_t·x₀ + √(1 − ᾱ_t)·ε, a draw from q(x_t | x₀). Shapes (B, C, H, W).

    ``t``: one node for the batch, or an int64 tensor (B,) with a node per image (training).
    The coefficients are computed in float64 and rounded to x₀'s dtype in both cases."""
    if isinstance(t, torch.Tensor):
        abar = abar_tensor(schedule, "cpu")[t.cpu()]
        a = abar.sqrt().to(x0.dtype).to(x0.device).view(-1, *([1] * (x0.ndim - 1)))
        b = (1.0 - abar).sqrt().to(x0.dtype).to(x0.device).view(-1, *([1] * (x0.ndim - 1)))
        return a * x0 + b * eps
    a_t = float(schedule.abar(t))
    return math.sqrt(a_t) * x0 + math.sqrt(1.0 - a_t) * eps


def predict_x0(schedule: Schedule, x_t: torch.Tensor, t: int, eps_hat: torch.Tensor, clip: bool) -> torch.Tensor:
    """x̂₀ = (x_t − √(1 − ᾱ_t)·ε̂)/√ᾱ_t, clipped to [−1, 1] when ``clip`` (``method.md`` §2.1)."""
    a = float(schedule.abar(t))
    x0_hat = (x_t - math.sqrt(1.0 - a) * eps_hat) / math.sqrt(a)
    return x0_hat.clamp(-1.0, 1.0) if clip else x0_hat


def q_posterior(schedule: Schedule, x0: torch.Tensor, x_t: torch.Tensor, t: int, s: int) -> tuple[torch.Tensor, float]:
    """Mean c_{t,s}·x₀ + e_{t,s}·x_t and variance β̃_{t,s} of q(x_s | x_t, x₀), 0 ≤ s < t."""
    c, e = schedule.posterior_coefficients(t, s)
    return float(c) * x0 + float(e) * x_t, float(schedule.beta_tilde(t, s))


def prior_term(schedule: Schedule, x0: torch.Tensor) -> torch.Tensor:
    """L_prior = KL(q(x_T | x₀) ‖ N(0, I)) = ½ Σ_j [ᾱ_T x₀ⱼ² − ᾱ_T − log(1 − ᾱ_T)], (B,) float64 nats."""
    a = float(schedule.abar(schedule.T))
    d = x0[0].numel()
    sq = x0.double().pow(2).flatten(1).sum(1)
    return 0.5 * (a * sq - d * (a + math.log1p(-a)))


def row_chunk_size(batch: int, dims: int, budget_elements: int = 1 << 22) -> int:
    """How many s to process at once in the learned-range row so that a (B, S, d) tile
    holds at most ``budget_elements`` floats (16 MiB in float32 by default)."""
    return max(1, budget_elements // max(1, batch * dims))


def kl_row(schedule: Schedule, x0: torch.Tensor, x0_hat: torch.Tensor, t: int, s_nodes: np.ndarray | torch.Tensor,
           rule: VarianceRule, v: torch.Tensor | None = None, *, chunk: int | None = None,
           method: Literal["auto", "direct", "chebyshev"] = "auto") -> torch.Tensor:
    """L(t, s) for every s in ``s_nodes`` (each 1 ≤ s < t) from one forward pass at t.

    Scalar rules (``method.md`` §5.2), with r = β̃_{t,s}/σ²_{t,s} and M = ‖x₀ − x̂₀‖²::

        L(t, s) = (d/2)(r − 1 − log r) + c²_{t,s}/(2σ²_{t,s})·M

    ``learned_range`` (§5.3), with ℓ = log((1 − ᾱ_t)/(1 − ᾱ_s)), Δ = SNR(s) − SNR(t), e = x₀ − x̂₀::

        L(t, s) = ½ Σ_j [v_j ℓ + e^{−v_j ℓ}(1 + Δ e_j²) − 1]

    evaluated either directly, ½ Σ_j [(expm1(−v_j ℓ) + v_j ℓ) + (1 + expm1(−v_j ℓ)) Δ e_j²] on
    float32 tiles of (B, S_chunk, d) — O(B·S·d) exponentials — or through a Chebyshev expansion of
    e^{−ℓv} in v (:func:`_learned_row_chebyshev`, float64, O((B·d + S)·P)). ``method='auto'`` takes
    the expansion on the CPU when the row is long and ℓ·(v range) is within its exact range, and
    the direct tiles on a GPU (deciding needs the v range, i.e. a device-to-host read).

    x0, x0_hat, v: (B, C, H, W); s_nodes: int array or tensor (a tensor on x0's device avoids a
    host-to-device copy). Returns (B, len(s_nodes)) float64, nats per image.
    """
    B, d = x0.shape[0], x0[0].numel()
    dev = x0.device
    s_idx = torch.as_tensor(s_nodes, dtype=torch.int64, device=dev)  # no copy when already on dev
    if s_idx.numel() == 0:
        return torch.zeros(B, 0, dtype=torch.float64, device=dev)
    err = (x0 - x0_hat).flatten(1)
    at = float(schedule.abar(t))
    abar_s = abar_tensor(schedule, dev)[s_idx]  # (S,) float64, computed on the device: no host sync
    if rule in ("fixed_small", "fixed_large"):
        m = err.double().pow(2).sum(1)  # (B,)
        beta = 1.0 - at / abar_s
        c2 = abar_s * beta ** 2 / (1.0 - at) ** 2
        if rule == "fixed_small":  # σ² = β̃, r = 1
            bt = beta * (1.0 - abar_s) / (1.0 - at)
            return (c2 / (2.0 * bt))[None, :] * m[:, None]
        r = (1.0 - abar_s) / (1.0 - at)  # σ² = β, r = β̃/β
        return (0.5 * d * (r - 1.0 - torch.log(r)))[None, :] + (c2 / (2.0 * beta))[None, :] * m[:, None]
    if rule != "learned_range":
        raise ValueError(f"unknown variance rule {rule!r}")
    assert v is not None, "learned_range needs v"
    ell = math.log1p(-at) - torch.log1p(-abar_s)  # (S,) float64, ℓ = log(β_{t,s}/β̃_{t,s}) ≥ 0
    delta = abar_s / (1.0 - abar_s) - at / (1.0 - at)  # (S,) float64, Δ = SNR(s) − SNR(t)
    vf = v.flatten(1)
    e2 = err.double().pow(2)
    if method == "auto":
        method = "chebyshev" if (dev.type == "cpu" and ell.numel() > 2 * CHEB_DEGREE and
                                 float(ell.max()) * float(vf.max() - vf.min()) / 2 <= CHEB_MAX_Z) else "direct"
    if method == "chebyshev":
        return _learned_row_chebyshev(vf.double(), e2.double(), ell, delta)
    ft = torch.promote_types(vf.dtype, torch.float32)  # float32 tiles; float64 for a float64 network
    return _learned_row_direct(vf.to(ft), e2.to(ft), ell, delta, chunk or row_chunk_size(B, d))


CHEB_DEGREE = 40
"""Degree P of the Chebyshev expansion of v ↦ e^{−ℓv} in :func:`_learned_row_chebyshev`."""
CHEB_MAX_Z = 16.0
"""Largest ℓ·h (h = half-width of the batch's v range) for which degree P is exact to < 1e-15."""


def _learned_row_direct(v: torch.Tensor, e2: torch.Tensor, ell: torch.Tensor, delta: torch.Tensor,
                        chunk: int) -> torch.Tensor:
    """½ Σ_j [(expm1(−v_j ℓ) + v_j ℓ) + (1 + expm1(−v_j ℓ)) Δ e_j²] on (B, S_chunk, d) tiles in v's dtype."""
    B, S = v.shape[0], ell.numel()
    out = torch.empty(B, S, dtype=torch.float64, device=v.device)
    ell32 = ell.to(v.dtype)
    e2_sum = e2.sum(-1)[:, None, None]
    for lo in range(0, S, chunk):
        hi = min(lo + chunk, S)
        vl = v[:, None, :] * ell32[None, lo:hi, None]  # (B, S, d)
        em1 = torch.expm1(-vl)
        first = (em1 + vl).sum(-1, dtype=torch.float64)  # Σ_j expm1(−vℓ) + vℓ
        second = torch.baddbmm(e2_sum, em1, e2[:, :, None]).squeeze(-1).double()  # Σ_j e^{−vℓ} e_j²
        out[:, lo:hi] = 0.5 * (first + delta[None, lo:hi] * second)
    return out


def _learned_row_chebyshev(v: torch.Tensor, e2: torch.Tensor, ell: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """The learned-range row through a Chebyshev expansion in v, O((B·d + S)·P) instead of O(B·S·d).

    On the batch's range v ∈ [m − h, m + h], with u = (v − m)/h,
        e^{−ℓ v} = Σ_{k=0..P} c_k(ℓ) T_k(u)   (coefficients from P + 1 Chebyshev nodes; the
    truncation error is below 1e-15 relative for ℓ·h ≤ CHEB_MAX_Z). Hence with the image moments
    M_k = Σ_j T_k(u_j) and N_k = Σ_j T_k(u_j) e_j²:
        Σ_j e^{−ℓ v_j} = Σ_k c_k M_k,   Σ_j e^{−ℓ v_j} e_j² = Σ_k c_k N_k,
        L(t, s) = ½ [Σ_j e^{−ℓ v_j} − d + ℓ Σ_j v_j + Δ Σ_j e^{−ℓ v_j} e_j²]   (all float64).
    """
    P = CHEB_DEGREE
    dev = v.device
    d = v.shape[1]
    lo, hi = v.min(), v.max()
    m = (lo + hi) / 2
    h = torch.clamp((hi - lo) / 2, min=1e-6)
    u = ((v - m) / h).clamp(-1.0, 1.0)  # (B, d)
    # image moments of T_0..T_P by the three-term recurrence
    M = torch.empty(v.shape[0], P + 1, dtype=torch.float64, device=dev)
    N = torch.empty_like(M)
    t_prev, t_cur = torch.ones_like(u), u
    M[:, 0], N[:, 0] = float(d), e2.sum(1)
    M[:, 1], N[:, 1] = u.sum(1), (u * e2).sum(1)
    for k in range(2, P + 1):
        t_prev, t_cur = t_cur, 2.0 * u * t_cur - t_prev
        M[:, k], N[:, k] = t_cur.sum(1), (t_cur * e2).sum(1)
    # coefficients c_k(ℓ_s) from values at the Chebyshev nodes u_i = cos θ_i
    theta = (torch.arange(P + 1, dtype=torch.float64, device=dev) + 0.5) * math.pi / (P + 1)
    nodes_v = m + h * torch.cos(theta)  # (P+1,)
    f = torch.exp(-ell[:, None] * nodes_v[None, :])  # (S, P+1)
    orders = torch.arange(P + 1, dtype=torch.float64, device=dev)
    basis = torch.cos(theta[:, None] * orders[None, :])  # (P+1 nodes, P+1 orders)
    c = f @ basis * (2.0 / (P + 1))
    c[:, 0] *= 0.5
    sum_exp = M @ c.T  # (B, S)
    sum_exp_e2 = N @ c.T
    vsum = v.sum(1, keepdim=True)
    return 0.5 * (sum_exp - d + ell[None, :] * vsum + delta[None, :] * sum_exp_e2)


_ABAR: dict[tuple[int, str], tuple[Schedule, torch.Tensor]] = {}


def abar_tensor(schedule: Schedule, device: torch.device | str) -> torch.Tensor:
    """ᾱ over nodes as a float64 tensor on ``device``, cached per (schedule, device)."""
    key = (id(schedule), str(device))
    hit = _ABAR.get(key)
    if hit is None or hit[0] is not schedule:
        hit = (schedule, torch.tensor(np.array(schedule.alphas_cumprod), dtype=torch.float64, device=device))
        _ABAR[key] = hit
    return hit[1]


def decoder_term(schedule: Schedule, x0: torch.Tensor, x0_hat: torch.Tensor, t: int, rule: VarianceRule,
                 v: torch.Tensor | None = None) -> torch.Tensor:
    """L(t, 0) = −Σ_j log P(x₀ⱼ | x̂₀ⱼ, σ²_dec(t)): the discretised-Gaussian decoder term with the
    ddpmdp convention (:mod:`ddpmdp.variances`). (B,) float64 nats per image."""
    if rule in ("fixed_small", "fixed_large"):  # scalar: the one implementation the candidate sums use
        return decoder_nll_scalar(x0, x0_hat, [decoder_variance(schedule, t, rule)])[:, 0]
    logvar = decoder_log_variance(schedule, t, rule, v)
    log_scale = 0.5 * logvar if torch.is_tensor(logvar) else torch.full_like(x0_hat, 0.5 * logvar)
    ll = discretized_gaussian_log_likelihood(x0.double(), x0_hat.double(), log_scale.double())
    return -ll.flatten(1).sum(1)


def kl_scalar(schedule: Schedule, x0: torch.Tensor, x0_hat: torch.Tensor, t: int, s: int, sigma2: float) -> torch.Tensor:
    """L(t, s) for 1 ≤ s < t with a given scalar σ² (``method.md`` §5.2), r = β̃_{t,s}/σ²:
    (d/2)(r − 1 − log r) + c²_{t,s}/(2σ²)·‖x₀ − x̂₀‖². (B,) float64 nats per image."""
    d = x0[0].numel()
    c, _ = schedule.posterior_coefficients(t, s)
    r = float(schedule.beta_tilde(t, s)) / sigma2
    m = (x0 - x0_hat).double().pow(2).flatten(1).sum(1)
    return 0.5 * d * (r - 1.0 - math.log(r)) + float(c) ** 2 / (2.0 * sigma2) * m


def decoder_nll_scalar(x0: torch.Tensor, x0_hat: torch.Tensor, sigma2s) -> torch.Tensor:
    """−Σ_j log P(x₀ⱼ | x̂₀ⱼ, σ²) for each scalar σ² in ``sigma2s`` (the decoder candidates): the
    discretised Gaussian of :func:`ddpmdp.gaussians.discretized_gaussian_log_likelihood` (same CDF
    approximation and 1e-12 clamp) with one log per pixel instead of three. (B, len(sigma2s)) float64."""
    x = x0.flatten(1).double()
    centered = x - x0_hat.flatten(1).double()
    lo_edge, hi_edge = x < -0.999, x > 0.999
    plus, minus = centered + 1.0 / 255.0, centered - 1.0 / 255.0
    out = torch.empty(x.shape[0], len(sigma2s), dtype=torch.float64, device=x.device)
    for i, v in enumerate(np.asarray(sigma2s, dtype=np.float64).ravel()):
        # 1/σ as exp(−½·log σ²), the same float as discretized_gaussian_log_likelihood's inv_std
        inv = torch.exp(-torch.full((1,), 0.5 * math.log(float(v)), dtype=torch.float64, device=x.device))
        cdf_p, cdf_m = _approx_cdf_(plus * inv), _approx_cdf_(minus * inv)
        prob = torch.where(lo_edge, cdf_p, torch.where(hi_edge, 1.0 - cdf_m, cdf_p - cdf_m))
        out[:, i] = -torch.log(prob.clamp_(min=1e-12)).sum(1, dtype=torch.float64)
    return out


def _approx_cdf_(z: torch.Tensor) -> torch.Tensor:
    """½(1 + tanh(√(2/π)(z + 0.044715 z³))) with in-place steps, bitwise equal to
    :func:`ddpmdp.gaussians.approx_standard_normal_cdf` (z³ = z·z·z as torch's pow computes it)."""
    a = z * z
    return a.mul_(z).mul_(0.044715).add_(z).mul_(math.sqrt(2.0 / math.pi)).tanh_().add_(1.0).mul_(0.5)


def edge_term(schedule: Schedule, x0: torch.Tensor, x0_hat: torch.Tensor, t: int, s: int, rule: VarianceRule,
              sigma2: float | None = None, v: torch.Tensor | None = None) -> torch.Tensor:
    """The term of one edge t → s, (B,) float64 nats per image: with a given scalar ``sigma2`` (a
    schedule's recorded σ², any scalar rule) :func:`kl_scalar` / :func:`decoder_nll_scalar`; without
    one, ``rule``'s own variance (:func:`kl_row` / :func:`decoder_term`)."""
    if sigma2 is not None and math.isfinite(sigma2):
        return decoder_nll_scalar(x0, x0_hat, [sigma2])[:, 0] if s == 0 else kl_scalar(schedule, x0, x0_hat, t, s,
                                                                                            sigma2)
    if s == 0:
        return decoder_term(schedule, x0, x0_hat, t, rule, v)
    return kl_row(schedule, x0, x0_hat, t, np.array([s]), rule, v)[:, 0]
