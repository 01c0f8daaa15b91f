"""The training loop: AdamW with an EMA of the weights, atomic checkpoints and exact resume.

:func:`train` runs a :class:`~ddpmdp.training.config.TrainConfig` and writes the EMA weights and
model card (:mod:`ddpmdp.training.cards`); losses are in :mod:`ddpmdp.training.losses`.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ddpmdp.data.images import ImageSet, to_model_space
from ddpmdp.data.specs import load_images
from ddpmdp.models.embedded import (EMBEDDED, adapter_from_file, config_to_dict)
from ddpmdp.errors import DdpmdpError, require
from ddpmdp.fileio import atomic_write
from ddpmdp.models.nets.iddpm_unet import IDDPMConfig, IDDPMUNet
from ddpmdp.training.cards import heldout_full_chain, model_card, save_weights_fp16, training_history
from ddpmdp.training.config import (CHECKPOINT_FORMAT, TrainConfig, checkpoint_path, learning_rate,
                                    resumable_changes, validate_config)
from ddpmdp.training.losses import compute_losses
from ddpmdp.training.samplers import LossSecondMomentResampler, UniformSampler
from ddpmdp.elbo_terms import q_sample
from ddpmdp.models.adapter import network_time

__all__ = [
    "train",
    "TrainingRun",
]


# Fields added after checkpoints were first written: an old checkpoint without them had these values.
_DEFAULTS: dict[str, Any] = {"lr_schedule": "constant", "lr_min": 0.0, "hflip": False}


# ---- the training loop --------------------------------------------------------------
class TrainingRun:
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
                          "held_out": card.get("held_out"), "training_history": training_history(card),
                          "note": "network and EMA initialised from these EMA weights; new AdamW state"}

    # -- checkpoint --
    def state(self) -> dict[str, Any]:
        return {"format": CHECKPOINT_FORMAT, "config": json.dumps(self.config.record(), default=str),
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
        require(isinstance(st, dict) and st.get("format") == CHECKPOINT_FORMAT,
                f"{path} is not a ddpmdp training checkpoint; delete it or choose another --out")
        old, new = json.loads(st["config"]), json.loads(json.dumps(self.config.record(), default=str))
        may_change = resumable_changes(self.config)
        diff = [k for k in new if k not in may_change and old.get(k, _DEFAULTS.get(k)) != new.get(k)]
        if diff:
            k = diff[0]
            raise DdpmdpError(f"cannot resume {path}: {k} was {old.get(k, _DEFAULTS.get(k))!r} but is now "
                              f"{new.get(k)!r} (only {', '.join(sorted(may_change - {'resume'}))} may change)")
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
        if cfgt.hflip:
            flip = (torch.rand(B, generator=self.gen) < 0.5).to(self.device)
            x0 = torch.where(flip[:, None, None, None], x0.flip(-1), x0)
        t, w = self.sampler.sample(B, self.gen)
        eps = torch.randn(x0.shape, generator=self.gen).to(self.device)
        dropout_seed = int(torch.randint(0, 2**62, (1,), generator=self.gen))
        t_dev, w = t.to(self.device), w.to(self.device)
        x_t = q_sample(self.schedule, x0, t_dev, eps)
        tau = network_time(self.schedule, t, "iddpm").to(self.device)  # type: ignore[union-attr]
        lr = learning_rate(cfgt, self.step, self.start_step)
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
    from ddpmdp.models.embedded import check_weights_file, weights_dir

    weights = weights_dir() / f"{source}.safetensors" if source in EMBEDDED else Path(source).expanduser()
    require(weights.suffix == ".safetensors" or source in EMBEDDED,
            f"--init-from {source!r}: give an embedded model name ({', '.join(EMBEDDED)}) or a .safetensors file")
    card = check_weights_file(source if source in EMBEDDED else weights.stem, weights, weights.with_suffix(".json"))
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
    validate_config(config, cfg, objective)
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
    from tqdm import tqdm

    data = _load_train_data(config, cfg)
    run = TrainingRun(config, cfg, objective, len(data))
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
    held_out = heldout_full_chain(config, cfg, weights, data)
    card = model_card(config, cfg, objective, run, data, weights, held_out)
    text = json.dumps(card, indent=2, default=str) + "\n"
    atomic_write(out / f"{config.name}.json", lambda p: p.write_text(text))
    return weights
