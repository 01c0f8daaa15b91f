"""Training configuration: :class:`TrainConfig`, its validation and the checkpoint path.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal


from ddpmdp.models.embedded import (EMBEDDED, config_to_dict,
                       resolve_architecture)
from ddpmdp.errors import DdpmdpError, require
from ddpmdp.training.objectives import HYBRID_LAMBDA, OBJECTIVES, Objective
from ddpmdp.models.nets.iddpm_unet import IDDPMConfig

__all__ = [
    "Objective",
    "LrSchedule",
    "learning_rate",
    "OBJECTIVES",
    "TrainConfig",
    "checkpoint_path",
    "HYBRID_LAMBDA",
    "CHECKPOINT_FORMAT",
    "RESUMABLE_CHANGES",
    "resumable_changes",
    "validate_config",
]


LrSchedule = Literal["constant", "cosine"]

CHECKPOINT_FORMAT = "ddpmdp-train-checkpoint-v1"
# TrainConfig fields that may change between a run and its resumption. None of them enters the
# update rule; a different device or thread count can still change floating-point rounding, so
# bit-exact continuation needs the same device and threads.
RESUMABLE_CHANGES = {"steps", "minutes", "resume", "out", "eval_data", "eval_images", "eval_batch_size",
                      "quiet", "save_every", "threads", "data_dir", "device"}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (frozen; recorded in the checkpoint and the card).

    - ``name``: model name; outputs are ``out/NAME.safetensors``, ``out/NAME.json`` and the training
      checkpoint ``out/NAME.train.pt``.
    - ``data``: training data spec (``cifar10:train``, ``tiny-imagenet64:train``, ``FILE.npz``, …).
    - ``preset``: architecture: an embedded model name, an improved-diffusion preset name or an
      :class:`IDDPMConfig`; None → ``name`` (which must then be an embedded model).
    - ``objective``: ``simple``, ``hybrid`` or ``vlb``; None → the embedded model's, else ``hybrid``
      for learned-variance architectures and ``simple`` for ε-only ones.
    - ``steps``: total optimizer steps (a resumed run continues up to this count).
    - ``batch_size``: images per step; ``lr``: AdamW peak learning rate, reached after
      ``warmup_steps`` of linear warm-up; ``lr_schedule``: ``constant`` after the warm-up, or
      ``cosine`` (half a cosine from ``lr`` down to ``lr_min`` at ``steps``; a resumed cosine run
      must keep ``steps``); ``weight_decay``: AdamW weight decay (see :func:`learning_rate`).
    - ``hflip``: flip each training image horizontally with probability 1/2 (drawn from the run's
      generator, so resume stays exact).
    - ``ema``: EMA rate; with ``ema_warmup`` the decay after n updates is min(ema, (1 + n)/(10 + n)).
    - ``grad_clip``: max global gradient 2-norm (None: no clipping).
    - ``seed``: seeds the one torch generator that draws data order, t, ε and dropout.
    - ``save_every``: steps between training checkpoints; ``minutes``: wall-clock budget for this
      invocation (training stops, saves and writes outputs when it is used up).
    - ``resume``: continue from ``out/NAME.train.pt`` when it exists.
    - ``init_from``: start from earlier EMA weights instead of the random initialisation: an
      embedded model name or a ``.safetensors`` file with its model card beside it (checked like
      :func:`ddpmdp.models.embedded.load_embedded`). Network and EMA start from those weights, the
      optimizer state is new (``warmup_steps`` then count from the start of this run), the step,
      image and wall-time counters continue from the card's, and the random stream is seeded
      with (``seed``, the card's steps) so that it does not replay the first run's draws.
    - ``eval_data``, ``eval_images``, ``eval_batch_size``: held-out split for the card's full-chain
      bits/dim (None or 0 images: not measured).
    - ``n_train_images``: use only the first N training images; ``history_per_term``,
      ``uniform_prob``: the ``vlb`` resampler; ``hybrid_lambda``: λ.
    - ``data_dir``, ``device``, ``threads`` (``torch.set_num_threads`` for this call), ``quiet``
      (no progress bar).
    """

    name: str
    data: str
    out: str | Path
    preset: str | IDDPMConfig | None = None
    objective: Objective | None = None
    steps: int = 1000
    batch_size: int = 64
    lr: float = 1e-3
    lr_schedule: LrSchedule = "constant"
    lr_min: float = 0.0
    hflip: bool = False
    weight_decay: float = 0.0
    warmup_steps: int = 0
    ema: float = 0.999
    ema_warmup: bool = True
    grad_clip: float | None = 1.0
    seed: int = 0
    save_every: int = 200
    minutes: float | None = None
    resume: bool = False
    init_from: str | None = None
    eval_data: str | None = None
    eval_images: int = 100
    eval_batch_size: int = 50
    n_train_images: int | None = None
    history_per_term: int = 10
    uniform_prob: float = 0.001
    hybrid_lambda: float = HYBRID_LAMBDA
    data_dir: str | None = None
    device: str = "cpu"
    threads: int | None = None
    quiet: bool = False

    def architecture(self) -> IDDPMConfig:
        """The resolved :class:`IDDPMConfig`."""
        preset = self.preset if self.preset is not None else self.name
        if isinstance(preset, str) and preset not in EMBEDDED and self.preset is None:
            raise DdpmdpError(f"{self.name!r} is not an embedded model ({', '.join(EMBEDDED)}): give --preset "
                              "(an embedded model name or an improved-diffusion preset such as cifar10-small)")
        return resolve_architecture(preset)

    def resolved_objective(self) -> str:
        """The objective after defaults (see the class docstring)."""
        if self.objective is not None:
            return self.objective
        if self.name in EMBEDDED:
            return EMBEDDED[self.name].objective
        return "hybrid" if self.architecture().learn_sigma else "simple"

    def record(self) -> dict[str, Any]:
        """JSON-ready dict of the fields (the architecture expanded)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["out"] = str(d["out"])
        d["preset"] = self.preset if isinstance(self.preset, (str, type(None))) else self.preset.name
        d["architecture"] = config_to_dict(self.architecture())
        d["objective"] = self.resolved_objective()
        return d


def learning_rate(config: TrainConfig, step: int, start_step: int) -> float:
    """The learning rate of the update that takes the run from ``step`` to ``step + 1``.

    ``n = step − start_step`` counts this run's updates (``start_step`` is where its optimizer
    state was created). Warm-up: lr·(n + 1)/warmup_steps for n < warmup_steps. Then ``constant``
    gives lr; ``cosine`` gives lr_min + (lr − lr_min)·(1 + cos(π·u))/2 with
    u = (n − warmup_steps)/(steps − start_step − warmup_steps) clipped to [0, 1].
    """
    n = step - start_step
    if config.warmup_steps > 0 and n < config.warmup_steps:
        return config.lr * (n + 1) / config.warmup_steps
    if config.lr_schedule == "constant":
        return config.lr
    span = max(1, config.steps - start_step - config.warmup_steps)
    u = min(1.0, max(0.0, (n - config.warmup_steps) / span))
    return config.lr_min + (config.lr - config.lr_min) * 0.5 * (1.0 + math.cos(math.pi * u))


def resumable_changes(config: TrainConfig) -> set[str]:
    """The fields that may differ between a run and its resumption (a cosine schedule ends at
    ``steps``, so there ``steps`` is fixed)."""
    return RESUMABLE_CHANGES - {"steps"} if config.lr_schedule == "cosine" else set(RESUMABLE_CHANGES)


def checkpoint_path(config: TrainConfig) -> Path:
    """``out/NAME.train.pt``: model, EMA, optimizer, resampler, RNG and data-order state."""
    return Path(config.out) / f"{config.name}.train.pt"


def validate_config(config: TrainConfig, cfg: IDDPMConfig, objective: str) -> None:
    require(objective in OBJECTIVES, f"unknown objective {objective!r}: use simple, hybrid or vlb")
    if config.name in EMBEDDED:
        e = EMBEDDED[config.name]
        require(cfg == e.config, f"{config.name!r} is an embedded model with a fixed architecture: use --preset "
                f"{config.name} (or omit --preset), or pick another --name")
        require(objective == e.objective, f"the embedded model {config.name!r} is trained with objective "
                f"{e.objective!r}, not {objective!r}")
    if objective == "simple":
        require(not cfg.learn_sigma, f"objective simple trains an ε-only model, but {cfg.name!r} has a learned "
                "variance head; use an architecture with learn_sigma=False (e.g. --preset cifar10-simple)")
    else:
        require(cfg.learn_sigma, f"objective {objective} trains a learned-range variance, but {cfg.name!r} "
                "predicts ε only; use an architecture with learn_sigma=True")
    require(cfg.rescale_timesteps, "training uses improved-diffusion's rescaled time input; the architecture "
            "must have rescale_timesteps=True")
    require(config.steps >= 0 and config.batch_size >= 1, "--steps must be >= 0 and --batch-size >= 1")
    require(config.lr > 0, "--lr must be > 0")
    require(config.lr_schedule in ("constant", "cosine"), f"unknown --lr-schedule {config.lr_schedule!r}: use "
            "constant or cosine")
    require(0.0 <= config.lr_min <= config.lr, f"--lr-min must lie in [0, --lr], got {config.lr_min}")
    require(0.0 <= config.ema < 1.0, f"--ema must lie in [0, 1), got {config.ema}")
    require(config.save_every >= 1, "--save-every must be >= 1")
    require(config.minutes is None or config.minutes > 0, "--minutes must be > 0")
    require(config.eval_images >= 0, "--eval-images must be >= 0")
