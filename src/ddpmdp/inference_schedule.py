"""An inference schedule: a path 0 = t₀ < … < t_K = T plus, per edge, the variance rule and σ².

The variances are part of the schedule (``method.md`` §5.2a): a DP path solved on a selection
table carries the σ² that table chose for each edge, and the held-out evaluator and the sampler
use exactly those values (never re-estimated on the evaluation images). A schedule without
per-edge variances (``rules is None``) uses the run's ``--variance``.

Edge k (k = 0..K−1) is nodes[k+1] → nodes[k]; ``sigma2[k]`` is NaN for a learned-range edge
(its σ² is per pixel, from the network's v).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ddpmdp.errors import require
from ddpmdp.strides import validate_path
from ddpmdp.variances import VARIANCE_RULES

__all__ = ["InferenceSchedule"]


@dataclass(frozen=True, eq=False)
class InferenceSchedule:
    nodes: np.ndarray
    rules: tuple[str, ...] | None = None
    sigma2: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.rules is not None:
            K = len(self.nodes) - 1
            require(len(self.rules) == K and self.sigma2 is not None and len(self.sigma2) == K,
                    f"a schedule with per-edge variances needs {K} rules and {K} σ²")
            assert self.sigma2 is not None
            for r, v in zip(self.rules, self.sigma2):
                require(r in VARIANCE_RULES, f"unknown variance rule {r!r} in schedule")
                require(r == "learned_range" or (math.isfinite(float(v)) and float(v) > 0),
                        f"edge rule {r} needs a positive σ², got {v}")

    @property
    def K(self) -> int:
        return int(len(self.nodes) - 1)

    @property
    def has_variances(self) -> bool:
        return self.rules is not None

    def edge(self, t: int) -> tuple[int, str | None, float | None]:
        """(s, rule, σ²) of the edge leaving node t (rule/σ² None without per-edge variances)."""
        k = int(np.searchsorted(self.nodes, t)) - 1
        require(k >= 0 and int(self.nodes[k + 1]) == t, f"node {t} is not on this path")
        if self.rules is None:
            return int(self.nodes[k]), None, None
        assert self.sigma2 is not None
        s2 = float(self.sigma2[k])
        return int(self.nodes[k]), self.rules[k], (s2 if math.isfinite(s2) else None)

    def label(self) -> str:
        """The rules used, e.g. ``optimal`` or ``learned_range+optimal`` (empty without variances)."""
        return "+".join(sorted(set(self.rules))) if self.rules else ""

    def edges_json(self) -> list[dict]:
        """Per edge, from T down: t, s, rule and σ² (null for learned-range edges)."""
        out = []
        for k in range(self.K - 1, -1, -1):
            s2 = None if self.sigma2 is None or not math.isfinite(float(self.sigma2[k])) else float(self.sigma2[k])
            out.append({"t": int(self.nodes[k + 1]), "s": int(self.nodes[k]),
                        "rule": None if self.rules is None else self.rules[k], "sigma2": s2})
        return out

    @classmethod
    def from_edges_json(cls, nodes, edges: list[dict], T: int) -> "InferenceSchedule":
        nodes = validate_path(nodes, T)
        by_t = {int(e["t"]): e for e in edges}
        require(all(int(nodes[k + 1]) in by_t and int(by_t[int(nodes[k + 1])]["s"]) == int(nodes[k])
                    for k in range(len(nodes) - 1)), "the solved file's edges do not match its nodes")
        rules = tuple(str(by_t[int(nodes[k + 1])]["rule"]) for k in range(len(nodes) - 1))
        s2 = np.array([np.nan if by_t[int(nodes[k + 1])]["sigma2"] is None else float(by_t[int(nodes[k + 1])]["sigma2"])
                       for k in range(len(nodes) - 1)])
        return cls(nodes, rules, s2)

    @classmethod
    def from_table(cls, table, nodes) -> "InferenceSchedule":
        """The schedule of ``nodes`` with the per-edge rules and σ² of a (selection) table."""
        nodes = validate_path(nodes, table.T)
        pos = np.searchsorted(table.nodes, nodes)
        require(bool(np.all(table.nodes[np.minimum(pos, len(table.nodes) - 1)] == nodes)),
                "path nodes are not in the table's grid")
        require(table.sigma2 is not None and table.edge_rule is not None,
                "this table records no per-edge variances (an old table): rescore it with ddpmdp rescore")
        i, j = pos[1:], pos[:-1]
        rules = table.cell_rules(i, j)  # the table's own code → name map
        return cls(nodes, rules, table.sigma2[i, j].astype(np.float64))


def as_schedule(path) -> InferenceSchedule:
    """An :class:`InferenceSchedule` from nodes or a schedule."""
    return path if isinstance(path, InferenceSchedule) else InferenceSchedule(np.asarray(path, dtype=np.int64))


__all__.append("as_schedule")
