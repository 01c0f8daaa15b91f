"""What a notebook writes for the book: result tables (CSV + Markdown + caption), generated text,
figures and DP paths, all under its output folder (``book/_generated/`` in the book's run)."""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ddpmdp.book.reporting.tables import ResultTable, markdown_table
from ddpmdp.dp import DPSolution
from ddpmdp.table import ElboTable

__all__ = ["write_result_table", "write_text", "save_figure", "write_dp_json"]


def write_dp_json(table: ElboTable, solution: DPSolution, budgets: Sequence[int], path: str | os.PathLike,
                  L: np.ndarray | None = None) -> Path:
    """The DP paths as a solved-schedule file (:mod:`ddpmdp.schedule_file`, the one format that
    ``ddpmdp solve --out`` writes and ``dp:FILE.json:K`` reads), with the table's model and noise
    schedule identity and each edge's rule and σ². ``L``: the cost the solution was computed from,
    when it is not the table's ELBO (then nats/bpd are omitted)."""
    from ddpmdp.schedule_file import SolvedSchedules, write_schedule_file

    return write_schedule_file(path, SolvedSchedules.from_table(table, solution, budgets, L=L))


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
      by ``caption`` (e.g. :func:`ddpmdp.book.reporting.captions.provenance`), for the book to include.

    A plain ``(header, rows)`` pair (e.g. :meth:`ddpmdp.book.experiments.sample_quality.SampleQualityResult.fid_table`) is written as
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
