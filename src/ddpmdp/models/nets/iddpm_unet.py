"""Nichol & Dhariwal's improved-diffusion UNet, state_dict-compatible with the released files.

The module tree reproduces ``openai/improved-diffusion@1bc7bbb:improved_diffusion/unet.py``
key for key (``checkpoints.md`` §2.4), so ``cifar10_uncond_50M_500K.pt`` and friends
load with ``load_state_dict(strict=True)``. Forward semantics (``checkpoints.md`` §2.5):

* time embedding: e(τ) = [cos(τ·f_i), sin(τ·f_i)], f_i = exp(−ln(10⁴)·i/half),
  i < half = model_channels/2, then Linear → SiLU → Linear to E = 4·model_channels;
  τ is the *rescaled* float time 0.25·(n − 1) for T = 4000 (``time_input="iddpm"``);
* ResBlock: h = conv(SiLU(GN(x))); (scale, shift) = Linear(SiLU(e)); h = GN(h)·(1 + scale) + shift;
  h = conv(dropout(SiLU(h))); out = skip(x) + h;
* GroupNorm: 32 groups, eps 1e-5, computed in float32;
* attention: GN, 1×1 Conv1d to 3C channels laid out **per head** as [q_h | k_h | v_h]
  (d = C/heads each), softmax(q·kᵀ/√d)·v, 1×1 Conv1d ``proj_out``, residual add;
* Downsample: 3×3 conv, stride 2, symmetric padding 1; Upsample: nearest ×2 then 3×3 conv;
* every input block's output is pushed on a stack that the output blocks pop (concat on C).

Shapes: ``forward(x: (B, C_in, H, W) float, timesteps: (B,) float) -> (B, C_out, H, W)``,
with C_out = 2·C_in (ε̂ then the variance interpolation o ∈ [−1, 1]) when ``learn_sigma``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ddpmdp.errors import DdpmdpError

__all__ = [
    "IDDPMConfig",
    "IDDPMUNet",
    "IDDPM_PRESETS",
    "get_preset",
    "timestep_embedding",
    "iddpm_state_dict_from_diffusers",
    "RELEASE_URL_PREFIX",
]

RELEASE_URL_PREFIX = "https://openaipublic.blob.core.windows.net/diffusion/march-2021/"


@dataclass(frozen=True)
class IDDPMConfig:
    """Every hyperparameter of an improved-diffusion model and its diffusion.

    Architecture fields follow ``create_model`` in improved-diffusion's ``script_util.py``;
    ``attention_resolutions`` are feature-map sizes in pixels (the README's "16,8"),
    converted to downsampling factors ds = image_size // res. Diffusion fields:
    ``diffusion_steps`` T, ``noise_schedule`` (``cosine`` or ``linear``) and
    ``rescale_timesteps`` (True → the network sees (n − 1)·1000/T).
    """

    name: str
    image_size: int
    model_channels: int
    channel_mult: tuple[int, ...]
    num_res_blocks: int
    attention_resolutions: tuple[int, ...]
    learn_sigma: bool = True
    in_channels: int = 3
    num_heads: int = 4
    num_heads_upsample: int = -1
    use_scale_shift_norm: bool = True
    dropout: float = 0.0
    diffusion_steps: int = 4000
    noise_schedule: str = "cosine"
    rescale_timesteps: bool = True
    release_files: tuple[str, ...] = ()
    description: str = ""

    # ---- derived -------------------------------------------------------
    @property
    def out_channels(self) -> int:
        """2·C_in with a learned variance (ε̂ and o), else C_in."""
        return self.in_channels * (2 if self.learn_sigma else 1)

    @property
    def attention_ds(self) -> tuple[int, ...]:
        """Downsampling factors ds = image_size // res at which attention is applied."""
        return tuple(self.image_size // int(r) for r in self.attention_resolutions)

    @property
    def variance(self) -> str:
        """``learned_range`` (learn_sigma) or ``fixed_large`` (ε-only models; Ho's sampling choice)."""
        return "learned_range" if self.learn_sigma else "fixed_large"

    @property
    def output(self) -> str:
        """The :class:`~ddpmdp.models.adapter.TorchModelAdapter` output mode: ``eps+v`` or ``eps``."""
        return "eps+v" if self.learn_sigma else "eps"

    @property
    def time_input(self) -> str:
        """``iddpm`` (float (n − 1)·1000/T) when ``rescale_timesteps``, else ``ho`` (integer n − 1)."""
        return "iddpm" if self.rescale_timesteps else "ho"

    @property
    def schedule_spec(self) -> str:
        """The schedule as a spec string, e.g. ``cosine:4000``."""
        return f"{self.noise_schedule}:{self.diffusion_steps}"

    def schedule(self):
        """The :class:`~ddpmdp.schedules.Schedule` the model was trained with."""
        from ddpmdp.schedules import parse_schedule

        return parse_schedule(self.schedule_spec)

    def with_(self, **changes: Any) -> "IDDPMConfig":
        """A copy with some fields changed (e.g. ``learn_sigma=False``)."""
        return replace(self, **changes)


_FULL_CIFAR: dict[str, Any] = dict(image_size=32, model_channels=128, channel_mult=(1, 2, 2, 2), num_res_blocks=3,
                   attention_resolutions=(16, 8), num_heads=4, learn_sigma=True, dropout=0.3,
                   diffusion_steps=4000, noise_schedule="cosine")
_FULL_IN64: dict[str, Any] = dict(image_size=64, model_channels=128, channel_mult=(1, 2, 3, 4), num_res_blocks=3,
                  attention_resolutions=(16, 8), num_heads=4, learn_sigma=True, dropout=0.0,
                  diffusion_steps=4000, noise_schedule="cosine")
# Small CPU models of the same class. Channels stay multiples of 32 (GroupNorm(32)); the
# channel count grows only at low resolution, where a parameter costs few FLOPs.
# cifar10-small: 2,829,926 parameters (ε+v head), 0.38 GFLOP per 32×32 image; one forward pass
# on a batch of 32 is ≈ 12 GFLOP (tens of ms on a 2-core AVX-512 CPU).
_SMALL_CIFAR: dict[str, Any] = dict(image_size=32, model_channels=32, channel_mult=(1, 1, 2, 4), num_res_blocks=1,
                    attention_resolutions=(8,), num_heads=2, dropout=0.1,
                    diffusion_steps=1000, noise_schedule="cosine")
# imagenet64-small: 2,951,782 parameters, 1.13 GFLOP per 64×64 image (the 64×64 level dominates).
_SMALL_IN64: dict[str, Any] = dict(image_size=64, model_channels=32, channel_mult=(1, 1, 1, 2, 4), num_res_blocks=1,
                   attention_resolutions=(8,), num_heads=2, dropout=0.1,
                   diffusion_steps=1000, noise_schedule="cosine")

IDDPM_PRESETS: dict[str, IDDPMConfig] = {
    "cifar10-hybrid": IDDPMConfig(
        "cifar10-hybrid", **_FULL_CIFAR, release_files=("cifar10_uncond_50M_500K.pt",),
        description="N&D CIFAR-10, L_hybrid (paper Table 3: 3.17 bpd at 4000 steps)"),
    "cifar10-vlb": IDDPMConfig(
        "cifar10-vlb", **_FULL_CIFAR, release_files=("cifar10_uncond_vlb_50M_500K.pt",),
        description="N&D CIFAR-10, L_vlb (paper Table 3: 2.94 bpd at 4000 steps)"),
    "imagenet64-hybrid": IDDPMConfig(
        "imagenet64-hybrid", **_FULL_IN64, release_files=("imagenet64_uncond_100M_1500K.pt",),
        description="N&D ImageNet 64 unconditional, L_hybrid, 1.5M steps (N&D: 3.57 bpd)"),
    "imagenet64-vlb": IDDPMConfig(
        "imagenet64-vlb", **_FULL_IN64, release_files=("imagenet64_uncond_vlb_100M_1500K.pt",),
        description="N&D ImageNet 64 unconditional, L_vlb, 1.5M steps (N&D: 3.53 bpd)"),
    "cifar10-small": IDDPMConfig(
        "cifar10-small", **_SMALL_CIFAR, learn_sigma=True,
        description="small CPU model, CIFAR-10 32×32, learned-range variance"),
    "cifar10-small-fixed": IDDPMConfig(
        "cifar10-small-fixed", **_SMALL_CIFAR, learn_sigma=False,
        description="small CPU model, CIFAR-10 32×32, ε only (fixed-large variance)"),
    "imagenet64-small": IDDPMConfig(
        "imagenet64-small", **_SMALL_IN64, learn_sigma=True,
        description="small CPU model, 64×64, learned-range variance"),
    "imagenet64-small-fixed": IDDPMConfig(
        "imagenet64-small-fixed", **_SMALL_IN64, learn_sigma=False,
        description="small CPU model, 64×64, ε only (fixed-large variance)"),
    "tiny": IDDPMConfig(
        "tiny", image_size=32, model_channels=32, channel_mult=(1, 2), num_res_blocks=1,
        attention_resolutions=(16,), num_heads=2, learn_sigma=True, diffusion_steps=1000,
        description="CI-sized model (757,030 parameters, 128 keys; checkpoints.md §6)"),
}
# Aliases: the hybrid and vlb files share architecture and diffusion (checkpoints.md §2.1).
_ALIASES = {"cifar10": "cifar10-hybrid", "imagenet64": "imagenet64-hybrid"}


def get_preset(name: str) -> IDDPMConfig:
    """The preset called ``name`` (see :data:`IDDPM_PRESETS`; ``cifar10`` and ``imagenet64`` alias the hybrid ones)."""
    key = _ALIASES.get(name, name)
    if key not in IDDPM_PRESETS:
        known = ", ".join(sorted([*IDDPM_PRESETS, *_ALIASES]))
        raise DdpmdpError(f"unknown improved-diffusion preset {name!r}: use one of {known}")
    return IDDPM_PRESETS[key]


# ---- building blocks ----------------------------------------------------------
def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding [cos(τ f), sin(τ f)], f_i = max_period^(−i/half), (B,) → (B, dim) float32
    (float64 for float64 timesteps).

    improved-diffusion's ``nn.timestep_embedding`` (cos first; diffusers ``flip_sin_to_cos=True,
    freq_shift=0``). An odd ``dim`` gets a zero column appended.
    """
    half = dim // 2
    dtype = torch.promote_types(timesteps.dtype, torch.float32)
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=dtype, device=timesteps.device) / half)
    args = timesteps.to(dtype)[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class GroupNorm32(nn.GroupNorm):
    """GroupNorm(32, C, eps=1e-5) evaluated in float32 (float64 inputs: float64) and cast back to the input dtype."""

    def __init__(self, channels: int) -> None:
        super().__init__(32, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.to(torch.promote_types(x.dtype, torch.float32))).type(x.dtype)


class TimestepEmbedSequential(nn.Sequential):
    """A sequence whose ResBlocks also receive the time embedding."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        for layer in self:
            x = layer(x, emb) if isinstance(layer, ResBlock) else layer(x)
        return x


class ResBlock(nn.Module):
    """Residual block with scale-shift conditioning (keys ``in_layers``, ``emb_layers``, ``out_layers``, ``skip_connection``)."""

    def __init__(self, channels: int, emb_channels: int, dropout: float, out_channels: int,
                 use_scale_shift_norm: bool = True, zero_init: bool = True) -> None:
        super().__init__()
        self.use_scale_shift_norm = use_scale_shift_norm
        self.in_layers = nn.Sequential(GroupNorm32(channels), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1))
        self.emb_layers = nn.Sequential(
            nn.SiLU(), nn.Linear(emb_channels, 2 * out_channels if use_scale_shift_norm else out_channels))
        self.out_layers = nn.Sequential(GroupNorm32(out_channels), nn.SiLU(), nn.Dropout(p=dropout),
                                        nn.Conv2d(out_channels, out_channels, 3, padding=1))
        if zero_init:
            _zero(self.out_layers[3])
        self.skip_connection: nn.Module = (nn.Identity() if out_channels == channels
                                           else nn.Conv2d(channels, out_channels, 1))

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.in_layers(x)
        emb_out = self.emb_layers(emb).type(h.dtype)[:, :, None, None]
        if self.use_scale_shift_norm:
            scale, shift = torch.chunk(emb_out, 2, dim=1)
            h = self.out_layers[0](h) * (1 + scale) + shift
            h = self.out_layers[3](self.out_layers[2](self.out_layers[1](h)))
        else:
            h = self.out_layers(h + emb_out)
        return self.skip_connection(x) + h


class AttentionBlock(nn.Module):
    """Multi-head self-attention over H·W positions; ``qkv`` rows are per head [q_h | k_h | v_h]."""

    def __init__(self, channels: int, num_heads: int, zero_init: bool = True) -> None:
        super().__init__()
        if channels % num_heads:
            raise DdpmdpError(f"attention with {channels} channels cannot be split into {num_heads} heads")
        self.num_heads = num_heads
        self.norm = GroupNorm32(channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = nn.Conv1d(channels, channels, 1)
        if zero_init:
            _zero(self.proj_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, *spatial = x.shape
        x = x.reshape(b, c, -1)
        qkv = self.qkv(self.norm(x))  # (B, 3C, L)
        d = c // self.num_heads
        qkv = qkv.reshape(b, self.num_heads, 3 * d, -1).transpose(2, 3)  # (B, heads, L, 3d)
        q, k, v = qkv.split(d, dim=-1)
        # softmax(q kᵀ/√d) v; identical to improved-diffusion's (q/d^¼)·(k/d^¼) in fp32.
        dtype, ft = q.dtype, torch.promote_types(q.dtype, torch.float32)
        h = F.scaled_dot_product_attention(q.to(ft), k.to(ft), v.to(ft)).to(dtype)  # (B, heads, L, d)
        h = h.transpose(2, 3).reshape(b, c, -1)
        return (x + self.proj_out(h)).reshape(b, c, *spatial)


class Downsample(nn.Module):
    """3×3 conv with stride 2 and symmetric padding 1 (key ``op``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Upsample(nn.Module):
    """Nearest-neighbour ×2 then a 3×3 conv (key ``conv``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


def _zero(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class IDDPMUNet(nn.Module):
    """improved-diffusion ``UNetModel`` (unconditional, 2-D, ``conv_resample=True``).

    ``zero_init=True`` zero-initialises the last conv of each ResBlock, each ``proj_out``
    and the output conv, as improved-diffusion does for training (the network then
    outputs exactly 0). ``zero_init=False`` keeps PyTorch's default init everywhere,
    which gives non-trivial outputs for random-weight smoke tests.
    """

    def __init__(self, config: IDDPMConfig, *, zero_init: bool = True) -> None:
        super().__init__()
        self.config = config
        mc, E = config.model_channels, 4 * config.model_channels
        heads_up = config.num_heads if config.num_heads_upsample == -1 else config.num_heads_upsample
        attn_ds = set(config.attention_ds)
        self.time_embed = nn.Sequential(nn.Linear(mc, E), nn.SiLU(), nn.Linear(E, E))

        def res(cin: int, cout: int) -> ResBlock:
            return ResBlock(cin, E, config.dropout, cout, config.use_scale_shift_norm, zero_init)

        self.input_blocks = nn.ModuleList([TimestepEmbedSequential(nn.Conv2d(config.in_channels, mc, 3, padding=1))])
        chans, ch, ds = [mc], mc, 1
        for level, mult in enumerate(config.channel_mult):
            for _ in range(config.num_res_blocks):
                layers: list[nn.Module] = [res(ch, mult * mc)]
                ch = mult * mc
                if ds in attn_ds:
                    layers.append(AttentionBlock(ch, config.num_heads, zero_init))
                self.input_blocks.append(TimestepEmbedSequential(*layers))
                chans.append(ch)
            if level != len(config.channel_mult) - 1:
                self.input_blocks.append(TimestepEmbedSequential(Downsample(ch)))
                chans.append(ch)
                ds *= 2
        self.middle_block = TimestepEmbedSequential(res(ch, ch), AttentionBlock(ch, config.num_heads, zero_init),
                                                    res(ch, ch))
        self.output_blocks = nn.ModuleList()
        for level, mult in list(enumerate(config.channel_mult))[::-1]:
            for i in range(config.num_res_blocks + 1):
                layers = [res(ch + chans.pop(), mc * mult)]
                ch = mc * mult
                if ds in attn_ds:
                    layers.append(AttentionBlock(ch, heads_up, zero_init))
                if level and i == config.num_res_blocks:
                    layers.append(Upsample(ch))
                    ds //= 2
                self.output_blocks.append(TimestepEmbedSequential(*layers))
        self.out = nn.Sequential(GroupNorm32(ch), nn.SiLU(), nn.Conv2d(mc, config.out_channels, 3, padding=1))
        if zero_init:
            _zero(self.out[2])

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """x: (B, C_in, H, W) float; timesteps: (B,) or scalar, the network time τ → (B, C_out, H, W)."""
        if timesteps.ndim == 0:
            timesteps = timesteps.expand(x.shape[0])
        emb = self.time_embed(timestep_embedding(timesteps, self.config.model_channels).to(x.dtype))
        hs = []
        h = x
        for block in self.input_blocks:
            h = block(h, emb)
            hs.append(h)
        h = self.middle_block(h, emb)
        for block in self.output_blocks:
            h = block(torch.cat([h, hs.pop()], dim=1), emb)
        return self.out(h)


# ---- diffusers layout → improved-diffusion layout --------------------------------
_RES_RENAME = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
               "norm2": "out_layers.0", "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}


def iddpm_state_dict_from_diffusers(sd: dict[str, torch.Tensor], config: IDDPMConfig,
                                    heads: dict[str, int] | None = None) -> dict[str, torch.Tensor]:
    """Rename a diffusers ``UNet2DModel`` state_dict configured as ``config`` to improved-diffusion keys.

    The diffusers model must be built with ``layers_per_block = num_res_blocks``,
    ``block_out_channels = model_channels·channel_mult``, attention blocks at the
    levels of ``config.attention_ds``, ``resnet_time_scale_shift="scale_shift"`` and
    ``attn_norm_num_groups=32``. Separate ``to_q/to_k/to_v`` Linear weights [C, C] are
    interleaved per head into the Conv1d ``qkv`` weight [3C, C, 1] as [q_h; k_h; v_h]
    for h = 0..heads−1 (``heads`` maps a diffusers attention prefix to its head count;
    default ``config.num_heads``). Returns a new dict; tensors are not copied.
    """
    n = config.num_res_blocks
    L = len(config.channel_mult)
    out: dict[str, torch.Tensor] = {}
    groups: dict[str, dict[str, torch.Tensor]] = {}

    def res_key(prefix: str, rest: str) -> str:
        sub, _, tail = rest.partition(".")
        if sub not in _RES_RENAME:
            raise DdpmdpError(f"unexpected diffusers ResNet key {rest!r}")
        return f"{prefix}.{_RES_RENAME[sub]}.{tail}"

    up_has_attn = [2 ** lvl in set(config.attention_ds) for lvl in range(L)]
    for key, value in sd.items():
        parts = key.split(".")
        if parts[0] == "time_embedding":
            out[f"time_embed.{0 if parts[1] == 'linear_1' else 2}.{parts[2]}"] = value
        elif parts[0] == "conv_in":
            out[f"input_blocks.0.0.{parts[1]}"] = value
        elif parts[0] == "conv_norm_out":
            out[f"out.0.{parts[1]}"] = value
        elif parts[0] == "conv_out":
            out[f"out.2.{parts[1]}"] = value
        elif parts[0] == "down_blocks":
            lvl, kind, j = int(parts[1]), parts[2], int(parts[3])
            base = 1 + lvl * (n + 1)
            rest = ".".join(parts[4:])
            if kind == "resnets":
                out[res_key(f"input_blocks.{base + j}.0", rest)] = value
            elif kind == "attentions":
                groups.setdefault(f"input_blocks.{base + j}.1", {})[rest] = value
            elif kind == "downsamplers":
                out[f"input_blocks.{base + n}.0.op.{parts[-1]}"] = value
        elif parts[0] == "mid_block":
            kind, j = parts[1], int(parts[2])
            rest = ".".join(parts[3:])
            if kind == "resnets":
                out[res_key(f"middle_block.{2 * j}", rest)] = value
            else:
                groups.setdefault("middle_block.1", {})[rest] = value
        elif parts[0] == "up_blocks":
            u, kind, j = int(parts[1]), parts[2], int(parts[3])
            base = u * (n + 1)
            rest = ".".join(parts[4:])
            if kind == "resnets":
                out[res_key(f"output_blocks.{base + j}.0", rest)] = value
            elif kind == "attentions":
                groups.setdefault(f"output_blocks.{base + j}.1", {})[rest] = value
            elif kind == "upsamplers":
                level = L - 1 - u
                idx = 2 if up_has_attn[level] else 1
                out[f"output_blocks.{base + n}.{idx}.conv.{parts[-1]}"] = value
        else:
            raise DdpmdpError(f"unexpected diffusers key {key!r}")
    for prefix, g in groups.items():
        h = (heads or {}).get(prefix, config.num_heads)
        out[f"{prefix}.norm.weight"] = g["group_norm.weight"]
        out[f"{prefix}.norm.bias"] = g["group_norm.bias"]
        for suffix in ("weight", "bias"):
            q, k, v = (g[f"to_{c}.{suffix}"] for c in "qkv")
            C = q.shape[0]
            stacked = torch.stack([t.reshape(h, C // h, *t.shape[1:]) for t in (q, k, v)], dim=1)
            qkv = stacked.reshape(3 * C, *q.shape[1:])
            out[f"{prefix}.qkv.{suffix}"] = qkv[..., None] if suffix == "weight" else qkv
            w = g[f"to_out.0.{suffix}"]
            out[f"{prefix}.proj_out.{suffix}"] = w[..., None] if suffix == "weight" else w
    return out
