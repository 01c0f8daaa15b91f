"""Model specs: strings that name a model for the CLI and the notebooks.

* ``gaussian:DATA_SPEC`` — the closed-form Gaussian-data model fitted to that data
  (``gaussian+v:DATA_SPEC`` adds a constant learned-range fraction v = 0.5);
* ``package.module:callable`` — bring your own: the callable returns a
  :class:`~ddpmdp.models.adapter.DiffusionModel` adapter, or an ``nn.Module`` that is
  wrapped with ``schedule`` (``linear:T``, ``cosine:T`` or a ``.npy`` of ᾱ),
  ``output`` (``eps`` or ``eps+v``) and ``time_input``;
* further prefixes registered with :func:`register_model_spec`
  (``iddpm:PRESET[:PATH]``, ``ho[:PATH]``, ``diffusers:DIR``, embedded model names).
"""
from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Callable

import torch

from ddpmdp.data.specs import load_images
from ddpmdp.errors import DdpmdpError, require
from ddpmdp.models.checkpoints import ho_spec, iddpm_spec
from ddpmdp.models.diffusers_folder import diffusers_spec
from ddpmdp.models.embedded import EMBEDDED, embedded_spec
from ddpmdp.models.adapter import DiffusionModel, Numerics, TorchModelAdapter
from ddpmdp.models.gaussian_data import GaussianDataModel
from ddpmdp.schedules import linear_schedule, parse_schedule

__all__ = ["load_model", "register_model_spec"]

ModelLoader = Callable[..., DiffusionModel]

#: The built-in prefixes; :func:`register_model_spec` adds plug-ins.
_LOADERS: dict[str, ModelLoader] = {
    "iddpm": iddpm_spec,
    "ho": ho_spec,
    "diffusers": diffusers_spec,
    **{name: embedded_spec(name) for name in EMBEDDED},
}


def register_model_spec(prefix: str, loader: ModelLoader) -> None:
    """Register ``loader(argument, device=..., data_dir=...) -> DiffusionModel`` for ``prefix[:argument]``."""
    _LOADERS[prefix] = loader


def _default_numerics_only(spec: str, numerics: Numerics) -> None:
    require(numerics == Numerics(), f"model spec {spec!r}: bf16, channels-last and float64 apply to networks that "
            "ddpmdp builds (iddpm:, ho:, embedded names, module:callable returning an nn.Module); this model "
            "fixes its own numerics")


def _gaussian(arg: str, *, v: float | None, data_dir, schedule: str | None, numerics: Numerics = Numerics(),
              **_) -> DiffusionModel:
    _default_numerics_only(f"gaussian:{arg}", numerics)
    require(bool(arg), "gaussian model spec needs data: gaussian:DATA_SPEC, e.g. gaussian:cifar10:train")
    data = load_images(arg, data_dir)
    sched = parse_schedule(schedule) if schedule else linear_schedule(1000)
    imgs = data.images
    require(data.dims <= 4096, f"the Gaussian-data model needs d <= 4096 (got {data.dims}); use smaller images")
    return GaussianDataModel.fit(imgs, sched, v=v, identity=f"gaussian({data.identity})")


def _user_callable(spec: str, *, device: str, schedule: str | None, output: str | None,
                   time_input: str | None, numerics: Numerics = Numerics(), **_) -> DiffusionModel:
    module_name, _sep, attr = spec.partition(":")
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise DdpmdpError(f"model spec {spec!r}: cannot import module {module_name!r} ({exc})") from None
    fn = getattr(module, attr, None)
    require(callable(fn), f"model spec {spec!r}: {module_name} has no callable {attr!r}")
    assert fn is not None
    obj = fn()
    if isinstance(obj, torch.nn.Module):
        require(schedule is not None, f"model spec {spec!r} returned an nn.Module: also pass --noise-schedule "
                "linear:T, cosine:T or a .npy file of ᾱ")
        require(output is not None, f"model spec {spec!r} returned an nn.Module: also pass --output eps or eps+v")
        return TorchModelAdapter(obj.to(device), parse_schedule(schedule), output=output,  # type: ignore[arg-type]
                                 time_input=time_input or "iddpm", identity=spec,  # type: ignore[arg-type]
                                 numerics=numerics, info={"spec": spec, "architecture": type(obj).__name__})
    require(isinstance(obj, DiffusionModel), f"model spec {spec!r}: the callable must return an nn.Module or "
            f"a DiffusionModel adapter (schedule, learned_variance, variance, image_shape, identity, info, "
            f"numerics, fingerprint() and __call__), got {type(obj).__name__}")
    _default_numerics_only(spec, numerics)
    return obj


def load_model(spec: str, *, device: str = "cpu", data_dir=None, schedule: str | None = None,
               output: str | None = None, time_input: str | None = None,
               numerics: Numerics = Numerics()) -> DiffusionModel:
    """Resolve a model spec (see the module docstring) to a model adapter on ``device``.

    ``numerics`` (dtype, bf16 autocast, channels-last) is fixed when the adapter is built."""
    kwargs = dict(device=device, data_dir=data_dir, schedule=schedule, output=output, time_input=time_input,
                  numerics=numerics)
    prefix, _, arg = spec.partition(":")
    if prefix == "gaussian":
        return _gaussian(arg, v=None, **kwargs)
    if prefix == "gaussian+v":
        return _gaussian(arg, v=0.5, **kwargs)
    if prefix in _LOADERS:
        return _LOADERS[prefix](arg, **kwargs)
    if arg:
        return _user_callable(spec, **kwargs)
    known = ", ".join(["gaussian", "gaussian+v", *sorted(_LOADERS)])
    raise DdpmdpError(f"unknown model spec {spec!r}: use module:callable or one of: {known}")
