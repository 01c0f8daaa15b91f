"""What a notebook writes: tables (CSV + Markdown), figures and DP paths under ``_generated/``.
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ddpmdp.dp import DPSolution
from ddpmdp.table import ElboTable
from ddpmdp.errors import DdpmdpError
from ddpmdp.book.locations import repo_root
from ddpmdp.book.reports import ResultTable

__all__ = [
    "write_text",
    "format_paths",
    "write_dp_json",
    "write_result_table",
    "markdown_table",
    "save_figure",
    "slug",
    "relative",
    "format_seconds",
]


# ---- writing results --------------------------------------------------------------------------
def format_paths(paths: Mapping[int, np.ndarray], max_nodes: int = 40, key: str = "K") -> str:
    """One line per entry, ``K =  8: 0, 1, 7, …, 1000`` (``key`` names the mapping's keys: the
    budget K, or e.g. the table size n); paths longer than ``max_nodes`` nodes show their first
    and last nodes around an ellipsis."""
    width = len(str(max(paths))) if paths else 1
    lines = []
    for K in sorted(paths):
        p = [int(x) for x in paths[K]]
        body = (", ".join(map(str, p)) if len(p) <= max_nodes else
                ", ".join(map(str, p[:max_nodes // 2])) + ", …, " + ", ".join(map(str, p[-max_nodes // 4:])))
        lines.append(f"{key} = {K:>{width}}: {body}")
    return "\n".join(lines)


def write_dp_json(table: ElboTable, solution: DPSolution, budgets: Sequence[int], path: str | os.PathLike,
                  L: np.ndarray | None = None) -> Path:
    """The DP paths in the format of ``ddpmdp solve --json`` (usable as ``dp:FILE.json:K``):
    T, split, variance, n_images and per budget the nodes with the selection table's own
    (optimistic) nats and bits/dim. ``L``: the cost the solution was computed from, when it is
    not the table's ELBO (then nats/bpd are omitted)."""
    res: dict[str, Any] = {"table": table.meta.get("model"), "T": table.T, "split": table.meta.get("split"),
                           "variance": table.meta.get("variance"), "n_images": table.meta.get("n_images"),
                           "note": "costs are the selection table's own values (optimistically biased); "
                                   "evaluate the paths on held-out data", "budgets": {}}
    for K in budgets:
        nodes = solution.path(int(K))
        entry: dict[str, Any] = {"nodes": [int(n) for n in nodes]}
        if L is None:
            nats = float(solution.costs[int(K)] + table.prior)
            entry.update(nats=nats, bpd=float(table.bpd(nats)))
        res["budgets"][str(int(K))] = entry
    p = Path(path)
    p.write_text(json.dumps(res, indent=1) + "\n")
    return p


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], title: str = "") -> str:
    """A Markdown table from a header and rows of cell texts, with an optional bold title line."""
    lines = ([f"**{title}**", ""] if title else []) + ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    import csv

    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def write_result_table(table: ResultTable | tuple[list[str], list[list[str]]], name: str,
                       out_dir: str | os.PathLike, *, caption: str = "") -> dict[str, Path]:
    """Write a result table for the book under ``out_dir``:

    * ``NAME.csv`` — tidy records, one per cell, numeric bpd and SE (:meth:`ResultTable.to_csv`);
    * ``NAME.md`` — the Markdown table with its caption (:meth:`ResultTable.to_markdown`);
    * ``NAME_wide.csv`` — the display layout (cells "bpd ± SE") for ``csv-table :file:``;
    * ``NAME_caption.md`` — the caption alone (units, split, image count, SE kind, flags), followed
      by ``caption`` (e.g. :func:`ddpmdp.book.summaries.provenance`), for the book to include.

    A plain ``(header, rows)`` pair (e.g. :meth:`SampleQualityResult.fid_table`) is written as
    ``NAME_wide.csv`` and a Markdown ``NAME.md`` only. Returns the paths by kind."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    if isinstance(table, ResultTable):
        paths["csv"] = out / f"{name}.csv"
        table.to_csv(paths["csv"])
        paths["md"] = out / f"{name}.md"
        text = table.to_markdown()
        paths["md"].write_text(text)
        paths["caption"] = out / f"{name}_caption.md"
        paths["caption"].write_text(text.rstrip("\n").rsplit("\n\n", 1)[-1] + (f" {caption}" if caption else "") + "\n")
        header, rows = table.wide_rows()
    else:
        header, rows = table
        paths["md"] = out / f"{name}.md"
        paths["md"].write_text(markdown_table(header, rows))
        if caption:
            paths["caption"] = out / f"{name}_caption.md"
            paths["caption"].write_text(caption + "\n")
    paths["wide"] = out / f"{name}_wide.csv"
    _write_csv(paths["wide"], header, rows)
    return paths


def write_text(markdown: str, name: str, out_dir: str | os.PathLike) -> Path:
    """Write generated prose as ``out_dir/NAME.md`` (atomically); returns the path."""
    from ddpmdp.fileio import atomic_write

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.md"
    atomic_write(path, lambda tmp: tmp.write_text(markdown))
    return path


def save_figure(fig, name: str, out_dir: str | os.PathLike, *, dpi: int | None = None) -> Path:
    """Save a matplotlib figure as ``out_dir/NAME.png`` without a software-version stamp (so
    the bytes depend only on the figure). Returns the path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.png"
    fig.savefig(path, dpi=dpi, metadata={"Software": None})
    return path


def slug(text: str) -> str:
    """A file-name stem from a label: runs of non-word characters become ``_``, lower case
    (``"64×64 L_hybrid"`` → ``"64_64_l_hybrid"``)."""
    import re

    return re.sub(r"\W+", "_", text, flags=re.ASCII).strip("_").lower()


def relative(path: str | os.PathLike) -> str:
    """``path`` relative to the repository root when inside it (for machine-independent output)."""
    p = Path(path).resolve()
    try:
        return str(p.relative_to(repo_root()))
    except (ValueError, DdpmdpError):
        return str(p)


def format_seconds(seconds: Mapping[str, float]) -> str:
    """``"table 12.3 s, dp 0.1 s, …"`` (wall times; excluded from notebook output checks)."""
    return ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items()) + f" (total {math.fsum(seconds.values()):.1f} s)"
