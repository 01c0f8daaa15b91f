"""The ``diffusers:DIR`` model spec: any local diffusers ``UNet2DModel`` folder.

DIR is either a model folder (``config.json`` + ``diffusion_pytorch_model.safetensors`` or
``.bin``) with ``scheduler_config.json`` beside it (or in ``../scheduler/``), or a pipeline folder
(``model_index.json``, ``unet/``, ``scheduler/``). Nothing is downloaded. diffusers is an optional
extra (``pip install 'ddpmdp[diffusers]'``), imported only when such a spec is loaded.

What the scheduler config says, and what ddpmdp makes of it:

* β: ``linear``, ``scaled_linear``, ``squaredcos_cap_v2`` (recomputed in float64 from the config's
  numbers; ``linear`` with β from 1e-4·1000/T to 0.02·1000/T *is* ``linear:T``, and
  ``squaredcos_cap_v2`` *is* ``cosine:T``) or ``trained_betas``; ``num_train_timesteps`` is T;
  ``rescale_betas_zero_snr`` (ᾱ_T = 0, an infinite prior term) is refused.
* ``prediction_type``: ``epsilon`` as is; ``v_prediction`` and ``sample`` are converted to ε exactly
  by the adapter (:data:`~ddpmdp.models.adapter.Prediction`).
* ``variance_type``: ``fixed_small`` (and ``fixed_small_log``, which samples the same σ) →
  ``fixed_small``; ``fixed_large`` (and ``fixed_large_log``) → ``fixed_large``; ``learned_range`` →
  output ``eps+v`` with v = (o + 1)/2, the same interpolation as ``DDPMScheduler._get_variance``;
  ``learned`` (a raw variance output) is refused. It is the model's default rule; ``--variance``
  overrides it as for any model.
* Timesteps: diffusers' 0-based timestep i is node i + 1 (time input ``ho``: the network receives
  n − 1).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ddpmdp.errors import DdpmdpError, require
from ddpmdp.fileio import file_sha256
from ddpmdp.models.adapter import DiffusionModel, ModelInfo, Numerics, TorchModelAdapter
from ddpmdp.models.nets import count_parameters, key_shape_fingerprint
from ddpmdp.models.nets.ho_unet import rename_old_attention_keys
from ddpmdp.models.state_dicts import check_keys, expected_shapes, load_into, read_state_dict
from ddpmdp.schedules import Schedule, cosine_schedule, linear_schedule

__all__ = ["load_diffusers", "diffusers_spec", "diffusers_schedule", "VARIANCE_TYPES", "PREDICTION_TYPES"]

EXTRA_HINT = "pip install 'ddpmdp[diffusers]'"
WEIGHT_NAMES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
VARIANCE_TYPES = {"fixed_small": "fixed_small", "fixed_small_log": "fixed_small", "fixed_large": "fixed_large",
                  "fixed_large_log": "fixed_large", "learned_range": "learned_range"}
"""diffusers ``variance_type`` → ddpmdp variance rule (``learned`` is refused)."""
PREDICTION_TYPES = {"epsilon": "epsilon", "v_prediction": "v", "sample": "sample"}
"""diffusers ``prediction_type`` → :data:`~ddpmdp.models.adapter.Prediction`."""


def import_unet2d() -> Any:
    """diffusers' ``UNet2DModel`` class, or a :class:`DdpmdpError` that names the extra."""
    try:
        from diffusers import UNet2DModel
    except ImportError as exc:
        raise DdpmdpError(f"diffusers:DIR needs the diffusers package ({exc}); install it with {EXTRA_HINT}") from None
    return UNet2DModel


class UNetOutput(torch.nn.Module):
    """``unet(x, t).sample`` as a plain module (so the adapter's ``.to(dtype)`` is torch's own)."""

    def __init__(self, unet: torch.nn.Module) -> None:
        super().__init__()
        self.unet = unet

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.unet(x, t).sample


def _read_json(path: Path) -> dict[str, Any]:
    try:
        obj = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DdpmdpError(f"{path}: not a readable JSON config ({exc})") from None
    require(isinstance(obj, dict), f"{path}: expected a JSON object")
    return obj


def resolve_folder(path: Path) -> tuple[Path, Path]:
    """(UNet folder, scheduler_config.json) of a diffusers model or pipeline folder."""
    require(path.is_dir(), f"diffusers:{path}: no such folder; pass a folder saved by diffusers "
            "(UNet2DModel.save_pretrained or a pipeline's save_pretrained)")
    unet = path / "unet" if (path / "model_index.json").is_file() or not (path / "config.json").is_file() else path
    require((unet / "config.json").is_file(), f"diffusers:{path}: no config.json (nor unet/config.json); save the "
            "model with UNet2DModel.save_pretrained(DIR) or the pipeline with pipeline.save_pretrained(DIR)")
    sched = next((p for p in (unet / "scheduler_config.json", unet.parent / "scheduler" / "scheduler_config.json",
                              path / "scheduler" / "scheduler_config.json") if p.is_file()), None)
    require(sched is not None, f"diffusers:{path}: no scheduler_config.json beside config.json (nor in scheduler/); "
            "ddpmdp needs the training noise schedule: save it with DDPMScheduler(...).save_pretrained(DIR)")
    return unet, sched  # type: ignore[return-value]


def diffusers_schedule(cfg: dict[str, Any], where: str = "scheduler config") -> Schedule:
    """The noise schedule of a diffusers scheduler config, in float64 over nodes 0..T."""
    T = int(cfg.get("num_train_timesteps", 1000))
    require(not cfg.get("rescale_betas_zero_snr", False), f"{where}: rescale_betas_zero_snr makes ᾱ_T = 0 (an "
            "infinite prior term), which has no ELBO; ddpmdp cannot use this schedule")
    if cfg.get("trained_betas") is not None:
        betas = np.asarray(cfg["trained_betas"], dtype=np.float64)
        require(betas.shape == (T,), f"{where}: trained_betas has {betas.size} values, num_train_timesteps is {T}")
        return Schedule.from_betas(betas, f"diffusers-trained:{T}")
    kind = cfg.get("beta_schedule", "linear")
    start, end = float(cfg.get("beta_start", 0.0001)), float(cfg.get("beta_end", 0.02))
    if kind == "linear":
        if T > 20 and (start, end) == (1000.0 / T * 1e-4, 1000.0 / T * 0.02):
            return linear_schedule(T)  # the same float64 β, so the same ᾱ as ho: and iddpm: models
        betas = np.linspace(start, end, T, dtype=np.float64)
        return Schedule.from_betas(betas, f"diffusers-linear({start:g},{end:g}):{T}")
    if kind == "scaled_linear":
        betas = np.linspace(start ** 0.5, end ** 0.5, T, dtype=np.float64) ** 2
        return Schedule.from_betas(betas, f"diffusers-scaled_linear({start:g},{end:g}):{T}")
    if kind == "squaredcos_cap_v2":
        return cosine_schedule(T)
    raise DdpmdpError(f"{where}: beta_schedule {kind!r} is not supported; use a config with linear, scaled_linear, "
                      "squaredcos_cap_v2 or trained_betas")


def _weights_file(unet_dir: Path) -> Path:
    for name in WEIGHT_NAMES:
        if (unet_dir / name).is_file():
            return unet_dir / name
    raise DdpmdpError(f"{unet_dir} has no {' or '.join(WEIGHT_NAMES)}; save the weights into it")


def _unet_config(unet_dir: Path) -> dict[str, Any]:
    cfg = _read_json(unet_dir / "config.json")
    cls = cfg.get("_class_name", "UNet2DModel")
    require(cls == "UNet2DModel", f"{unet_dir / 'config.json'}: a {cls}, but diffusers:DIR supports unconditional "
            "pixel-space UNet2DModel folders only")
    require(not cfg.get("num_class_embeds") and not cfg.get("class_embed_type"),
            f"{unet_dir / 'config.json'}: a class-conditional UNet2DModel; ddpmdp needs an unconditional model")
    require(cfg.get("time_embedding_type", "positional") == "positional",
            f"{unet_dir / 'config.json'}: time_embedding_type {cfg.get('time_embedding_type')!r} (a score-SDE "
            "model); diffusers:DIR supports discrete-time DDPM UNets (positional time embedding)")
    return cfg


def _model_kind(sched: dict[str, Any], where: Path, in_ch: int, out_ch: int) -> tuple[str, str, str]:
    """(prediction, variance rule, output) from the scheduler config and the UNet's channel counts."""
    cls = str(sched.get("_class_name", "DDPMScheduler"))
    require("Ve" not in cls and "EDM" not in cls, f"{where}: a {cls} (a variance-exploding / EDM model); "
            "diffusers:DIR needs a DDPM (variance-preserving) scheduler config")
    pred = sched.get("prediction_type", "epsilon")
    require(pred in PREDICTION_TYPES, f"{where}: prediction_type {pred!r} is not supported; ddpmdp converts "
            f"{', '.join(PREDICTION_TYPES)} to ε")
    vt = sched.get("variance_type", "fixed_small")
    if vt == "learned":
        raise DdpmdpError(f"{where}: variance_type 'learned' (the network outputs σ² directly) is not supported; "
                          "ddpmdp supports fixed_small, fixed_large and learned_range")
    require(vt in VARIANCE_TYPES, f"{where}: variance_type {vt!r} is not supported; use fixed_small, fixed_large "
            "or learned_range")
    rule = VARIANCE_TYPES[vt]
    want = 2 * in_ch if rule == "learned_range" else in_ch
    require(out_ch == want, f"{where}: variance_type {vt!r} needs a UNet with out_channels = {want} for "
            f"{in_ch}-channel images, but config.json has out_channels = {out_ch}"
            + ("; set variance_type to learned_range" if out_ch == 2 * in_ch else ""))
    return PREDICTION_TYPES[pred], rule, ("eps+v" if rule == "learned_range" else "eps")


def load_diffusers(path: str | Path, *, device: str = "cpu", numerics: Numerics = Numerics()) -> TorchModelAdapter:
    """A diffusers folder as a :class:`~ddpmdp.models.adapter.TorchModelAdapter` (see the module docstring).

    The weights are read by ddpmdp's strict loader (safetensors or ``.bin`` with ``weights_only``) and
    must match ``config.json`` key for key and shape for shape."""
    UNet2DModel = import_unet2d()
    root = Path(path).expanduser()
    unet_dir, sched_file = resolve_folder(root)
    cfg = _unet_config(unet_dir)
    sched = _read_json(sched_file)
    in_ch, out_ch = int(cfg.get("in_channels", 3)), int(cfg.get("out_channels", 3))
    prediction, rule, output = _model_kind(sched, sched_file, in_ch, out_ch)
    schedule = diffusers_schedule(sched, str(sched_file))
    weights = _weights_file(unet_dir)

    def build() -> torch.nn.Module:
        return UNet2DModel.from_config(cfg)

    shapes = expected_shapes(build)
    sd = rename_old_attention_keys(read_state_dict(weights))
    check_keys(sd, shapes, weights, f"the UNet2DModel of {unet_dir / 'config.json'}")
    net = load_into(build, sd, device)
    size = cfg.get("sample_size")
    hw = (int(size), int(size)) if isinstance(size, int) else (tuple(int(x) for x in size) if size else None)
    sha = file_sha256(weights)
    info: ModelInfo = {
        "spec": f"diffusers:{path}", "architecture": "diffusers UNet2DModel", "preset": None,
        "parameters": count_parameters(shapes), "state_dict_keys": len(shapes),
        "fingerprint": key_shape_fingerprint(shapes), "schedule": schedule.describe(), "T": schedule.T,
        "variance": rule, "output": output, "time_input": "ho", "image_size": hw[0] if hw else None,
        "file": str(weights), "file_sha256": sha, "weights": "file", "format": "diffusers",
        "extra": {"prediction_type": sched.get("prediction_type", "epsilon"),
                  "variance_type": sched.get("variance_type", "fixed_small"),
                  "scheduler": sched.get("_class_name"), "clip_sample": sched.get("clip_sample")},
    }
    return TorchModelAdapter(UNetOutput(net), schedule, time_input="ho", output=output,  # type: ignore[arg-type]
                             identity=f"diffusers:{weights.parent.name}/{weights.name}@{sha[:12]}",
                             image_shape=(in_ch, *hw) if hw else None,  # type: ignore[arg-type]
                             numerics=numerics, variance=rule, info=info,  # type: ignore[arg-type]
                             prediction=prediction)  # type: ignore[arg-type]


def diffusers_spec(argument: str, *, device: str = "cpu", schedule: str | None = None, output: str | None = None,
                   time_input: str | None = None, numerics: Numerics = Numerics(), **_: Any) -> DiffusionModel:
    """``diffusers:DIR`` for :func:`ddpmdp.models.specs.load_model`; the folder fixes schedule, output and
    time input, so ``--noise-schedule``, ``--output`` and ``--time-input`` are refused."""
    require(bool(argument), "diffusers model spec needs a folder: diffusers:DIR")
    for flag, value in (("--noise-schedule", schedule), ("--output", output), ("--time-input", time_input)):
        require(value is None, f"diffusers:{argument}: drop {flag} (the folder's scheduler and UNet configs fix it)")
    return load_diffusers(argument, device=device, numerics=numerics)
