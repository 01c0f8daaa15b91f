"""The ``ddpmdp train`` subcommand (wired into :mod:`ddpmdp.cli.main` with :func:`add_parser`).

    ddpmdp train --name cifar10-hybrid --data cifar10:train --steps 2000 --batch-size 64 \\
                 --out runs/ --eval-data cifar10:test --eval-images 100 [--resume] [--minutes 40]

Writes ``OUT/NAME.safetensors`` (EMA weights, float16), ``OUT/NAME.json`` (the model card) and
the training checkpoint ``OUT/NAME.train.pt``; prints one JSON line when done.
"""
from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from ddpmdp.cli.registry import command
from ddpmdp.training.objectives import HYBRID_LAMBDA, OBJECTIVES

if TYPE_CHECKING:
    from ddpmdp.training.config import TrainConfig

__all__ = ["add_parser", "config_from_args"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``train`` subcommand to an ``argparse`` subparsers object; returns its parser."""
    p = subparsers.add_parser("train", help=command("train").summary,
                              description="Train an improved-diffusion UNet with the paper's objectives; writes "
                              "EMA float16 weights, a model card and a resumable checkpoint.")
    p.add_argument("--name", required=True, help="model name (an embedded name such as cifar10-hybrid fixes "
                   "architecture and objective); outputs are OUT/NAME.safetensors and OUT/NAME.json")
    p.add_argument("--data", required=True, help="training data: cifar10:train, tiny-imagenet64:train, FILE.npz, ...")
    p.add_argument("--objective", choices=list(OBJECTIVES), default=None,
                   help="simple | hybrid | vlb (default: the embedded model's)")
    p.add_argument("--preset", default=None, help="architecture: an embedded model name or an improved-diffusion "
                   "preset (default: --name)")
    p.add_argument("--steps", type=int, required=True, help="total optimizer steps (a resumed run continues to it)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3, help="AdamW peak learning rate (default 1e-3)")
    p.add_argument("--lr-schedule", choices=["constant", "cosine"], default="constant",
                   help="after the warm-up: constant, or cosine decay to --lr-min at --steps (default constant)")
    p.add_argument("--lr-min", type=float, default=0.0, help="final learning rate of --lr-schedule cosine (default 0)")
    p.add_argument("--hflip", action="store_true", help="random horizontal flips of the training images")
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--warmup-steps", type=int, default=0, help="linear learning-rate warm-up steps")
    p.add_argument("--ema", type=float, default=0.999, help="EMA rate (default 0.999)")
    p.add_argument("--no-ema-warmup", dest="ema_warmup", action="store_false",
                   help="use the EMA rate from step 1 (default: min(rate, (1+n)/(10+n)))")
    p.add_argument("--grad-clip", type=float, default=1.0, help="max gradient norm; 0 disables (default 1.0)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--resume", action="store_true", help="continue from OUT/NAME.train.pt if present")
    p.add_argument("--init-from", default=None, help="start from earlier EMA weights: an embedded model name or "
                   "a .safetensors with its card beside it (new optimizer state; counters continue)")
    p.add_argument("--save-every", type=int, default=200, help="steps between training checkpoints")
    p.add_argument("--minutes", type=float, default=None, help="stop (and save) after this much wall time")
    p.add_argument("--eval-data", default=None, help="held-out data for the card's full-chain bits/dim, "
                   "e.g. cifar10:test (default: not measured)")
    p.add_argument("--eval-images", type=int, default=100, help="held-out images to evaluate (default 100)")
    p.add_argument("--eval-batch-size", type=int, default=50)
    p.add_argument("--n-train-images", type=int, default=None, help="use only the first N training images")
    p.add_argument("--hybrid-lambda", type=float, default=HYBRID_LAMBDA, help=argparse.SUPPRESS)
    p.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--data-dir", default=None, help="dataset folder (default: $DDPMDP_DATA)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)
    return p


def config_from_args(args: argparse.Namespace) -> "TrainConfig":
    """The :class:`TrainConfig` described by parsed ``train`` arguments."""
    from ddpmdp.training.config import TrainConfig

    return TrainConfig(
        name=args.name, data=args.data, out=args.out, preset=args.preset, objective=args.objective,
        steps=args.steps, batch_size=args.batch_size, lr=args.lr, lr_schedule=args.lr_schedule, lr_min=args.lr_min,
        hflip=args.hflip, weight_decay=args.weight_decay,
        warmup_steps=args.warmup_steps, ema=args.ema, ema_warmup=args.ema_warmup,
        grad_clip=args.grad_clip if args.grad_clip and args.grad_clip > 0 else None, seed=args.seed,
        save_every=args.save_every, minutes=args.minutes, resume=args.resume, init_from=args.init_from, eval_data=args.eval_data,
        eval_images=args.eval_images, eval_batch_size=args.eval_batch_size, n_train_images=args.n_train_images,
        hybrid_lambda=args.hybrid_lambda, data_dir=args.data_dir, device=args.device, threads=args.threads,
        quiet=args.quiet)


def _cmd_train(args: argparse.Namespace) -> int:
    from ddpmdp.errors import require
    from ddpmdp.training.loop import train

    if args.device.startswith("cuda"):
        import torch

        require(torch.cuda.is_available(), f"--device {args.device}: CUDA is not available here; use --device cpu")
    weights = train(config_from_args(args))
    card = json.loads(weights.with_suffix(".json").read_text())
    held = card.get("held_out") or {}
    print(json.dumps({"event": "train_done", "weights": str(weights), "card": str(weights.with_suffix(".json")),
                      "steps": card["steps"], "wall_seconds": card["wall_seconds"],
                      "train_images_per_second": card["train_images_per_second"],
                      "held_out_bpd": held.get("bpd"), "held_out_bpd_se": held.get("bpd_se")}))
    return 0
