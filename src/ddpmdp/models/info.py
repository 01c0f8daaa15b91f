"""``model-info``: describe a model spec without running it."""
from __future__ import annotations

from pathlib import Path


from ddpmdp.errors import require
from ddpmdp.fileio import file_digests, file_sha256
from ddpmdp.models.checkpoints import ho_info, ho_state_dict, iddpm_info, iddpm_state_dict
from ddpmdp.models.nets.ho_unet import GOOGLE_DDPM_CIFAR10_CONFIG
from ddpmdp.models.nets import count_parameters, key_shape_fingerprint
from ddpmdp.models.nets.iddpm_unet import get_preset
from ddpmdp.models.adapter import ModelInfo, TorchModelAdapter
from ddpmdp.models.specs import load_model

__all__ = ["model_info"]


def model_info(spec: str, data_dir: str | Path | None = None, *, schedule: str | None = None,
               output: str | None = None, time_input: str | None = None) -> ModelInfo:
    """Describe a model spec without running it (``ddpmdp model-info SPEC --json``).

    For ``iddpm:`` and ``ho:`` specs the architecture is built on the meta device (no
    memory, no forward pass); a file in the spec is read and checked strictly. Keys:
    ``parameters`` (int), ``state_dict_keys`` (int), ``fingerprint`` (sha256 of the sorted
    ``key:shape`` lines, ``checkpoints.md`` §2.3), ``schedule`` (e.g. ``cosine:4000``),
    ``T``, ``variance`` (``learned_range`` or ``fixed_large``), ``time_input``,
    ``file_sha256`` (None without a file), plus ``spec``, ``architecture``, ``preset``,
    ``output``, ``image_size``, ``file`` and ``weights``. Other specs are loaded through
    :func:`ddpmdp.models.specs.load_model` (``schedule``, ``output`` and ``time_input`` are
    passed on, as ``--noise-schedule`` etc. would be) and must give a ``TorchModelAdapter``.
    """
    prefix, _sep, arg = spec.partition(":")
    if prefix == "iddpm":
        preset, _sep, path = arg.partition(":")
        require(bool(preset), "iddpm model spec needs a preset: iddpm:PRESET[:PATH]")
        cfg = get_preset(preset)
        if not path:
            return iddpm_info(cfg, None, None)
        p = Path(path).expanduser()
        iddpm_state_dict(cfg, p)
        return iddpm_info(cfg, p, file_sha256(p))
    if prefix == "ho":
        if not arg:
            return ho_info(GOOGLE_DDPM_CIFAR10_CONFIG, None, None, None, None, "")
        p = Path(arg).expanduser()
        _sd, config, weights, fmt = ho_state_dict(p)
        sha, md5 = file_digests(weights)
        return ho_info(config, weights, sha, md5, fmt, arg)
    model = load_model(spec, data_dir=data_dir, schedule=schedule, output=output, time_input=time_input)
    if prefix == "diffusers":  # the loader fills the model-info dictionary from the folder's configs
        return model.info
    require(isinstance(model, TorchModelAdapter), f"model-info describes network models (iddpm:, ho:, "
            f"module:callable); {spec!r} gives a {type(model).__name__}")
    assert isinstance(model, TorchModelAdapter)
    net = model.net
    shapes = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    return {
        "spec": spec, "architecture": type(net).__name__, "preset": None,
        "parameters": count_parameters(shapes), "state_dict_keys": len(shapes),
        "fingerprint": key_shape_fingerprint(shapes), "schedule": model.schedule.describe(), "T": model.schedule.T,
        "variance": model.variance,
        "output": "eps+v" if model.learned_variance else "eps",
        "time_input": model.time_input if isinstance(model.time_input, str) else "custom",
        "image_size": None, "file": None, "file_sha256": None, "weights": "callable",
    }

