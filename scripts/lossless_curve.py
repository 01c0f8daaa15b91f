"""Full-chain bits/dim of embedded-architecture weights on lossless CIFAR-10 images (issue: real pixels).

Measures what fine-tuning on the lossless 4,000 training images buys, point by point:

    python scripts/lossless_curve.py WEIGHTS.safetensors --arch cifar10-simple \\
        --data cifar10-lossless:test --n-images 32 --out runs/curve/simple_a_test.json

``WEIGHTS`` is a ``.safetensors`` file of the embedded architecture ``--arch`` (its card beside it is
not needed), or an embedded model name (the shipped weights). The path is the full chain
(``even:T``), the noise keyed by (seed, image, t) in the evaluation stream, so two weights files
evaluated with the same ``--seed`` on the same images are paired: ``--compare OTHER.json`` prints
the paired difference. The JSON keeps the per-image totals (nats) and the mean term of every edge
(the per-t contribution of any difference).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch


def main(argv: list[str] | None = None) -> int:
    from ddpmdp.data.specs import load_images
    from ddpmdp.evaluate import evaluate_paths
    from ddpmdp.models.embedded import EMBEDDED, adapter_from_file, load_embedded
    from ddpmdp.strides import even_stride

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("weights")
    p.add_argument("--arch", required=True, choices=sorted(EMBEDDED))
    p.add_argument("--data", default="cifar10-lossless:test")
    p.add_argument("--n-images", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", required=True)
    p.add_argument("--compare", default=None, help="an earlier output on the same images: print the paired difference")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    if args.weights in EMBEDDED:
        model = load_embedded(args.weights)
    else:
        model = adapter_from_file(EMBEDDED[args.arch].config, Path(args.weights))
    data = load_images(args.data).subset(args.n_images)
    T = model.schedule.T
    t0 = time.time()
    (score,) = evaluate_paths(model, data, {"full": even_stride(T, T)}, batch_size=args.batch_size,
                              seed=args.seed).values()
    assert score.per_image is not None
    out = {"weights": args.weights, "arch": args.arch, "data": data.identity, "split": data.split,
           "n_images": len(data), "seed": args.seed, "variance": model.variance, "bpd": score.bpd,
           "bpd_se": score.bpd_se, "per_image_nats": score.per_image.tolist(),
           "terms_nats": score.terms.tolist(), "nodes": [int(n) for n in score.nodes],
           "seconds": round(time.time() - t0, 1)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out))
    line = f"{args.weights} on {data.identity} ({len(data)}): {score.bpd:.4f} ± {score.bpd_se:.4f} bits/dim"
    if args.compare:
        other = json.loads(Path(args.compare).read_text())
        a, b = np.asarray(out["per_image_nats"]), np.asarray(other["per_image_nats"])
        d = (a - b) / (data.dims * math.log(2.0))
        line += f"; minus {other['weights']}: {d.mean():+.4f} ± {d.std(ddof=1) / math.sqrt(len(d)):.4f} (paired)"
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
