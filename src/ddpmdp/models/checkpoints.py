"""Safe, strict loading of the public checkpoints, and the ``iddpm:`` / ``ho:`` model specs.

Model specs (looked up by :func:`ddpmdp.models.specs.load_model`):

* ``iddpm:PRESET`` — an improved-diffusion UNet with seeded random weights (seed 0);
* ``iddpm:PRESET:PATH`` — the same architecture with the weights in ``PATH``, e.g.
  ``iddpm:cifar10-hybrid:cifar10_uncond_50M_500K.pt``. Presets: see
  :data:`ddpmdp.models.nets.iddpm_unet.IDDPM_PRESETS` (cosine schedule, T = 4000, learned-range
  variance, rescaled time input for the released models);
* ``ho`` — Ho et al.'s CIFAR-10 UNet (``google/ddpm-cifar10-32`` configuration) with seeded
  random weights;
* ``ho:DIR`` — a diffusers model directory (``config.json`` plus
  ``diffusion_pytorch_model.safetensors`` or ``.bin``; a pipeline directory with ``unet/``
  works too); ``ho:FILE`` — a single weights file with diffusers names (old or new
  attention names) or pesser's ``pytorch_diffusion`` keys (``model-790000.ckpt``).
  Ho models use the linear schedule, T = 1000, fixed-large variance and the integer
  time input n − 1.

Files are read and matched by :mod:`ddpmdp.models.state_dicts`: ``.pt/.pth/.bin/.ckpt`` files are read with
``torch.load(weights_only=True)``, so a pickle that holds anything but tensors and
plain containers is refused; ``.safetensors`` files are read with ``safetensors``.
The result must be a bare state_dict: ``nn.Parameter`` values are accepted, a
``module.`` prefix on every key (``DataParallel``) is stripped, and a training wrapper
such as ``{'model': …, 'ema': …}`` is **refused** with a message that names the key to
extract (it is not extracted silently, because "model" and "ema" weights differ).
Key names and shapes must match the architecture exactly; errors name the first
missing and the first unexpected key.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import torch

from ddpmdp.fileio import file_digests, file_sha256
from ddpmdp.errors import DdpmdpError, require
from ddpmdp.models.adapter import DiffusionModel, ModelInfo, Numerics, TorchModelAdapter
from ddpmdp.models.nets import count_parameters, key_shape_fingerprint
from ddpmdp.models.nets.ho_unet import (
    GOOGLE_DDPM_CIFAR10_CONFIG,
    HoUNet,
    HoUNetConfig,
    diffusers_keys_from_pesser,
    load_config_json,
    looks_like_pesser,
    rename_old_attention_keys,
)
from ddpmdp.models.nets.iddpm_unet import IDDPM_PRESETS, RELEASE_URL_PREFIX, IDDPMConfig, IDDPMUNet, get_preset
from ddpmdp.models.state_dicts import (RANDOM_SEED, check_keys, expected_shapes, load_into, preset_shapes,
                                       random_net, read_state_dict)
from ddpmdp.schedules import parse_schedule

__all__ = [
    "read_state_dict",
    "file_sha256",
    "load_iddpm",
    "load_ho",
    "HO_SCHEDULE",
    "PESSER_MD5",
]

HO_SCHEDULE = "linear:1000"
"""Ho et al.'s diffusion: β linear from 1e-4 to 0.02 over T = 1000 steps."""

PESSER_MD5 = {"82ed3067fd1002f5cf4c339fb80c4669": "pesser cifar10 (raw weights)",
              "1fa350b952534ae442b1d5235cce5cd3": "pesser ema_cifar10 (EMA weights)"}
"""MD5s of pesser's ``model-790000.ckpt`` files (``pesser/pytorch_diffusion@304bdff:ckpt_util.py``)."""

_WEIGHT_NAMES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")


def _check_iddpm_head(sd: Mapping[str, torch.Tensor], cfg: IDDPMConfig, path: Path) -> None:
    w = sd.get("out.2.weight")
    if w is None or w.ndim != 4 or w.shape[0] == cfg.out_channels:
        return
    if w.shape[0] == cfg.in_channels and cfg.learn_sigma:
        alt = [n for n, c in IDDPM_PRESETS.items() if c.with_(name="", learn_sigma=True, description="",
               release_files=()) == cfg.with_(name="", description="", release_files=()) and not c.learn_sigma]
        raise DdpmdpError(
            f"learn_sigma mismatch: {path} has a {w.shape[0]}-channel output head (ε only, a fixed-variance "
            f"model) but preset {cfg.name!r} expects {cfg.out_channels} channels (ε and the learned-range "
            f"variance)" + (f"; use preset {alt[0]!r}" if alt else "; this is not one of the released N&D files"))
    if w.shape[0] == 2 * cfg.in_channels and not cfg.learn_sigma:
        alt = [n for n, c in IDDPM_PRESETS.items() if c.learn_sigma and c.with_(
            name="", learn_sigma=False, description="", release_files=()) == cfg.with_(
            name="", description="", release_files=())]
        raise DdpmdpError(
            f"learn_sigma mismatch: {path} has a {w.shape[0]}-channel output head (learned-range variance) "
            f"but preset {cfg.name!r} expects {cfg.out_channels} (ε only)"
            + (f"; use preset {alt[0]!r}" if alt else ""))


def _check_overrides(what: str, native: dict[str, str], schedule: str | None, output: str | None,
                     time_input: str | None) -> None:
    """Refuse ``--noise-schedule/--output/--time-input`` values that contradict what a checkpoint was trained with."""
    if schedule is not None and parse_schedule(schedule) != parse_schedule(native["schedule"]):
        raise DdpmdpError(f"{what} was trained with schedule {native['schedule']}; drop --noise-schedule {schedule} "
                          "(the checkpoint fixes its diffusion)")
    if output is not None and output != native["output"]:
        raise DdpmdpError(f"{what} produces output {native['output']!r}, not {output!r}; drop --output")
    if time_input is not None and time_input != native["time_input"]:
        raise DdpmdpError(f"{what} needs time input {native['time_input']!r} (it was trained with it), not "
                          f"{time_input!r}; drop --time-input")


# ---- improved-diffusion -------------------------------------------------------------
def iddpm_state_dict(cfg: IDDPMConfig, path: Path) -> dict[str, torch.Tensor]:
    if not path.exists() and cfg.release_files:
        raise DdpmdpError(f"checkpoint file {str(path)!r} does not exist; download "
                          f"{RELEASE_URL_PREFIX}{cfg.release_files[0]} and pass its path")
    sd = read_state_dict(path)
    _check_iddpm_head(sd, cfg, path)
    check_keys(sd, preset_shapes(cfg.name), path, f"the improved-diffusion preset {cfg.name!r}")
    return sd


def iddpm_info(cfg: IDDPMConfig, path: Path | None, sha: str | None) -> ModelInfo:
    shapes = preset_shapes(cfg.name)
    return {
        "spec": f"iddpm:{cfg.name}" + (f":{path}" if path else ""),
        "architecture": "improved-diffusion UNet",
        "preset": cfg.name,
        "parameters": count_parameters(shapes),
        "state_dict_keys": len(shapes),
        "fingerprint": key_shape_fingerprint(shapes),
        "schedule": cfg.schedule_spec,
        "T": cfg.diffusion_steps,
        "variance": cfg.variance,
        "output": cfg.output,
        "time_input": cfg.time_input,
        "image_size": cfg.image_size,
        "file": str(path) if path else None,
        "file_sha256": sha,
        "weights": "file" if path else f"random (seed {RANDOM_SEED})",
    }


def load_iddpm(preset: str, path: str | Path | None = None, *, device: str = "cpu",
               seed: int = RANDOM_SEED, numerics: Numerics = Numerics()) -> TorchModelAdapter:
    """An improved-diffusion model as a :class:`~ddpmdp.models.adapter.TorchModelAdapter`.

    ``path=None`` gives seeded random weights (PyTorch default init everywhere, no zero
    layers, so outputs are non-trivial). The adapter's schedule, ``output`` (``eps+v`` for
    learned-range presets) and ``time_input`` (``iddpm``: (n − 1)·1000/T) come from the
    preset; ``adapter.info`` holds the model-info dictionary and ``adapter.variance`` the
    preset's variance rule.
    """
    cfg = get_preset(preset)
    if path is None:
        net = random_net(lambda: IDDPMUNet(cfg, zero_init=False), seed, device)
        p, sha = None, None
    else:
        p = Path(path).expanduser()
        sd = iddpm_state_dict(cfg, p)
        net = load_into(lambda: IDDPMUNet(cfg), sd, device)
        sha = file_sha256(p)
    info = iddpm_info(cfg, p, sha)
    ident = f"iddpm:{cfg.name}:" + (f"{p.name}@{sha[:12]}" if p and sha else f"random-seed{seed}")
    adapter = TorchModelAdapter(net, cfg.schedule(), time_input=cfg.time_input,  # type: ignore[arg-type]
                                output=cfg.output, identity=ident,  # type: ignore[arg-type]
                                image_shape=(cfg.in_channels, cfg.image_size, cfg.image_size),
                                numerics=numerics, variance=cfg.variance, info=info)  # type: ignore[arg-type]
    return adapter


def iddpm_spec(argument: str, *, device: str = "cpu", data_dir=None, schedule: str | None = None,
               output: str | None = None, time_input: str | None = None, numerics: Numerics = Numerics(),
               **_: Any) -> DiffusionModel:
    preset, _sep, path = argument.partition(":")
    require(bool(preset), "iddpm model spec needs a preset: iddpm:PRESET[:PATH], e.g. "
            "iddpm:cifar10-hybrid:cifar10_uncond_50M_500K.pt")
    cfg = get_preset(preset)
    _check_overrides(f"iddpm preset {cfg.name!r}", {"schedule": cfg.schedule_spec, "output": cfg.output,
                                                   "time_input": cfg.time_input}, schedule, output, time_input)
    return load_iddpm(preset, path or None, device=device, numerics=numerics)


# ---- Ho et al. (diffusers names) --------------------------------------------------------
def _resolve_ho(path: Path) -> tuple[Path, HoUNetConfig, Path | None]:
    """(weights file, UNet config, scheduler_config.json or None) for a ``ho:`` argument."""
    require(path.exists(), f"{str(path)!r} does not exist; pass a diffusers model directory (config.json + "
            "diffusion_pytorch_model.safetensors) or a weights file")
    if path.is_dir():
        d = path
        if not (d / "config.json").is_file() and (d / "unet" / "config.json").is_file():
            d = d / "unet"
        require((d / "config.json").is_file(), f"{path} has no config.json (nor unet/config.json); it is not a "
                "diffusers model directory")
        weights = next((d / n for n in _WEIGHT_NAMES if (d / n).is_file()), None)
        require(weights is not None, f"{d} has no {' or '.join(_WEIGHT_NAMES)}; download the weights into it")
        sched = next((p for p in (d / "scheduler_config.json", d.parent / "scheduler" / "scheduler_config.json",
                                  path / "scheduler_config.json") if p.is_file()), None)
        return weights, load_config_json(d / "config.json"), sched  # type: ignore[return-value]
    cfg_file = path.parent / "config.json"
    config = GOOGLE_DDPM_CIFAR10_CONFIG
    if cfg_file.is_file():
        try:
            raw = json.loads(cfg_file.read_text())
        except (OSError, ValueError):
            raw = None
        if isinstance(raw, dict) and raw.get("_class_name", "UNet2DModel") == "UNet2DModel" and "block_out_channels" in raw:
            config = HoUNetConfig.from_dict(raw, str(cfg_file))
    sched = path.parent / "scheduler_config.json"
    return path, config, sched if sched.is_file() else None


def _check_ho_scheduler(sched: Path | None) -> None:
    if sched is None:
        return
    try:
        cfg = json.loads(sched.read_text())
    except (OSError, ValueError) as exc:
        raise DdpmdpError(f"{sched}: not a readable JSON scheduler config ({exc})") from None
    want = {"num_train_timesteps": 1000, "beta_schedule": "linear", "beta_start": 0.0001, "beta_end": 0.02}
    for k, v in want.items():
        if k in cfg and cfg[k] != v:
            raise DdpmdpError(f"{sched}: {k} = {cfg[k]!r}, but the ho loader supports Ho et al.'s linear "
                              f"schedule only ({k} = {v!r}); use module:callable with --noise-schedule for other "
                              "models")
    if cfg.get("prediction_type", "epsilon") != "epsilon":
        raise DdpmdpError(f"{sched}: prediction_type = {cfg['prediction_type']!r}; ddpmdp needs an ε-prediction model")


def ho_state_dict(path: Path) -> tuple[dict[str, torch.Tensor], HoUNetConfig, Path, str]:
    weights, config, sched = _resolve_ho(path)
    _check_ho_scheduler(sched)
    raw = read_state_dict(weights)
    if looks_like_pesser(raw):
        sd, fmt = diffusers_keys_from_pesser(raw, len(config.block_out_channels)), "pesser pytorch_diffusion"
    else:
        sd = rename_old_attention_keys(raw)
        fmt = "diffusers (old attention names)" if sd.keys() != raw.keys() else "diffusers"
    expected = expected_shapes(lambda: HoUNet(config))
    check_keys(sd, expected, weights, "the Ho-DDPM UNet" + (" (google/ddpm-cifar10-32 configuration)"
                                                             if config == GOOGLE_DDPM_CIFAR10_CONFIG else ""))
    return sd, config, weights, fmt


def ho_info(config: HoUNetConfig, weights: Path | None, sha: str | None, md5: str | None,
             fmt: str | None, arg: str) -> ModelInfo:
    shapes = expected_shapes(lambda: HoUNet(config))
    info: dict[str, Any] = {
        "spec": "ho" + (f":{arg}" if arg else ""),
        "architecture": "Ho et al. DDPM UNet (diffusers UNet2DModel names)",
        "preset": None,
        "parameters": count_parameters(shapes),
        "state_dict_keys": len(shapes),
        "fingerprint": key_shape_fingerprint(shapes),
        "schedule": HO_SCHEDULE,
        "T": 1000,
        "variance": "fixed_large",
        "output": "eps",
        "time_input": "ho",
        "image_size": config.sample_size,
        "file": str(weights) if weights else None,
        "file_sha256": sha,
        "weights": "file" if weights else f"random (seed {RANDOM_SEED})",
        "format": fmt,
    }
    if md5 in PESSER_MD5:
        info["known_file"] = PESSER_MD5[md5]
    return cast(ModelInfo, info)  # ModelInfo plus the extra "known_file" key


def load_ho(path: str | Path | None = None, *, device: str = "cpu", seed: int = RANDOM_SEED,
            numerics: Numerics = Numerics()) -> TorchModelAdapter:
    """Ho et al.'s CIFAR-10 model as a :class:`~ddpmdp.models.adapter.TorchModelAdapter` (``output='eps'``,
    ``time_input='ho'``: integer n − 1, schedule ``linear:1000``). ``path=None`` gives the
    ``google/ddpm-cifar10-32`` architecture with seeded random weights."""
    if path is None:
        config = GOOGLE_DDPM_CIFAR10_CONFIG
        net = random_net(lambda: HoUNet(config), seed, device)
        info = ho_info(config, None, None, None, None, "")
        ident = f"ho:random-seed{seed}"
    else:
        p = Path(path).expanduser()
        sd, config, weights, fmt = ho_state_dict(p)
        net = load_into(lambda: HoUNet(config), sd, device)
        sha, md5 = file_digests(weights)
        info = ho_info(config, weights, sha, md5, fmt, str(p))
        ident = f"ho:{weights.name}@{sha[:12]}"
    adapter = TorchModelAdapter(net, parse_schedule(HO_SCHEDULE), time_input="ho", output="eps", identity=ident,
                                image_shape=(config.in_channels, config.sample_size, config.sample_size),
                                numerics=numerics, variance="fixed_large", info=info)
    return adapter


def ho_spec(argument: str, *, device: str = "cpu", data_dir=None, schedule: str | None = None,
            output: str | None = None, time_input: str | None = None, numerics: Numerics = Numerics(),
            **_: Any) -> DiffusionModel:
    _check_overrides("the Ho et al. model", {"schedule": HO_SCHEDULE, "output": "eps", "time_input": "ho"},
                     schedule, output, time_input)
    return load_ho(argument or None, device=device, numerics=numerics)
