"""Sampling along any inference path 0 = t₀ < … < t_K = T.

* :func:`sample_ancestral` — p_θ(x_s | x_t) = N(c_{t,s}·x̂₀ + e_{t,s}·x_t, σ²_{t,s}) with any
  variance rule of :mod:`ddpmdp.variances` (per pixel for ``learned_range``).
* :func:`sample_ddim` — DDIM with η: x_s = √ᾱ_s·x̂₀ + √(1 − ᾱ_s − σ²)·ε̂ + σ·z,
  σ² = η²·β̃_{t,s}; ε̂ is recomputed from the (clipped) x̂₀. Its steps are the one deterministic
  step of :mod:`ddpmdp.ddim` (plus the noise term when η > 0), on float64 states.

Both return the decoder mean x̂₀(x_{t₁}, t₁) **without noise** at the last edge (the ddpmdp
decoder convention) and share the clip flag with the table and the evaluator. Noise is keyed
by (seed, sample index, step position k), k = 0 for x_T and k = 1..K−1 for the steps: two
strides with the same budget K therefore see the same Gaussian vectors, as in the paper's
sample figures.
"""
from __future__ import annotations

import math
from typing import Callable, Literal

import numpy as np
import torch

from ddpmdp.ddim import STATE_DTYPE, ddim_step, denoise
from ddpmdp.elbo_terms import predict_x0
from ddpmdp.errors import require
from ddpmdp.strides import validate_path
from ddpmdp.models.adapter import DiffusionModel, check_image_shape
from ddpmdp.noise import STREAM_SAMPLE, keyed_normal
from ddpmdp.inference_schedule import SamplerSpec, as_schedule, check_schedule_identity, resolve_sampler
from ddpmdp.variances import NodeStats, VarianceRule, get_rule, resolve_rule

__all__ = ["sample_ancestral", "sample_ddim", "sample", "to_uint8"]


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """x ∈ [−1, 1] (B, C, H, W) → uint8 pixels round((x + 1)·127.5), clipped to 0..255."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu().numpy()


def _walk(model: DiffusionModel, nodes, n: int, shape: tuple[int, int, int], seed: int, device, offset: int,
          on_step: Callable[[], None] | None, step, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The loop both samplers share: x_T from the keyed noise of step 0 (in ``dtype``), then for each
    edge t → s one forward pass and ``step(x, out, t, s, z)`` (``z()`` draws the keyed noise of this
    step), which returns x_s, or x̂₀ without noise when s = 0."""
    nodes = validate_path(nodes, model.schedule.T)
    require(n >= 1, f"number of samples must be >= 1, got {n}")
    idx = torch.arange(offset, offset + n, dtype=torch.int64, device=device)
    x = keyed_normal(seed, idx, 0, shape, stream=STREAM_SAMPLE, device=device).to(dtype)
    down = nodes[::-1]
    for k in range(len(down) - 1):
        t, s = int(down[k]), int(down[k + 1])
        out = model(x, t)
        if on_step is not None:
            on_step()
        x = step(x, out, t, s, lambda k=k: keyed_normal(seed, idx, k + 1, shape, stream=STREAM_SAMPLE,
                                                         device=device))
        if s == 0:
            return x
    raise AssertionError("unreachable: a validated path ends at node 0")


@torch.no_grad()
def sample_ancestral(model: DiffusionModel, nodes, n: int, shape: tuple[int, int, int], *,
                     variance: VarianceRule | None = None, clip: bool = True, seed: int = 0,
                     device: str | torch.device = "cpu", index_offset: int = 0,
                     on_step: Callable[[], None] | None = None) -> torch.Tensor:
    """Ancestral sampling along ``nodes``; returns x̂₀ float32 (n, C, H, W) in model space. ``nodes``
    may be an :class:`~ddpmdp.inference_schedule.InferenceSchedule` with per-edge variances: each
    edge then uses its recorded σ² (or the network's v on a learned-range edge). Other edges use
    ``variance``, else the model's own rule (:func:`ddpmdp.variances.resolve_rule`), with the σ² of
    its registry entry: std = √σ² for a scalar rule, exp(½ log σ²) per pixel for ``learned_range``."""
    check_schedule_identity(nodes, model=model, sampler="ancestral")
    sch = as_schedule(nodes)
    variance = resolve_rule(variance, model)
    if not sch.has_variances:
        require(get_rule(variance).cells == "summed", f"variance rule {variance} needs the per-edge σ² of a "
                "solved schedule (dp:SOLVED.json:K)")
    check_image_shape(model, shape, "the requested sample shape")
    sched = model.schedule

    def step(x, out, t, s, z):
        x0_hat = predict_x0(sched, x, t, out.eps, clip)
        if s == 0:
            return x0_hat
        c, e = sched.posterior_coefficients(t, s)
        _, rule, sigma2 = sch.edge(t)
        if sigma2 is not None:
            return float(c) * x0_hat + float(e) * x + math.sqrt(sigma2) * z()
        spec, q = get_rule(rule or variance), sched.stride(t, s)
        node = NodeStats(t=t, abar=float(sched.abar(t)), v=out.v)
        std = math.sqrt(float(spec.sigma2(q, node))) if spec.scalar else torch.exp(0.5 * spec.log_sigma2(q, node))
        return float(c) * x0_hat + float(e) * x + std * z()

    return _walk(model, sch.nodes, n, shape, seed, device, index_offset, on_step, step)


@torch.no_grad()
def sample_ddim(model: DiffusionModel, nodes, n: int, shape: tuple[int, int, int], *, eta: float = 0.0,
                clip: bool = True, seed: int = 0, device: str | torch.device = "cpu",
                index_offset: int = 0, on_step: Callable[[], None] | None = None) -> torch.Tensor:
    """DDIM(η) along ``nodes`` (η = 0: deterministic); returns x̂₀ (n, C, H, W), float32 (float64 for a
    network that computes in float64). Each step is :func:`ddpmdp.ddim.ddim_step` (the deterministic
    step Φ of ``method.md`` §13.1, plus σ·z with σ² = η²·β̃_{t,s} when η > 0) on float64 states
    (:data:`ddpmdp.ddim.STATE_DTYPE`; the network sees them cast to its dtype), so that η = 0
    reproduces the teacher and student walks of :mod:`ddpmdp.trajectory` bit for bit."""
    check_schedule_identity(nodes, model=model, sampler=SamplerSpec("ddim", eta, clip))
    require(eta >= 0, f"eta must be >= 0, got {eta}")
    check_image_shape(model, shape, "the requested sample shape")
    sched = model.schedule

    def step(x, out, t, s, z):
        x0_hat, eps_tilde = denoise(sched, x, t, out.eps, clip)
        var = eta ** 2 * float(sched.beta_tilde(t, s)) if s > 0 else 0.0
        x = ddim_step(sched, x0_hat, eps_tilde, s, sigma2=var)  # x̂₀ when s = 0
        return x + math.sqrt(var) * z() if var > 0 else x

    x = _walk(model, as_schedule(nodes).nodes, n, shape, seed, device, index_offset, on_step, step,
              dtype=STATE_DTYPE)
    return x if model.numerics.dtype == "float64" else x.float()


def sample(model: DiffusionModel, nodes, n: int, shape: tuple[int, int, int], *,
           method: Literal["ancestral", "ddim"] | None = None, variance: VarianceRule | None = None,
           eta: float = 0.0, clip: bool | None = None, seed: int = 0, device: str | torch.device = "cpu",
           batch_size: int = 64, progress: bool = False, allow_other_sampler: bool = False) -> np.ndarray:
    """n samples as uint8 (n, C, H, W), generated in batches; sample i always uses the noise keys of
    index i, so the result does not depend on the batch size. ``method``/``clip`` None: the sampler
    and clip flag the schedule was solved for (a trajectory schedule: DDIM η = 0; an ELBO schedule or
    plain nodes: ancestral, clip on); a sampler the schedule was not solved for is refused unless
    ``allow_other_sampler`` (:func:`~ddpmdp.inference_schedule.resolve_sampler`). ``variance``
    (ancestral): a rule name, else the model's own (``learned_range`` for a learned-variance model)."""
    require(method in (None, "ancestral", "ddim"), f"unknown sampler {method!r}: use ancestral or ddim")
    spec = resolve_sampler(nodes, method, eta, clip)
    eta, clip = spec.eta, bool(spec.clip)
    if allow_other_sampler:
        nodes = as_schedule(nodes).for_other_sampler()
    check_schedule_identity(nodes, model=model, sampler=spec)
    if spec.kind == "ancestral":
        variance = resolve_rule(variance, model)  # refused before any batch
    from ddpmdp.progress import progress_bar

    outs = []
    K = as_schedule(nodes).K
    bar = progress_bar(-(-n // batch_size) * K, batch_size, progress, "sample")
    for lo in range(0, n, batch_size):
        m = min(batch_size, n - lo)
        if spec.kind == "ancestral":
            x = sample_ancestral(model, nodes, m, shape, variance=variance, clip=clip, seed=seed, device=device,
                                 index_offset=lo, on_step=bar.update)
        else:
            x = sample_ddim(model, as_schedule(nodes).nodes, m, shape, eta=eta, clip=clip, seed=seed, device=device, index_offset=lo,
                            on_step=bar.update)
        outs.append(to_uint8(x))
    bar.close()
    return np.concatenate(outs)
