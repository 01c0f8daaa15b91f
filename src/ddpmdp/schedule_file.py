"""The solved-schedule file (``ddpmdp solve --out FILE``): one type, one writer, one reader.

A file holds the DP paths of one selection table for several budgets, and everything a reader
needs to use them without that table: which model and noise schedule they were solved for
(checked by :func:`ddpmdp.inference_schedule.check_schedule_identity` wherever a schedule is
used), the objective and the sampler they are valid for, the grid with ᾱ at its nodes (enough for
k-diffusion's σ), and per budget the nodes, the selection table's own nats and bits/dim
(optimistically biased: the paths were chosen on those images) and each edge's variance rule
and σ². Layout, format ``ddpmdp-schedules`` version 2 (JSON)::

    {"format": "ddpmdp-schedules", "version": 2, "objective": "elbo", "sampler": {"kind": "ancestral"},
     "model": {"identity": …, "hash": …, "numerics": {"dtype": …, "bf16": …, "channels_last": …}},
     "noise_schedule": {"name": "cosine:1000", "T": 1000, "hash": …, "abar_grid": [ᾱ at grid.nodes]},
     "T": 1000, "variance": RULE, "clip": true, "decoder_convention": …,
     "grid": {"spec": "log:200", "size": G, "nodes": [0, …, T]},
     "selection": {"table": PATH, "data": …, "data_hash": …, "split": "train", "n_images": N, "seed": S},
     "note": …, "version_written": "ddpmdp X.Y",
     "budgets": {"K": {"K": K, "nodes": [0, …, T], "nats": …, "bpd": …, "optimistic": true,
                       "variance": "rule+rule", "edges": [{"t": …, "s": …, "rule": …, "sigma2": …}, …]}}}

Edges are listed from T down; ``sigma2`` is null on learned-range edges (σ² per pixel from the
network).

A **trajectory** schedule (``method.md`` §13: the DP over the error table C(t, s) of one
deterministic DDIM step) has ``"objective": "trajectory"`` and
``"sampler": {"kind": "ddim", "eta": 0.0, "clip": true}`` (the clip flag of the steps the table
measured); its budgets hold ``"cost"`` (the DP's own value on the selection table, in
``"cost_units"``, optimistic) instead of nats/bpd, and no edge variances: DDIM η = 0 uses none.
Readers refuse an objective and a sampler that do not belong together. Files written before version 2 (``ddpmdp solve --json`` of earlier releases, the
book's ``write_dp_json``) are read with a one-line warning and no identity check.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ddpmdp.errors import DdpmdpError, require
from ddpmdp.fileio import atomic_write_text
from ddpmdp.inference_schedule import OBJECTIVES, InferenceSchedule, SamplerSpec, ScheduleIdentity, default_sampler
from ddpmdp.strides import validate_path
from ddpmdp.variances import VARIANCE_RULES
from ddpmdp.version import __version__

__all__ = ["FORMAT", "VERSION", "SolvedBudget", "SolvedSchedules", "write_schedule_file", "read_schedule_file",
           "read_schedule_spec"]

FORMAT = "ddpmdp-schedules"
VERSION = 2
NOTE = ("nats and bpd are the selection table's own values (optimistically biased: the paths were chosen on "
        "those images); evaluate the paths on held-out data")
NOTE_COST = ("cost is the selection table's own value of each path (optimistically biased: the paths were chosen on "
             "those seeds); evaluate the paths on held-out seeds (ddpmdp evaluate --metric teacher)")


@dataclass(frozen=True, eq=False)
class SolvedBudget:
    """One budget: ``nodes`` int64 (K+1,) 0 = t₀ < … < t_K = T; ``nats``/``bpd`` on the selection
    table incl. the prior (None when the cost solved was not the table's ELBO); ``rules``/``sigma2``
    per edge in node order (edge k = nodes[k+1] → nodes[k]; σ² NaN on learned-range edges), None
    when the file records none; ``cost``: the DP's own total cost on the selection table when it
    is not the table's ELBO (a trajectory table's, an MSE reweighting's), optimistic."""

    K: int
    nodes: np.ndarray
    nats: float | None = None
    bpd: float | None = None
    rules: tuple[str, ...] | None = None
    sigma2: np.ndarray | None = None
    cost: float | None = None
    """The DP's own total cost on the selection table when it is not the ELBO (trajectory tables)."""


@dataclass(frozen=True, eq=False)
class SolvedSchedules:
    """The content of a solved-schedule file. ``identity``: None for files without one (before
    version 2); ``variance``: the selection table's rule; ``info``: the rest of the document (grid,
    ᾱ at the grid, selection data, numerics, …); ``source``: the file read."""

    identity: ScheduleIdentity | None
    T: int
    variance: str | None
    budgets: dict[int, SolvedBudget]
    info: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    # ---- use -------------------------------------------------------------------------------
    def budget(self, K: int) -> SolvedBudget:
        """The entry of budget K; one-line error naming the budgets the file has."""
        require(int(K) in self.budgets, f"{self.source or 'the solved-schedule file'}: no budget K = {K} "
                f"(it has {sorted(self.budgets)})")
        return self.budgets[int(K)]

    @property
    def objective(self) -> str:
        """``elbo`` or ``trajectory`` (``elbo`` for files without identity)."""
        return self.identity.objective if self.identity is not None else "elbo"

    @property
    def sampler(self) -> SamplerSpec:
        """The sampler the file's schedules are valid for (ancestral for files without identity)."""
        return self.identity.sampler if self.identity is not None else SamplerSpec("ancestral")

    def schedule(self, K: int, *, allow_other_model: bool = False, allow_other_sampler: bool = False
                 ) -> InferenceSchedule:
        """Budget K as an :class:`InferenceSchedule` with per-edge variances (when recorded) and
        this file's identity (``allow_other_model``: deliberately usable on another model of the
        same noise schedule; ``allow_other_sampler``: with a sampler it was not solved for)."""
        b = self.budget(K)
        ident = self.identity
        if ident is not None:
            ident = dataclasses.replace(ident, source=f"{self.source}:{int(K)}", allow_other_model=allow_other_model,
                                        allow_other_sampler=allow_other_sampler)
        if b.rules is not None and b.sigma2 is not None:
            return InferenceSchedule(b.nodes, b.rules, b.sigma2, ident)
        return InferenceSchedule(b.nodes, identity=ident)

    def abar(self, nodes) -> np.ndarray | None:
        """ᾱ at ``nodes`` (all grid nodes) from the file's grid, or None when it records none."""
        grid, abar = self.info.get("grid", {}).get("nodes"), self.info.get("noise_schedule", {}).get("abar_grid")
        if not grid or not abar:
            return None
        lookup = dict(zip((int(n) for n in grid), (float(a) for a in abar)))
        n = [int(x) for x in np.asarray(nodes)]
        require(all(x in lookup for x in n), f"{self.source}: nodes outside the file's grid have no ᾱ")
        return np.array([lookup[x] for x in n], dtype=np.float64)

    # ---- the writer's content ----------------------------------------------------------------
    @classmethod
    def from_table(cls, table, solution, budgets: Sequence[int], *, table_path: str | os.PathLike | None = None,
                   L: np.ndarray | None = None, objective: str | None = None,
                   sampler: "str | dict[str, Any] | SamplerSpec | None" = None) -> "SolvedSchedules":
        """The paths of ``solution`` (a :class:`~ddpmdp.dp.DPSolution` of ``table``) for ``budgets``,
        with the table's identity.

        ``table``: an ``ElboTable`` or any table with ``T``, ``nodes`` (the grid) and ``meta`` (keys
        ``model``, ``model_hash``, ``schedule``, ``schedule_hash``, ``T``, ``clip``, ``abar_grid``, …;
        a trajectory table adds ``objective: "trajectory"``, ``sampler`` (``"ddim"`` or
        ``{"kind": "ddim", "eta": 0.0, "clip": …}``) and optionally ``cost_units``).
        ``objective``/``sampler``: None → from the metadata (neither recorded → ``elbo`` and
        ancestral); given → must agree with the metadata where it records them
        (:meth:`ScheduleIdentity.from_table_meta`). ``L``: the cost the solution was computed from
        when it is not the table's ELBO. Only ELBO solutions record nats/bpd (with the table's
        prior); every other records the DP's own ``cost``; per-edge variances only when the table
        has them and the sampler is ancestral."""
        meta = table.meta
        ident = ScheduleIdentity.from_table_meta(meta, objective=objective, sampler=sampler)
        elbo = ident.objective == "elbo" and L is None
        variances = ident.sampler.kind == "ancestral" and getattr(table, "sigma2", None) is not None \
            and getattr(table, "edge_rule", None) is not None
        out: dict[int, SolvedBudget] = {}
        for K in sorted({int(k) for k in budgets}):
            nodes = np.asarray(solution.path(K), dtype=np.int64)
            nats = float(solution.costs[K] + table.prior) if elbo else None
            rules, s2 = None, None
            if variances:
                sch = InferenceSchedule.from_table(table, nodes)
                rules, s2 = sch.rules, sch.sigma2
            out[K] = SolvedBudget(K, nodes, nats, None if nats is None else float(table.bpd(nats)), rules, s2,
                                  None if elbo else float(solution.costs[K]))
        info = {
            "model": {"identity": meta.get("model"), "hash": meta.get("model_hash"),
                      "numerics": {"dtype": meta.get("network_dtype"), "bf16": meta.get("network_bf16"),
                                   "channels_last": meta.get("network_channels_last")}},
            "noise_schedule": {"name": meta.get("schedule"), "T": table.T, "hash": meta.get("schedule_hash"),
                               "abar_grid": meta.get("abar_grid")},
            "clip": meta.get("clip"), "decoder_convention": meta.get("decoder_convention"),
            "grid": {"spec": meta.get("grid") or (f"stride:{meta['grid_stride']}" if meta.get("grid_stride") else None),
                     "size": int(len(table.nodes)), "nodes": [int(n) for n in table.nodes]},
            "selection": {"table": None if table_path is None else str(table_path), "data": meta.get("data"),
                          "data_hash": meta.get("data_hash"), "split": meta.get("split"),
                          "n_images": meta.get("n_images"), "seed": meta.get("seed")},
        }
        if not elbo:
            info["cost_units"] = meta.get("cost_units") or meta.get("units")
            info["selection"].update(n_seeds=meta.get("n_seeds"), teacher_grid=meta.get("teacher_grid"),
                                     teacher_grid_size=meta.get("teacher_grid_size"))
        return cls(ident, table.T, meta.get("variance"), out, info)

    def to_json(self) -> dict[str, Any]:
        """The document :func:`write_schedule_file` writes (format ``ddpmdp-schedules`` version 2)."""
        require(self.identity is not None, "a solved-schedule file needs the identity of its model and noise schedule")
        ident = self.identity
        assert ident is not None
        info = self.info
        budgets = {}
        for K, b in sorted(self.budgets.items()):
            entry: dict[str, Any] = {"K": K, "nodes": [int(n) for n in b.nodes]}
            if b.nats is not None:
                entry.update(nats=b.nats, bpd=b.bpd, optimistic=True)
            if b.cost is not None:
                entry.update(cost=b.cost, optimistic=True)
            if b.rules is not None and b.sigma2 is not None:
                sch = InferenceSchedule(b.nodes, b.rules, b.sigma2)
                entry.update(variance=sch.label(), edges=sch.edges_json())
            budgets[str(K)] = entry
        extra = {"cost_units": info.get("cost_units")} if "cost_units" in info else {}
        return {
            "format": FORMAT, "version": VERSION, "objective": ident.objective, "sampler": ident.sampler.to_json(),
            "model": dict(info.get("model", {}), identity=ident.model, hash=ident.model_hash),
            "noise_schedule": dict(info.get("noise_schedule", {}), name=ident.noise_schedule, T=ident.T,
                                   hash=ident.noise_schedule_hash),
            "T": self.T, "variance": self.variance, "clip": info.get("clip"),
            "decoder_convention": info.get("decoder_convention"), "grid": info.get("grid"),
            "selection": info.get("selection"), **extra, "note": NOTE if ident.objective == "elbo" else NOTE_COST,
            "version_written": f"ddpmdp {__version__}", "budgets": budgets,
        }


def write_schedule_file(path: str | os.PathLike, solved: SolvedSchedules) -> Path:
    """Write ``solved`` as JSON atomically (temporary file, fsync, rename): an existing file is
    replaced only by a complete new one. Returns the path."""
    text = json.dumps(solved.to_json(), indent=1) + "\n"
    atomic_write_text(path, text)
    return Path(path)


# ---- the reader ------------------------------------------------------------------------------
def _rules_of(entry: dict[str, Any], top: str | None, K: int, where: str) -> tuple[tuple[str, ...] | None,
                                                                                np.ndarray | None]:
    """(rules, σ²) in node order from a budget entry: ``edges`` (T down, ``rule``/``variance`` and
    ``sigma2``), an old ``variances`` list (T down) or one ``variance``; σ² only from ``edges``."""
    rules_down: list[str] | None = None
    s2_down: list[float] | None = None
    if isinstance(entry.get("edges"), list):
        edges = entry["edges"]
        rules_down = [str(e.get("rule") or e.get("variance") or top) if isinstance(e, dict) else str(e) for e in edges]
        if all(isinstance(e, dict) and e.get("rule") is not None and "sigma2" in e for e in edges):
            s2_down = [math.nan if e["sigma2"] is None else float(e["sigma2"]) for e in edges]
    elif isinstance(entry.get("variances"), list):
        rules_down = [str(r) for r in entry["variances"]]
    elif entry.get("variance"):
        rules_down = [str(entry["variance"])] * K
    if rules_down is None:
        return None, None
    require(len(rules_down) == K, f"{where}: {len(rules_down)} per-edge variance rules for K = {K} edges")
    unknown = sorted(set(rules_down) - set(VARIANCE_RULES))
    require(not unknown, f"{where}: unknown variance rule(s) {', '.join(map(repr, unknown))}")
    rules = tuple(rules_down[::-1])
    return rules, (None if s2_down is None else np.asarray(s2_down[::-1], dtype=np.float64))


def _budget(entry: Any, K: int, T: int, top: str | None, where: str) -> SolvedBudget:
    require(isinstance(entry, dict) and isinstance(entry.get("nodes"), list), f"{where}: a budget needs a 'nodes' list")
    nodes = validate_path(np.asarray([int(n) for n in entry["nodes"]], dtype=np.int64), T)
    require(len(nodes) - 1 == K, f"{where}: {len(nodes) - 1} edges under budget K = {K}")
    rules, s2 = _rules_of(entry, top, K, where)
    if s2 is not None and rules is not None:
        InferenceSchedule(nodes, rules, s2)  # validates rules and σ² (one line on a bad value)
    nats, cost = entry.get("nats"), entry.get("cost")
    return SolvedBudget(K, nodes, None if nats is None else float(nats),
                        None if entry.get("bpd") is None else float(entry["bpd"]), rules, s2,
                        None if cost is None else float(cost))


def _identity(doc: dict[str, Any], T: int, where: str) -> ScheduleIdentity:
    model, noise, sampler = doc.get("model"), doc.get("noise_schedule"), doc.get("sampler")
    if not (isinstance(model, dict) and isinstance(noise, dict)):
        raise DdpmdpError(f"{where}: version 2 needs 'model' and 'noise_schedule' objects")
    require(int(noise.get("T", T)) == T, f"{where}: noise_schedule T = {noise.get('T')} but the file's T = {T}")
    objective = str(doc.get("objective") or "elbo")
    require(objective in OBJECTIVES, f"{where}: unknown objective {objective!r} (this ddpmdp knows "
            f"{', '.join(OBJECTIVES)})")
    spec = SamplerSpec.parse(sampler) if sampler is not None else default_sampler(objective, doc.get("clip"))
    if spec.kind == "ddim" and spec.clip is None and doc.get("clip") is not None:
        spec = dataclasses.replace(spec, clip=bool(doc["clip"]))
    return ScheduleIdentity(model.get("identity"), model.get("hash"), noise.get("name"), noise.get("hash"), T,
                            objective, spec, where)


def _parse(doc: Any, where: str) -> SolvedSchedules:
    require(isinstance(doc, dict) and isinstance(doc.get("budgets"), dict),
            f"{where}: not a solved-schedule file (no 'budgets'; write one with ddpmdp solve --out FILE)")
    fmt, version = doc.get("format"), doc.get("version")
    if fmt is not None or version is not None:
        require(fmt == FORMAT, f"{where}: format {fmt!r} is not a solved-schedule file ({FORMAT!r})")
        require(isinstance(version, int), f"{where}: version {version!r} is not an integer")
        require(version <= VERSION, f"{where}: {FORMAT} version {version} is newer than this ddpmdp reads "
                f"({VERSION}); upgrade ddpmdp")
    require(isinstance(doc.get("T"), int), f"{where}: no integer 'T'")
    T = int(doc["T"])
    ident = None
    if fmt is not None and version is not None and version >= 2:
        ident = _identity(doc, T, where)
    else:
        warnings.warn(f"{where} records no model or noise schedule (written before {FORMAT} version {VERSION}); "
                      "its paths are not checked against the model they are used with", stacklevel=3)
    top = doc.get("variance")
    budgets = {}
    for key, entry in doc["budgets"].items():
        require(str(key).isdigit(), f"{where}: budget key {key!r} is not an integer")
        budgets[int(key)] = _budget(entry, int(key), T, top, f"{where}:{key}")
    info = {k: v for k, v in doc.items() if k != "budgets"}
    return SolvedSchedules(ident, T, None if top is None else str(top), budgets, info, where)


def read_schedule_file(path: str | os.PathLike) -> SolvedSchedules:
    """Read and check a solved-schedule file. Every problem (missing file, not JSON, another
    format, a newer version, malformed entries) is one :class:`DdpmdpError` line; a file without
    identity (before version 2) loads with a warning."""
    p = Path(path)
    require(p.is_file(), f"solved-schedule file {str(p)!r} does not exist (write it with ddpmdp solve TABLE "
            f"--budgets … --out {p.name})")
    try:
        doc = json.loads(p.read_text())
    except UnicodeDecodeError:
        raise DdpmdpError(f"{p}: not a JSON text file (write it with ddpmdp solve --out)") from None
    except json.JSONDecodeError as exc:
        raise DdpmdpError(f"{p}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    try:
        return _parse(doc, str(p))
    except DdpmdpError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise DdpmdpError(f"{p}: malformed solved-schedule file ({type(exc).__name__}: {exc})") from None


def read_schedule_spec(spec: str) -> tuple[SolvedSchedules, int]:
    """``FILE:K`` → (the file's content, K); one-line errors for a bad spec or a missing budget."""
    file, _, k = str(spec).rpartition(":")
    require(bool(file) and k.isdigit(), f"{spec!r}: expected FILE:K (a file of ddpmdp solve --out and a budget in "
            "it), e.g. dp.json:16")
    solved = read_schedule_file(file)
    solved.budget(int(k))
    return solved, int(k)
