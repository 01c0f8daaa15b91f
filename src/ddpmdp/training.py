"""ε-prediction training of small improved-diffusion UNets with the paper's three objectives.

Notation (``method.md`` §1): nodes n = 0..T, x_t = √ᾱ_t·x₀ + √(1 − ᾱ_t)·ε, d = C·H·W, and the
network output at node t is ε̂ (C channels) and, for learned-range models, o (C channels) with
v = (o + 1)/2. Per image, with t drawn from nodes 1..T:

* ``L_simple`` = (1/d)·‖ε − ε̂‖², the mean over pixels;
* L_t (nats, summed over the d dimensions) is the per-t ELBO term in ddpmdp nodes:
  KL(q(x_{t−1} | x_t, x₀) ‖ p_θ(x_{t−1} | x_t)) for t ≥ 2 and the discretised decoder
  −log p_θ(x₀ | x₁) for t = 1, computed with :func:`ddpmdp.elbo_terms.kl_row` /
  :func:`~ddpmdp.elbo_terms.decoder_term` on x̂₀ = :func:`~ddpmdp.elbo_terms.predict_x0`
  (``clip=False``) with the ``learned_range`` rule — the conventions the evaluator uses;
* ``L_vlb`` = T·L_t/(d·ln 2), in bits/dim: for t uniform on 1..T its mean is the
  full-chain −ELBO in bits/dim minus the (parameter-free) prior term.

Objectives (improved-diffusion ``gaussian_diffusion.training_losses`` with
``rescale_learned_sigmas=True``):

* ``simple`` — loss = L_simple, t uniform; ε-only network (fixed variance, evaluated with
  ``fixed_large``);
* ``hybrid`` — loss = L_simple + λ·L_vlb with λ = 0.001 and L_t computed from **ε̂.detach()**
  and the live v (the mean learns only from L_simple); since improved-diffusion scales its
  per-t vb term in bits/dim by T/1000, this is the same number; t uniform;
* ``vlb`` — loss = w_t·L_vlb with t drawn by :class:`LossSecondMomentResampler`
  (p_t ∝ √E[L_t²] once every t has 10 recorded losses, mixed with 0.001 uniform) and
  w_t = 1/(T·p_t), so E[w_t·L_vlb] is the uniform-t mean.

The batch loss is the mean over images of w·loss. :func:`train` runs AdamW with an EMA of the
weights, checkpoints atomically and resumes exactly, then writes the EMA weights as float16
``NAME.safetensors`` and a JSON model card with held-out full-chain bits/dim.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from .datasets import ImageSet, load_images, to_model_space
from .elbo_terms import abar_tensor, decoder_term, kl_row, predict_x0
from .embedded import (CARD_FORMAT, EMBEDDED, T_NOTE, adapter_from_file, bpd_note, config_to_dict,
                       resolve_architecture)
from .errors import DdpmdpError, require
from .fileio import atomic_write, file_sha256
from .nets.iddpm_unet import IDDPMConfig, IDDPMUNet
from .schedules import Schedule

__all__ = ["Objective", "OBJECTIVES", "TrainConfig", "LossTerms", "LossSecondMomentResampler", "UniformSampler",
           "compute_losses", "network_time_tensor", "q_sample_batch", "train", "checkpoint_path",
           "save_weights_fp16", "HYBRID_LAMBDA"]

Objective = Literal["simple", "hybrid", "vlb"]
OBJECTIVES: tuple[str, ...] = ("simple", "hybrid", "vlb")
HYBRID_LAMBDA = 0.001
"""λ of L_hybrid = L_simple + λ·L_vlb (Nichol & Dhariwal 2021)."""

_CKPT_FORMAT = "ddpmdp-train-checkpoint-v1"
# TrainConfig fields that may change between a run and its resumption. None of them enters the
# update rule; a different device or thread count can still change floating-point rounding, so
# bit-exact continuation needs the same device and threads.
_RESUMABLE_CHANGES = {"steps", "minutes", "resume", "out", "eval_data", "eval_images", "eval_batch_size",
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
    - ``batch_size``: images per step; ``lr``: AdamW learning rate (constant after ``warmup_steps``
      of linear warm-up); ``weight_decay``: AdamW weight decay.
    - ``ema``: EMA rate; with ``ema_warmup`` the decay after n updates is min(ema, (1 + n)/(10 + n)).
    - ``grad_clip``: max global gradient 2-norm (None: no clipping).
    - ``seed``: seeds the one torch generator that draws data order, t, ε and dropout.
    - ``save_every``: steps between training checkpoints; ``minutes``: wall-clock budget for this
      invocation (training stops, saves and writes outputs when it is used up).
    - ``resume``: continue from ``out/NAME.train.pt`` when it exists.
    - ``init_from``: start from earlier EMA weights instead of the random initialisation: an
      embedded model name or a ``.safetensors`` file with its model card beside it (checked like
      :func:`ddpmdp.embedded.load_embedded`). Network and EMA start from those weights, the
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


def checkpoint_path(config: TrainConfig) -> Path:
    """``out/NAME.train.pt``: model, EMA, optimizer, resampler, RNG and data-order state."""
    return Path(config.out) / f"{config.name}.train.pt"


# ---- timestep samplers -------------------------------------------------------------
class UniformSampler:
    """t uniform on nodes 1..T, weights 1."""

    def __init__(self, T: int) -> None:
        self.T = int(T)

    def sample(self, batch: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(t int64 (B,) in 1..T, w float32 (B,) = 1)."""
        return torch.randint(1, self.T + 1, (batch,), generator=generator), torch.ones(batch)

    def update(self, t: torch.Tensor, losses: torch.Tensor) -> None:
        """Nothing to record."""

    def state_dict(self) -> dict[str, Any]:
        return {"kind": "uniform", "T": self.T}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        require(state.get("kind") == "uniform" and int(state["T"]) == self.T, "timestep-sampler state mismatch")


class LossSecondMomentResampler:
    """Nichol & Dhariwal's importance sampler over nodes 1..T for L_vlb.

    Keeps the last ``history_per_term`` per-image losses recorded at each t. Until every t
    has that many, p_t = 1/T; afterwards p_t ∝ √(mean of the recorded L_t²), normalised, then
    p ← (1 − u)·p + u/T with u = ``uniform_prob``. A draw t ~ p gets weight w_t = 1/(T·p_t),
    so E_p[w_t·L_t] = (1/T)·Σ_t L_t for any loss vector (unbiased).
    """

    def __init__(self, T: int, history_per_term: int = 10, uniform_prob: float = 0.001) -> None:
        require(history_per_term >= 1, "history_per_term must be >= 1")
        require(0.0 < uniform_prob <= 1.0, "uniform_prob must lie in (0, 1]")
        self.T = int(T)
        self.history_per_term = int(history_per_term)
        self.uniform_prob = float(uniform_prob)
        self.history = torch.zeros(self.T, self.history_per_term, dtype=torch.float64)
        self.counts = torch.zeros(self.T, dtype=torch.int64)

    def warmed_up(self) -> bool:
        """True when every t has ``history_per_term`` recorded losses."""
        return bool((self.counts == self.history_per_term).all())

    def probabilities(self) -> torch.Tensor:
        """p over nodes 1..T (index t − 1), float64 (T,), sums to 1."""
        if not self.warmed_up():
            return torch.full((self.T,), 1.0 / self.T, dtype=torch.float64)
        w = self.history.pow(2).mean(-1).sqrt()
        w = w / w.sum()
        return w * (1.0 - self.uniform_prob) + self.uniform_prob / self.T

    def sample(self, batch: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(t int64 (B,) in 1..T, w float32 (B,) = 1/(T·p_t))."""
        p = self.probabilities()
        idx = torch.multinomial(p, batch, replacement=True, generator=generator)
        return idx + 1, (1.0 / (self.T * p[idx])).float()

    def update(self, t: torch.Tensor, losses: torch.Tensor) -> None:
        """Record per-image losses (B,) at nodes t (B,), oldest dropped when a row is full."""
        for tt, loss in zip(t.tolist(), losses.detach().double().cpu().tolist()):
            i, c = tt - 1, int(self.counts[tt - 1])
            if c == self.history_per_term:
                self.history[i, :-1] = self.history[i, 1:].clone()
                self.history[i, -1] = loss
            else:
                self.history[i, c] = loss
                self.counts[i] = c + 1

    def state_dict(self) -> dict[str, Any]:
        return {"kind": "loss-second-moment", "T": self.T, "history_per_term": self.history_per_term,
                "uniform_prob": self.uniform_prob, "history": self.history.clone(), "counts": self.counts.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        require(state.get("kind") == "loss-second-moment" and int(state["T"]) == self.T
                and int(state["history_per_term"]) == self.history_per_term, "timestep-sampler state mismatch")
        self.history = state["history"].clone().double()
        self.counts = state["counts"].clone().long()


# ---- losses -------------------------------------------------------------------------
@dataclass
class LossTerms:
    """Per-image terms (B,): ``mse`` = L_simple; ``L_t`` nats (None for ``simple``); ``vlb`` =
    T·L_t/(d ln 2) bits/dim (None for ``simple``); ``loss`` = the objective before the
    importance weight."""

    mse: torch.Tensor
    L_t: torch.Tensor | None
    vlb: torch.Tensor | None
    loss: torch.Tensor


def network_time_tensor(schedule: Schedule, t: torch.Tensor) -> torch.Tensor:
    """improved-diffusion's rescaled time τ = (t − 1)·1000/T per image, float32 (B,) (same rounding
    as :func:`ddpmdp.models.network_time` with ``time_input='iddpm'``)."""
    return ((t - 1).double() * 1000.0 / schedule.T).float()


def q_sample_batch(schedule: Schedule, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """x_t = √ᾱ_t·x₀ + √(1 − ᾱ_t)·ε with a node per image; x0, eps (B, C, H, W), t int64 (B,)."""
    abar = abar_tensor(schedule, "cpu")[t.cpu()]
    a = abar.sqrt().float().to(x0.device).view(-1, 1, 1, 1)
    b = (1.0 - abar).sqrt().float().to(x0.device).view(-1, 1, 1, 1)
    return a * x0 + b * eps


def compute_losses(schedule: Schedule, objective: str, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor,
                   eps: torch.Tensor, out: torch.Tensor, *, hybrid_lambda: float = HYBRID_LAMBDA) -> LossTerms:
    """The per-image objective from one network output ``out`` (B, C or 2C, H, W) at nodes t (B,).

    L_simple = mean_j (ε − ε̂)²_j. For ``hybrid``/``vlb``, v = (o + 1)/2 and, per distinct t in
    the batch, x̂₀ = predict_x0(x_t, t, ε̂′, clip=False) with ε̂′ = ε̂.detach() (hybrid) or ε̂ (vlb),
    then L_t = decoder_term(…, 1, learned_range, v) at t = 1 and
    kl_row(…, t, [t − 1], learned_range, v) at t ≥ 2 (nats per image); L_vlb = T·L_t/(d ln 2).
    loss = L_simple (simple), L_simple + λ·L_vlb (hybrid) or L_vlb (vlb).
    """
    require(objective in OBJECTIVES, f"unknown objective {objective!r}: use simple, hybrid or vlb")
    C = x0.shape[1]
    d = x0[0].numel()
    eps_hat = out[:, :C]
    mse = (eps - eps_hat).pow(2).flatten(1).mean(1)
    if objective == "simple":
        require(out.shape[1] == C, f"objective simple needs an ε-only network ({C} output channels), got "
                f"{out.shape[1]}; use an architecture with learn_sigma=False")
        return LossTerms(mse, None, None, mse)
    require(out.shape[1] == 2 * C, f"objective {objective} needs a learned-variance network ({2 * C} output "
            f"channels: ε and v), got {out.shape[1]}; use an architecture with learn_sigma=True")
    v = (out[:, C:] + 1.0) * 0.5
    eps_for_vb = eps_hat.detach() if objective == "hybrid" else eps_hat
    rows, vals = [], []
    for tv in torch.unique(t).tolist():
        idx = (t == tv).nonzero().squeeze(1)
        x0_hat = predict_x0(schedule, x_t[idx], tv, eps_for_vb[idx], clip=False)
        if tv == 1:
            term = decoder_term(schedule, x0[idx], x0_hat, 1, "learned_range", v[idx])
        else:
            term = kl_row(schedule, x0[idx], x0_hat, tv, np.array([tv - 1]), "learned_range", v[idx])[:, 0]
        rows.append(idx)
        vals.append(term)
    L_t = torch.zeros(x0.shape[0], dtype=torch.float64, device=x0.device).index_copy(
        0, torch.cat(rows), torch.cat(vals))
    vlb = (L_t * (schedule.T / (d * math.log(2.0)))).float()
    loss = mse + hybrid_lambda * vlb if objective == "hybrid" else vlb
    return LossTerms(mse, L_t, vlb, loss)


# ---- files --------------------------------------------------------------------------
def save_weights_fp16(state: dict[str, torch.Tensor], path: Path) -> None:
    """Write a state_dict as float16 ``.safetensors`` atomically. Raises if a value overflows float16.

    No ``__metadata__`` is written: safetensors serialises it in hash-map order, which would make
    the bytes (and the card's sha256) of identical weights differ between runs.
    """
    from safetensors.torch import save_file

    half = {k: v.detach().to("cpu", torch.float16).contiguous() for k, v in state.items()}
    bad = [k for k, v in half.items() if not torch.isfinite(v).all()]
    require(not bad, f"weights {bad[:3]} overflow float16 (|w| > 65504); training diverged")
    atomic_write(path, lambda p: save_file(half, str(p)))


# ---- the training loop --------------------------------------------------------------
class _Run:
    """Mutable training state; everything in it goes into the checkpoint."""

    def __init__(self, config: TrainConfig, cfg: IDDPMConfig, objective: str, n_images: int) -> None:
        self.config, self.cfg, self.objective = config, cfg, objective
        self.device = torch.device(config.device)
        self.schedule = cfg.schedule()
        gen = torch.Generator().manual_seed(int(config.seed))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(config.seed))
            self.net = IDDPMUNet(cfg).to(self.device)  # improved-diffusion init (zero output layers)
        self.ema = {k: v.detach().clone() for k, v in self.net.state_dict().items()}
        self.opt = torch.optim.AdamW(self.net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.sampler: UniformSampler | LossSecondMomentResampler = (
            LossSecondMomentResampler(self.schedule.T, config.history_per_term, config.uniform_prob)
            if objective == "vlb" else UniformSampler(self.schedule.T))
        self.gen = gen
        self.step = 0
        self.n_images = n_images
        self.perm = torch.randperm(n_images, generator=self.gen)
        self.pos = 0
        self.wall_seconds = 0.0
        self.step_seconds = 0.0
        self.images_seen = 0
        self.loss_avg = float("nan")
        self.start_step = 0  # the step this run's optimizer state was created at (warm-up counts from it)
        self.init_card: dict[str, Any] | None = None

    def init_from(self, source: str) -> None:
        """Load earlier EMA weights into the network and the EMA; continue the counters of their card."""
        weights, card = _init_weights(source, self.cfg)
        self.net.load_state_dict(adapter_from_file(self.cfg, weights).net.state_dict(), strict=True)
        self.ema = {k: v.detach().clone() for k, v in self.net.state_dict().items()}
        self.step = self.start_step = int(card.get("steps", 0))
        self.images_seen = int(card.get("images_seen", 0))
        self.wall_seconds = float(card.get("wall_seconds", 0.0))
        self.step_seconds = 0.0
        self.gen.manual_seed(int(self.config.seed) * 1_000_003 + self.step)
        self.perm = torch.randperm(self.n_images, generator=self.gen)
        self.pos = 0
        self.init_card = {"source": source if source in EMBEDDED else str(weights), "weights_sha256":
                          card.get("weights_sha256"), "steps": self.step, "images_seen": self.images_seen,
                          "wall_seconds": self.wall_seconds, "created": card.get("created"),
                          "held_out": card.get("held_out"),
                          "note": "network and EMA initialised from these EMA weights; new AdamW state"}

    # -- checkpoint --
    def state(self) -> dict[str, Any]:
        return {"format": _CKPT_FORMAT, "config": json.dumps(self.config.record(), default=str),
                "step": self.step, "model": self.net.state_dict(), "ema": self.ema,
                "optimizer": self.opt.state_dict(), "sampler": self.sampler.state_dict(),
                "rng": self.gen.get_state(), "perm": self.perm, "pos": self.pos,
                "wall_seconds": self.wall_seconds, "step_seconds": self.step_seconds,
                "images_seen": self.images_seen, "loss_avg": self.loss_avg, "start_step": self.start_step,
                "init_card": json.dumps(self.init_card, default=str)}

    def save(self, path: Path) -> None:
        state = self.state()
        atomic_write(path, lambda p: torch.save(state, p))

    def load(self, path: Path) -> None:
        try:
            st = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise DdpmdpError(f"training checkpoint {path} is unreadable ({type(exc).__name__}: {str(exc)[:100]}); "
                              "delete it to start over") from None
        require(isinstance(st, dict) and st.get("format") == _CKPT_FORMAT,
                f"{path} is not a ddpmdp training checkpoint; delete it or choose another --out")
        old, new = json.loads(st["config"]), json.loads(json.dumps(self.config.record(), default=str))
        diff = [k for k in new if k not in _RESUMABLE_CHANGES and old.get(k) != new.get(k)]
        if diff:
            k = diff[0]
            raise DdpmdpError(f"cannot resume {path}: {k} was {old.get(k)!r} but is now {new.get(k)!r} "
                              f"(only {', '.join(sorted(_RESUMABLE_CHANGES - {'resume'}))} may change)")
        try:
            self.net.load_state_dict(st["model"])
            self.ema = {k: v.to(self.device) for k, v in st["ema"].items()}
            self.opt.load_state_dict(st["optimizer"])
            self.sampler.load_state_dict(st["sampler"])
            self.gen.set_state(st["rng"])
            self.perm, self.pos, self.step = st["perm"], int(st["pos"]), int(st["step"])
            self.wall_seconds = float(st["wall_seconds"])
            self.step_seconds = float(st.get("step_seconds", st["wall_seconds"]))
            self.images_seen = int(st["images_seen"])
            self.loss_avg = float(st["loss_avg"])
            self.start_step = int(st.get("start_step", 0))
            self.init_card = json.loads(st.get("init_card", "null"))
        except (KeyError, RuntimeError, ValueError) as exc:
            raise DdpmdpError(f"training checkpoint {path} is incomplete or does not fit this model "
                              f"({type(exc).__name__}: {str(exc)[:100]}); delete it to start over") from None

    # -- one step --
    def next_indices(self, B: int) -> torch.Tensor:
        if self.pos + B > self.n_images:  # new epoch: a fresh permutation (drop the remainder)
            self.perm = torch.randperm(self.n_images, generator=self.gen)
            self.pos = 0
        idx = self.perm[self.pos:self.pos + B]
        self.pos += B
        return idx

    def train_step(self, images: np.ndarray) -> float:
        cfgt = self.config
        B = cfgt.batch_size
        idx = self.next_indices(B)
        x0 = to_model_space(images[idx.numpy()], self.device)
        t, w = self.sampler.sample(B, self.gen)
        eps = torch.randn(x0.shape, generator=self.gen).to(self.device)
        dropout_seed = int(torch.randint(0, 2**62, (1,), generator=self.gen))
        t_dev, w = t.to(self.device), w.to(self.device)
        x_t = q_sample_batch(self.schedule, x0, t_dev, eps)
        tau = network_time_tensor(self.schedule, t).to(self.device)
        done = self.step - self.start_step
        lr = cfgt.lr * min(1.0, (done + 1) / cfgt.warmup_steps) if cfgt.warmup_steps > 0 else cfgt.lr
        for g in self.opt.param_groups:
            g["lr"] = lr
        self.net.train()
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(dropout_seed)
            out = self.net(x_t, tau)
        terms = compute_losses(self.schedule, self.objective, x0, x_t, t_dev, eps, out,
                               hybrid_lambda=cfgt.hybrid_lambda)
        loss = (w * terms.loss).mean()
        if not torch.isfinite(loss):
            raise DdpmdpError(f"the training loss became {loss.item()} at step {self.step}; lower --lr "
                              "or keep --grad-clip")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfgt.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), cfgt.grad_clip)
        self.opt.step()
        self.sampler.update(t, terms.loss)
        self.step += 1
        self.images_seen += B
        rate = min(cfgt.ema, (1.0 + self.step) / (10.0 + self.step)) if cfgt.ema_warmup else cfgt.ema
        with torch.no_grad():
            for k, p in self.net.state_dict().items():
                e = self.ema[k]
                if e.is_floating_point():
                    e.mul_(rate).add_(p, alpha=1.0 - rate)
                else:
                    e.copy_(p)
        val = float(loss.detach())
        self.loss_avg = val if math.isnan(self.loss_avg) else 0.98 * self.loss_avg + 0.02 * val
        return val


def _init_weights(source: str, cfg: IDDPMConfig) -> tuple[Path, dict[str, Any]]:
    """(weights file, card) for ``init_from``: an embedded model's shipped files or a ``.safetensors``
    with its card beside it; size, sha256 and architecture are checked against the card."""
    from .embedded import _check_file, weights_dir

    weights = weights_dir() / f"{source}.safetensors" if source in EMBEDDED else Path(source).expanduser()
    require(weights.suffix == ".safetensors" or source in EMBEDDED,
            f"--init-from {source!r}: give an embedded model name ({', '.join(EMBEDDED)}) or a .safetensors file")
    card = _check_file(source if source in EMBEDDED else weights.stem, weights, weights.with_suffix(".json"))
    require(card.get("architecture") == config_to_dict(cfg), f"--init-from {source}: its card describes another "
            f"architecture than {cfg.name!r}; initialise from weights of the same architecture")
    return weights, card


def _load_train_data(config: TrainConfig, cfg: IDDPMConfig) -> ImageSet:
    data = load_images(config.data, config.data_dir)
    if config.n_train_images is not None:
        data = data.subset(config.n_train_images)
    shape = (cfg.in_channels, cfg.image_size, cfg.image_size)
    require(tuple(data.images.shape[1:]) == shape, f"{config.data} holds images of shape "
            f"{tuple(data.images.shape[1:])}, but the architecture {cfg.name!r} expects {shape}")
    require(len(data) >= config.batch_size, f"{config.data} has {len(data)} images, fewer than --batch-size "
            f"{config.batch_size}")
    return data


def _validate(config: TrainConfig, cfg: IDDPMConfig, objective: str) -> None:
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
    require(0.0 <= config.ema < 1.0, f"--ema must lie in [0, 1), got {config.ema}")
    require(config.save_every >= 1, "--save-every must be >= 1")
    require(config.minutes is None or config.minutes > 0, "--minutes must be > 0")
    require(config.eval_images >= 0, "--eval-images must be >= 0")


def _evaluate(config: TrainConfig, cfg: IDDPMConfig, weights: Path, train: ImageSet) -> dict[str, Any] | None:
    """Held-out full-chain bpd of the saved float16 EMA weights (None when not requested)."""
    if not config.eval_data or config.eval_images == 0:
        return None
    from .evaluate import evaluate_paths

    data = load_images(config.eval_data, config.data_dir)
    require(not (data.identity == train.identity and data.split == train.split),
            f"--eval-data {config.eval_data} is the training data; give a held-out split (e.g. cifar10:test)")
    data = data.subset(min(config.eval_images, len(data)))
    adapter = adapter_from_file(cfg, weights, device=config.device)
    T = cfg.diffusion_steps
    t0 = time.perf_counter()
    score = evaluate_paths(adapter, data, {"full": np.arange(T + 1)}, variance=cfg.variance,  # type: ignore[arg-type]
                           clip=True, batch_size=config.eval_batch_size, seed=0, device=config.device,
                           progress=not config.quiet)["full"]
    return {"bpd": score.bpd, "bpd_se": score.bpd_se, "nats": score.nats, "nats_se": score.nats_se,
            "data": config.eval_data, "data_identity": data.identity, "split": data.split,
            "n_images": score.n_images, "path": f"full chain, nodes 0..{T} (K = {T})", "variance": cfg.variance,
            "clip": True, "seed": 0, "evaluator": "ddpmdp.evaluate.evaluate_paths", "data_notes": list(data.notes),
            "units": "bits/dim", "eval_seconds": round(time.perf_counter() - t0, 1)}


def _device_description(device: str) -> str:
    """E.g. ``cpu: Intel(R) Xeon(R) ..., 1 torch thread(s)`` or ``cuda:0: NVIDIA H100``."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return f"{device}: {torch.cuda.get_device_name(dev)}"
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{device}: {name}, {torch.get_num_threads()} torch thread(s)"


def _card(config: TrainConfig, cfg: IDDPMConfig, objective: str, run: _Run, data: ImageSet, weights: Path,
          held_out: dict[str, Any] | None) -> dict[str, Any]:
    from . import __version__

    n_params = sum(p.numel() for p in run.net.parameters())
    desc = EMBEDDED[config.name].description if config.name in EMBEDDED else cfg.description
    sampler = ({"kind": "loss-second-moment", "history_per_term": config.history_per_term,
                "uniform_prob": config.uniform_prob, "warmed_up": run.sampler.warmed_up(),  # type: ignore[union-attr]
                "weights": "1/(T p_t)"} if objective == "vlb" else {"kind": "uniform", "nodes": "1..T"})
    loss_text = {"simple": "L_simple = mean_j (eps - eps_hat)^2, t uniform on 1..T",
                 "hybrid": f"L_simple + {config.hybrid_lambda} * T * L_t / (d ln 2), L_t with eps_hat detached "
                           "and the live v (improved-diffusion's T/1000-scaled vb term)",
                 "vlb": "T * L_t / (d ln 2) * 1/(T p_t), t ~ p (loss-second-moment importance sampling)"}[objective]
    card: dict[str, Any] = {
        "format": CARD_FORMAT,
        "name": config.name,
        "description": desc,
        "objective": objective,
        "loss": loss_text,
        "data": config.data,
        "data_identity": data.identity,
        "split": data.split,
        "n_train_images": len(data),
        "data_fingerprint": data.fingerprint(),
        "data_notes": list(data.notes),
        "augmentation": "none",
        "steps": run.step,
        "batch_size": config.batch_size,
        "images_seen": run.images_seen,
        "schedule": cfg.schedule_spec,
        "T": cfg.diffusion_steps,
        "variance": cfg.variance,
        "output": cfg.output,
        "time_input": cfg.time_input,
        "ema_rate": config.ema,
        "ema_warmup": "decay min(rate, (1+n)/(10+n)) after n updates" if config.ema_warmup else "none",
        "optimizer": {"name": "AdamW", "lr": config.lr, "betas": [0.9, 0.999], "eps": 1e-8,
                      "weight_decay": config.weight_decay, "warmup_steps": config.warmup_steps,
                      "lr_schedule": "constant after warm-up", "grad_clip_norm": config.grad_clip},
        "timestep_sampler": sampler,
        "seed": config.seed,
        "wall_seconds": round(run.wall_seconds, 1),
        "wall_seconds_note": "training loop wall time summed over all sessions (steps and checkpoint writes; "
                             "excludes data loading and the held-out evaluation)"
                             + ("; includes the run it was initialised from" if run.init_card else ""),
        "train_images_per_second": (round((run.images_seen - (run.init_card or {}).get("images_seen", 0))
                                          / run.step_seconds, 2) if run.step_seconds > 0 else None),
        "device": _device_description(config.device),
        "torch_version": torch.__version__,
        "ddpmdp_version": __version__,
        "parameters": n_params,
        "architecture": config_to_dict(cfg),
        "final_loss_smoothed": run.loss_avg,
        "weights_file": weights.name,
        "weights_dtype": "float16",
        "weights_kind": f"EMA (rate {config.ema})",
        "weights_bytes": weights.stat().st_size,
        "weights_sha256": file_sha256(weights),
        "held_out": held_out,
        "note": bpd_note(held_out["bpd"] if held_out else None),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if cfg.noise_schedule == "cosine" and cfg.diffusion_steps != 4000:
        card["T_note"] = T_NOTE
    if run.init_card is not None:
        card["initialised_from"] = run.init_card
        card["steps_this_run"] = run.step - run.start_step
    return card


def train(config: TrainConfig) -> Path:
    """Train, checkpoint, and write ``out/NAME.safetensors`` (EMA, float16) and ``out/NAME.json``.

    Returns the path of the weights file. Stops at ``config.steps`` or when ``config.minutes``
    of wall time are used up, whichever comes first; either way it saves the training
    checkpoint (``out/NAME.train.pt``) so that ``resume=True`` continues exactly. Raises
    :class:`DdpmdpError` for user errors (unknown objective, architecture/objective mismatch,
    wrong image size, an existing checkpoint without ``resume``, a resume with changed settings).
    """
    cfg = config.architecture()
    objective = config.resolved_objective()
    _validate(config, cfg, objective)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = checkpoint_path(config)
    if ckpt.exists() and not config.resume:
        raise DdpmdpError(f"{ckpt} already exists: pass --resume to continue it, or delete it / choose another "
                          "--out to start over")
    old_threads = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(int(config.threads))
    # Subnormal floats in the L_vlb gradients slowed CPU steps down ~10x in measurements;
    # flushing them to zero changes nothing at the precision that matters here.
    torch.set_flush_denormal(True)
    try:
        return _train(config, cfg, objective, out, ckpt)
    finally:
        torch.set_flush_denormal(False)
        torch.set_num_threads(old_threads)


def _train(config: TrainConfig, cfg: IDDPMConfig, objective: str, out: Path, ckpt: Path) -> Path:
    from tqdm.auto import tqdm

    data = _load_train_data(config, cfg)
    run = _Run(config, cfg, objective, len(data))
    if config.resume and ckpt.exists():
        run.load(ckpt)
    elif config.init_from:
        run.init_from(config.init_from)
    images = data.images
    bar = tqdm(total=config.steps, initial=min(run.step, config.steps), desc=f"train {config.name}", unit="step",
               disable=config.quiet, dynamic_ncols=True, smoothing=0.05)
    session_start = last_tick = time.perf_counter()
    last_save = run.step
    try:
        while run.step < config.steps:
            if config.minutes is not None and time.perf_counter() - session_start >= 60.0 * config.minutes:
                break
            t0 = time.perf_counter()
            run.train_step(images)
            t1 = time.perf_counter()
            run.step_seconds += t1 - t0
            bar.update(1)
            bar.set_postfix(loss=f"{run.loss_avg:.4f}", img_s=f"{config.batch_size / (t1 - t0):.1f}", refresh=False)
            if run.step - last_save >= config.save_every:
                run.wall_seconds += time.perf_counter() - last_tick
                last_tick = time.perf_counter()
                run.save(ckpt)
                last_save = run.step
    finally:
        bar.close()
    run.wall_seconds += time.perf_counter() - last_tick
    run.save(ckpt)
    weights = out / f"{config.name}.safetensors"
    save_weights_fp16(run.ema, weights)
    held_out = _evaluate(config, cfg, weights, data)
    card = _card(config, cfg, objective, run, data, weights, held_out)
    text = json.dumps(card, indent=2, default=str) + "\n"
    atomic_write(out / f"{config.name}.json", lambda p: p.write_text(text))
    return weights
