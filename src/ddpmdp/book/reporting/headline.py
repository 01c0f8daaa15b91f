"""The book's own headline: one sentence of this run's results, read from the tidy CSVs that the
NLL notebooks write (``imagenet64_nll.csv``, ``cifar10_nll.csv`` in ``book/_generated/``), never
typed by hand. The book's front page shows it next to the paper's headline (``{{ run_headline }}``,
set by ``book/_ext/ddpmdp_sphinx.py``)."""
from __future__ import annotations

import csv
import os
from pathlib import Path

from ddpmdp.book.reporting.formatting import mean_pm_se

__all__ = ["run_headline", "read_records"]


def read_records(path: str | os.PathLike) -> dict[tuple[str, str, int], tuple[float, float, int]]:
    """``{(objective, stride, K): (bpd, se, n_images)}`` from a tidy result CSV
    (:meth:`ddpmdp.book.reporting.tables.ResultTable.to_csv`); the full chain is stride ``full``
    with K = T."""
    out = {}
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            out[(r["objective"], r["stride"], int(r["K"]))] = (float(r["bpd"]), float(r["se"]), int(r["n_images"]))
    return out


def _budget(records: dict, objective: str, prefer: int = 32) -> int | None:
    Ks = sorted(K for (o, s, K) in records if o == objective and s == "dp")
    if not Ks:
        return None
    return prefer if prefer in Ks else Ks[len(Ks) // 2]


def _clause(records: dict, objective: str) -> str | None:
    K = _budget(records, objective)
    if K is None or (objective, "even", K) not in records:
        return None
    dp, even = records[(objective, "dp", K)], records[(objective, "even", K)]
    text = f"{K} DP steps give {mean_pm_se(dp[0], dp[1])} bits/dim against {mean_pm_se(even[0], even[1])} for the even stride"
    full = [(K2, v) for (o, s, K2), v in records.items() if o == objective and s == "full"]
    if full:
        T, f = full[0]
        text += f" and {mean_pm_se(f[0], f[1])} for the full {T}-step chain"
    return text + f" ({dp[2]} held-out images)"


def run_headline(generated: str | os.PathLike) -> str:
    """One sentence: the 64×64 L_hybrid and CIFAR-10 L_vlb results at K = 32 (or the middle budget)
    of this run, mean ± SE over held-out images, from the CSVs in ``generated``; says so when they
    are missing."""
    folder = Path(generated)
    parts = []
    for name, objective, what in (("imagenet64_nll.csv", "L_hybrid", "on 64×64 images (L_hybrid)"),
                                  ("cifar10_nll.csv", "L_vlb", "on CIFAR-10 with L_vlb")):
        path = folder / name
        if path.is_file():
            clause = _clause(read_records(path), objective)
            if clause:
                parts.append(f"{what}, {clause}")
    if not parts:
        return ("This book's own results appear here once its notebooks have run (`ddpmdp reproduce`).")
    return ("**This book's run** (the small embedded models and local data copies, so compare the strides, not "
            "the values with the paper's): " + "; ".join(parts) + ".")
