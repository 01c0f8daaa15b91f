"""The deterministic DDIM step Φ(x_t; t → s) of ``method.md`` §13.1, written once.

For s < t, with ε̂ = ε_θ(x_t, t):

* x̂₀ = (x_t − √(1 − ᾱ_t)·ε̂)/√ᾱ_t, clipped to [−1, 1] when the sampler clips (§2.1);
* ε̃ = (x_t − √ᾱ_t·x̂₀)/√(1 − ᾱ_t), recomputed from the (clipped) x̂₀, as improved-diffusion's
  ``ddim_sample`` does;
* Φ(x_t; t → s) = √ᾱ_s·x̂₀ + √(1 − ᾱ_s)·ε̃ for s ≥ 1, and Φ(x_t; t → 0) = x̂₀.

One network evaluation at t gives (x̂₀, ε̃) (:func:`denoise`), and :func:`ddim_step` then maps
that pair to x_s for **any** s < t: the trajectory table (:mod:`ddpmdp.trajectory`) uses this to
cost every edge t → s from one evaluation, the teacher and the students walk with it
(:func:`ddim_walk`), and :func:`ddpmdp.sampling.sample_ddim` takes its steps with it (η > 0 adds
its noise term through ``sigma2``).

**Precision.** The states x_t of the deterministic walks are float64; the network receives them
cast to its own dtype (the adapter does that) and its ε̂ is promoted back to float64. Every
operation here is element-wise (a product by a Python float, a sum), so the same (x̂₀, ε̃, s)
give the same bits whatever the tensor's shape: Φ computed for a table cell equals the teacher's
own step bitwise, and C(t, s) = 0 exactly when s follows t on the teacher grid.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator

import torch

from ddpmdp.elbo_terms import predict_x0
from ddpmdp.errors import DdpmdpError
from ddpmdp.models.adapter import DiffusionModel
from ddpmdp.schedules import Schedule

__all__ = ["STATE_DTYPE", "denoise", "ddim_step", "teacher_steps", "ddim_walk"]

STATE_DTYPE = torch.float64
"""The dtype of the deterministic walks' states (teacher, students, ``sample_ddim``)."""


def denoise(schedule: Schedule, x_t: torch.Tensor, t: int, eps_hat: torch.Tensor, clip: bool
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """(x̂₀, ε̃) at node t ≥ 1 from the network's ε̂: x̂₀ by :func:`ddpmdp.elbo_terms.predict_x0`
    (clipped when ``clip``), ε̃ = (x_t − √ᾱ_t·x̂₀)/√(1 − ᾱ_t). Shapes (B, C, H, W); the dtype is
    the promotion of x_t's and ε̂'s (float64 for float64 states)."""
    x0_hat = predict_x0(schedule, x_t, t, eps_hat, clip)
    a_t = float(schedule.abar(t))
    eps_tilde = (x_t - math.sqrt(a_t) * x0_hat) / math.sqrt(1.0 - a_t)
    return x0_hat, eps_tilde


def ddim_step(schedule: Schedule, x0_hat: torch.Tensor, eps_tilde: torch.Tensor, s: int, *,
              sigma2: float = 0.0, out: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Φ = √ᾱ_s·x̂₀ + √(1 − ᾱ_s − σ²)·ε̃ (DDIM's mean for s ≥ 1; σ² = 0 is the deterministic step
    of §13.1, σ² = η²·β̃_{t,s} DDIM(η)'s mean, to which the caller adds σ·z); Φ = x̂₀ for s = 0.
    Any leading shape: a stack (k, B, C, H, W) of pairs from k nodes gives the k steps to s.
    ``out``: two buffers shaped like x̂₀ (the result and a scratch) to compute into without
    allocating; the same three roundings (two products, one sum) as without, so the same bits."""
    if s == 0:
        return x0_hat if out is None else out[0].copy_(x0_hat)
    a, b = math.sqrt(float(schedule.abar(s))), math.sqrt(max(1.0 - float(schedule.abar(s)) - sigma2, 0.0))
    if out is None:
        return a * x0_hat + b * eps_tilde
    y, scratch = out
    torch.mul(x0_hat, a, out=y)
    torch.mul(eps_tilde, b, out=scratch)
    return y.add_(scratch)


def teacher_steps(model: DiffusionModel, x_T: torch.Tensor, nodes: Iterable[int], clip: bool, *,
                  on_step: Callable[[], None] | None = None
                  ) -> Iterator[tuple[int, int, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Walk Φ from x_T down ``nodes`` (increasing, 0 … T): one network evaluation per node t > 0.
    Yields (t, s, x̂₀, ε̃, x_s) for each consecutive pair t > s, states in :data:`STATE_DTYPE`; the
    last yield has s = 0 and x_s = x̂₀. Raises :class:`DdpmdpError` naming the node where the model
    returns NaN or inf (checked when the walk ends, so there is no host sync per node)."""
    down = [int(n) for n in nodes][::-1]
    x = x_T.to(STATE_DTYPE)
    sched = model.schedule
    bad = torch.zeros(len(down), dtype=torch.bool, device=x.device)
    for k in range(len(down) - 1):
        t, s = down[k], down[k + 1]
        eps = model(x, t).eps
        bad[k] = ~torch.isfinite(eps).all()
        x0_hat, eps_tilde = denoise(sched, x, t, eps, clip)
        x = ddim_step(sched, x0_hat, eps_tilde, s)
        if on_step is not None:
            on_step()
        if s == 0 and bool(bad.any()):
            node = down[int(torch.nonzero(bad)[0])]
            raise DdpmdpError(f"the model returned NaN or inf at node t = {node} (network time input for that "
                              "node); nothing from this batch was added")
        yield t, s, x0_hat, eps_tilde, x


def ddim_walk(model: DiffusionModel, x_T: torch.Tensor, nodes: Iterable[int], clip: bool, *,
              on_step: Callable[[], None] | None = None) -> torch.Tensor:
    """x̂₀ of the K-step deterministic DDIM walk (η = 0) from x_T along ``nodes`` (0 … T), float64
    (B, C, H, W): K network evaluations. The teacher is this walk on the teacher grid."""
    x = x_T
    for *_, x in teacher_steps(model, x_T, nodes, clip, on_step=on_step):
        pass
    return x
