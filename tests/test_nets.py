"""Architecture tests for the improved-diffusion and Ho-DDPM UNets.

* spec level: presets reproduce the published parameter counts, key counts and
  key:shape fingerprints (``checkpoints.md`` §2.3, §3.3; manifest in ``../shared/spec``);
* semantics: time embeddings, per-head qkv layout;
* independent numerics: randomly initialised diffusers ``UNet2DModel``s configured as each
  architecture, weights copied across by name mapping, outputs agree to 1e-5.
"""
from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

from ddpmdp.models.nets import count_parameters, key_shape_fingerprint
from ddpmdp.models.nets.ho_unet import (
    GOOGLE_DDPM_CIFAR10_CONFIG,
    HoUNet,
    HoUNetConfig,
    diffusers_keys_from_pesser,
    ho_timestep_embedding,
)
from ddpmdp.models.nets.iddpm_unet import (
    IDDPM_PRESETS,
    AttentionBlock,
    IDDPMConfig,
    IDDPMUNet,
    get_preset,
    iddpm_state_dict_from_diffusers,
    timestep_embedding,
)

MANIFEST = Path(__file__).resolve().parents[2] / "shared/spec/checkpoint_manifests.json"

PUBLISHED = {
    # preset → (manifest entry, params, keys, fingerprint)
    "cifar10-hybrid": ("iddpm_cifar10_32", 52_546_438, 446,
                       "390d473d399ef711e0a49f16b7f55ab8dfde98084f2b0e175de3797907ccf7f3"),
    "cifar10-vlb": ("iddpm_cifar10_32", 52_546_438, 446,
                    "390d473d399ef711e0a49f16b7f55ab8dfde98084f2b0e175de3797907ccf7f3"),
    "imagenet64-hybrid": ("iddpm_imagenet64_uncond", 121_063_942, 450,
                          "a92214df356b6a4fc503c0e4f6b037c265c9fa6e4dcb28abb4771dc3a7d843c7"),
    "imagenet64-vlb": ("iddpm_imagenet64_uncond", 121_063_942, 450,
                       "a92214df356b6a4fc503c0e4f6b037c265c9fa6e4dcb28abb4771dc3a7d843c7"),
}
HO_FP = "8285aa909902fb3aae9df6fe13723b452e800d198502294be1b681f7e811e3d8"


@pytest.fixture(scope="module")
def manifest() -> dict:
    if not MANIFEST.is_file():
        pytest.skip(f"checkpoint manifest not found at {MANIFEST}")
    return json.loads(MANIFEST.read_text())


def meta_shapes(build) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        net = build()
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def first_difference(ours: dict, ref: dict) -> str:
    a = [f"{k}:{tuple(v)}" for k, v in sorted(ours.items())]
    b = [f"{k}:{tuple(v)}" for k, v in sorted(ref.items())]
    for x, y in zip(a, b):
        if x != y:
            return f"ours {x} vs manifest {y}"
    return f"lengths {len(a)} vs {len(b)}"


# ---- spec level ---------------------------------------------------------------------
@pytest.mark.parametrize("preset", sorted(PUBLISHED))
def test_iddpm_presets_match_published_counts(preset: str) -> None:
    _, params, n_keys, fp = PUBLISHED[preset]
    shapes = meta_shapes(lambda: IDDPMUNet(get_preset(preset)))
    assert count_parameters(shapes) == params
    assert len(shapes) == n_keys
    assert key_shape_fingerprint(shapes) == fp
    assert shapes["out.2.weight"] == (6, 128, 3, 3)
    cfg = get_preset(preset)
    assert (cfg.schedule_spec, cfg.variance, cfg.time_input, cfg.output) == \
        ("cosine:4000", "learned_range", "iddpm", "eps+v")


@pytest.mark.parametrize("preset", sorted(PUBLISHED))
def test_iddpm_presets_match_manifest(preset: str, manifest: dict) -> None:
    entry = manifest[PUBLISHED[preset][0]]
    shapes = meta_shapes(lambda: IDDPMUNet(get_preset(preset)))
    ref = {k: tuple(v) for k, v in entry["keys"].items()}
    assert shapes == ref, first_difference(shapes, ref)
    assert key_shape_fingerprint(shapes) == entry["sha256_sorted_key_shape"]
    assert count_parameters(shapes) == entry["params"] and len(shapes) == entry["n_keys"]


def test_ho_unet_matches_published_counts_and_manifest(manifest: dict) -> None:
    shapes = meta_shapes(lambda: HoUNet(GOOGLE_DDPM_CIFAR10_CONFIG))
    assert count_parameters(shapes) == 35_746_307 and len(shapes) == 328
    assert key_shape_fingerprint(shapes) == HO_FP
    entry = manifest["diffusers_google_ddpm_cifar10_32_new_names"]
    ref = {k: tuple(v) for k, v in entry["keys"].items()}
    assert shapes == ref, first_difference(shapes, ref)


def test_pesser_rename_maps_all_328_keys_onto_diffusers_layout(manifest: dict) -> None:
    pesser = {k: torch.empty(v, device="meta") for k, v in manifest["pesser_ddpm_cifar10"]["keys"].items()}
    assert key_shape_fingerprint(pesser) == manifest["pesser_ddpm_cifar10"]["sha256_sorted_key_shape"]
    renamed = diffusers_keys_from_pesser(pesser)
    assert len(renamed) == 328
    assert key_shape_fingerprint(renamed) == HO_FP


def test_manifest_fingerprints_are_self_consistent(manifest: dict) -> None:
    for entry in manifest.values():
        assert key_shape_fingerprint(entry["keys"]) == entry["sha256_sorted_key_shape"]
        assert count_parameters(entry["keys"]) == entry["params"]


def test_small_presets_are_small_and_of_the_same_class() -> None:
    for name in ("cifar10-small", "imagenet64-small"):
        learned, fixed = get_preset(name), get_preset(name + "-fixed")
        s_l = meta_shapes(lambda: IDDPMUNet(learned))
        s_f = meta_shapes(lambda: IDDPMUNet(fixed))
        assert 1_000_000 <= count_parameters(s_l) <= 3_000_000
        assert s_l["out.2.weight"][0] == 6 and s_f["out.2.weight"][0] == 3
        assert learned.variance == "learned_range" and fixed.variance == "fixed_large"
        assert learned.output == "eps+v" and fixed.output == "eps"
        assert set(s_l) == set(s_f)
    tiny = meta_shapes(lambda: IDDPMUNet(get_preset("tiny")))
    assert count_parameters(tiny) == 757_030 and len(tiny) == 128  # checkpoints.md §6


def test_cifar10_small_flops_budget() -> None:
    """≈ 0.38 GFLOP per image keeps a batch-32 forward pass in the tens of ms on 2 cores."""
    from torch.utils.flop_counter import FlopCounterMode

    net = IDDPMUNet(get_preset("cifar10-small"))
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(torch.zeros(1, 3, 32, 32), torch.tensor([3.0]))
    assert counter.get_total_flops() < 0.45e9


@pytest.mark.parametrize("name", sorted(IDDPM_PRESETS))
def test_presets_have_consistent_diffusion(name: str) -> None:
    cfg = IDDPM_PRESETS[name]
    sched = cfg.schedule()
    assert sched.T == cfg.diffusion_steps
    assert cfg.time_input == "iddpm"


def test_unknown_preset_is_a_clear_error() -> None:
    from ddpmdp.errors import DdpmdpError

    with pytest.raises(DdpmdpError, match="unknown improved-diffusion preset 'cifar100'.*cifar10-hybrid"):
        get_preset("cifar100")


# ---- semantics ------------------------------------------------------------------------
def test_iddpm_timestep_embedding_is_cos_then_sin() -> None:
    t = torch.tensor([0.0, 0.25, 999.75])
    emb = timestep_embedding(t, 128)
    freqs = torch.exp(-math.log(10000.0) * torch.arange(64) / 64)
    assert torch.allclose(emb[:, :64], torch.cos(t[:, None] * freqs))
    assert torch.allclose(emb[:, 64:], torch.sin(t[:, None] * freqs))


def test_ho_timestep_embedding_is_sin_then_cos_with_shift() -> None:
    t = torch.tensor([0.0, 1.0, 999.0])
    emb = ho_timestep_embedding(t, 128)
    freqs = torch.exp(-math.log(10000.0) * torch.arange(64) / 63)
    assert torch.allclose(emb[:, :64], torch.sin(t[:, None] * freqs))
    assert torch.allclose(emb[:, 64:], torch.cos(t[:, None] * freqs))


def test_attention_uses_per_head_qkv_layout() -> None:
    """Reference: improved-diffusion's QKVAttention written out from checkpoints.md §2.5."""
    torch.manual_seed(0)
    C, heads, L = 64, 4, 16
    blk = AttentionBlock(C, heads, zero_init=False).eval()
    x = torch.randn(2, C, 4, 4)
    with torch.no_grad():
        qkv = blk.qkv(blk.norm(x.reshape(2, C, L))).reshape(2 * heads, 3 * C // heads, L)
        q, k, v = qkv.split(C // heads, dim=1)  # per head [q_h | k_h | v_h]
        s = (C // heads) ** -0.25
        w = torch.softmax(torch.einsum("bct,bcs->bts", q * s, k * s), dim=-1)
        h = torch.einsum("bts,bcs->bct", w, v).reshape(2, C, L)
        ref = (x.reshape(2, C, L) + blk.proj_out(h)).reshape(x.shape)
        assert torch.allclose(blk(x), ref, atol=1e-5)


def test_forward_shapes_of_small_presets() -> None:
    for name, size in (("cifar10-small", 32), ("cifar10-small-fixed", 32), ("tiny", 32)):
        cfg = get_preset(name)
        net = IDDPMUNet(cfg, zero_init=False).eval()
        with torch.no_grad():
            out = net(torch.randn(2, 3, size, size), torch.tensor([0.0, 10.0]))
        assert out.shape == (2, cfg.out_channels, size, size)
        assert torch.isfinite(out).all()


def test_zero_init_gives_zero_output() -> None:
    net = IDDPMUNet(get_preset("tiny")).eval()
    with torch.no_grad():
        assert net(torch.randn(1, 3, 32, 32), torch.tensor([5.0])).abs().max() == 0


# ---- independent numerics against diffusers ----------------------------------------------
needs_diffusers = pytest.mark.skipif(importlib.util.find_spec("diffusers") is None,
                                     reason="diffusers (optional test dependency) is not installed")


def _perturb(module: torch.nn.Module, seed: int = 0) -> None:
    """Perturb 1-D parameters (biases, GroupNorm scales and shifts) so that a swapped or
    ignored norm parameter shows up; weight matrices keep diffusers' default init."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            if p.ndim == 1:
                p.add_(0.1 * torch.randn(p.shape, generator=g))


def diffusers_as_iddpm(cfg: IDDPMConfig, head_dim: int, heads_override: int | None = None):
    """A diffusers UNet2DModel configured as the improved-diffusion architecture (checkpoints.md §6)."""
    from diffusers import UNet2DModel
    from diffusers.models.attention_processor import Attention

    levels = len(cfg.channel_mult)
    ads = set(cfg.attention_ds)
    down = tuple("AttnDownBlock2D" if 2 ** lv in ads else "DownBlock2D" for lv in range(levels))
    up = tuple("AttnUpBlock2D" if 2 ** lv in ads else "UpBlock2D" for lv in reversed(range(levels)))
    model = UNet2DModel(
        sample_size=cfg.image_size, in_channels=3, out_channels=cfg.out_channels,
        layers_per_block=cfg.num_res_blocks, block_out_channels=tuple(cfg.model_channels * m for m in cfg.channel_mult),
        down_block_types=down, up_block_types=up, attention_head_dim=head_dim, norm_eps=1e-5, norm_num_groups=32,
        resnet_time_scale_shift="scale_shift", attn_norm_num_groups=32, flip_sin_to_cos=True, freq_shift=0,
        downsample_padding=1).eval()
    if heads_override is not None:  # ImageNet-style: 4 heads at every width (head width varies)
        for m in model.modules():
            if isinstance(m, Attention):
                m.heads = heads_override
    _perturb(model)
    return model


def _compare_iddpm(cfg: IDDPMConfig, head_dim: int, heads_override: int | None = None, batch: int = 4) -> None:
    ref = diffusers_as_iddpm(cfg, head_dim, heads_override)
    assert sum(p.numel() for p in ref.parameters()) == count_parameters(meta_shapes(lambda: IDDPMUNet(cfg)))
    net = IDDPMUNet(cfg).eval()
    net.load_state_dict(iddpm_state_dict_from_diffusers(ref.state_dict(), cfg), strict=True)
    torch.manual_seed(1)
    x = torch.randn(batch, 3, cfg.image_size, cfg.image_size)
    t = torch.tensor([0.0, 0.25, 500.25, 999.75])[:batch]
    with torch.no_grad():
        a, b = ref(x, t).sample, net(x, t)
    assert a.abs().mean() > 1e-2  # non-trivial outputs
    torch.testing.assert_close(b[:, :3], a[:, :3], atol=1e-5, rtol=0)  # ε
    torch.testing.assert_close(b[:, 3:], a[:, 3:], atol=1e-5, rtol=0)  # v


@needs_diffusers
def test_iddpm_full_cifar10_matches_diffusers() -> None:
    cfg = get_preset("cifar10-hybrid")
    assert sum(p.numel() for p in diffusers_as_iddpm(cfg, 64).parameters()) == 52_546_438
    _compare_iddpm(cfg, head_dim=64)


@needs_diffusers
def test_iddpm_tiny_matches_diffusers() -> None:
    _compare_iddpm(get_preset("tiny"), head_dim=32)  # 2 heads of 32 at 64 channels


@needs_diffusers
def test_iddpm_imagenet_family_tiny_matches_diffusers() -> None:
    """ImageNet 64 family (channel_mult (1,2,3,4), 4 heads of varying width), shrunk to 16×16."""
    cfg = IDDPMConfig("in64-family", image_size=16, model_channels=32, channel_mult=(1, 2, 3, 4), num_res_blocks=1,
                      attention_resolutions=(4, 2), num_heads=4)
    _compare_iddpm(cfg, head_dim=8, heads_override=4)


@needs_diffusers
def test_iddpm_full_imagenet64_matches_diffusers() -> None:
    """The full 121M-parameter ImageNet 64 architecture (4 heads of width 32, 64, 96, 128)."""
    _compare_iddpm(get_preset("imagenet64-hybrid"), head_dim=32, heads_override=4, batch=2)


def _diffusers_ho(cfg: HoUNetConfig):
    from diffusers import UNet2DModel

    model = UNet2DModel(**{k: v for k, v in cfg.to_dict().items() if k != "_class_name"}).eval()
    _perturb(model)
    return model


@needs_diffusers
@pytest.mark.parametrize("which", ["google", "tiny"])
def test_ho_unet_matches_diffusers(which: str) -> None:
    cfg = GOOGLE_DDPM_CIFAR10_CONFIG if which == "google" else HoUNetConfig(
        sample_size=8, block_out_channels=(32, 32), layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=8)
    ref = _diffusers_ho(cfg)
    if which == "tiny":
        assert sum(p.numel() for p in ref.parameters()) == 285_667  # checkpoints.md §6
    net = HoUNet(cfg).eval()
    net.load_state_dict(ref.state_dict(), strict=True)
    torch.manual_seed(2)
    x = torch.randn(4, 3, cfg.sample_size, cfg.sample_size)
    t = torch.tensor([0, 1, 500, 999])
    with torch.no_grad():
        a, b = ref(x, t).sample, net(x, t)
    assert a.abs().mean() > 1e-2
    torch.testing.assert_close(b, a, atol=1e-5, rtol=0)
