"""Path specs: strings that name an inference path (``even:K``, ``quadratic:K``,
``dp:SOLVED.json:K``, ``nodes:0,…,T``), shared by the CLI and the notebooks."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ddpmdp.errors import DdpmdpError, require
from ddpmdp.strides import even_stride, quadratic_stride, validate_path

from ddpmdp.inference_schedule import InferenceSchedule

__all__ = ["parse_path_spec", "parse_schedule_spec"]


def parse_path_spec(spec: str, T: int) -> np.ndarray:
    """The nodes of a path spec (see :func:`parse_schedule_spec` for the nodes with per-edge variances)."""
    return parse_schedule_spec(spec, T).nodes


def parse_schedule_spec(spec: str, T: int) -> InferenceSchedule:
    """Resolve a path spec to an :class:`InferenceSchedule` (int64 nodes 0 = t₀ < … < t_K = T).

    ``even:K`` and ``quadratic:K`` (:mod:`ddpmdp.strides`), ``dp:SOLVED.json:K`` (a budget of
    ``ddpmdp solve --json``'s output; it carries each edge's rule and σ² when the file records
    them) or ``nodes:0,…,T``. Only ``dp:`` schedules carry per-edge variances."""
    kind, _, rest = spec.partition(":")
    if kind in ("even", "quadratic"):
        try:
            K = int(rest)
        except ValueError:
            raise DdpmdpError(f"path spec {spec!r}: expected {kind}:K with an integer K") from None
        return InferenceSchedule((even_stride if kind == "even" else quadratic_stride)(T, K))
    if kind == "nodes":
        try:
            nodes = [int(x) for x in rest.split(",") if x.strip()]
        except ValueError:
            raise DdpmdpError(f"path spec {spec!r}: nodes must be comma-separated integers") from None
        return InferenceSchedule(validate_path(np.asarray(nodes, dtype=np.int64), T))
    if kind == "dp":
        file, _, k = rest.rpartition(":")
        require(bool(file) and k.isdigit(), f"path spec {spec!r}: expected dp:SOLVED.json:K")
        path = Path(file)
        require(path.is_file(), f"solved-paths file {file!r} does not exist (write it with ddpmdp solve --json)")
        try:
            solved = json.loads(path.read_text())
            entry = solved["budgets"][str(int(k))]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise DdpmdpError(f"{file}: no budget K = {k} in this solve output "
                              f"(it has {sorted(map(int, solved.get('budgets', {})))})") from None
        require(int(solved.get("T", -1)) == T, f"{file} was solved for T = {solved.get('T')}, not T = {T}")
        if entry.get("edges") and entry["edges"][0].get("rule") is not None:
            return InferenceSchedule.from_edges_json(entry["nodes"], entry["edges"], T)
        return InferenceSchedule(validate_path(entry["nodes"], T))
    raise DdpmdpError(f"unknown path spec {spec!r}: use even:K, quadratic:K, dp:SOLVED.json:K or nodes:0,…,T")
