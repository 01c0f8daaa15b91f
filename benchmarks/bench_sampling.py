"""K-step sampling wall time ÷ K bare forward passes, measured in one run (target ≤ 1.05).

Small improved-diffusion UNet (``iddpm:cifar10-small``, random weights, T = 1000), ancestral
sampling with the learned-range variance and DDIM η = 0 along the even K-step path.
Run: ``python benchmarks/bench_sampling.py [--device cuda]``.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from ddpmdp.models.specs import load_model
from ddpmdp.sampling import sample_ancestral, sample_ddim
from ddpmdp.strides import even_stride


def main() -> None:
    torch.set_flush_denormal(True)  # as the ddpmdp command line does (see cli._flush_denormals)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--K", type=int, default=32)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    model = load_model("iddpm:cifar10-small", device=args.device)
    nodes = even_stride(model.schedule.T, args.K)
    x = torch.randn(args.n, 3, 32, 32, device=args.device)

    def bare():
        for t in nodes[:0:-1]:
            model(x, int(t))

    bare()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {args.device}, n {args.n}, K {args.K}")
    for name, fn in (("ancestral learned_range", lambda: sample_ancestral(model, nodes, args.n, (3, 32, 32),
                                                                           variance="learned_range",
                                                                           device=args.device)),
                     ("ddim eta=0", lambda: sample_ddim(model, nodes, args.n, (3, 32, 32), device=args.device))):
        tb, ts = [], []
        for _ in range(args.repeats):  # interleaved; best of each
            t0 = time.perf_counter(); bare(); tb.append(time.perf_counter() - t0)  # noqa: E702
            t0 = time.perf_counter(); fn(); ts.append(time.perf_counter() - t0)  # noqa: E702
        r = float(np.median(np.array(ts) / np.array(tb)))  # median of paired ratios: robust to load changes
        print(f"{name:26s} bare {min(tb):6.2f} s  sampling {min(ts):6.2f} s  median paired ratio {r:.3f} "
              f"(target <= 1.05: {'ok' if r <= 1.05 else 'MISSED'})")


if __name__ == "__main__":
    main()
