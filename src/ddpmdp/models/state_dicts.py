"""One strict state_dict loader for checkpoints and embedded models.

:func:`read_state_dict` reads a file safely (``torch.load(weights_only=True)`` or
``safetensors``) and returns a bare state_dict; :func:`check_keys` demands exactly the
expected keys and shapes (errors name the first missing and the first unexpected key, and
the known architecture whose keys the file matches); :func:`load_into` builds a network on
the meta device and copies the weights in strictly (no random initialisation is left).
"""
from __future__ import annotations

import functools
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable

import torch

from ddpmdp.errors import DdpmdpError, require
from ddpmdp.models.nets import key_shape_fingerprint
from ddpmdp.models.nets.ho_unet import HoUNet
from ddpmdp.models.nets.iddpm_unet import IDDPM_PRESETS, IDDPMUNet

__all__ = ["read_state_dict", "check_keys", "expected_shapes", "preset_shapes", "load_into", "random_net",
           "RANDOM_SEED"]

RANDOM_SEED = 0
"""Seed of the random weights of a spec without a file (``iddpm:PRESET``, ``ho``)."""


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a bare state_dict from ``path`` (CPU tensors, insertion order kept).

    ``.safetensors`` → ``safetensors.torch.load_file``; anything else →
    ``torch.load(path, map_location="cpu", weights_only=True)`` (zip or legacy format).
    ``nn.Parameter`` values become plain tensors; a ``module.`` prefix shared by every
    key is stripped. Raises :class:`DdpmdpError` for a missing, truncated or corrupt
    file, a pickle holding non-tensor objects, a training wrapper dict (naming the key
    to extract) or any other non-state_dict content.
    """
    path = Path(path).expanduser()
    require(path.exists(), f"checkpoint file {str(path)!r} does not exist; check the path")
    require(path.is_file(), f"{str(path)!r} is a directory; point at the weights file inside it")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            obj: Any = load_file(str(path))
        except Exception as exc:  # safetensors raises SafetensorError for truncated/corrupt files
            raise DdpmdpError(f"{path} is not a readable safetensors file (truncated or corrupt: {exc}); "
                              "download it again") from None
    else:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            msg = str(exc)
            if re.search(r"Unsupported (global|class)|GLOBAL [\w.]+", msg):
                found = re.search(r"GLOBAL ([\w.]+)", msg)
                what = f" ({found.group(1)})" if found else ""
                raise DdpmdpError(
                    f"{path} holds pickled Python objects other than tensors{what}, which ddpmdp refuses to "
                    "unpickle for safety; re-save only the weights with torch.save(model.state_dict(), path)"
                ) from None
            raise DdpmdpError(f"{path} is not a readable PyTorch checkpoint (truncated or corrupt: {msg[:120]}); "
                              "download it again") from None
        except Exception as exc:
            raise DdpmdpError(f"{path} is not a readable PyTorch checkpoint (truncated or corrupt: "
                              f"{type(exc).__name__}: {str(exc)[:120]}); download it again") from None
    return _as_state_dict(obj, path)


def _as_state_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    if not isinstance(obj, Mapping):
        raise DdpmdpError(f"{path} holds a {type(obj).__name__}, not a state_dict (a mapping from "
                          "parameter names to tensors); save model.state_dict() instead")
    require(len(obj) > 0, f"{path} holds an empty mapping, not a state_dict")
    others = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if others:
        nested = [k for k, v in obj.items() if isinstance(v, Mapping) and v
                  and all(isinstance(x, torch.Tensor) for x in v.values())]
        if nested:
            nested.sort(key=lambda k: (0 if "ema" in str(k).lower() else 1))
            key = nested[0]
            raise DdpmdpError(
                f"{path} is a training-checkpoint wrapper with top-level keys {sorted(map(str, obj))[:8]}, not a "
                f"bare state_dict: extract the weights first, e.g. torch.save(torch.load(path)[{key!r}], "
                f"'weights.pt'), and load that file" + (f" (candidates: {nested})" if len(nested) > 1 else ""))
        raise DdpmdpError(f"{path} is not a bare state_dict: entry {others[0]!r} holds a "
                          f"{type(obj[others[0]]).__name__}, not a tensor")
    require(all(isinstance(k, str) for k in obj), f"{path}: state_dict keys must be strings")
    sd = {k: (v.detach() if isinstance(v, torch.nn.Parameter) else v) for k, v in obj.items()}
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


# ---- strict matching ----------------------------------------------------------------
def expected_shapes(build: Callable[[], torch.nn.Module]) -> dict[str, tuple[int, ...]]:
    """Key → shape of ``build()``'s state_dict, built on the meta device (no memory)."""
    with torch.device("meta"):
        net = build()
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


@functools.lru_cache(maxsize=None)
def preset_shapes(name: str) -> dict[str, tuple[int, ...]]:
    cfg = IDDPM_PRESETS[name]
    return expected_shapes(lambda: IDDPMUNet(cfg))


@functools.lru_cache(maxsize=None)
def _known_fingerprints() -> dict[str, str]:
    fps = {key_shape_fingerprint(preset_shapes(n)): f"iddpm:{n}" for n in reversed(list(IDDPM_PRESETS))}
    fps[key_shape_fingerprint(expected_shapes(HoUNet))] = "ho (google/ddpm-cifar10-32 architecture)"
    return fps


def check_keys(sd: Mapping[str, torch.Tensor], expected: Mapping[str, tuple[int, ...]], path: Path,
                target: str) -> None:
    """Raise DdpmdpError unless ``sd`` has exactly the expected keys and shapes."""
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    if missing or unexpected:
        guess = _known_fingerprints().get(key_shape_fingerprint(sd))
        hint = f"; its keys match {guess} instead" if guess else ""
        parts = []
        if missing:
            parts.append(f"first missing key {missing[0]!r} ({len(missing)} missing)")
        if unexpected:
            parts.append(f"first unexpected key {unexpected[0]!r} ({len(unexpected)} unexpected)")
        raise DdpmdpError(f"{path} does not fit {target}: {', '.join(parts)}{hint}")
    for k, shape in expected.items():
        if tuple(sd[k].shape) != shape:
            raise DdpmdpError(f"{path} does not fit {target}: {k!r} has shape {tuple(sd[k].shape)} in the file "
                              f"but {shape} in the model")


def load_into(build: Callable[[], torch.nn.Module], sd: Mapping[str, torch.Tensor], device: str = "cpu"
              ) -> torch.nn.Module:
    """Build on the meta device, allocate, copy ``sd`` in with strict loading (no random init)."""
    with torch.device("meta"):
        net = build()
    net = net.to_empty(device="cpu")
    net.load_state_dict(sd, strict=True)
    return net.to(device).eval()


def random_net(build: Callable[[], torch.nn.Module], seed: int, device: str = "cpu") -> torch.nn.Module:
    """``build()`` with the global RNG seeded by ``seed`` (the caller's RNG state is left untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = build()
    return net.to(device).eval()
