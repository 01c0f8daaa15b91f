"""A stand-in trajectory table (``method.md`` §13) for the tests of the trajectory-schedule plumbing:
the identity metadata a real trajectory table records, and a made-up cost C(t, s) ≥ 0 that the DP
solves. Only what :meth:`ddpmdp.schedule_file.SolvedSchedules.from_table` reads."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np


def trajectory_table(model, nodes=None, *, clip: bool = True, seed: int = 0):
    """A table over ``nodes`` (default every node) with ``meta`` naming ``model``, objective
    ``trajectory`` and sampler DDIM η = 0 with ``clip``; cost (t − s)²·(1 + u), u ~ U(0, 1)."""
    sched = model.schedule
    T = int(sched.T)
    g = np.arange(T + 1) if nodes is None else np.asarray(nodes, dtype=np.int64)
    rng = np.random.default_rng(seed)
    dt = (g[:, None] - g[None, :]).astype(np.float64) / T
    L = np.where(dt > 0, dt ** 2 * (1 + rng.random(dt.shape)), np.inf)
    meta = {"model": model.identity, "model_hash": model.fingerprint(), "schedule": sched.describe(),
            "schedule_hash": sched.fingerprint(), "T": T, "clip": bool(clip), "objective": "trajectory",
            "sampler": {"kind": "ddim", "eta": 0.0, "clip": bool(clip)}, "cost_units": "RMS per dimension",
            "abar_grid": [float(a) for a in sched.abar(g)], "grid": "all" if nodes is None else "nodes",
            "split": "train", "n_images": 8, "seed": seed}
    return SimpleNamespace(T=T, nodes=g, meta=meta, L=L)


def write_trajectory_file(path: Path, model, budgets=(3, 5), **kw) -> Path:
    """Solve :func:`trajectory_table` for ``budgets`` and write the solved-schedule file."""
    from ddpmdp.dp import solve
    from ddpmdp.schedule_file import SolvedSchedules, write_schedule_file

    table = trajectory_table(model, **kw)
    sol = solve(table.L, max(budgets), table.nodes)
    return write_schedule_file(path, SolvedSchedules.from_table(table, sol, budgets))
