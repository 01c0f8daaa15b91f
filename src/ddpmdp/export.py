"""Hand a solved path to the samplers people use: diffusers, improved-diffusion, k-diffusion.

A path of a solved-schedule file (``ddpmdp solve --out SOLVED.json``; ``SOLVED.json:K``) is nodes
0 = t₀ < … < t_K = T (``method.md`` §1.3: node 0 is the data, node n ≥ 1 is diffusers'/improved-diffusion's
0-based timestep n − 1).

* **diffusers** — ``DDPMScheduler.set_timesteps(timesteps=[t_K − 1, …, t₁ − 1])`` (strictly
  descending, 0-based). Its ``step`` takes β of a jump from the ratio of ᾱ at consecutive listed
  timesteps, so ``fixed_small``, ``fixed_large`` and ``learned_range`` are the ddpmdp rules on every
  edge t → s ≥ 1. On the last listed timestep t₁ − 1 the scheduler adds noise when t₁ > 1
  (``fixed_large``: σ² = 1 − ᾱ_{t₁}; ``fixed_small``: σ² clamped to 1e-20; ``learned_range``:
  exp(v·log(1 − ᾱ_{t₁}) + (1 − v)·log 1e-20)); ddpmdp's decoder returns x̂₀ without noise, which the
  snippet reproduces by taking ``pred_original_sample`` at the last step. ``DDIMScheduler`` cannot take
  custom timesteps: sample DDIM along the path with ``ddpmdp sample --sampler ddim``.
* **improved-diffusion** — ``SpacedDiffusion(use_timesteps={t₁ − 1, …, t_K − 1}, …)`` respaces β the
  same way and adds no noise at its last step: the ddpmdp sampler, edge for edge.
* **k-diffusion** — σ_n = √((1 − ᾱ_n)/ᾱ_n) at t_K, …, t₁, then 0. Its samplers use no DDPM variance
  rule (``OpenAIDenoiser`` drops the learned-variance channel), which the output says.

A variance rule a target cannot express (``analytic``, ``optimal``, or different rules on different
edges) is named in the output's ``not_expressible`` list, never dropped silently.

**Deterministic schedules** (a trajectory schedule, solved for DDIM η = 0 with a clip flag; or any
schedule with ``sampler="ddim"``) are exported for the deterministic sampler (``method.md`` §13.1):

* **diffusers** — ``EulerDiscreteScheduler`` with ``set_timesteps(timesteps=[t_K − 1, …, t₁ − 1])``
  (σ at those timesteps, then 0; ``use_karras_sigmas=False``), driven by the loop
  :func:`ddpmdp.export_loops.diffusers_ddim_euler`, whose source *is* the snippet: the model output
  given to ``step`` is the ε recomputed from the clipped x̂₀ (without it, Euler in σ is DDIM
  without clipping), and x_T = z enters as √(σ_T² + 1)·z.
* **k-diffusion** — the σ list for ``sample_euler``, with a denoiser wrapper that clips x̂₀ when
  the schedule clips (k-diffusion's ``DiscreteEpsDDPMDenoiser`` returns the unclipped x̂₀).
* **improved-diffusion** — ``SpacedDiffusion(use_timesteps=…).ddim_sample_loop(eta=0.0,
  clip_denoised=flag)``, which already recomputes ε from the clipped x̂₀.

DDIM with η > 0 has no export; sample it with ``ddpmdp sample --sampler ddim --eta E``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ddpmdp import export_snippets as snippets
from ddpmdp.errors import DdpmdpError, require
from ddpmdp.inference_schedule import (InferenceSchedule, SamplerSpec, ScheduleIdentity, check_schedule_identity,
                                      resolve_sampler)
from ddpmdp.schedule_file import SolvedSchedules, read_schedule_spec
from ddpmdp.schedules import Schedule, node_to_diffusers_timestep, parse_schedule

__all__ = ["export", "SolvedPath", "read_solved", "diffusers_timesteps", "iddpm_use_timesteps", "k_diffusion_sigmas",
           "sigmas_to_nodes", "export_path", "render_text", "TARGETS"]

Target = Literal["diffusers", "iddpm", "k-diffusion"]
TARGETS: tuple[str, ...] = ("diffusers", "iddpm", "k-diffusion")
_SCHEDULER_RULES = ("fixed_small", "fixed_large", "learned_range")
_DDIM_NOTE = ("DDIM: diffusers' DDIMScheduler cannot take custom timesteps; sample this path with DDIM "
              "through ddpmdp's own sampler: ddpmdp sample --sampler ddim --schedule dp:{spec}, or export it for "
              "diffusers' EulerDiscreteScheduler with ddpmdp export {spec} --to diffusers --sampler ddim")


@dataclass(frozen=True)
class SolvedPath:
    """One budget of a solved-schedule file: its nodes, the variance rule of each edge (from T down,
    decoder last), the identity of the model and noise schedule it was solved for (None in files
    before version 2), ᾱ at its nodes when the file records them, and the file's other fields."""

    source: str
    K: int
    T: int
    nodes: np.ndarray
    edge_variances: tuple[str, ...]
    table: str | None
    meta: dict[str, Any]
    identity: ScheduleIdentity | None = None
    abar: np.ndarray | None = None

    @property
    def variance(self) -> str | list[str] | None:
        """The one rule of every edge, or the per-edge list (edges t_K→t_{K−1} first) when they differ;
        None when the schedule records no variance (a trajectory schedule: DDIM uses none)."""
        rules = list(dict.fromkeys(self.edge_variances))
        if not rules:
            return None
        return rules[0] if len(rules) == 1 else list(self.edge_variances)

    @property
    def sampler(self) -> SamplerSpec:
        """The sampler the path was solved for (ancestral for files without identity)."""
        return self.identity.sampler if self.identity is not None else SamplerSpec("ancestral")

    @property
    def noise_schedule(self) -> str | None:
        """The noise schedule's name as recorded (``cosine:1000``), or None."""
        return self.identity.noise_schedule if self.identity is not None else self.meta.get("schedule")


def solved_path(solved: SolvedSchedules, K: int) -> SolvedPath:
    """Budget K of a solved-schedule file as a :class:`SolvedPath`."""
    b = solved.budget(K)
    src = f"{solved.source}:{int(K)}"
    rules = b.rules[::-1] if b.rules is not None else None
    if rules is None and solved.variance is not None:
        rules = (str(solved.variance),) * b.K
    if rules is None:
        require(solved.sampler.kind == "ddim", f"{src}: no variance rule (neither the budget nor the file names one)")
        rules = ()
    selection = solved.info.get("selection") or {}
    table = selection.get("table") if isinstance(selection, dict) else None
    return SolvedPath(src, b.K, solved.T, b.nodes, tuple(rules), table or solved.info.get("table"), dict(solved.info),
                      solved.schedule(K).identity, solved.abar(b.nodes))


def read_solved(spec: str) -> SolvedPath:
    """``SOLVED.json:K`` (a file of ``ddpmdp solve --out``) → :class:`SolvedPath`."""
    solved, K = read_schedule_spec(spec)
    return solved_path(solved, K)


# ---- the three formats ----------------------------------------------------------------
def diffusers_timesteps(nodes) -> list[int]:
    """Nodes 0 < t₁ < … < t_K → diffusers' strictly descending 0-based timesteps [t_K − 1, …, t₁ − 1]."""
    n = np.asarray(nodes, dtype=np.int64)
    return [int(x) for x in node_to_diffusers_timestep(n[n >= 1])[::-1]]


def iddpm_use_timesteps(nodes) -> list[int]:
    """improved-diffusion's ``use_timesteps`` (0-based indices t − 1 of the nodes t ≥ 1), sorted."""
    return sorted(diffusers_timesteps(nodes))


def k_diffusion_sigmas(nodes, schedule: Schedule) -> list[float]:
    """σ = √((1 − ᾱ)/ᾱ) at t_K, …, t₁ (descending), then 0 — k-diffusion's ``sigmas``."""
    n = np.asarray(nodes, dtype=np.int64)
    require(int(n[-1]) <= schedule.T, f"node {int(n[-1])} is beyond this schedule's T = {schedule.T}")
    return _sigmas(np.asarray(schedule.abar(n[n >= 1]), dtype=np.float64))


def _sigmas(abar: np.ndarray) -> list[float]:
    """k-diffusion's σ list from ᾱ at the nodes t₁ < … < t_K (ascending): σ descending, then 0."""
    a = np.asarray(abar, dtype=np.float64)[::-1]
    return [float(s) for s in np.sqrt((1.0 - a) / a)] + [0.0]


def sigmas_to_nodes(sigmas, schedule: Schedule, *, float32: bool = True) -> np.ndarray:
    """The nodes a σ list stands for, as k-diffusion reads it (``DiscreteSchedule.sigma_to_t`` with
    ``quantize=True``: the 0-based t of the nearest log σ, over ᾱ in float32 as ``OpenAIDenoiser``
    keeps it); ascending with 0 for the trailing σ = 0."""
    a: np.ndarray = schedule.alphas_cumprod[1:].astype(np.float32 if float32 else np.float64)
    log_table = np.log(np.sqrt((1 - a) / a)).astype(np.float64)
    s = np.asarray([x for x in sigmas if x > 0], dtype=np.float64)
    t = np.abs(np.log(s)[None, :] - log_table[:, None]).argmin(axis=0)
    return np.concatenate([[0], np.sort(t + 1)]).astype(np.int64)


# ---- variances the targets cannot express ---------------------------------------------
def _not_expressible(path: SolvedPath, target: str) -> list[str]:
    rules = list(dict.fromkeys(path.edge_variances))
    if target == "k-diffusion":
        return [f"variance {', '.join(rules)}: k-diffusion's samplers use no DDPM variance rule (their own "
                "ancestral/ODE steps decide the noise; OpenAIDenoiser drops a learned-variance channel)"]
    out = [f"variance {r!r} on {path.edge_variances.count(r)} edge(s): {target} has no such rule "
           f"({', '.join(_SCHEDULER_RULES)} only)" for r in rules if r not in _SCHEDULER_RULES]
    if len(rules) > 1:
        out.append(f"per-edge variances {list(path.edge_variances)}: {target} applies one variance rule to "
                   "the whole chain")
    return out


def _scheduler_rule(path: SolvedPath) -> str | None:
    rules = [r for r in dict.fromkeys(path.edge_variances) if r in _SCHEDULER_RULES]
    return rules[0] if len(rules) == 1 and len(set(path.edge_variances)) == 1 else None


def _recorded_schedule(path: SolvedPath) -> Schedule | None:
    """The noise schedule a file names, rebuilt when its name is a spec (``cosine:1000``) whose hash
    matches the recorded one; None otherwise (then ᾱ at the path's nodes comes from the file)."""
    ident = path.identity
    if ident is None or not ident.noise_schedule or not ident.noise_schedule_hash:
        return None
    try:
        sched = parse_schedule(ident.noise_schedule)
    except DdpmdpError:
        return None
    return sched if sched.fingerprint() == ident.noise_schedule_hash else None


def export_path(path: SolvedPath, target: str, *, schedule: Schedule | None = None, model=None,
                allow_other_model: bool = False, model_dir: str | None = None,
                pipeline: bool = False, sampler: str | None = None, clip: bool | None = None,
                allow_other_sampler: bool = False) -> dict[str, Any]:
    """A JSON-ready export of one solved path for ``target`` (diffusers, iddpm or k-diffusion).

    The path is checked against ``model`` (a ``DiffusionModel``; another model only with
    ``allow_other_model``), ``schedule`` (a noise schedule; never another one) and the sampler.
    ``sampler``: ``ancestral`` or ``ddim`` (η = 0); None → the one the path was solved for (a
    trajectory schedule: DDIM η = 0 with its clip flag; an ELBO schedule: ancestral); a sampler the
    path was not solved for is refused unless ``allow_other_sampler``. ``clip``: for a DDIM export,
    None → the recorded flag (else clip). k-diffusion's σ need ᾱ at the path's nodes: from
    ``schedule``, ``model``, or the file itself (version 2 records ᾱ on its grid). ``model_dir``
    fills the diffusers snippet's folder (``pipeline``: a pipeline folder with ``unet/`` and
    ``scheduler/``)."""
    require(target in TARGETS, f"unknown export target {target!r}: use diffusers, iddpm or k-diffusion")
    require(sampler in (None, "ancestral", "ddim"), f"unknown sampler {sampler!r}: use ancestral or ddim")
    ident = path.identity.transferred() if path.identity is not None and allow_other_model else path.identity
    if ident is not None and allow_other_sampler:
        ident = ident.other_sampler()
    sch = InferenceSchedule(path.nodes, identity=ident)
    used = resolve_sampler(sch, sampler, 0.0, clip)
    check_schedule_identity(sch, model=model, noise_schedule=schedule, sampler=used)
    if schedule is None and model is not None:
        schedule = model.schedule
    if schedule is not None:
        require(schedule.T == path.T, f"{path.source} was solved for T = {path.T}, but the schedule has "
                f"T = {schedule.T}")
        want = path.meta.get("schedule_hash")
        require(want is None or want == schedule.fingerprint(), f"{path.source}: the table's schedule "
                f"({path.meta.get('schedule')}) is not this schedule ({schedule.describe()})")
    else:
        schedule = _recorded_schedule(path)
    abar = np.asarray(schedule.abar(path.nodes), dtype=np.float64) if schedule is not None else path.abar
    ddim = used.kind == "ddim"
    rule = None if ddim else _scheduler_rule(path)
    out: dict[str, Any] = {"target": target, "source": path.source, "K": path.K, "T": path.T,
                           "nodes": [int(n) for n in path.nodes], "variance": None if ddim else path.variance,
                           "sampler": used.to_json(),
                           "objective": path.identity.objective if path.identity is not None else "elbo",
                           "noise_schedule": schedule.describe() if schedule is not None else path.noise_schedule,
                           "not_expressible": [] if ddim else _not_expressible(path, target), "notes": []}
    if path.identity is not None:
        out["model"] = {"identity": path.identity.model, "hash": path.identity.model_hash}

    def sigmas() -> list[float]:
        require(abar is not None, f"{path.source}: k-diffusion sigmas need the noise schedule and this file records "
                "no ᾱ (written before ddpmdp-schedules version 2): pass --model SPEC or --noise-schedule "
                "linear:T|cosine:T|FILE.npy (Python: schedule=...), or solve the table again")
        assert abar is not None
        sig = _sigmas(abar[path.nodes >= 1])
        if schedule is not None:
            require(np.array_equal(sigmas_to_nodes(sig, schedule), path.nodes),
                    "internal: the sigma list does not map back to the same nodes")
        return sig

    if ddim:
        clip_flag = bool(used.clip)
        out["clip"] = clip_flag
        out["notes"].append("deterministic DDIM (eta = 0): one Euler step of the probability-flow ODE per edge in "
                            "y = x/sqrt(abar), sigma = sqrt((1 - abar)/abar), with the eps recomputed from the "
                            + ("clipped x0_hat (clip on)" if clip_flag else "unclipped x0_hat (clip off)")
                            + "; the last sigma is 0, so the last step returns x0_hat")
        if target == "diffusers":
            ts = diffusers_timesteps(path.nodes)
            out.update(scheduler="EulerDiscreteScheduler", timesteps=ts)
            if abar is not None:
                out["sigmas"] = _sigmas(abar[path.nodes >= 1])
            out["notes"].append("EulerDiscreteScheduler.set_timesteps(timesteps=...) with use_karras_sigmas=False "
                                "and interpolation_type='linear' puts sigma exactly at these timesteps, then 0; "
                                "the snippet's loop passes step() the eps of the clipped x0_hat and starts from "
                                "sqrt(sigma_T^2 + 1)*z (DDIM's x_T = z), not init_noise_sigma*z")
            out["snippet"] = snippets.diffusers_euler_snippet(ts, clip_flag, model_dir, pipeline)
        elif target == "iddpm":
            use = iddpm_use_timesteps(path.nodes)
            out["use_timesteps"] = use
            out["notes"].append("SpacedDiffusion.ddim_sample_loop(eta=0.0) recomputes eps from the clipped x0_hat and "
                                "returns x0_hat at its last step: the ddpmdp DDIM sampler edge for edge")
            out["snippet"] = snippets.iddpm_ddim_snippet(use, path.T, out["noise_schedule"], clip_flag)
        else:
            sig = sigmas()
            out["sigmas"] = sig
            out["notes"].append("k-diffusion: sample_euler along these sigmas; its DiscreteEpsDDPMDenoiser / "
                                "OpenAIDenoiser return the unclipped x0_hat = x - sigma*eps"
                                + (", so the snippet wraps the denoiser to clip x0_hat to [-1, 1]" if clip_flag
                                   else " (this schedule does not clip)")
                                + "; start from sqrt(sigma_0^2 + 1)*z")
            out["snippet"] = snippets.k_diffusion_euler_snippet(sig, clip_flag)
        return out
    if target == "diffusers":
        ts = diffusers_timesteps(path.nodes)
        out["timesteps"] = ts
        out["variance_type"] = rule
        t1 = int(path.nodes[1])
        if t1 > 1:
            large = f" = {1 - float(abar[1]):.4g}" if abar is not None else ""
            out["notes"].append(
                f"decoder: the last listed timestep is {t1 - 1} > 0, where DDPMScheduler.step still adds noise "
                f"(fixed_large: sigma^2 = 1 - abar_{t1}{large}; fixed_small: 1e-20; learned_range: "
                "exp(v*log(1 - abar) + (1 - v)*log(1e-20)), small unless v is near 1); "
                "ddpmdp's decoder returns x0_hat without noise, so the snippet takes out.pred_original_sample "
                "at the last step")
        out["notes"].append(_DDIM_NOTE.format(spec=path.source))
        out["snippet"] = snippets.diffusers_ddpm_snippet(ts, rule, model_dir, pipeline)
    elif target == "iddpm":
        use = iddpm_use_timesteps(path.nodes)
        out["use_timesteps"] = use
        out["model_var_type"] = rule
        out["notes"].append("SpacedDiffusion respaces beta as 1 - abar_t/abar_s between kept indices and adds no "
                            "noise at its last step: the ddpmdp sampler edge for edge")
        out["notes"].append("DDIM: the same SpacedDiffusion's ddim_sample_loop follows this path too")
        out["snippet"] = snippets.iddpm_snippet(use, rule, path.T, out["noise_schedule"])
    else:
        sig = sigmas()
        out["sigmas"] = sig
        out["snippet"] = snippets.k_diffusion_snippet(sig)
    return out


def export(solved: str, to: str, *, schedule: Schedule | None = None, model=None, allow_other_model: bool = False,
           model_dir: str | None = None, pipeline: bool = False, sampler: str | None = None,
           clip: bool | None = None, allow_other_sampler: bool = False) -> dict[str, Any]:
    """``ddpmdp export SOLVED.json:K --to TARGET --json`` as a function, e.g.
    ``export("solved.json:16", "diffusers")["timesteps"]`` or ``export("solved.json:16", "k-diffusion")["sigmas"]``
    (ᾱ from the file; older files need ``schedule=linear_schedule(1000)``). A trajectory schedule
    exports for DDIM η = 0 (:func:`export_path`)."""
    return export_path(read_solved(solved), to, schedule=schedule, model=model, allow_other_model=allow_other_model,
                       model_dir=model_dir, pipeline=pipeline, sampler=sampler, clip=clip,
                       allow_other_sampler=allow_other_sampler)


def render_text(result: dict[str, Any]) -> str:
    """The export as commented Python: the list, the notes, the variances not carried over, the snippet."""
    sampler = result.get("sampler") or {"kind": "ancestral"}
    how = (f"sampler: ddim (eta = 0, {'clip' if result.get('clip') else 'no clip'})" if sampler.get("kind") == "ddim"
           else f"variance: {result['variance']}")
    lines = [f"# ddpmdp path {result['source']} (K = {result['K']}, T = {result['T']}) for {result['target']}",
             f"# nodes: {','.join(map(str, result['nodes']))}; {how}"]
    lines += [f"# NOT EXPRESSIBLE: {m}" for m in result["not_expressible"]]
    lines += [f"# note: {m}" for m in result["notes"]]
    return "\n".join(lines) + "\n\n" + result["snippet"]
