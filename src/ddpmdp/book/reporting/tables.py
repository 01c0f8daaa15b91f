"""Tidy result tables: bits/dim ± SE per (objective, stride, K), as CSV and Markdown.

Input is a mapping ``(objective, stride, K) → score`` where a score is a
:class:`ddpmdp.evaluate.PathScore` (or a plain ``(bpd, se)`` pair, which carries no split,
image count or per-image totals), plus an optional full-chain score per objective. The
output follows the Paper's Table 3 layout (``method.md`` §10.1): rows objective × stride,
columns K = 8 … 256 and "All" (the full chain, K = T), cells "bpd ± SE".

* :func:`bpd_table` → :class:`ResultTable` with :meth:`~ResultTable.to_markdown`,
  :meth:`~ResultTable.to_csv` (one tidy row per cell, separate numeric ``bpd`` and ``se``
  columns, plus ``split`` and ``n_images``) and :meth:`~ResultTable.records`.
* :func:`flag_dp_gains` compares the DP stride with each baseline at every K (``method.md``
  §8.4): the difference Δ = bpd(DP) − bpd(baseline) with its paired SE where possible, and its
  verdict (gain, loss or within 2 SE), both from :mod:`ddpmdp.book.reporting.comparisons`.

Units: bits/dim throughout (nats per image / (d·ln 2), :func:`ddpmdp.gaussians.nats_to_bpd`);
SE = sd(per-image totals)/√N for direct evaluations. No pandas: plain ``csv``.
"""
from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ddpmdp.book.reporting.comparisons import N_SIGMA, ScoreLike, score_bpd_se, score_difference, verdict
from ddpmdp.book.reporting.formatting import mean_pm_se
from ddpmdp.book.reporting.paper import PAPER_BUDGETS
from ddpmdp.errors import require
from ddpmdp.evaluate import PathScore

__all__ = ["Cell", "cell_of", "ResultTable", "bpd_table", "GainFlag", "flag_dp_gains", "flags_markdown",
           "scores_by_stride", "markdown_table", "FULL"]

FULL = "full"
"""The stride name under which full-chain scores appear in tidy records (K = T)."""


# ---- cells -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Cell:
    """One reported number: ``bpd`` and ``se`` in bits/dim, with where it was measured."""

    bpd: float
    se: float
    split: str = "unspecified"
    n_images: int = 0
    se_kind: str = ""

    def text(self, precision: int) -> str:
        """``"3.172 ± 0.005"`` (:func:`mean_pm_se`)."""
        return mean_pm_se(self.bpd, self.se, precision)


def cell_of(score: ScoreLike) -> Cell:
    """A :class:`Cell` from a :class:`PathScore` or a ``(bpd, se)`` pair."""
    if isinstance(score, PathScore):
        return Cell(float(score.bpd), float(score.bpd_se), str(score.split), int(score.n_images), score.se_kind)
    return Cell(*score_bpd_se(score))


# ---- the table ---------------------------------------------------------------------------------------
@dataclass
class ResultTable:
    """bits/dim ± SE for rows (objective, stride) and columns ``budgets`` plus the full chain.

    ``cells[(objective, stride, K)]`` and ``full[objective] = (T, Cell)``; ``flags`` from
    :func:`flag_dp_gains` mark DP cells in the Markdown; ``precision`` decimals for display.
    """

    budgets: tuple[int, ...]
    rows: list[tuple[str, str]]
    cells: dict[tuple[str, str, int], Cell]
    full: dict[str, tuple[int, Cell]] = field(default_factory=dict)
    precision: int = 3
    flags: list["GainFlag"] = field(default_factory=list)
    title: str = ""
    row_headers: tuple[str, str] = ("Objective", "Stride")

    def records(self) -> list[dict[str, object]]:
        """Tidy rows, one per cell: objective, stride, K, bpd, se (bits/dim), split, n_images,
        se_kind. Full-chain scores appear with stride :data:`FULL` and K = T."""
        out: list[dict[str, object]] = []
        for (obj, stride, K), c in self.cells.items():
            out.append({"objective": obj, "stride": stride, "K": K, "bpd": c.bpd, "se": c.se, "split": c.split,
                        "n_images": c.n_images, "se_kind": c.se_kind})
        for obj, (T, c) in self.full.items():
            out.append({"objective": obj, "stride": FULL, "K": T, "bpd": c.bpd, "se": c.se, "split": c.split,
                        "n_images": c.n_images, "se_kind": c.se_kind})
        return out

    def to_csv(self, path: str | Path | None = None) -> str:
        """CSV text of :meth:`records` (numbers to 8 significant digits, bits/dim); written to
        ``path`` as well when given."""
        cols = ["objective", "stride", "K", "bpd", "se", "units", "split", "n_images", "se_kind"]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
        w.writeheader()
        for r in self.records():
            w.writerow(dict(r, bpd=f"{r['bpd']:.8g}", se=f"{r['se']:.8g}", units="bits/dim"))
        text = buf.getvalue()
        if path is not None:
            Path(path).write_text(text)
        return text

    def provenance(self) -> str:
        """One sentence naming the split(s) and image count(s) behind the numbers."""
        groups: dict[tuple[str, int], int] = {}
        for c in list(self.cells.values()) + [c for _, c in self.full.values()]:
            groups[(c.split, c.n_images)] = groups.get((c.split, c.n_images), 0) + 1
        parts = [f"split {s}, {n:,} images" if n else f"split {s}, image count unknown" for (s, n) in groups]
        lead = "All cells: " if len(groups) == 1 else "Mixed provenance (cells per group differ): "
        return lead + "; ".join(parts) + "."

    def wide_rows(self) -> tuple[list[str], list[list[str]]]:
        """Header and rows of the wide layout (objective × stride by K, then "All"), cells "bpd ± SE"
        with "‡" where DP's difference from a baseline lies within 2 SE and "†" where DP is worse
        than a baseline by more than 2 SE."""
        within = {(f.objective, f.K) for f in self.flags if f.within}
        losses = {(f.objective, f.K) for f in self.flags if f.status == "loss"}
        dp_names = {f.dp for f in self.flags}
        head = [*self.row_headers] + [f"K={K}" for K in self.budgets] + (["All"] if self.full else [])
        rows, seen = [], set()
        for obj, stride in self.rows:
            row = [obj if obj not in seen else "", stride]
            for K in self.budgets:
                c = self.cells.get((obj, stride, K))
                mark = ""
                if stride in dp_names:
                    mark = " †" if (obj, K) in losses else (" ‡" if (obj, K) in within else "")
                row.append(c.text(self.precision) + mark if c else "—")
            if self.full:
                row.append(self.full[obj][1].text(self.precision) if obj in self.full and obj not in seen else "")
            seen.add(obj)
            rows.append(row)
        return head, rows

    def to_markdown(self) -> str:
        """A Markdown table with cells "bpd ± SE" and a caption naming units, split, image
        count, the full chain's T and the DP flags (‡: gain over a baseline within 2 SE)."""
        within = {(f.objective, f.K) for f in self.flags if f.within}
        losses = {(f.objective, f.K) for f in self.flags if f.status == "loss"}
        head, rows = self.wide_rows()
        lines = ([f"**{self.title}**", ""] if self.title else []) + [
            "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        caption = [f"Bits/dim, mean ± SE over images. {self.provenance()}"]
        if self.full:
            caption.append("All = the full chain (" + ", ".join(f"{o}: T = {T if T else 'not recorded'}"
                                                                for o, (T, _) in self.full.items()) + ").")
        kinds = sorted({c.se_kind for c in self.cells.values() if c.se_kind})
        if kinds:
            caption.append("SE: " + "; ".join(kinds) + ".")
        n_sigma = self.flags[0].n_sigma if self.flags else N_SIGMA
        if losses:
            caption.append(f"† DP is worse than at least one baseline at this K by more than {n_sigma:g} SE.")
        if within - losses:
            caption.append(f"‡ DP's difference from at least one baseline at this K is within {n_sigma:g} SE "
                           "(not significant); see the flag list.")
        return "\n".join(lines) + "\n\n" + " ".join(caption) + "\n"


def bpd_table(scores: Mapping[tuple[str, str, int], ScoreLike], full_chain: Mapping[str, ScoreLike] | None = None,
              *, budgets: Sequence[int] | None = None, precision: int = 3, dp: str = "dp",
              n_sigma: float = N_SIGMA, title: str = "", row_headers: tuple[str, str] = ("Objective", "Stride")
              ) -> ResultTable:
    """Build a :class:`ResultTable` from ``scores[(objective, stride, K)]`` and the optional
    ``full_chain[objective]`` (a PathScore, whose K = T, or ``(bpd, se)`` with T unknown → 0).

    Rows keep the first-appearance order of objectives and strides; columns are ``budgets``
    (default: the Paper's 8 … 256 plus any other K present). When ``dp`` is one of the
    strides, :func:`flag_dp_gains` fills ``flags`` (threshold ``n_sigma`` SE). ``row_headers``
    name the two row columns in the wide layout (e.g. ``("Variance rule", "Stride")``).
    """
    require(precision >= 0, "precision must be >= 0")
    Ks = sorted({int(k[2]) for k in scores})
    cols = tuple(sorted(set(budgets))) if budgets is not None else tuple(sorted(set(PAPER_BUDGETS) | set(Ks)))
    rows: list[tuple[str, str]] = []
    cells: dict[tuple[str, str, int], Cell] = {}
    for key, sc in scores.items():
        require(len(key) == 3, f"score keys must be (objective, stride, K), got {key!r}")
        obj, stride, K = str(key[0]), str(key[1]), int(key[2])
        if (obj, stride) not in rows:
            rows.append((obj, stride))
        cells[(obj, stride, K)] = cell_of(sc)
    first: dict[str, int] = {}
    for o, _ in rows:
        first.setdefault(o, len(first))
    rows.sort(key=lambda r: first[r[0]])  # group by objective, stable otherwise
    full: dict[str, tuple[int, Cell]] = {}
    for obj, sc in (full_chain or {}).items():
        full[str(obj)] = (sc.K if isinstance(sc, PathScore) else 0, cell_of(sc))
    flags = flag_dp_gains(scores, dp=dp, n_sigma=n_sigma) if any(s == dp for _, s in rows) else []
    return ResultTable(cols, rows, cells, full, precision, flags, title, row_headers)


# ---- DP gains ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GainFlag:
    """DP against one baseline at one K: ``diff`` = bpd(DP) − bpd(baseline) in bits/dim
    (negative: DP is better) with its SE; ``paired`` says whether the SE came from per-image
    differences on the same images."""

    objective: str
    K: int
    dp: str
    baseline: str
    diff: float
    se: float
    paired: bool
    n_sigma: float = N_SIGMA

    @property
    def within(self) -> bool:
        """The difference is within n_sigma SE: not significant (a DP "gain" within the noise)."""
        return verdict(self.diff, self.se, self.n_sigma) == "within"

    @property
    def status(self) -> str:
        """``"gain"`` (DP better beyond n_sigma SE), ``"loss"`` (worse beyond it) or ``"within 2 SE"``
        (:func:`ddpmdp.book.reporting.comparisons.verdict`)."""
        v = verdict(self.diff, self.se, self.n_sigma)
        return f"within {self.n_sigma:g} SE" if v == "within" else v


def flag_dp_gains(scores: Mapping[tuple[str, str, int], ScoreLike], *, dp: str = "dp",
                  baselines: Sequence[str] | None = None, n_sigma: float = N_SIGMA) -> list[GainFlag]:
    """Compare stride ``dp`` with every baseline stride (default: all others) at each
    (objective, K) where both exist. SE of Δ: paired (per-image totals of the same images,
    :func:`ddpmdp.evaluate.paired_difference`) when available, else √(SE_dp² + SE_base²),
    which assumes independent estimates (:func:`~ddpmdp.book.reporting.comparisons.score_difference`)."""
    out: list[GainFlag] = []
    keys = list(scores)
    for obj, stride, K in keys:
        if stride != dp:
            continue
        for obj2, base, K2 in keys:
            if obj2 != obj or K2 != K or base == dp or (baselines is not None and base not in baselines):
                continue
            diff, se, paired = score_difference(scores[(obj, stride, K)], scores[(obj2, base, K2)])
            out.append(GainFlag(str(obj), int(K), dp, str(base), diff, se, paired, n_sigma))
    return out


def flags_markdown(flags: Sequence[GainFlag], precision: int = 3) -> str:
    """A Markdown list of DP-versus-baseline differences (bits/dim) and their status."""
    lines = ["| Objective | K | Baseline | Δ bits/dim (DP − baseline) ± SE | SE kind | Status |",
             "|---|---|---|---|---|---|"]
    for f in flags:
        lines.append(f"| {f.objective} | {f.K} | {f.baseline} | {mean_pm_se(f.diff, f.se, precision, signed=True)} | "
                     f"{'paired' if f.paired else 'unpaired'} | {f.status} |")
    return "\n".join(lines) + "\n"


def scores_by_stride(scores: Mapping[tuple[str, str, int], ScoreLike], objective: str
                     ) -> dict[str, dict[int, ScoreLike]]:
    """``scores[(objective, stride, K)]`` → ``{stride: {K: score}}`` for one objective (the
    input of :func:`ddpmdp.book.reporting.plotting.plot_bpd_vs_budget`)."""
    out: dict[str, dict[int, ScoreLike]] = {}
    for (obj, stride, K), sc in scores.items():
        if obj == objective:
            out.setdefault(str(stride), {})[int(K)] = sc
    require(bool(out), f"no scores for objective {objective!r}")
    return out


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], title: str = "") -> str:
    """A Markdown table from a header and rows of cell texts, with an optional bold title line."""
    lines = ([f"**{title}**", ""] if title else []) + ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"
