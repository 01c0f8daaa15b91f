"""Checkpoint loading: every published on-disk format, exact round trips, clear errors, model_info.

Files are written with small configurations of the real architectures (the ``tiny`` and
``cifar10-small`` presets, a tiny Ho UNet); the full-size CIFAR-10 layout is exercised
with stride-0 tensors, which keep the file a few kB while every key and shape is real.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from ddpmdp.models.checkpoints import load_ho, load_iddpm
from ddpmdp.models.info import model_info
from ddpmdp.models.state_dicts import read_state_dict
from ddpmdp.errors import DdpmdpError
from ddpmdp.models.specs import load_model
from ddpmdp.models.adapter import TorchModelAdapter, network_time
from ddpmdp.models.nets import key_shape_fingerprint
from ddpmdp.models.nets.ho_unet import HoUNet, HoUNetConfig
from ddpmdp.models.nets.iddpm_unet import IDDPMUNet, get_preset

TINY_HO = HoUNetConfig(sample_size=8, block_out_channels=(32, 32), layers_per_block=1,
                       down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "UpBlock2D"), norm_num_groups=8)
needs_diffusers = pytest.mark.skipif(importlib.util.find_spec("diffusers") is None,
                                     reason="diffusers (optional test dependency) is not installed")


class NotATensor:
    """Pickled into a checkpoint to check that weights_only loading refuses it."""


def random_iddpm(preset: str = "tiny", seed: int = 0, **changes) -> IDDPMUNet:
    torch.manual_seed(seed)
    cfg = get_preset(preset).with_(**changes) if changes else get_preset(preset)
    return IDDPMUNet(cfg, zero_init=False).eval()


def random_ho(seed: int = 0) -> HoUNet:
    torch.manual_seed(seed)
    net = HoUNet(TINY_HO).eval()
    with torch.no_grad():
        for p in net.parameters():
            if p.ndim == 1:
                p.add_(0.1 * torch.randn(p.shape))
    return net


def param_dict(net: torch.nn.Module) -> OrderedDict:
    """What improved-diffusion's train_util saves: an OrderedDict of nn.Parameter values."""
    return OrderedDict((k, torch.nn.Parameter(v.clone())) for k, v in net.state_dict().items())


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def outputs(model, shape=(2, 3, 32, 32), t: int = 7):
    torch.manual_seed(5)
    return model(torch.randn(*shape), t)


# ---- improved-diffusion on-disk formats -----------------------------------------------
def test_parameter_ordereddict_round_trip(tmp_path: Path) -> None:
    src = random_iddpm()
    path = tmp_path / "model.pt"
    torch.save(param_dict(src), path)
    model = load_model(f"iddpm:tiny:{path}")
    assert isinstance(model, TorchModelAdapter)
    assert_same_weights(model.net, src)
    with torch.no_grad():
        ref = src(torch.zeros(1, 3, 32, 32), torch.tensor([6.0]))
    out = model(torch.zeros(1, 3, 32, 32), 7)  # node 7 → τ = (7 − 1)·1000/1000 = 6
    assert torch.equal(out.eps, ref[:, :3]) and torch.equal(out.v, (ref[:, 3:] + 1) / 2)
    assert model.learned_variance and model.variance == "learned_range"
    assert model.info["file_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("fmt", ["module_prefix", "legacy_pickle", "fp16", "safetensors", "plain_tensors"])
def test_other_formats_load_strictly(tmp_path: Path, fmt: str) -> None:
    src = random_iddpm(seed=1)
    sd = src.state_dict()
    path = tmp_path / ("w.safetensors" if fmt == "safetensors" else "w.pt")
    if fmt == "module_prefix":
        torch.save(OrderedDict((f"module.{k}", torch.nn.Parameter(v)) for k, v in sd.items()), path)
    elif fmt == "legacy_pickle":
        torch.save(sd, path, _use_new_zipfile_serialization=False)
    elif fmt == "fp16":
        torch.save({k: v.half() for k, v in sd.items()}, path)
    elif fmt == "safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    else:
        torch.save(dict(sd), path)
    model = load_iddpm("tiny", path)
    if fmt == "fp16":
        for k, v in model.net.state_dict().items():
            assert v.dtype == torch.float32 and torch.equal(v, sd[k].half().float())
    else:
        assert_same_weights(model.net, src)


def test_full_size_cifar10_layout_loads_and_is_refused_by_imagenet64(tmp_path: Path) -> None:
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in IDDPMUNet(get_preset("cifar10-hybrid")).state_dict().items()}
    sd = OrderedDict((k, torch.nn.Parameter(torch.full((1,), 0.01).expand(s), requires_grad=False))
                     for k, s in shapes.items())
    path = tmp_path / "cifar10_uncond_50M_500K.pt"
    torch.save(sd, path)
    assert path.stat().st_size < 1_000_000  # stride-0 tensors: real keys and shapes, tiny file
    info = model_info(f"iddpm:cifar10-hybrid:{path}")
    assert (info["parameters"], info["state_dict_keys"]) == (52_546_438, 446)
    assert info["fingerprint"] == "390d473d399ef711e0a49f16b7f55ab8dfde98084f2b0e175de3797907ccf7f3"
    assert info["file_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    model = load_iddpm("cifar10-hybrid", path)  # strict load of the full 446-key layout
    assert all(torch.all(v == 0.01) for v in model.net.state_dict().values())
    with pytest.raises(DdpmdpError, match=r"first missing key 'input_blocks\.9\.0\.skip_connection\.weight' "
                       r"\(50 missing\), first unexpected key 'input_blocks\.5\.1\.norm\.weight' \(46 unexpected\); "
                       r"its keys match iddpm:cifar10-hybrid"):
        model_info(f"iddpm:imagenet64-hybrid:{path}")


def test_released_preset_names_the_download_url(tmp_path: Path) -> None:
    with pytest.raises(DdpmdpError, match="march-2021/cifar10_uncond_vlb_50M_500K.pt"):
        load_model(f"iddpm:cifar10-vlb:{tmp_path / 'missing.pt'}")


# ---- errors ------------------------------------------------------------------------------
def test_three_channel_head_is_a_learn_sigma_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "fixed.pt"
    torch.save(random_iddpm("tiny", learn_sigma=False).state_dict(), path)
    with pytest.raises(DdpmdpError, match="learn_sigma mismatch.*3-channel output head"):
        load_iddpm("tiny", path)


def test_learn_sigma_mismatch_suggests_the_fixed_preset(tmp_path: Path) -> None:
    path = tmp_path / "small_fixed.pt"
    torch.save(random_iddpm("cifar10-small-fixed").state_dict(), path)
    with pytest.raises(DdpmdpError, match="learn_sigma mismatch.*use preset 'cifar10-small-fixed'"):
        load_model(f"iddpm:cifar10-small:{path}")
    model = load_model(f"iddpm:cifar10-small-fixed:{path}")
    assert not model.learned_variance and model.variance == "fixed_large"
    assert outputs(model).v is None


def test_wrong_architecture_names_first_missing_and_unexpected_keys(tmp_path: Path) -> None:
    path = tmp_path / "tiny.pt"
    torch.save(random_iddpm("tiny").state_dict(), path)
    with pytest.raises(DdpmdpError, match=r"first missing key '.+' \(\d+ missing\), first unexpected key '.+' "
                       r"\(\d+ unexpected\); its keys match iddpm:tiny"):
        load_iddpm("cifar10-small", path)


def test_ho_file_in_iddpm_preset_is_recognised(tmp_path: Path) -> None:
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in HoUNet().state_dict().items()}
    path = tmp_path / "ho.pt"
    torch.save({k: torch.zeros(1).expand(s) for k, s in shapes.items()}, path)
    with pytest.raises(DdpmdpError, match="first missing key 'time_embed.0.weight'.*its keys match ho"):
        load_iddpm("cifar10-hybrid", path)


@pytest.mark.parametrize("wrapper_key", ["state_dict", "model", "ema"])
def test_wrapper_dicts_are_refused_with_the_key_to_extract(tmp_path: Path, wrapper_key: str) -> None:
    sd = random_iddpm().state_dict()
    obj = {wrapper_key: sd, "step": 500_000}
    if wrapper_key == "ema":
        obj["model"] = sd
    path = tmp_path / "wrapped.pt"
    torch.save(obj, path)
    with pytest.raises(DdpmdpError, match=rf"training-checkpoint wrapper.*torch\.load\(path\)\['{wrapper_key}'\]"):
        load_iddpm("tiny", path)


def test_truncated_files_are_reported_as_corrupt(tmp_path: Path) -> None:
    sd = random_iddpm().state_dict()
    for name, save in (("t.pt", lambda p: torch.save(sd, p)),
                       ("t_legacy.pt", lambda p: torch.save(sd, p, _use_new_zipfile_serialization=False))):
        path = tmp_path / name
        save(path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        with pytest.raises(DdpmdpError, match="truncated or corrupt.*download it again"):
            read_state_dict(path)
    from safetensors.torch import save_file

    path = tmp_path / "t.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DdpmdpError, match="not a readable safetensors file.*truncated or corrupt"):
        read_state_dict(path)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"<html>404 Not Found</html>" * 5)
    with pytest.raises(DdpmdpError, match="truncated or corrupt"):
        load_model(f"iddpm:tiny:{junk}")


def test_pickle_with_non_tensors_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "objects.pt"
    torch.save({"weight": torch.zeros(2), "extra": NotATensor()}, path)
    with pytest.raises(DdpmdpError, match="pickled Python objects other than tensors.*NotATensor"):
        read_state_dict(path)
    path2 = tmp_path / "whole_module.pt"
    torch.save(random_iddpm(), path2)
    with pytest.raises(DdpmdpError, match="pickled Python objects other than tensors"):
        read_state_dict(path2)


def test_non_state_dict_contents_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], path)
    with pytest.raises(DdpmdpError, match="holds a list, not a state_dict"):
        read_state_dict(path)
    torch.save({"w": torch.zeros(2), "step": 3}, path)
    with pytest.raises(DdpmdpError, match="entry 'step' holds a int, not a tensor"):
        read_state_dict(path)
    with pytest.raises(DdpmdpError, match="does not exist"):
        read_state_dict(tmp_path / "nope.pt")
    with pytest.raises(DdpmdpError, match="is a directory"):
        read_state_dict(tmp_path)


def test_contradicting_options_are_refused() -> None:
    with pytest.raises(DdpmdpError, match="trained with schedule cosine:4000"):
        load_model("iddpm:cifar10-hybrid", schedule="linear:1000")
    with pytest.raises(DdpmdpError, match="needs time input 'iddpm'"):
        load_model("iddpm:tiny", time_input="ho")
    with pytest.raises(DdpmdpError, match="produces output 'eps', not 'eps\\+v'"):
        load_model("ho", output="eps+v")
    with pytest.raises(DdpmdpError, match="needs a preset"):
        load_model("iddpm")
    model = load_model("iddpm:tiny", schedule="cosine:1000", output="eps+v", time_input="iddpm")
    assert model.schedule.describe() == "cosine:1000"


# ---- random-weight specs and model_info -------------------------------------------------------
def test_random_weight_specs_are_seeded_and_non_trivial() -> None:
    a, b = load_model("iddpm:tiny"), load_model("iddpm:tiny")
    assert a.fingerprint() == b.fingerprint()
    out = outputs(a)
    assert out.eps.abs().mean() > 1e-3 and out.v is not None
    assert a.identity == "iddpm:tiny:random-seed0"
    assert a.image_shape == (3, 32, 32) and load_model("ho").image_shape == (3, 32, 32)


def test_released_presets_get_the_rescaled_time_input() -> None:
    cfg = get_preset("cifar10-hybrid")
    sched = cfg.schedule()
    assert sched.T == 4000 and sched.describe() == "cosine:4000"
    assert network_time(sched, 1, cfg.time_input) == 0.0
    assert network_time(sched, 4000, cfg.time_input) == 999.75


@pytest.mark.parametrize("spec,params,keys,fp", [
    ("iddpm:cifar10-hybrid", 52_546_438, 446, "390d473d399ef711e0a49f16b7f55ab8dfde98084f2b0e175de3797907ccf7f3"),
    ("iddpm:imagenet64", 121_063_942, 450, "a92214df356b6a4fc503c0e4f6b037c265c9fa6e4dcb28abb4771dc3a7d843c7"),
    ("ho", 35_746_307, 328, "8285aa909902fb3aae9df6fe13723b452e800d198502294be1b681f7e811e3d8"),
])
def test_model_info_without_files(spec: str, params: int, keys: int, fp: str) -> None:
    info = model_info(spec)
    assert (info["parameters"], info["state_dict_keys"], info["fingerprint"]) == (params, keys, fp)
    assert info["file_sha256"] is None
    if spec == "ho":
        assert (info["schedule"], info["T"], info["variance"], info["time_input"]) == \
            ("linear:1000", 1000, "fixed_large", "ho")
    else:
        assert (info["schedule"], info["T"], info["variance"], info["time_input"]) == \
            ("cosine:4000", 4000, "learned_range", "iddpm")
    json.dumps(info)  # serialisable for --json


def test_model_info_of_a_user_callable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my_tiny_model.py").write_text(
        "from ddpmdp.models.nets.iddpm_unet import IDDPMUNet, get_preset\n"
        "def build():\n    return IDDPMUNet(get_preset('tiny'))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(DdpmdpError, match="also pass --noise-schedule"):
        model_info("my_tiny_model:build")
    info = model_info("my_tiny_model:build", schedule="cosine:1000", output="eps+v", time_input="iddpm")
    assert (info["parameters"], info["state_dict_keys"], info["schedule"]) == (757_030, 128, "cosine:1000")
    assert info["variance"] == "learned_range" and info["time_input"] == "iddpm"


def test_model_info_refuses_non_network_models(tmp_path: Path) -> None:
    import numpy as np

    f = tmp_path / "imgs.npz"
    np.savez(f, images=np.random.default_rng(0).integers(0, 256, (4, 1, 4, 4), dtype=np.uint8))
    with pytest.raises(DdpmdpError, match="describes network models"):
        model_info(f"gaussian:{f}")


# ---- Ho et al.: diffusers directories, old names, pesser ----------------------------------------
def write_diffusers_dir(d: Path, sd: dict, config: HoUNetConfig, *, fmt: str, old_names: bool,
                        scheduler: dict | None = None) -> Path:
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps(config.to_dict()))
    if old_names:
        ren = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}
        out = {}
        for k, v in sd.items():
            for new, old in ren.items():
                if ".attentions." in k and f".{new}." in k:
                    k = k.replace(f".{new}.", f".{old}.")
            out[k] = v
        sd = out
    if fmt == "safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in sd.items()}, str(d / "diffusion_pytorch_model.safetensors"))
    else:
        torch.save(OrderedDict(sd), d / "diffusion_pytorch_model.bin")
    if scheduler is not None:
        (d / "scheduler_config.json").write_text(json.dumps(scheduler))
    return d


def to_pesser(sd: dict, levels: int) -> dict:
    """Inverse of the documented pesser → diffusers mapping (checkpoints.md §3.3), written independently."""
    res = {"time_emb_proj": "temb_proj", "conv_shortcut": "nin_shortcut"}
    att = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
    out = {}
    for k, v in sd.items():
        if k.startswith("time_embedding.linear_"):
            n = int(k.split(".")[1][-1]) - 1
            out[f"temb.dense.{n}.{k.split('.')[-1]}"] = v
            continue
        if k.startswith("conv_norm_out"):
            out[k.replace("conv_norm_out", "norm_out")] = v
            continue
        if k.startswith(("conv_in", "conv_out")):
            out[k] = v
            continue
        p = k.split(".")
        if p[0] == "mid_block":
            head = {"resnets.0": "mid.block_1", "resnets.1": "mid.block_2", "attentions.0": "mid.attn_1"}[f"{p[1]}.{p[2]}"]
            rest = ".".join(p[3:])
        else:
            side = "down" if p[0] == "down_blocks" else "up"
            lvl = int(p[1]) if side == "down" else levels - 1 - int(p[1])
            kind = {"resnets": "block", "attentions": "attn", "downsamplers": "downsample", "upsamplers": "upsample"}[p[2]]
            head = f"{side}.{lvl}.{kind}" + ("" if kind in ("downsample", "upsample") else f".{p[3]}")
            rest = ".".join(p[4:])
        for a, b in {**res, **att}.items():
            if rest.startswith(a + "."):
                rest = b + rest[len(a):]
        if ".attn" in head and v.ndim == 2:
            v = v[:, :, None, None]  # pesser's 1×1 Conv2d
        out[f"{head}.{rest}"] = v
    return out


@pytest.mark.parametrize("fmt,old_names", [("safetensors", False), ("bin", True), ("safetensors", True),
                                           ("bin", False)])
def test_ho_diffusers_directories_load_identically(tmp_path: Path, fmt: str, old_names: bool) -> None:
    src = random_ho()
    d = write_diffusers_dir(tmp_path / "ddpm", src.state_dict(), TINY_HO, fmt=fmt, old_names=old_names,
                            scheduler={"_class_name": "DDPMScheduler", "num_train_timesteps": 1000,
                                       "beta_schedule": "linear", "beta_start": 0.0001, "beta_end": 0.02,
                                       "variance_type": "fixed_large", "clip_sample": True})
    model = load_model(f"ho:{d}")
    assert_same_weights(model.net, src)
    assert (model.time_input, model.output, model.schedule.describe()) == ("ho", "eps", "linear:1000")
    assert model.info["format"] == ("diffusers (old attention names)" if old_names else "diffusers")
    with torch.no_grad():
        ref = src(torch.zeros(1, 3, 8, 8), torch.tensor([41]))
    assert torch.equal(model(torch.zeros(1, 3, 8, 8), 42).eps, ref)  # node 42 → integer 41


def test_ho_pipeline_directory_with_unet_subfolder(tmp_path: Path) -> None:
    src = random_ho()
    write_diffusers_dir(tmp_path / "pipe" / "unet", src.state_dict(), TINY_HO, fmt="safetensors", old_names=False)
    assert_same_weights(load_ho(tmp_path / "pipe").net, src)


def test_ho_pesser_ckpt_loads_identically(tmp_path: Path) -> None:
    src = random_ho()
    d = tmp_path / "pesser"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(TINY_HO.to_dict()))
    pesser = to_pesser(src.state_dict(), len(TINY_HO.block_out_channels))
    assert any(k.startswith("up.0.block") for k in pesser) and any(v.ndim == 4 and ".attn." in k and
                                                                     k.endswith("q.weight")
                                                                     for k, v in pesser.items())
    ckpt = d / "model-790000.ckpt"
    torch.save(pesser, ckpt, _use_new_zipfile_serialization=False)  # a 2020-era torch.save
    model = load_model(f"ho:{ckpt}")
    assert_same_weights(model.net, src)
    assert model.info["format"] == "pesser pytorch_diffusion"


def test_ho_errors(tmp_path: Path) -> None:
    src = random_ho()
    d = write_diffusers_dir(tmp_path / "cosine", src.state_dict(), TINY_HO, fmt="bin", old_names=False,
                            scheduler={"num_train_timesteps": 4000, "beta_schedule": "squaredcos_cap_v2"})
    with pytest.raises(DdpmdpError, match="num_train_timesteps = 4000.*linear schedule only"):
        load_model(f"ho:{d}")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DdpmdpError, match="no config.json"):
        load_model(f"ho:{empty}")
    (empty / "config.json").write_text(json.dumps(TINY_HO.to_dict()))
    with pytest.raises(DdpmdpError, match="has no diffusion_pytorch_model.safetensors or"):
        load_model(f"ho:{empty}")
    bad = tmp_path / "fourier"
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps({**TINY_HO.to_dict(), "time_embedding_type": "fourier"}))
    (bad / "diffusion_pytorch_model.bin").write_bytes(b"")
    with pytest.raises(DdpmdpError, match="time_embedding_type = 'fourier' is not supported"):
        load_model(f"ho:{bad}")
    # an improved-diffusion file given to ho: (google config, no config.json beside it)
    f = tmp_path / "iddpm.pt"
    torch.save(random_iddpm().state_dict(), f)
    with pytest.raises(DdpmdpError, match="does not fit the Ho-DDPM UNet.*first missing key 'conv_in.weight'.*"
                                          "its keys match iddpm:tiny"):
        load_model(f"ho:{f}")


def test_ho_model_info_with_file(tmp_path: Path) -> None:
    src = random_ho()
    d = write_diffusers_dir(tmp_path / "m", src.state_dict(), TINY_HO, fmt="safetensors", old_names=True)
    info = model_info(f"ho:{d}")
    weights = d / "diffusion_pytorch_model.safetensors"
    assert info["file_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert info["parameters"] == 285_667
    assert info["fingerprint"] == key_shape_fingerprint(src.state_dict())


@needs_diffusers
@pytest.mark.parametrize("safe", [True, False])
def test_ho_loads_diffusers_save_pretrained_output(tmp_path: Path, safe: bool) -> None:
    from diffusers import UNet2DModel

    torch.manual_seed(3)
    ref = UNet2DModel(**{k: v for k, v in TINY_HO.to_dict().items() if k != "_class_name"}).eval()
    ref.save_pretrained(tmp_path / "unet", safe_serialization=safe)
    model = load_model(f"ho:{tmp_path / 'unet'}")
    x = torch.randn(3, 3, 8, 8)
    with torch.no_grad():
        expected = ref(x, torch.tensor([0, 0, 0])).sample
    torch.testing.assert_close(model(x, 1).eps, expected, atol=1e-5, rtol=0)
