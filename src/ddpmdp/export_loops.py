"""The sampling loops :mod:`ddpmdp.export` prints, as real functions.

``ddpmdp export FILE:K --to diffusers`` for a deterministic (DDIM η = 0) schedule prints a snippet
whose loop is the source of :func:`diffusers_ddim_euler`, read with :func:`inspect.getsource`: the
function the tests run against :func:`ddpmdp.sampling.sample_ddim` is the code users copy. It
imports nothing from ddpmdp and only torch from outside diffusers.

Why it reproduces DDIM (``method.md`` §13.1): in y = x/√ᾱ with σ = √((1 − ᾱ)/ᾱ), one DDIM (η = 0)
step t → s is y_s = x̂₀ + σ_s·ε̃ with ε̃ = (y_t − x̂₀)/σ_t, which is Euler's step
y_s = y_t + (σ_s − σ_t)·(y_t − x̂₀)/σ_t of ``EulerDiscreteScheduler.step`` when the model output it
is given is ε̃ — the ε recomputed from the (clipped) x̂₀, as improved-diffusion's ``ddim_sample``
does. Without clipping ε̃ is the network's ε. The last σ is 0, so the last step returns x̂₀: the
ddpmdp decoder convention. DDIM starts from x_T = z, i.e. y_T = √(σ_T² + 1)·z (diffusers'
``init_noise_sigma`` is σ_T for the default spacing, which is k-diffusion's variance-exploding
approximation of the same start).
"""
from __future__ import annotations

import inspect
from typing import Any

__all__ = ["diffusers_ddim_euler", "loop_source"]


def diffusers_ddim_euler(unet: Any, scheduler: Any, z: Any, clip: bool = True, prediction_type: str = "epsilon"):
    """DDIM (eta = 0) along scheduler.timesteps with diffusers' EulerDiscreteScheduler.

    unet: a diffusers UNet2DModel (its first C output channels are used); scheduler: an
    EulerDiscreteScheduler (prediction_type "epsilon", use_karras_sigmas False) after
    set_timesteps(timesteps=...); z: the initial noise x_T, shape (N, C, H, W); clip: clip x0_hat
    to [-1, 1]; prediction_type: what the UNet predicts ("epsilon", "v_prediction" or "sample").
    Returns x0_hat in [-1, 1] if clip (the sample in the model's data space).
    """
    import torch

    x = z * (scheduler.sigmas[0] ** 2 + 1) ** 0.5  # DDIM's x_T = z, in Euler's y = x / sqrt(abar)
    for t in scheduler.timesteps:
        x_in = scheduler.scale_model_input(x, t)  # y / sqrt(sigma^2 + 1): the DDPM latent x_t
        sigma = scheduler.sigmas[scheduler.step_index]
        with torch.no_grad():
            out = unet(x_in, t).sample[:, : x.shape[1]]  # a learned-variance UNet's extra channels are unused
        if prediction_type == "epsilon":
            x0 = x - sigma * out
        elif prediction_type == "v_prediction":
            x0 = x / (sigma**2 + 1) - sigma / (sigma**2 + 1) ** 0.5 * out
        else:
            x0 = out
        if clip:
            x0 = x0.clamp(-1, 1)
        eps = (x - x0) / sigma  # the eps recomputed from the clipped x0_hat, as DDIM does
        x = scheduler.step(eps, t, x).prev_sample  # Euler: x + (sigma_next - sigma) * eps
    return x


def loop_source(fn=diffusers_ddim_euler) -> str:
    """The source of ``fn`` as printed in an export snippet (no ``from __future__``, no typing
    imports needed: the annotations are ``Any``, written out as comments here)."""
    src = inspect.getsource(fn)
    return src.replace("unet: Any, scheduler: Any, z: Any, clip: bool = True, prediction_type: str = \"epsilon\"",
                       "unet, scheduler, z, clip=True, prediction_type=\"epsilon\"")
