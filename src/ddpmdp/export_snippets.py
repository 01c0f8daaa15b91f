"""The code snippets ``ddpmdp export`` prints (:mod:`ddpmdp.export`), one builder per target and
sampler: diffusers' ``DDPMScheduler`` (ancestral) or ``EulerDiscreteScheduler`` (DDIM η = 0, its loop
the source of :func:`ddpmdp.export_loops.diffusers_ddim_euler`), improved-diffusion's
``p_sample_loop``/``ddim_sample_loop``, k-diffusion's ``sample_euler_ancestral``/``sample_euler``.
Plain text builders: no torch, no diffusers."""
from __future__ import annotations

import json

__all__ = ["diffusers_ddpm_snippet", "iddpm_snippet", "k_diffusion_snippet", "diffusers_euler_snippet",
           "k_diffusion_euler_snippet", "iddpm_ddim_snippet"]


def diffusers_ddpm_snippet(ts: list[int], rule: str | None, model_dir: str | None, pipeline: bool) -> str:
    d = json.dumps(model_dir or "path/to/diffusers-folder")
    sub_u, sub_s = (', subfolder="unet"', ', subfolder="scheduler"') if pipeline else ("", "")
    vt = f'variance_type="{rule}", ' if rule else ""
    return f"""import torch
from diffusers import DDPMScheduler, UNet2DModel

timesteps = {ts}
unet = UNet2DModel.from_pretrained({d}{sub_u}).eval()
scheduler = DDPMScheduler.from_pretrained({d}{sub_s}, {vt}clip_sample=True, thresholding=False)
scheduler.set_timesteps(timesteps=timesteps)
generator = torch.Generator().manual_seed(0)
size = unet.config.sample_size
x = torch.randn((16, unet.config.in_channels, size, size), generator=generator)
for t in scheduler.timesteps:
    with torch.no_grad():
        model_output = unet(x, t).sample
    out = scheduler.step(model_output, t, x, generator=generator)
    # ddpmdp's decoder: the last step returns x0_hat without noise
    x = out.pred_original_sample if t == scheduler.timesteps[-1] else out.prev_sample
images = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
"""


def _iddpm_spaced_diffusion(use: list[int], T: int, noise_schedule: str | None, var: str, note: str = "") -> str:
    """The improved-diffusion imports and the ``SpacedDiffusion`` over ``use`` both snippets start with
    (``var``: a ``ModelVarType`` member; ``note``: a comment after it)."""
    name = (noise_schedule or "").partition(":")[0] or "linear"
    kind = name if name in ("linear", "cosine") else "linear  # use your model's beta schedule"
    return f"""from improved_diffusion import gaussian_diffusion as gd
from improved_diffusion.respace import SpacedDiffusion

use_timesteps = {use}
diffusion = SpacedDiffusion(
    use_timesteps=use_timesteps,
    betas=gd.get_named_beta_schedule("{kind}", {T}),
    model_mean_type=gd.ModelMeanType.EPSILON,
    model_var_type=gd.ModelVarType.{var},{f"  # {note}" if note else ""}
    loss_type=gd.LossType.MSE,
    rescale_timesteps=True,  # as the model was trained (improved-diffusion's releases: True)
)
"""


def iddpm_snippet(use: list[int], rule: str | None, T: int, noise_schedule: str | None) -> str:
    var = {"fixed_small": "FIXED_SMALL", "fixed_large": "FIXED_LARGE", "learned_range": "LEARNED_RANGE"}.get(rule or "")
    return _iddpm_spaced_diffusion(use, T, noise_schedule, var or "LEARNED_RANGE",
                                   "" if var else "set your model's variance type") + (
        "samples = diffusion.p_sample_loop(model, (16, 3, 32, 32), clip_denoised=True)  # your model's (C, H, W)\n")


def k_diffusion_snippet(sigmas: list[float]) -> str:
    return f"""import torch
import k_diffusion as K

sigmas = torch.tensor({sigmas}, dtype=torch.float64)
# model_wrap = K.external.OpenAIDenoiser(model, diffusion, quantize=True)   # improved-diffusion
# model_wrap = K.external.DiscreteEpsDDPMDenoiser(unet_eps, alphas_cumprod, quantize=True)
x = torch.randn((16, 3, 32, 32)) * sigmas[0]  # your model's (C, H, W)
samples = K.sampling.sample_euler_ancestral(model_wrap, x, sigmas.float())
"""


def diffusers_euler_snippet(ts: list[int], clip: bool, model_dir: str | None, pipeline: bool) -> str:
    from ddpmdp.export_loops import loop_source

    d = json.dumps(model_dir or "path/to/diffusers-folder")
    sub_u, sub_s = (', subfolder="unet"', ', subfolder="scheduler"') if pipeline else ("", "")
    return f"""import torch
from diffusers import EulerDiscreteScheduler, UNet2DModel


{loop_source()}

timesteps = {ts}
unet = UNet2DModel.from_pretrained({d}{sub_u}).eval()
config = EulerDiscreteScheduler.load_config({d}{sub_s})
prediction_type = config.get("prediction_type", "epsilon")  # what the UNet predicts
scheduler = EulerDiscreteScheduler.from_config(config, prediction_type="epsilon", use_karras_sigmas=False,
                                               interpolation_type="linear", final_sigmas_type="zero")
scheduler.set_timesteps(timesteps=timesteps)
generator = torch.Generator().manual_seed(0)
size = unet.config.sample_size
z = torch.randn((16, unet.config.in_channels, size, size), generator=generator)
x = diffusers_ddim_euler(unet, scheduler, z, clip={clip}, prediction_type=prediction_type)
images = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
"""


def k_diffusion_euler_snippet(sigmas: list[float], clip: bool) -> str:
    return f"""import torch
import k_diffusion as K

sigmas = torch.tensor({sigmas}, dtype=torch.float64)
# model_wrap = K.external.OpenAIDenoiser(model, diffusion, quantize=True)   # improved-diffusion
# model_wrap = K.external.DiscreteEpsDDPMDenoiser(unet_eps, alphas_cumprod, quantize=True)


class ClippedDenoiser(torch.nn.Module):
    \"\"\"x0_hat clipped to [-1, 1], as the schedule's DDIM steps clip it (k-diffusion's wrappers do not).\"\"\"

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x, sigma, **kwargs):
        return self.inner(x, sigma, **kwargs).clamp(-1, 1)


denoiser = {"ClippedDenoiser(model_wrap)" if clip else "model_wrap"}
z = torch.randn((16, 3, 32, 32))  # your model's (C, H, W)
x = z * (sigmas[0] ** 2 + 1) ** 0.5  # DDIM's x_T = z; sigmas[0] alone is the variance-exploding approximation
samples = K.sampling.sample_euler(denoiser, x, sigmas.float())
"""


def iddpm_ddim_snippet(use: list[int], T: int, noise_schedule: str | None, clip: bool) -> str:
    return _iddpm_spaced_diffusion(use, T, noise_schedule, "LEARNED_RANGE",
                                   "your model's variance type (DDIM uses only its eps)") + (
        f"samples = diffusion.ddim_sample_loop(model, (16, 3, 32, 32), clip_denoised={clip}, eta=0.0)  # your (C, H, W)\n")
