"""What a training run leaves behind: float16 EMA weights and a JSON model card with held-out
full-chain bits/dim.
"""
from __future__ import annotations

import platform
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from ddpmdp.data.images import ImageSet
from ddpmdp.data.specs import load_images
from ddpmdp.models.embedded import (CARD_FORMAT, EMBEDDED, T_NOTE, adapter_from_file, bpd_note, config_to_dict)
from ddpmdp.errors import require
from ddpmdp.fileio import atomic_write, file_sha256
from ddpmdp.models.nets.iddpm_unet import IDDPMConfig
from ddpmdp.training.config import TrainConfig

__all__ = [
    "save_weights_fp16",
    "heldout_full_chain",
    "device_description",
    "model_card",
    "training_history",
]


class RunState(Protocol):
    """What a model card reads from a training run (:class:`ddpmdp.training.loop.TrainingRun`)."""

    step: int
    start_step: int
    images_seen: int
    wall_seconds: float
    step_seconds: float
    loss_avg: float
    init_card: dict[str, Any] | None
    sampler: Any

    @property
    def net(self) -> torch.nn.Module: ...  # read-only, so a run may hold a Module subclass


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


def heldout_full_chain(config: TrainConfig, cfg: IDDPMConfig, weights: Path, train: ImageSet) -> dict[str, Any] | None:
    """Held-out full-chain bpd of the saved float16 EMA weights (None when not requested)."""
    if not config.eval_data or config.eval_images == 0:
        return None
    from ddpmdp.evaluate import evaluate_paths

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


def training_history(card: dict[str, Any]) -> list[dict[str, Any]]:
    """The stages that produced the weights of ``card``, oldest first: per stage the training data,
    steps and wall minutes (and the optimiser settings where the card records them). Cards written
    before stages were recorded are reconstructed from ``initialised_from`` (one level: an earlier
    stage on the card's own data)."""
    if card.get("training_history"):
        return [dict(s) for s in card["training_history"]]
    init = card.get("initialised_from") or {}
    stages = []
    steps0, wall0, images0 = int(init.get("steps", 0)), float(init.get("wall_seconds", 0.0)), int(init.get("images_seen", 0))
    if init:
        stages.append({"data": card.get("data"), "steps": steps0, "images": images0,
                       "wall_minutes": round(wall0 / 60.0, 1), "note": "reconstructed from initialised_from"})
    stages.append({"data": card.get("data"), "data_identity": card.get("data_identity"),
                   "n_train_images": card.get("n_train_images"), "steps": int(card.get("steps", 0)) - steps0,
                   "images": int(card.get("images_seen", 0)) - images0,
                   "wall_minutes": round((float(card.get("wall_seconds", 0.0)) - wall0) / 60.0, 1),
                   "optimizer": card.get("optimizer"), "augmentation": card.get("augmentation")})
    return stages


def device_description(device: str) -> str:
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


def model_card(config: TrainConfig, cfg: IDDPMConfig, objective: str, run: RunState, data: ImageSet, weights: Path,
          held_out: dict[str, Any] | None) -> dict[str, Any]:
    from ddpmdp.version import __version__

    n_params = sum(p.numel() for p in run.net.parameters())
    desc = EMBEDDED[config.name].description if config.name in EMBEDDED else cfg.description
    sampler = ({"kind": "loss-second-moment", "history_per_term": config.history_per_term,
                "uniform_prob": config.uniform_prob, "warmed_up": run.sampler.warmed_up(),
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
        "augmentation": "random horizontal flip (p = 1/2)" if config.hflip else "none",
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
                      "lr_schedule": ("constant after warm-up" if config.lr_schedule == "constant" else
                                      f"cosine after warm-up, down to {config.lr_min} at step {config.steps}"),
                      "grad_clip_norm": config.grad_clip},
        "timestep_sampler": sampler,
        "seed": config.seed,
        "wall_seconds": round(run.wall_seconds, 1),
        "wall_seconds_note": "training loop wall time summed over all sessions (steps and checkpoint writes; "
                             "excludes data loading and the held-out evaluation)"
                             + ("; includes the run it was initialised from" if run.init_card else ""),
        "train_images_per_second": (round((run.images_seen - (run.init_card or {}).get("images_seen", 0))
                                          / run.step_seconds, 2) if run.step_seconds > 0 else None),
        "device": device_description(config.device),
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
    earlier: list[dict[str, Any]] = []
    if run.init_card is not None:
        card["initialised_from"] = {k: v for k, v in run.init_card.items() if k != "training_history"}
        card["steps_this_run"] = run.step - run.start_step
        earlier = list(run.init_card.get("training_history") or [])
    init = run.init_card or {}
    card["training_history"] = earlier + [{
        "data": config.data, "data_identity": data.identity, "n_train_images": len(data),
        "steps": run.step - run.start_step, "images": run.images_seen - int(init.get("images_seen", 0)),
        "wall_minutes": round((run.wall_seconds - float(init.get("wall_seconds", 0.0))) / 60.0, 1),
        "optimizer": card["optimizer"], "augmentation": card["augmentation"]}]
    return card
