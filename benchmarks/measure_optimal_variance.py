"""The issue-13 measurement on one embedded model, CPU-sized: a table on 32 training images over
``log:120+even:8,16,32,64+quadratic:8,16,32,64`` (rule optimal, or best for learned-variance models),
every rule derived from it, and all rules' even/quadratic/DP schedules scored on 32 test images,
paired. Prints the table and the paired differences. Usage:
``python benchmarks/measure_optimal_variance.py cifar10-simple`` (or ``cifar10-hybrid``).
"""
from __future__ import annotations

import sys

import torch

from ddpmdp.book.experiments import optimal_variance as ov
from ddpmdp.book.runtime.inputs import load_data, load_experiment_model


def main(spec: str, n: int = 32) -> None:
    torch.set_num_threads(1)
    budgets = [8, 16, 32, 64]
    grid = "log:120+even:8,16,32,64+quadratic:8,16,32,64"
    train, test = load_data("cifar10:train", n), load_data("cifar10:test", n)
    model = load_experiment_model(spec)
    r = ov.run_optimal_variance(model, train, test, name=spec, budgets=budgets, grid=grid, batch_size=32)
    print("seconds", r.seconds, "grid", len(r.tables["optimal"].nodes))
    print(ov.variance_table(r).to_markdown())
    print("\n".join(ov.must_show_lines(r)))
    if "best" in r.rules:
        print("\n".join(ov.gain_lines(r, ("best", "dp"), ("optimal", "dp"))))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "cifar10-simple")
