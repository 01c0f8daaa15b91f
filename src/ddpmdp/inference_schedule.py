"""An inference schedule: a path 0 = t₀ < … < t_K = T plus, per edge, the variance rule and σ².

The variances are part of the schedule (``method.md`` §5.2a): a DP path solved on a selection
table carries the σ² that table chose for each edge, and the held-out evaluator and the sampler
use exactly those values (never re-estimated on the evaluation images). A schedule without
per-edge variances (``rules is None``) uses the run's ``--variance``.

Edge k (k = 0..K−1) is nodes[k+1] → nodes[k]; ``sigma2[k]`` is NaN for a learned-range edge
(its σ² is per pixel, from the network's v).

A schedule solved on a table also carries that table's **identity** (:class:`ScheduleIdentity`:
the model's identity string and fingerprint, the noise schedule's name, T and hash, the objective
and the sampler it is valid for). :func:`check_schedule_identity`, called at the start of
``evaluate_paths``, ``path_from_table``, the samplers and ``export``, refuses a schedule applied to
another noise schedule (always), to another model (unless the schedule was read with
``allow_other_model=True``, the command line's ``--other-model``) or to a sampler it was not
solved for (unless ``allow_other_sampler=True``, ``--other-sampler``).

Objectives and samplers (:data:`OBJECTIVES`, :class:`SamplerSpec`):

* ``elbo`` — Watson et al.'s DP over L(t, s); valid for the **ancestral** sampler with the
  schedule's per-edge variances. Its nodes are also a valid DDIM path (DDIM ignores variances),
  so DDIM (any η) is accepted too.
* ``trajectory`` — the DP over the trajectory table C(t, s) (``method.md`` §13): the error of
  one deterministic DDIM step (η = 0) from the teacher, with x̂₀ clipped or not. Valid only for
  **DDIM η = 0 with that clip flag**; ancestral sampling, η > 0 or the other clip flag are
  refused unless asked for explicitly.

:func:`resolve_sampler` picks the sampler a run uses: the one asked for, else the schedule's
recorded one (plain node paths: ancestral).
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ddpmdp.errors import DdpmdpError, require
from ddpmdp.strides import PathBudget, validate_path
from ddpmdp.variances import VARIANCE_RULES

__all__ = ["InferenceSchedule", "ScheduleIdentity", "SamplerSpec", "OBJECTIVES", "SAMPLER_KINDS",
           "check_schedule_identity", "default_sampler", "resolve_sampler"]

OBJECTIVES: tuple[str, ...] = ("elbo", "trajectory")
"""What a solved schedule optimises: ``elbo`` (Watson et al.'s DP over L(t, s)) or ``trajectory``
(the DP over the deterministic-step error table C(t, s), ``method.md`` §13)."""
SAMPLER_KINDS: tuple[str, ...] = ("ancestral", "ddim")
"""The samplers of :mod:`ddpmdp.sampling`."""


@dataclass(frozen=True)
class SamplerSpec:
    """A sampler: ``kind`` ``ancestral`` or ``ddim``; ``eta`` DDIM's η (0: deterministic; always 0
    for ancestral); ``clip`` whether x̂₀ is clipped to [−1, 1] (None: not recorded, or the run's
    flag). As recorded in a solved-schedule file: ``{"kind": "ancestral"}`` or
    ``{"kind": "ddim", "eta": 0.0, "clip": true}``."""

    kind: str = "ancestral"
    eta: float = 0.0
    clip: bool | None = None

    def __post_init__(self) -> None:
        require(self.kind in SAMPLER_KINDS, f"unknown sampler {self.kind!r}: use {' or '.join(SAMPLER_KINDS)}")
        require(math.isfinite(float(self.eta)) and float(self.eta) >= 0, f"eta must be >= 0, got {self.eta}")
        object.__setattr__(self, "eta", float(self.eta) if self.kind == "ddim" else 0.0)
        if self.clip is not None:
            object.__setattr__(self, "clip", bool(self.clip))

    @classmethod
    def parse(cls, obj: "str | Mapping[str, Any] | SamplerSpec | None") -> "SamplerSpec":
        """A spec from a kind name, a file's ``sampler`` object, or a spec (None: ancestral)."""
        if isinstance(obj, SamplerSpec):
            return obj
        if obj is None or isinstance(obj, str):
            return cls(obj or "ancestral")
        require(isinstance(obj, Mapping), f"a sampler must be a name or an object with 'kind', got {obj!r}")
        clip = obj.get("clip")
        return cls(str(obj.get("kind") or "ancestral"), float(obj.get("eta") or 0.0),
                   None if clip is None else bool(clip))

    def to_json(self) -> dict[str, Any]:
        """``{"kind": "ancestral"}`` or ``{"kind": "ddim", "eta": η, "clip": flag}`` (clip omitted when None)."""
        if self.kind == "ancestral":
            return {"kind": "ancestral"} if self.clip is None else {"kind": "ancestral", "clip": self.clip}
        out: dict[str, Any] = {"kind": "ddim", "eta": self.eta}
        if self.clip is not None:
            out["clip"] = self.clip
        return out

    def describe(self) -> str:
        """``ancestral`` or e.g. ``ddim (eta = 0, clip)``."""
        clip = "" if self.clip is None else (", clip" if self.clip else ", no clip")
        return "ancestral" if self.kind == "ancestral" else f"ddim (eta = {self.eta:g}{clip})"

    def accepts(self, used: "SamplerSpec") -> bool:
        """Whether a schedule recorded for this sampler may be followed by ``used``: an ancestral
        (ELBO) schedule by ancestral or DDIM sampling; a DDIM schedule only by DDIM with the same η
        and, when both record one, the same clip flag."""
        if self.kind == "ancestral":
            return True
        return (used.kind == "ddim" and used.eta == self.eta
                and (self.clip is None or used.clip is None or used.clip == self.clip))


def default_sampler(objective: str, clip: bool | None = None) -> SamplerSpec:
    """The sampler a schedule of ``objective`` is valid for: ``elbo`` → ancestral; ``trajectory``
    → DDIM η = 0 with the clip flag ``clip`` (None: True, the project default)."""
    require(objective in OBJECTIVES, f"unknown objective {objective!r}: use one of {', '.join(OBJECTIVES)}")
    if objective == "elbo":
        return SamplerSpec("ancestral")
    return SamplerSpec("ddim", 0.0, True if clip is None else bool(clip))


def _check_objective_sampler(objective: str, sampler: SamplerSpec, where: str) -> None:
    require(objective in OBJECTIVES, f"{where}: unknown objective {objective!r} (this ddpmdp knows "
            f"{', '.join(OBJECTIVES)})")
    want = default_sampler(objective).kind
    require(sampler.kind == want and (want == "ancestral" or sampler.eta == 0.0),
            f"{where}: objective {objective} is solved for the "
            f"{'ancestral' if want == 'ancestral' else 'ddim (eta = 0)'} sampler, not {sampler.describe()}")


@dataclass(frozen=True)
class ScheduleIdentity:
    """What a solved schedule was made for. ``model``/``model_hash``: the model's identity string
    and fingerprint (``DiffusionModel.identity``/``fingerprint()``, table meta ``model``/``model_hash``);
    ``noise_schedule``/``noise_schedule_hash``/``T``: ``Schedule.describe()``/``fingerprint()``/T;
    ``objective``: ``elbo`` or ``trajectory``; ``sampler``: the :class:`SamplerSpec` it is valid
    for (a kind name is accepted and converted; ``ancestral`` for ELBO schedules, DDIM η = 0 with
    the clip flag for trajectory schedules); ``source``: where it came from (for messages);
    ``allow_other_model``: a deliberate transfer to another model of the same noise schedule
    (never to another noise schedule); ``allow_other_sampler``: deliberately usable with a sampler
    it was not solved for."""

    model: str | None
    model_hash: str | None
    noise_schedule: str | None
    noise_schedule_hash: str | None
    T: int
    objective: str = "elbo"
    sampler: SamplerSpec = SamplerSpec("ancestral")
    source: str = ""
    allow_other_model: bool = False
    allow_other_sampler: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "sampler", SamplerSpec.parse(self.sampler))
        _check_objective_sampler(self.objective, self.sampler, self.source or "schedule identity")

    @classmethod
    def from_table_meta(cls, meta: Mapping[str, Any], *, objective: str | None = None,
                        sampler: "str | Mapping[str, Any] | SamplerSpec | None" = None,
                        source: str = "") -> "ScheduleIdentity":
        """The identity of schedules solved on a table with metadata ``meta`` (``ElboTable.meta``, or
        a trajectory table's). The objective and sampler come from ``meta["objective"]`` and
        ``meta["sampler"]`` (a kind name or ``{"kind": "ddim", "eta": 0.0, "clip": true}``; a DDIM
        sampler without ``clip`` takes ``meta["clip"]``); a table with neither is an ELBO table
        (``elbo``, ancestral). ``objective``/``sampler`` given here must agree with the metadata
        when it records them."""
        where = source or "the table"
        rec_obj, rec_sampler = meta.get("objective"), meta.get("sampler")
        require(objective is None or rec_obj is None or objective == rec_obj,
                f"{where} records objective {rec_obj!r}, not {objective!r}")
        obj = str(objective or rec_obj or "elbo")
        require(obj in OBJECTIVES, f"{where}: unknown objective {obj!r}: use one of {', '.join(OBJECTIVES)}")
        clip = meta.get("clip")
        spec = SamplerSpec.parse(sampler if sampler is not None else rec_sampler) \
            if (sampler is not None or rec_sampler is not None) else default_sampler(obj, clip)
        if spec.kind == "ddim" and spec.clip is None and clip is not None:
            spec = dataclasses.replace(spec, clip=bool(clip))
        if sampler is not None and rec_sampler is not None:
            rec = SamplerSpec.parse(rec_sampler)
            require(rec.kind == spec.kind and rec.eta == spec.eta and (rec.clip is None or rec.clip == spec.clip),
                    f"{where} records sampler {rec.describe()}, not {spec.describe()}")
        return cls(meta.get("model"), meta.get("model_hash"), meta.get("schedule"), meta.get("schedule_hash"),
                   int(meta["T"]), obj, spec, source)

    def transferred(self) -> "ScheduleIdentity":
        """The same identity, allowed on another model of the same noise schedule."""
        return dataclasses.replace(self, allow_other_model=True)

    def other_sampler(self) -> "ScheduleIdentity":
        """The same identity, deliberately allowed with a sampler it was not solved for."""
        return dataclasses.replace(self, allow_other_sampler=True)


@dataclass(frozen=True, eq=False)
class InferenceSchedule(PathBudget):
    nodes: np.ndarray
    rules: tuple[str, ...] | None = None
    sigma2: np.ndarray | None = None
    identity: ScheduleIdentity | None = None

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

    def for_other_model(self) -> "InferenceSchedule":
        """This schedule, deliberately allowed on another model of the same noise schedule
        (``allow_other_model=True``; the command line's ``--other-model``)."""
        ident = self.identity.transferred() if self.identity is not None else None
        return dataclasses.replace(self, identity=ident)

    def for_other_sampler(self) -> "InferenceSchedule":
        """This schedule, deliberately allowed with a sampler it was not solved for
        (``allow_other_sampler=True``; the command line's ``--other-sampler``)."""
        ident = self.identity.other_sampler() if self.identity is not None else None
        return dataclasses.replace(self, identity=ident)

    @property
    def sampler(self) -> SamplerSpec | None:
        """The sampler this schedule was solved for (None for plain nodes)."""
        return self.identity.sampler if self.identity is not None else None

    @classmethod
    def from_edges_json(cls, nodes, edges: list[dict], T: int,
                        identity: ScheduleIdentity | None = None) -> "InferenceSchedule":
        nodes = validate_path(nodes, T)
        by_t = {int(e["t"]): e for e in edges}
        require(all(int(nodes[k + 1]) in by_t and int(by_t[int(nodes[k + 1])]["s"]) == int(nodes[k])
                    for k in range(len(nodes) - 1)), "the solved file's edges do not match its nodes")
        rules = tuple(str(by_t[int(nodes[k + 1])]["rule"]) for k in range(len(nodes) - 1))
        s2 = np.array([np.nan if by_t[int(nodes[k + 1])]["sigma2"] is None else float(by_t[int(nodes[k + 1])]["sigma2"])
                       for k in range(len(nodes) - 1)])
        return cls(nodes, rules, s2, identity)

    @classmethod
    def from_table(cls, table, nodes) -> "InferenceSchedule":
        """The schedule of ``nodes`` with the per-edge rules and σ² of a (selection) table, and the
        table's identity (model, noise schedule; objective ``elbo``)."""
        require((table.meta.get("objective") or "elbo") == "elbo", "per-edge variances come from an ELBO table; "
                f"this is a {table.meta.get('objective')} table (its paths are for DDIM eta = 0, which uses none)")
        nodes = validate_path(nodes, table.T)
        pos = np.searchsorted(table.nodes, nodes)
        require(bool(np.all(table.nodes[np.minimum(pos, len(table.nodes) - 1)] == nodes)),
                "path nodes are not in the table's grid")
        require(table.sigma2 is not None and table.edge_rule is not None,
                "this table records no per-edge variances (an old table): rescore it with ddpmdp rescore")
        i, j = pos[1:], pos[:-1]
        rules = table.cell_rules(i, j)  # the table's own code → name map
        ident = ScheduleIdentity.from_table_meta(table.meta) if "T" in table.meta else None
        return cls(nodes, rules, table.sigma2[i, j].astype(np.float64), ident)


def as_schedule(path) -> InferenceSchedule:
    """An :class:`InferenceSchedule` from nodes or a schedule."""
    return path if isinstance(path, InferenceSchedule) else InferenceSchedule(np.asarray(path, dtype=np.int64))


__all__.append("as_schedule")


def _target(model, table, noise_schedule) -> tuple[str, str | None, str | None, str | None, str | None, int]:
    """(what, model identity, model hash, noise schedule, its hash, T) of a model, a table or a noise schedule."""
    if model is None and table is None:
        desc = noise_schedule.describe()
        return f"noise schedule {desc}", None, None, desc, noise_schedule.fingerprint(), int(noise_schedule.T)
    if model is not None:
        sched = model.schedule
        return (f"model {model.identity}", model.identity, model.fingerprint(), sched.describe(),
                sched.fingerprint(), int(sched.T))
    meta = table.meta
    return (f"the table of model {meta.get('model')}", meta.get("model"), meta.get("model_hash"), meta.get("schedule"),
            meta.get("schedule_hash"), int(table.T))


def _schedules(paths) -> list[InferenceSchedule]:
    if isinstance(paths, InferenceSchedule):
        return [paths]
    if isinstance(paths, Mapping):
        paths = paths.values()
    if isinstance(paths, Iterable) and not isinstance(paths, (np.ndarray, str)):
        return [p for p in paths if isinstance(p, InferenceSchedule)]
    return []


def check_schedule_identity(paths, *, model=None, table=None, noise_schedule=None,
                            sampler: "str | SamplerSpec | None" = None) -> None:
    """Refuse schedules made for another noise schedule or another model than ``model`` (a
    :class:`~ddpmdp.models.adapter.DiffusionModel`), ``table`` (an ``ElboTable``) or
    ``noise_schedule`` (a :class:`~ddpmdp.schedules.Schedule`; checked only when neither model nor
    table is given), or for a sampler they do not accept (``sampler``: a kind name or a
    :class:`SamplerSpec` with η and clip flag; :meth:`SamplerSpec.accepts`). ``paths``: a
    schedule, nodes, or a mapping/iterable of them; plain nodes and schedules without identity
    pass unchecked. A schedule marked ``allow_other_model`` (:meth:`InferenceSchedule.for_other_model`)
    may go to another model of the same noise schedule, never to another noise schedule; one
    marked ``allow_other_sampler`` (:meth:`InferenceSchedule.for_other_sampler`) to any sampler.
    Raises :class:`DdpmdpError` with one line naming both sides."""
    checked = [s for s in _schedules(paths) if s.identity is not None]
    given = model is not None or table is not None or noise_schedule is not None
    if not checked or (not given and sampler is None):
        return
    target = _target(model, table, noise_schedule) if given else None
    for sch in checked:
        ident = sch.identity
        assert ident is not None
        src = f"schedule {ident.source}" if ident.source else "the schedule"
        if sampler is not None and not ident.allow_other_sampler:
            used = SamplerSpec.parse(sampler)
            require(ident.sampler.accepts(used),
                    f"{src} was solved for the {ident.sampler.describe()} sampler (objective {ident.objective}), "
                    f"not {used.describe()}; to use it with another sampler deliberately pass --other-sampler "
                    "(Python: allow_other_sampler=True)")
        if target is None:
            continue
        what, t_model, t_hash, t_sched, t_sched_hash, t_T = target
        if ident.T != t_T or (ident.noise_schedule_hash and t_sched_hash and ident.noise_schedule_hash != t_sched_hash):
            raise DdpmdpError(f"{src} was solved for noise schedule {ident.noise_schedule} (T = {ident.T}, hash "
                              f"{ident.noise_schedule_hash}), but {what} uses {t_sched} (T = {t_T}, hash "
                              f"{t_sched_hash}); a schedule never transfers to another noise schedule")
        if ident.model_hash and t_hash and ident.model_hash != t_hash and not ident.allow_other_model:
            raise DdpmdpError(f"{src} was solved for model {ident.model} (hash {ident.model_hash}), not {what} "
                              f"(hash {t_hash}); to transfer it deliberately pass --other-model "
                              "(Python: allow_other_model=True)")


def resolve_sampler(paths, method: str | None = None, eta: float = 0.0, clip: bool | None = None) -> SamplerSpec:
    """The sampler a run uses on ``paths`` (a schedule, nodes, or a mapping/iterable of them):
    ``method`` (``ancestral``/``ddim``, with ``eta``) when given; else the sampler the schedules
    were solved for — a trajectory schedule's DDIM η = 0, an ELBO schedule's (or plain nodes')
    ancestral; schedules recording different samplers need ``method``. ``clip`` None → the
    recorded clip flag, else True. The result always has a clip flag; whether the schedules accept
    it is :func:`check_schedule_identity`'s business (the samplers call it)."""
    recorded = {s.identity.sampler for s in _schedules(paths) if s.identity is not None}
    if method is not None:
        spec = SamplerSpec(method, eta if method == "ddim" else 0.0, clip)
    else:
        kinds = {r.kind for r in recorded}
        require(len(kinds) <= 1, f"these schedules were solved for different samplers "
                f"({', '.join(sorted(r.describe() for r in recorded))}): choose one (--sampler)")
        rec = [r for r in recorded if r.kind == "ddim"]
        spec = SamplerSpec("ddim", rec[0].eta, clip) if rec else SamplerSpec("ancestral", 0.0, clip)
    if spec.clip is None:
        clips = {r.clip for r in recorded if r.clip is not None}
        require(len(clips) <= 1, "these schedules were solved with different clip flags: choose one (--clip or "
                "--no-clip)")
        spec = dataclasses.replace(spec, clip=clips.pop() if clips else True)
    return spec
