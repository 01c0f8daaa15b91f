"""The JPEG caveat, measured: full-chain bits/dim of the embedded CIFAR-10 models on the 100 lossless
CIFAR-10 test images and on the JPEG-decoded copies of the same 100 images, before and after the
fine-tuning on the lossless training images, with the per-node terms of every run.

Usage (CPU: about 13 minutes per model, set and weights on one core of this 2-core machine)::

    # one run: the weights of a stage (the shipped ones by default) on one set
    python scripts/lossless_check.py run cifar10-simple --stage after --set lossless --out runs/lossless
    python scripts/lossless_check.py run cifar10-simple --stage before --weights OLD.safetensors --set jpeg ...
    # the cards' held_out_lossless100 / held_out_jpeg100 (stage "after") and the package's gap file
    python scripts/lossless_check.py update runs/lossless

``--set lossless`` is ``cifar10-lossless:test`` (exact pixels), ``--set jpeg`` the first 100 images of
``cifar10:test`` (the same images decoded from the JPEG copy). Both use seed 0 and noise keyed by
(seed, image index, t), so the two sets see the same noise and the per-node terms of one model pair
up image by image. ``update`` writes ``src/ddpmdp/models/weights/lossless_gap.npz``: per model and
stage the per-node mean terms (bits/dim) on both sets, which the *Embedded models* page plots.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

SETS = {"lossless": ("cifar10-lossless:test", "cifar10-lossless:test"),
        "jpeg": ("cifar10:test", "cifar10:test (first 100, JPEG-decoded copy)")}
CARD_KEYS = {"lossless": "held_out_lossless100", "jpeg": "held_out_jpeg100"}
MODELS = ("cifar10-simple", "cifar10-hybrid", "cifar10-vlb")


def run(args: argparse.Namespace) -> int:
    import torch

    from ddpmdp.data.specs import load_images
    from ddpmdp.evaluate import evaluate_paths
    from ddpmdp.models.embedded import EMBEDDED, adapter_from_file, load_embedded
    from ddpmdp.strides import even_stride

    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    model = (adapter_from_file(EMBEDDED[args.model].config, Path(args.weights)) if args.weights
             else load_embedded(args.model))
    spec, label = SETS[args.set]
    data = load_images(spec).subset(100)
    T = model.schedule.T
    t0 = time.time()
    (score,) = evaluate_paths(model, data, {"full": even_stride(T, T)}, batch_size=args.batch_size, seed=0).values()
    assert score.per_image is not None
    out = {"model": args.model, "stage": args.stage, "set": args.set, "data": label, "split": data.split,
           "weights": args.weights or f"shipped {args.model}", "weights_sha256": model.fingerprint(),
           "n_images": len(data), "seed": 0, "variance": model.variance, "bpd": score.bpd, "bpd_se": score.bpd_se,
           "per_image_nats": score.per_image.tolist(), "terms_nats": score.terms.tolist(),
           "nodes": [int(n) for n in score.nodes], "seconds": round(time.time() - t0, 1)}
    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{args.model}_{args.stage}_{args.set}.json").write_text(json.dumps(out))
    print(f"{args.model} {args.stage} {args.set}: {score.bpd:.4f} ± {score.bpd_se:.4f} bits/dim "
          f"({len(data)} images, {out['seconds']} s)")
    return 0


def train_vs_test(folder: Path, name: str, lossless: dict, d: float) -> dict | None:
    """Overfitting check on equal image counts: the shipped weights' full chain on the first n lossless
    *training* images (``{name}_after_train{n}.json``, written by ``scripts/lossless_curve.py``) against
    the first n of the lossless test run (the same seed and noise keys, so those are the test run's own
    first n per-image totals). Two independent image sets: the SE of the difference is the root sum of
    squares."""
    files = sorted(folder.glob(f"{name}_after_train*.json"))
    if not files:
        return None
    train = json.loads(files[-1].read_text())
    n = int(train["n_images"])
    a = np.asarray(train["per_image_nats"]) / d
    b = np.asarray(lossless["per_image_nats"][:n]) / d
    if len(b) < n:
        return None
    se_a, se_b = a.std(ddof=1) / math.sqrt(n), b.std(ddof=1) / math.sqrt(n)
    return {"n_images": n, "train": {"bpd": float(a.mean()), "bpd_se": float(se_a), "data": train["data"]},
            "test": {"bpd": float(b.mean()), "bpd_se": float(se_b), "data": SETS["lossless"][0]},
            "test_minus_train": float(b.mean() - a.mean()), "test_minus_train_se": float(math.hypot(se_a, se_b)),
            "path": "full chain (even:1000)", "seed": 0, "units": "bits/dim",
            "note": "first n images of each split; a positive difference far beyond its SE would mean overfitting"}


def update(args: argparse.Namespace) -> int:
    from ddpmdp.models.embedded import bpd_note, weights_dir

    folder = Path(args.folder)
    arrays: dict[str, np.ndarray] = {}
    summary: dict[str, dict] = {}
    for name in MODELS:
        for stage in ("before", "after"):
            runs = {s: folder / f"{name}_{stage}_{s}.json" for s in SETS}
            if not all(p.is_file() for p in runs.values()):
                continue
            res = {s: json.loads(p.read_text()) for s, p in runs.items()}
            d = 3 * 32 * 32 * math.log(2.0)
            for s, r in res.items():
                arrays[f"{name}/{stage}/{s}_terms_bpd"] = np.asarray(r["terms_nats"], dtype=np.float64) / d
            arrays[f"{name}/{stage}/nodes"] = np.asarray(res["lossless"]["nodes"], dtype=np.int64)
            gap = (np.asarray(res["lossless"]["per_image_nats"]) - np.asarray(res["jpeg"]["per_image_nats"])) / d
            summary.setdefault(name, {})[stage] = {
                **{s: {"bpd": r["bpd"], "bpd_se": r["bpd_se"], "n_images": r["n_images"], "weights": r["weights"]}
                   for s, r in res.items()},
                "gap_bpd": float(gap.mean()), "gap_bpd_se": float(gap.std(ddof=1) / math.sqrt(len(gap)))}
            if stage == "after":
                card_path = weights_dir() / f"{name}.json"
                card = json.loads(card_path.read_text())
                for s, r in res.items():
                    card[CARD_KEYS[s]] = {"bpd": r["bpd"], "bpd_se": r["bpd_se"], "n_images": r["n_images"],
                                          "data": r["data"], "split": r["split"], "path": "full chain (even:1000)",
                                          "seed": 0, "units": "bits/dim",
                                          "evaluator": "scripts/lossless_check.py (ddpmdp.evaluate.evaluate_paths)"}
                lossless = res["lossless"]
                card["held_out"] = {"bpd": lossless["bpd"], "bpd_se": lossless["bpd_se"],
                                    "n_images": lossless["n_images"], "data": SETS["lossless"][0],
                                    "data_identity": SETS["lossless"][0], "split": "test",
                                    "path": "full chain, nodes 0..1000 (K = 1000)", "variance": lossless["variance"],
                                    "clip": True, "seed": 0, "units": "bits/dim",
                                    "evaluator": "scripts/lossless_check.py (ddpmdp.evaluate.evaluate_paths)"}
                card["note"] = bpd_note(lossless["bpd"], lossless=True)
                fit = train_vs_test(folder, name, lossless, d)
                if fit is not None:
                    card["train_vs_test"] = fit
                card_path.write_text(json.dumps(card, indent=2) + "\n")
    out = weights_dir() / "lossless_gap.npz"
    np.savez_compressed(out, summary=np.array(json.dumps(summary, sort_keys=True)), **arrays)
    print(f"wrote {out} ({', '.join(f'{k}: {sorted(v)}' for k, v in summary.items()) or 'no complete runs'})")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("model", choices=MODELS)
    r.add_argument("--stage", choices=["before", "after"], required=True)
    r.add_argument("--weights", default=None, help="a .safetensors of the model's architecture (default: shipped)")
    r.add_argument("--set", choices=list(SETS), required=True)
    r.add_argument("--out", default="runs/lossless")
    r.add_argument("--batch-size", type=int, default=100)
    r.add_argument("--threads", type=int, default=1)
    r.set_defaults(func=run)
    u = sub.add_parser("update")
    u.add_argument("folder", nargs="?", default="runs/lossless")
    u.set_defaults(func=update)
    args = p.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
