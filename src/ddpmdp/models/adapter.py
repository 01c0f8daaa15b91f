"""One model protocol for every ε-prediction network.

An adapter maps (x_t, node t) to ε̂ and, for learned-variance models, the
interpolation fraction v ∈ [0, 1] per pixel (``method.md`` §2.2: log σ² =
v·log β_{t,s} + (1 − v)·log β̃_{t,s}). The adapter owns the network's time-input
mapping, so callers only ever speak in nodes.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any, Callable, Literal, Protocol, TypedDict, runtime_checkable

import torch

from ddpmdp.errors import DdpmdpError, require
from ddpmdp.schedules import Schedule
from ddpmdp.variances import VarianceRule, check_rule, default_rule

__all__ = [
    "ModelOutput",
    "DiffusionModel",
    "TorchModelAdapter",
    "ModelInfo",
    "Numerics",
    "TimeInput",
    "Prediction",
    "check_image_shape",
    "state_dict_hash",
    "check_image_shape",
]

Prediction = Literal["epsilon", "v", "sample"]
"""What the network's first C channels predict: ε (``epsilon``), v = √ᾱ·ε − √(1−ᾱ)·x₀ (``v``,
diffusers' ``v_prediction``) or x₀ (``sample``). The adapter converts v and x₀ to ε exactly."""

TimeInput = Literal["iddpm", "ho", "node"]
"""How a node n reaches the network: ``iddpm`` → float (n − 1)·1000/T (improved-diffusion's
``rescale_timesteps=True``); ``ho`` → integer n − 1 (Ho et al., diffusers); ``node`` → n."""


@dataclass
class ModelOutput:
    """ε̂ (B, C, H, W) and, for learned-range models, v = (o + 1)/2 (B, C, H, W); else None."""

    eps: torch.Tensor
    v: torch.Tensor | None = None


@dataclass(frozen=True)
class Numerics:
    """How a model computes: ``dtype`` of the forward pass (``float32`` or ``float64``), bf16
    autocast and the channels-last memory format. Recorded in every table's metadata."""

    dtype: Literal["float32", "float64"] = "float32"
    bf16: bool = False
    channels_last: bool = False


class ModelInfo(TypedDict, total=False):
    """What ``ddpmdp model-info`` reports about a model (all keys optional; JSON-ready).

    ``parameters`` and ``state_dict_keys`` count the network; ``fingerprint`` is the sha256 of
    the sorted ``key:shape`` lines; ``file_sha256`` is None for random weights.
    """

    spec: str
    architecture: str
    preset: str | None
    parameters: int
    state_dict_keys: int
    fingerprint: str
    schedule: str
    T: int
    variance: str
    output: str
    time_input: str
    image_size: int | None
    file: str | None
    file_sha256: str | None
    file_md5: str | None
    format: str | None
    weights: str
    objective: str
    source: str
    card: dict[str, Any]
    extra: dict[str, Any]


@runtime_checkable
class DiffusionModel(Protocol):
    """What the table estimator, evaluator and samplers need from a model.

    * ``schedule`` — ᾱ over nodes 0..T;
    * ``learned_variance`` — the model outputs v (learned-range interpolation);
    * ``variance`` — the model's default variance rule (:func:`ddpmdp.variances.default_rule`
      unless the checkpoint says otherwise);
    * ``image_shape`` — (C, H, W) the network was built for, or None for any size;
    * ``identity`` — a short human-readable name with a hash;
    * ``info`` — a :class:`ModelInfo` (may be empty);
    * ``numerics`` — a :class:`Numerics` (dtype, bf16, channels-last).
    """

    schedule: Schedule
    learned_variance: bool
    variance: VarianceRule
    image_shape: tuple[int, int, int] | None
    identity: str
    info: ModelInfo
    numerics: Numerics

    def __call__(self, x_t: torch.Tensor, t: int) -> ModelOutput:  # pragma: no cover - protocol
        ...

    def fingerprint(self) -> str:  # pragma: no cover - protocol
        ...


def check_image_shape(model: DiffusionModel, shape: tuple[int, ...], what: str = "the data") -> None:
    """Refuse, before any work, images whose (C, H, W) differ from the shape a fixed-size model
    was built for (``model.image_shape``; None accepts any shape)."""
    want = model.image_shape
    got = tuple(int(s) for s in shape)
    if want is not None and got != tuple(want):
        raise DdpmdpError(f"{what} has images of {'×'.join(map(str, got))} (C×H×W), but the model {model.identity} "
                          f"was built for {'×'.join(map(str, want))}; use data (or --shape) of the model's size")


def state_dict_hash(module: torch.nn.Module) -> str:
    """sha256 over the sorted (name, dtype, shape, bytes) of a module's state_dict (16 hex digits)."""
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def network_time(schedule: Schedule, t: int | torch.Tensor, time_input: TimeInput | Callable[[int], float]
                 ) -> float | torch.Tensor:
    """The scalar the network receives at node t (see :data:`TimeInput`); for an int64 tensor of
    nodes (B,) (training) a float32 tensor (B,) with the same rounding as the scalar form."""
    if isinstance(t, torch.Tensor):
        require(isinstance(time_input, str), "a per-image time tensor needs a named time input (iddpm, ho, node)")
        return torch.tensor([network_time(schedule, int(n), time_input) for n in t.tolist()],
                            dtype=torch.float64, device=t.device).float()
    if callable(time_input):
        return float(time_input(t))
    if time_input == "iddpm":
        return (t - 1) * 1000.0 / schedule.T
    if time_input == "ho":
        return float(t - 1)
    if time_input == "node":
        return float(t)
    raise DdpmdpError(f"unknown time input {time_input!r}: use iddpm, ho or node")


class TorchModelAdapter:
    """Wrap an ``nn.Module`` ``net(x, timesteps) -> (B, C or 2C, H, W)``.

    ``output='eps'``: the network returns ε̂. ``output='eps+v'``: it returns 2C
    channels, ε̂ then o ∈ [−1, 1] (improved-diffusion ``learn_sigma=True``), and
    v = (o + 1)/2. The network runs in eval mode without gradients.

    Numerics are fixed at construction (:class:`Numerics`): the forward pass's dtype (float32,
    or float64 for references that hold on any CPU), bf16 autocast (forward pass only; outputs
    are float32) and the channels-last memory format. ``variance`` defaults to
    :func:`~ddpmdp.variances.default_rule`; ``info`` is the model-info dictionary.

    ``prediction`` (:data:`Prediction`) says what the first C channels are; ``v`` and ``sample``
    outputs are converted to ε at node t exactly: ε = √ᾱ_t·v + √(1 − ᾱ_t)·x_t, or
    ε = (x_t − √ᾱ_t·x̂₀)/√(1 − ᾱ_t).
    """

    def __init__(
        self,
        net: torch.nn.Module,
        schedule: Schedule,
        *,
        time_input: TimeInput | Callable[[int], float] = "iddpm",
        output: Literal["eps", "eps+v"] = "eps",
        identity: str = "",
        image_shape: tuple[int, int, int] | None = None,
        numerics: Numerics = Numerics(),
        variance: VarianceRule | None = None,
        info: ModelInfo | None = None,
        prediction: Prediction = "epsilon",
    ) -> None:
        require(output in ("eps", "eps+v"), f"output must be 'eps' or 'eps+v', got {output!r}")
        require(prediction in ("epsilon", "v", "sample"),
                f"prediction must be 'epsilon', 'v' or 'sample', got {prediction!r}")
        self.prediction: Prediction = prediction
        require(numerics.dtype in ("float32", "float64"), f"dtype must be float32 or float64, got {numerics.dtype!r}")
        require(not (numerics.bf16 and numerics.dtype == "float64"), "bf16 autocast and float64 exclude each other")
        self.numerics = numerics
        self.dtype = torch.float64 if numerics.dtype == "float64" else torch.float32
        self.net = net.to(self.dtype).eval()
        self.schedule = schedule
        self.time_input = time_input
        self.output = output
        self.learned_variance = output == "eps+v"
        self.variance: VarianceRule = variance or default_rule(self.learned_variance)
        check_rule(self.variance, self.learned_variance)
        self.identity = identity or type(net).__name__
        self.image_shape = image_shape
        self.info: ModelInfo = info if info is not None else {}
        if numerics.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # torch's stub lacks memory_format
        self._fingerprint: str | None = None

    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = state_dict_hash(self.net)
        return self._fingerprint

    @torch.no_grad()
    def __call__(self, x_t: torch.Tensor, t: int) -> ModelOutput:
        tt = torch.full((x_t.shape[0],), float(network_time(self.schedule, t, self.time_input)),
                        device=x_t.device, dtype=self.dtype)
        x_in = x_t.to(self.dtype)
        x_in = x_in.contiguous(memory_format=torch.channels_last) if self.numerics.channels_last else x_in
        with torch.autocast(device_type=x_t.device.type, dtype=torch.bfloat16, enabled=self.numerics.bf16):
            out = self.net(x_in, tt)
        if hasattr(out, "sample"):  # diffusers UNet2DOutput
            out = out.sample
        C = x_t.shape[1]
        want = 2 * C if self.learned_variance else C
        if out.shape[1] != want:
            raise DdpmdpError(
                f"the network returned {out.shape[1]} channels for {C}-channel images; "
                f"output={self.output!r} expects {want}"
                + (" (is this a fixed-variance model? use --output eps)" if self.learned_variance else
                   " (is this a learned-variance model? use --output eps+v)")
            )
        out = out.to(self.dtype)  # float32 after bf16 autocast; float64 when asked
        eps = self._to_eps(out[:, :C], x_in, t)
        if self.learned_variance:
            return ModelOutput(eps, (out[:, C:] + 1.0) * 0.5)
        return ModelOutput(eps, None)

    def _to_eps(self, pred: torch.Tensor, x_t: torch.Tensor, t: int) -> torch.Tensor:
        if self.prediction == "epsilon":
            return pred
        a = float(self.schedule.abar(t))
        if self.prediction == "v":
            return math.sqrt(a) * pred + math.sqrt(1.0 - a) * x_t
        return (x_t - math.sqrt(a) * pred) / math.sqrt(1.0 - a)
