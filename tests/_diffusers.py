"""Tiny random diffusers folders shared by the diffusers tests (a few thousand parameters)."""
from __future__ import annotations

from pathlib import Path

import torch


def tiny_unet(size: int = 8, channels: int = 3, learned: bool = False, seed: int = 0,
              attention: bool = True):
    """A random ``UNet2DModel`` with non-zero weights everywhere (diffusers zero-inits nothing we rely on)."""
    from diffusers import UNet2DModel

    torch.manual_seed(seed)
    net = UNet2DModel(sample_size=size, in_channels=channels, out_channels=channels * (2 if learned else 1),
                      block_out_channels=(4, 8), layers_per_block=1, norm_num_groups=4, attention_head_dim=4,
                      down_block_types=("DownBlock2D", "AttnDownBlock2D" if attention else "DownBlock2D"),
                      up_block_types=("AttnUpBlock2D" if attention else "UpBlock2D", "UpBlock2D"))
    with torch.no_grad():
        g = torch.Generator().manual_seed(seed + 1)
        for p in net.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return net.eval()


def save_folder(path: Path, net, *, T: int = 50, pipeline: bool = False, safe: bool = True, **scheduler) -> Path:
    """``net`` plus a ``DDPMScheduler`` config (linear β scaled for T unless given) saved to ``path``."""
    from diffusers import DDPMScheduler

    kw = dict(num_train_timesteps=T, beta_start=1e-4 * 1000 / T, beta_end=0.02 * 1000 / T)
    kw.update(scheduler)
    sched = DDPMScheduler(**kw)
    if pipeline:
        from diffusers import DDPMPipeline

        DDPMPipeline(unet=net, scheduler=sched).save_pretrained(path, safe_serialization=safe)
    else:
        net.save_pretrained(path, safe_serialization=safe)
        sched.save_pretrained(path)
    return path
