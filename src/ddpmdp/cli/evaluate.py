"""``ddpmdp evaluate``: held-out scores of inference paths — bits/dim ± SE (``--metric bpd``, the
default), the teacher distance of DDIM η = 0 samples (``--metric teacher``) or sample quality, KID ±
SE (``--metric kid``); NFE = K beside every number.

    ddpmdp evaluate test_table.npz --schedule dp:dp.json:32 --schedule even:32       bpd from a held-out table
    ddpmdp evaluate --model SPEC --data cifar10:test --schedule dp:dp.json:32 …      bpd directly, fresh noise
    ddpmdp evaluate --metric teacher --model SPEC --n-seeds 256 --schedule dp:traj.json:16 --schedule edm:16
    ddpmdp evaluate --metric kid --model SPEC --data cifar10:test --n-samples 1000 \\
        --schedule dp:traj.json:16 --schedule edm:16 --sampler ddim                  KID ± SE, paired in the noise

A ``dp:FILE:K`` schedule must have been solved for the model (or the held-out table's model) and
its noise schedule; ``--other-model`` transfers it deliberately to another model of the same noise
schedule. Several paths evaluated directly share forward passes (bpd) or noise keys (kid) and get
paired differences against the first. KID samples each path with its own sampler (a trajectory
schedule: DDIM η = 0; others: ancestral) unless ``--sampler`` names one for all; features come from
the shipped proxy CNN (``--features proxy``) or, with ``--features inception:FILE``, from
pytorch-fid's Inception weights, which also gives FID. The teacher distance is
E(z) = ‖x̂(z) − x_teacher(z)‖/√d (RMS per dimension, data in [−1, 1]) from fresh seeds (never a
trajectory table's); with a held-out trajectory table instead of a model it is the sum of the
table's local errors along each path (labelled as such).
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from ddpmdp.cli import args as common
from ddpmdp.cli.registry import command
from ddpmdp.errors import require

__all__ = ["add_parser", "run", "METRICS", "Metric"]


@dataclass(frozen=True)
class Metric:
    """One ``--metric`` choice: its help, the options only it takes (``dest`` → flag, refused with
    another metric), and its run function (returns the exit status; prints the scores and the
    summary line)."""

    help: str
    own_options: dict[str, str]
    run: Callable[[argparse.Namespace], int]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("evaluate", help=command("evaluate").summary, description=common.describe(__doc__))
    p.add_argument("table", nargs="?", default=None, help="a held-out table .npz (--metric bpd; a trajectory "
                   "table with --metric teacher); else --model and --data (or --n-seeds for --metric teacher)")
    p.add_argument("--metric", choices=list(METRICS), default="bpd",
                   help="; ".join(f"{name}: {m.help}" for name, m in METRICS.items()) + " (default bpd)")
    p.add_argument("--schedule", action="append", required=True, metavar="PATH",
                   help="path spec: even:K, quadratic:K, ddim-quadratic:K, logsnr:K, edm:K, dp:SOLVED.json:K or "
                   "nodes:0,…,T; repeat for several")
    common.add_other_model(p)
    common.add_model_args(p, required=False)
    common.add_data_args(p, required=False, help="held-out data for a direct evaluation or KID's real images "
                         "(a data spec)")
    common.add_run_args(p)
    p.set_defaults(clip=None)  # --clip/--no-clip; else clip (bpd), or each schedule's recorded flag (kid)
    k = p.add_argument_group("kid")
    k.add_argument("--n-samples", type=int, default=None, help="--metric kid: samples per path (sample i of every "
                   "path from noise key i)")
    k.add_argument("--features", default=None, metavar="SPEC",
                   help="--metric kid: proxy (the shipped proxy CNN, default), proxy:FILE or inception:FILE "
                   "(pytorch-fid's Inception weights; then FID as well)")
    k.add_argument("--kid-groups", type=int, default=None, help="--metric kid: delete-a-group jackknife groups "
                   "(default 50)")
    common.add_sampler_args(k)
    common.add_trajectory_args(p, "--metric teacher")
    common.add_json(p, "print the scores as one JSON line (the summary line)")
    p.set_defaults(func=run)
    return p


# ---- bpd -------------------------------------------------------------------------------------
def _table_schedule(table):
    """The table's noise schedule when its recorded name is a spec (linear:T, cosine:T) with the
    recorded hash (for logsnr:K and edm:K), else its T."""
    from ddpmdp.errors import DdpmdpError
    from ddpmdp.schedules import parse_schedule

    name, want = table.meta.get("schedule"), table.meta.get("schedule_hash")
    try:
        sched = parse_schedule(str(name)) if name else None
    except DdpmdpError:
        sched = None
    return sched if sched is not None and sched.T == table.T and (not want or sched.fingerprint() == want) \
        else table.T


def _direct(args: argparse.Namespace) -> dict:
    from ddpmdp.data.specs import load_images
    from ddpmdp.evaluate import evaluate_paths
    from ddpmdp.path_specs import parse_schedule_spec

    require(args.model is not None and args.data is not None,
            "evaluate needs TABLE.npz, or --model and --data for a direct evaluation")
    model = common.load_model(args)
    paths = {spec: parse_schedule_spec(spec, model.schedule, allow_other_model=args.other_model)
             for spec in args.schedule}
    data = load_images(args.data, args.data_dir).subset(args.n_images)
    return evaluate_paths(model, data, paths, variance=args.variance,
                          clip=True if args.clip is None else args.clip, batch_size=args.batch_size, seed=args.seed,
                          device=args.device, progress=not args.quiet)


def _paired(args: argparse.Namespace, scores: dict, diff_of) -> dict[str, dict]:
    """Per path after the first: its paired difference against the first, with the 2-SE flag."""
    first = args.schedule[0]
    out = {}
    for spec in args.schedule[1:]:
        diff, se = diff_of(scores[spec], scores[first])
        out[spec] = {"minus": first, "diff": diff, "diff_se": se, "within_2se": abs(diff) <= 2 * se}
    return out


def _paired_text(paired: dict[str, dict], spec: str, digits: int) -> str:
    """``  [+d ± se vs FIRST, paired(, within 2 SE)]`` for a path after the first, else empty."""
    if spec not in paired:
        return ""
    p = paired[spec]
    return (f"  [{p['diff']:+.{digits}f} ± {p['diff_se']:.{digits}f} vs {p['minus']}, paired"
            f"{', within 2 SE' if p['within_2se'] else ''}]")


def _report(args: argparse.Namespace, result: dict, lines: Iterable[str], **summary: Any) -> int:
    """The end of every metric: with ``--json`` the per-path document as one line; otherwise the
    human-readable ``lines`` (a generator: nothing is formatted for ``--json``), then the JSON summary."""
    if args.json:
        print(json.dumps(result), flush=True)
        return 0
    for line in lines:
        print(line)
    common.print_summary("evaluate_done", **summary)
    return 0


def run_bpd(args: argparse.Namespace) -> int:
    """Held-out bits/dim ± SE, from a held-out table or directly."""
    if args.table:
        from ddpmdp.evaluate import path_from_table
        from ddpmdp.path_specs import parse_schedule_spec
        from ddpmdp.table import load_table, require_objective

        require(args.model is None, "give either TABLE.npz or --model/--data (direct evaluation), not both")
        table = load_table(args.table)
        require_objective(table, "elbo", "evaluate --metric bpd TABLE", args.table)
        noise = _table_schedule(table)
        scores = {spec: path_from_table(table, parse_schedule_spec(spec, noise, allow_other_model=args.other_model))
                  for spec in args.schedule}
    else:
        scores = _direct(args)
    result = {spec: s.as_dict() for spec, s in scores.items()}
    paired = {}
    if not args.table and len(scores) > 1:  # same images, shared forward passes: paired differences
        from ddpmdp.evaluate import paired_difference

        paired = _paired(args, scores, paired_difference)
        for spec, p in paired.items():
            result[spec]["paired_vs_first"] = p
    lines = (f"{spec:<24s} K={s.K:<5d} {s.bpd:.4f} ± {s.bpd_se:.4f} bits/dim  ({s.split} split, {s.n_images} images; "
             f"SE {s.se_kind.split(':')[0]}){_paired_text(paired, spec, 4)}" for spec, s in scores.items())
    return _report(args, result, lines, metric="bpd", route="table" if args.table else "direct",
                   scores={spec: {"K": s.K, "bpd": s.bpd, "bpd_se": s.bpd_se} for spec, s in scores.items()})


# ---- teacher ---------------------------------------------------------------------------------
def _teacher_direct(args: argparse.Namespace) -> int:
    from ddpmdp.inference_schedule import resolve_sampler
    from ddpmdp.path_specs import parse_schedule_spec
    from ddpmdp.trajectory import paired_teacher_difference, teacher_distance

    common.refuse_given(args, "does not apply to --metric teacher: its x_T are keyed seeds (--n-seeds), it needs "
                        "no images", "--data", "--n-images")
    common.refuse_given(args, "does not apply to --metric teacher: DDIM eta = 0 uses no variance", "--variance")
    require(args.model is not None and args.n_seeds is not None,
            "--metric teacher needs --model and --n-seeds N (fresh seeds; the teacher and every path start from "
            "the same z)")
    model = common.load_model(args)
    paths = {spec: parse_schedule_spec(spec, model.schedule, allow_other_model=args.other_model)
             for spec in args.schedule}
    clip = resolve_sampler(paths, "ddim", 0.0, args.clip).clip  # --clip/--no-clip, else the recorded flag
    scores = teacher_distance(model, paths, args.n_seeds, teacher_grid=args.teacher_grid, clip=bool(clip),
                              seed=args.seed, batch_size=args.batch_size, shape=common.image_shape(args),
                              device=args.device, progress=not args.quiet)
    paired = _paired(args, scores, paired_teacher_difference)
    result = {spec: dict(s.as_dict(), **({"paired_vs_first": paired[spec]} if spec in paired else {}))
              for spec, s in scores.items()}
    lines = (f"{spec:<24s} K={s.K:<5d} NFE={s.nfe:<5d} {s.mean:.5f} ± {s.se:.5f} RMS/dim from the teacher "
             f"({s.n_seeds} seeds, teacher {s.teacher_grid_size} nodes){_paired_text(paired, spec, 5)}"
             for spec, s in scores.items())
    return _report(args, result, lines, route="direct", metric="teacher",
                   scores={spec: {"K": s.K, "nfe": s.nfe, "teacher_distance": s.mean, "teacher_distance_se": s.se}
                           for spec, s in scores.items()})


def _teacher_table(args: argparse.Namespace) -> int:
    """--metric teacher with a held-out trajectory table: Σ C along each path (not E(z))."""
    from ddpmdp.path_specs import parse_schedule_spec
    from ddpmdp.table import load_table, require_objective
    from ddpmdp.trajectory import path_local_error

    require(args.model is None, "give either TABLE.npz or --model (direct evaluation), not both")
    table = load_table(args.table)
    require_objective(table, "trajectory", "evaluate --metric teacher TABLE", args.table)
    result = {}
    for spec in args.schedule:
        sch = parse_schedule_spec(spec, table.T, allow_other_model=args.other_model)
        cost, bound = path_local_error(table, sch)
        result[spec] = {"K": sch.K, "nfe": sch.nfe, "nodes": [int(n) for n in sch.nodes], "local_error_sum": cost,
                        "local_error_sum_se_bound": bound, "n_seeds": table.meta["n_seeds"],
                        "units": table.meta["units"]}
    lines = (f"{spec:<24s} K={r['K']:<5d} NFE={r['nfe']:<5d} Σ local error {r['local_error_sum']:.5f} "
             f"(SE ≤ {r['local_error_sum_se_bound']:.5f}; trajectory table {args.table}, {r['n_seeds']} seeds; "
             "not the teacher distance)" for spec, r in result.items())
    return _report(args, result, lines, route="table", metric="teacher",
                   scores={spec: {"K": r["K"], "local_error_sum": r["local_error_sum"]} for spec, r in result.items()})


def run_teacher(args: argparse.Namespace) -> int:
    """Teacher distance ± SE of each path's DDIM η = 0 sample over fresh seeds (or, with a held-out
    trajectory table, the sum of its local errors along each path)."""
    return _teacher_table(args) if args.table else _teacher_direct(args)


# ---- kid -------------------------------------------------------------------------------------
def run_kid(args: argparse.Namespace) -> int:
    """KID ± SE (and FID with Inception features) of samples along each path, with NFE = K."""
    require(args.table is None, "--metric kid samples from the model: give --model and --data, not a table")
    require(args.model is not None and args.data is not None, "--metric kid needs --model and --data (held-out "
            "real images)")
    require(args.n_samples is not None and args.n_samples >= 2, "--metric kid needs --n-samples N (N >= 2)")
    require(args.kid_groups is None or args.kid_groups >= 2, f"--kid-groups must be >= 2, got {args.kid_groups}")
    method, eta = common.sampler_args(args)
    from ddpmdp.data.specs import load_images
    from ddpmdp.fid.evaluate import evaluate_kid, load_extractor
    from ddpmdp.fid.kid import GROUPS
    from ddpmdp.path_specs import parse_schedule_spec

    model = common.load_model(args)
    paths = {spec: parse_schedule_spec(spec, model.schedule, allow_other_model=args.other_model,
                                       allow_other_sampler=args.other_sampler) for spec in args.schedule}
    data = load_images(args.data, args.data_dir).subset(args.n_images)
    extractor = load_extractor(args.features or "proxy", device=args.device)
    scores = evaluate_kid(model, data, paths, n_samples=args.n_samples, extractor=extractor, sampler=method, eta=eta,
                          clip=args.clip, variance=args.variance, groups=args.kid_groups or GROUPS,
                          seed=args.seed, batch_size=args.batch_size, device=args.device, progress=not args.quiet)
    result = {spec: s.as_dict() for spec, s in scores.items()}
    first = next(iter(scores.values())).kid

    def lines() -> Iterator[str]:
        yield (f"# {first.label}; features {first.feature}; {first.n_generated} samples per path vs {first.n_real} "
               f"real images ({args.data}); SE: {first.se_kind}; KID in units of 1e-3")
        for spec, s in scores.items():
            extra = f"  FID {s.fid.value:.2f}" if s.fid is not None else ""
            if s.paired is not None:
                p = s.paired
                extra += f"  [{1e3 * p['kid_diff']:+.3f} ± {1e3 * p['kid_diff_se']:.3f} vs {p['minus']}, paired]"
            yield (f"{spec:<24s} K={s.K:<4d} NFE={s.nfe:<4d} {s.sampler.describe():<24s} KID "
                   f"{1e3 * s.kid.value:.3f} ± {1e3 * s.kid.se:.3f}{extra}")

    return _report(args, result, lines(), metric="kid", feature=first.feature, n_generated=first.n_generated,
                   n_real=first.n_real,
                   scores={spec: {"K": s.K, "nfe": s.nfe, "kid": s.kid.value, "kid_se": s.kid.se,
                                  **({"fid": s.fid.value} if s.fid is not None else {})}
                           for spec, s in scores.items()})


METRICS: dict[str, Metric] = {
    "bpd": Metric("held-out bits/dim ± SE (from TABLE.npz or directly)", {}, run_bpd),
    "teacher": Metric("RMS distance of each path's DDIM (eta = 0) sample from the teacher's over fresh seeds "
                      "(--n-seeds; with a held-out trajectory TABLE the sum of its local errors instead)",
                      {"n_seeds": "--n-seeds", "teacher_grid": "--teacher-grid", "shape": "--shape"}, run_teacher),
    "kid": Metric("KID ± SE of --n-samples samples per path against --data, with NFE = K",
                  {"n_samples": "--n-samples", "features": "--features", "kid_groups": "--kid-groups",
                   "sampler": "--sampler", "eta": "--eta", "other_sampler": "--other-sampler"}, run_kid),
}
"""``--metric`` choices. Another metric is one more entry: a run function and the options only it takes."""


def run(args: argparse.Namespace) -> int:
    metric = METRICS[args.metric]
    for name, m in METRICS.items():
        if name == args.metric:
            continue
        for dest, flag in m.own_options.items():
            if dest in metric.own_options:
                continue
            value = getattr(args, dest, None)
            require(value is None or value is False, f"{flag} applies to --metric {name}, not {args.metric}")
    return metric.run(args)
