"""Ho et al.'s DDPM UNet with diffusers ``UNet2DModel`` parameter names.

The module tree mirrors diffusers 0.42.1's ``UNet2DModel`` for the configurations
that Ho-style checkpoints use (``checkpoints.md`` §3), so the ``google/ddpm-cifar10-32``
weights load with ``load_state_dict(strict=True)`` after at most a rename of the old
attention names. Forward semantics (``checkpoints.md`` §3.4):

* time embedding: [sin(τ f_i), cos(τ f_i)], f_i = exp(−ln(10⁴)·i/(half − 1)) (diffusers
  ``flip_sin_to_cos=False, freq_shift=1``), τ the integer n − 1 ∈ [0, T − 1] (``time_input="ho"``),
  then Linear → SiLU → Linear to E = 4·C₀;
* ResnetBlock: h = conv1(SiLU(GN(x))) + Linear(SiLU(e)); h = conv2(dropout(SiLU(GN(h))));
  out = shortcut(x) + h (1×1 conv shortcut when channels change);
* GroupNorm: ``norm_num_groups`` groups, eps ``norm_eps`` (1e-6 for Ho), in float32;
* attention: GN, Linear q, k, v [C, C], single head unless ``attention_head_dim`` says
  otherwise, softmax(q·kᵀ/√d)·v, Linear ``to_out.0``, residual add;
* Downsample: pad right and bottom by 1, then a 3×3 stride-2 conv with padding 0
  (``downsample_padding = 0``); Upsample: nearest ×2 then a 3×3 conv.

Shapes: ``forward(x: (B, C_in, H, W) float, timesteps: (B,) float or int) -> (B, C_out, H, W)``.

Also here: :func:`rename_old_attention_keys` (``query/key/value/proj_attn`` →
``to_q/to_k/to_v/to_out.0``) and :func:`diffusers_keys_from_pesser` (pesser's
``pytorch_diffusion`` ``Model`` keys → diffusers keys).
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from ddpmdp.errors import DdpmdpError

__all__ = [
    "HoUNetConfig",
    "HoUNet",
    "GOOGLE_DDPM_CIFAR10_CONFIG",
    "rename_old_attention_keys",
    "diffusers_keys_from_pesser",
    "looks_like_pesser",
]


@dataclass(frozen=True)
class HoUNetConfig:
    """The ``UNet2DModel`` ``config.json`` fields that this re-implementation supports.

    Down block types are ``DownBlock2D`` or ``AttnDownBlock2D``; up block types are
    ``UpBlock2D`` or ``AttnUpBlock2D``. Unsupported diffusers options (Fourier time
    embedding, class embeddings, scale-shift norm, input centring, …) are refused by
    :meth:`from_dict`.
    """

    sample_size: int = 32
    in_channels: int = 3
    out_channels: int = 3
    block_out_channels: tuple[int, ...] = (128, 256, 256, 256)
    layers_per_block: int = 2
    down_block_types: tuple[str, ...] = ("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D")
    up_block_types: tuple[str, ...] = ("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D")
    attention_head_dim: int | None = None
    norm_num_groups: int = 32
    norm_eps: float = 1e-6
    flip_sin_to_cos: bool = False
    freq_shift: int = 1
    downsample_padding: int = 0
    dropout: float = 0.0

    # diffusers options and the only values supported here
    _FIXED = {
        "act_fn": "silu", "time_embedding_type": "positional", "center_input_sample": False,
        "mid_block_scale_factor": 1, "resnet_time_scale_shift": "default", "add_attention": True,
        "class_embed_type": None, "num_class_embeds": None, "attn_norm_num_groups": None,
        "downsample_type": "conv", "upsample_type": "conv", "time_embedding_dim": None,
        "num_train_timesteps": None,
    }

    @classmethod
    def from_dict(cls, cfg: dict, source: str = "config") -> "HoUNetConfig":
        """Build from a diffusers ``config.json`` dict; refuse options this class does not implement."""
        cls_name = cfg.get("_class_name", "UNet2DModel")
        if cls_name != "UNet2DModel":
            raise DdpmdpError(f"{source}: _class_name is {cls_name!r}; the ho loader reads UNet2DModel configs only")
        for key, allowed in cls._FIXED.items():
            if key in cfg and cfg[key] != allowed and not (key == "mid_block_scale_factor" and cfg[key] == 1.0):
                raise DdpmdpError(f"{source}: {key} = {cfg[key]!r} is not supported by the Ho-DDPM UNet "
                                  f"(expected {allowed!r}); load this model through module:callable instead")
        kwargs: dict[str, Any] = {}
        for f in cls.__dataclass_fields__:
            if f in cfg and cfg[f] is not None or f == "attention_head_dim" and f in cfg:
                v = cfg[f]
                kwargs[f] = tuple(v) if isinstance(v, list) else v
        if "sample_size" in kwargs and isinstance(kwargs["sample_size"], tuple):
            kwargs["sample_size"] = kwargs["sample_size"][0]
        conf = cls(**kwargs)
        conf.validate(source)
        return conf

    def validate(self, source: str = "config") -> None:
        """Check block types, level counts and GroupNorm divisibility."""
        n = len(self.block_out_channels)
        if len(self.down_block_types) != n or len(self.up_block_types) != n:
            raise DdpmdpError(f"{source}: down/up block types must have one entry per block_out_channels level ({n})")
        for t in self.down_block_types:
            if t not in ("DownBlock2D", "AttnDownBlock2D"):
                raise DdpmdpError(f"{source}: down block type {t!r} is not supported (DownBlock2D or AttnDownBlock2D)")
        for t in self.up_block_types:
            if t not in ("UpBlock2D", "AttnUpBlock2D"):
                raise DdpmdpError(f"{source}: up block type {t!r} is not supported (UpBlock2D or AttnUpBlock2D)")
        for c in self.block_out_channels:
            if c % self.norm_num_groups:
                raise DdpmdpError(f"{source}: {c} channels are not divisible by norm_num_groups = {self.norm_num_groups}")

    def to_dict(self) -> dict:
        """A diffusers-style ``config.json`` dict (lists instead of tuples)."""
        d = {"_class_name": "UNet2DModel", **asdict(self)}
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


GOOGLE_DDPM_CIFAR10_CONFIG = HoUNetConfig()
"""``google/ddpm-cifar10-32``'s UNet (35,746,307 parameters, 328 keys); dropout 0.1 in training, off in eval."""


def ho_timestep_embedding(timesteps: torch.Tensor, dim: int, flip_sin_to_cos: bool = False,
                          freq_shift: float = 1.0, max_period: float = 10000.0) -> torch.Tensor:
    """diffusers ``get_timestep_embedding``: [sin, cos] (or [cos, sin] when flipped) of τ·f_i,
    f_i = exp(−ln(max_period)·i/(half − freq_shift)); (B,) → (B, dim) float32 (float64 for float64 timesteps)."""
    half = dim // 2
    dtype = torch.promote_types(timesteps.dtype, torch.float32)
    exponent = -math.log(max_period) * torch.arange(half, dtype=dtype, device=timesteps.device)
    freqs = torch.exp(exponent / (half - freq_shift))
    args = timesteps.to(dtype)[:, None] * freqs[None]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=-1)
    if flip_sin_to_cos:
        emb = torch.cat([emb[:, half:], emb[:, :half]], dim=-1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class _GroupNorm(nn.GroupNorm):
    """GroupNorm evaluated in float32 (float64 inputs: float64), cast back to the input dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.to(torch.promote_types(x.dtype, torch.float32))).type(x.dtype)


class TimestepEmbedding(nn.Module):
    """``linear_1`` → SiLU → ``linear_2``."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.linear_1 = nn.Linear(cin, cout)
        self.linear_2 = nn.Linear(cout, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(F.silu(self.linear_1(x)))


class ResnetBlock2D(nn.Module):
    """diffusers ``ResnetBlock2D`` with ``time_embedding_norm="default"`` (additive time conditioning)."""

    def __init__(self, cin: int, cout: int, temb: int, groups: int, eps: float, dropout: float) -> None:
        super().__init__()
        self.norm1 = _GroupNorm(groups, cin, eps=eps)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb, cout)
        self.norm2 = _GroupNorm(groups, cout, eps=eps)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        if self.conv_shortcut is not None:
            x = self.conv_shortcut(x)
        return x + h


class Attention(nn.Module):
    """Spatial self-attention with Linear ``to_q/to_k/to_v/to_out.0`` [C, C] and a residual add."""

    def __init__(self, channels: int, head_dim: int | None, groups: int, eps: float) -> None:
        super().__init__()
        self.heads = channels // head_dim if head_dim else 1
        self.group_norm = _GroupNorm(groups, channels, eps=eps)
        self.to_q = nn.Linear(channels, channels)
        self.to_k = nn.Linear(channels, channels)
        self.to_v = nn.Linear(channels, channels)
        self.to_out = nn.ModuleList([nn.Linear(channels, channels), nn.Dropout(0.0)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, hgt, wid = x.shape
        h = self.group_norm(x).reshape(b, c, hgt * wid).transpose(1, 2)  # (B, L, C)
        d = c // self.heads

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(b, -1, self.heads, d).transpose(1, 2).to(torch.promote_types(t.dtype, torch.float32))

        q, k, v = split(self.to_q(h)), split(self.to_k(h)), split(self.to_v(h))
        h = F.scaled_dot_product_attention(q, k, v).to(x.dtype).transpose(1, 2).reshape(b, -1, c)
        h = self.to_out[0](h).transpose(1, 2).reshape(b, c, hgt, wid)
        return x + h


class Downsample2D(nn.Module):
    """Stride-2 3×3 conv; with ``padding = 0`` the input is first padded by (0, 1, 0, 1) (Ho's TF behaviour)."""

    def __init__(self, channels: int, padding: int) -> None:
        super().__init__()
        self.padding = padding
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.padding == 0:
            x = F.pad(x, (0, 1, 0, 1))
        return self.conv(x)


class Upsample2D(nn.Module):
    """Nearest ×2 then a 3×3 conv."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x.to(torch.promote_types(x.dtype, torch.float32)), scale_factor=2.0,
                                       mode="nearest").to(x.dtype))


class _Block(nn.Module):
    """A down, mid or up block: ``resnets``, optional ``attentions``, optional ``downsamplers``/``upsamplers``."""

    def __init__(self) -> None:
        super().__init__()
        self.resnets = nn.ModuleList()


class HoUNet(nn.Module):
    """Ho et al.'s UNet with diffusers ``UNet2DModel`` key names (``conv_in``, ``down_blocks``, …)."""

    def __init__(self, config: HoUNetConfig = GOOGLE_DDPM_CIFAR10_CONFIG) -> None:
        super().__init__()
        config.validate()
        self.config = config
        ch = config.block_out_channels
        E = 4 * ch[0]
        g, eps, drop = config.norm_num_groups, config.norm_eps, config.dropout
        n = config.layers_per_block
        self.conv_in = nn.Conv2d(config.in_channels, ch[0], 3, padding=1)
        self.time_embedding = TimestepEmbedding(ch[0], E)

        self.down_blocks = nn.ModuleList()
        out_c = ch[0]
        for i, btype in enumerate(config.down_block_types):
            in_c, out_c = out_c, ch[i]
            blk = _Block()
            for j in range(n):
                blk.resnets.append(ResnetBlock2D(in_c if j == 0 else out_c, out_c, E, g, eps, drop))
            if btype == "AttnDownBlock2D":
                blk.attentions = nn.ModuleList(
                    [Attention(out_c, config.attention_head_dim, g, eps) for _ in range(n)])
            if i < len(ch) - 1:
                blk.downsamplers = nn.ModuleList([Downsample2D(out_c, config.downsample_padding)])
            self.down_blocks.append(blk)

        self.mid_block = _Block()
        self.mid_block.resnets.extend([ResnetBlock2D(ch[-1], ch[-1], E, g, eps, drop) for _ in range(2)])
        self.mid_block.attentions = nn.ModuleList([Attention(ch[-1], config.attention_head_dim, g, eps)])

        self.up_blocks = nn.ModuleList()
        rev = list(reversed(ch))
        out_c = rev[0]
        for i, btype in enumerate(config.up_block_types):
            prev_c, out_c = out_c, rev[i]
            in_c = rev[min(i + 1, len(ch) - 1)]
            blk = _Block()
            for j in range(n + 1):
                skip_c = in_c if j == n else out_c
                res_in = prev_c if j == 0 else out_c
                blk.resnets.append(ResnetBlock2D(res_in + skip_c, out_c, E, g, eps, drop))
            if btype == "AttnUpBlock2D":
                blk.attentions = nn.ModuleList(
                    [Attention(out_c, config.attention_head_dim, g, eps) for _ in range(n + 1)])
            if i < len(ch) - 1:
                blk.upsamplers = nn.ModuleList([Upsample2D(out_c)])
            self.up_blocks.append(blk)

        self.conv_norm_out = _GroupNorm(g, ch[0], eps=eps)
        self.conv_out = nn.Conv2d(ch[0], config.out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """x: (B, C_in, H, W) float; timesteps: (B,) or scalar, the network time τ → (B, C_out, H, W)."""
        if not torch.is_tensor(timesteps):
            timesteps = torch.tensor([timesteps], device=x.device)
        if timesteps.ndim == 0:
            timesteps = timesteps[None]
        timesteps = timesteps.expand(x.shape[0])
        c = self.config
        emb = self.time_embedding(ho_timestep_embedding(timesteps, c.block_out_channels[0], c.flip_sin_to_cos,
                                                        c.freq_shift).to(x.dtype))
        h = self.conv_in(x)
        skips = [h]
        for blk in self.down_blocks:
            attns = getattr(blk, "attentions", None)
            for j, res in enumerate(cast(nn.ModuleList, blk.resnets)):
                h = res(h, emb)
                if attns is not None:
                    h = attns[j](h)
                skips.append(h)
            if hasattr(blk, "downsamplers"):
                h = cast(nn.ModuleList, blk.downsamplers)[0](h)
                skips.append(h)
        h = self.mid_block.resnets[0](h, emb)
        h = cast(nn.ModuleList, self.mid_block.attentions)[0](h)
        h = self.mid_block.resnets[1](h, emb)
        for blk in self.up_blocks:
            attns = getattr(blk, "attentions", None)
            for j, res in enumerate(cast(nn.ModuleList, blk.resnets)):
                h = res(torch.cat([h, skips.pop()], dim=1), emb)
                if attns is not None:
                    h = attns[j](h)
            if hasattr(blk, "upsamplers"):
                h = cast(nn.ModuleList, blk.upsamplers)[0](h)
        return self.conv_out(F.silu(self.conv_norm_out(h)))


# ---- rename tables ----------------------------------------------------------------
_OLD_ATTN = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}
_OLD_ATTN_RE = re.compile(r"^(.*\.attentions\.\d+)\.(query|key|value|proj_attn)\.(weight|bias)$")


def rename_old_attention_keys(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map diffusers' pre-0.14 attention names ``…attentions.M.{query,key,value,proj_attn}`` to
    ``…{to_q,to_k,to_v,to_out.0}`` (as ``ModelMixin._fix_state_dict_keys_on_load`` does). Other keys pass."""
    out = {}
    for k, v in sd.items():
        m = _OLD_ATTN_RE.match(k)
        out[f"{m.group(1)}.{_OLD_ATTN[m.group(2)]}.{m.group(3)}" if m else k] = v
    return out


_PESSER_RES = {"norm1": "norm1", "conv1": "conv1", "temb_proj": "time_emb_proj", "norm2": "norm2",
               "conv2": "conv2", "nin_shortcut": "conv_shortcut"}
_PESSER_ATTN = {"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}


def looks_like_pesser(keys) -> bool:
    """True when the keys follow pesser's ``pytorch_diffusion`` layout (``temb.dense.0.weight``, ``down.N.block…``)."""
    return any(k.startswith("temb.dense.") for k in keys)


def diffusers_keys_from_pesser(sd: dict[str, torch.Tensor], num_levels: int = 4) -> dict[str, torch.Tensor]:
    """Rename pesser ``Model`` keys to diffusers ``UNet2DModel`` keys (``checkpoints.md`` §3.3).

    ``up.i`` becomes ``up_blocks.(num_levels − 1 − i)`` (pesser stores the up path by
    resolution level); 1×1 Conv2d attention weights [C, C, 1, 1] are squeezed to Linear [C, C].
    Raises :class:`DdpmdpError` on a key outside the pesser scheme.
    """
    out: dict[str, torch.Tensor] = {}
    for key, v in sd.items():
        p = key.split(".")
        new: str | None = None
        if p[0] == "temb" and p[1] == "dense":
            new = f"time_embedding.linear_{int(p[2]) + 1}.{p[3]}"
        elif p[0] in ("conv_in", "conv_out"):
            new = key
        elif p[0] == "norm_out":
            new = f"conv_norm_out.{p[1]}"
        elif p[0] in ("down", "up") and len(p) >= 4:
            lvl = int(p[1]) if p[0] == "down" else num_levels - 1 - int(p[1])
            base = f"{p[0]}_blocks.{lvl}"
            if p[2] == "block" and p[4] in _PESSER_RES:
                new = f"{base}.resnets.{p[3]}.{_PESSER_RES[p[4]]}.{p[5]}"
            elif p[2] == "attn" and p[4] in _PESSER_ATTN:
                new = f"{base}.attentions.{p[3]}.{_PESSER_ATTN[p[4]]}.{p[5]}"
            elif p[2] in ("downsample", "upsample") and p[3] == "conv":
                new = f"{base}.{p[2]}rs.0.conv.{p[4]}"
        elif p[0] == "mid":
            j = {"block_1": "resnets.0", "block_2": "resnets.1", "attn_1": "attentions.0"}.get(p[1])
            if j is not None:
                sub = _PESSER_RES if p[1].startswith("block") else _PESSER_ATTN
                if p[2] in sub:
                    new = f"mid_block.{j}.{sub[p[2]]}.{p[3]}"
        if new is None:
            raise DdpmdpError(f"key {key!r} is not part of pesser's pytorch_diffusion Model layout")
        if ".attentions." in new and v.ndim == 4 and not new.split(".")[-2].startswith("group_norm"):
            v = v[:, :, 0, 0]
        out[new] = v
    return out


def load_config_json(path: Path) -> HoUNetConfig:
    """Read a diffusers ``config.json`` into a :class:`HoUNetConfig` (clear errors on bad JSON)."""
    try:
        cfg = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise DdpmdpError(f"{path}: not a readable JSON config ({exc})") from None
    if not isinstance(cfg, dict):
        raise DdpmdpError(f"{path}: expected a JSON object of UNet2DModel settings")
    return HoUNetConfig.from_dict(cfg, str(path))
