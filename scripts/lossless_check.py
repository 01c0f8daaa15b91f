"""Record in each embedded CIFAR-10 model's card the full-chain bits/dim on the 100 lossless CIFAR-10
test images and on the JPEG-decoded copies of the same 100 images (issue: the data caveat, measured).

Usage (CPU: about 13 minutes per model and data set on one core of a 2-core machine, two runs side by side)::

    for m in cifar10-hybrid cifar10-simple cifar10-vlb; do
      for d in cifar10-lossless100 cifar10:test; do
        ddpmdp evaluate --model $m --data $d --n-images 100 --batch-size 100 --schedule even:1000 \\
            --seed 0 --quiet --json > runs/lossless/${m}_${d/:/_}.json
      done
    done
    python scripts/lossless_check.py runs/lossless

The same seed and keyed noise are used on both sets, so the two numbers differ only by the pixels.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from ddpmdp.models.embedded import EMBEDDED, weights_dir

KEYS = {"cifar10-lossless100": "held_out_lossless100", "cifar10_test": "held_out_jpeg100"}


def main(folder: str) -> int:
    done = []
    for name in EMBEDDED:
        card_path = weights_dir() / f"{name}.json"
        card = json.loads(card_path.read_text())
        changed = False
        for tag, key in KEYS.items():
            f = Path(folder) / f"{name}_{tag}.json"
            if not f.is_file():
                continue
            (score,) = json.loads(f.read_text()).values()
            card[key] = {"bpd": score["bpd"], "bpd_se": score["bpd_se"], "n_images": score["n_images"],
                         "data": "cifar10-lossless100:test" if tag.startswith("cifar10-lossless") else
                         "cifar10:test (first 100, JPEG-decoded copy)", "split": score["split"],
                         "path": "full chain (even:1000)", "seed": 0, "units": "bits/dim",
                         "evaluator": "ddpmdp evaluate --schedule even:1000"}
            changed = True
        if changed:
            card_path.write_text(json.dumps(card, indent=2) + "\n")
            done.append(name)
    print("updated cards:", ", ".join(done) or "none")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "runs/lossless"))
