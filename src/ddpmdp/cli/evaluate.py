"""``ddpmdp evaluate``: held-out scores of inference paths — bits/dim ± SE (``--metric bpd``, the
default) or sample quality, KID ± SE with NFE (``--metric kid``).

    ddpmdp evaluate test_table.npz --schedule dp:dp.json:32 --schedule even:32       bpd from a held-out table
    ddpmdp evaluate --model SPEC --data cifar10:test --schedule dp:dp.json:32 …      bpd directly, fresh noise
    ddpmdp evaluate --metric kid --model SPEC --data cifar10:test --n-samples 1000 \\
        --schedule dp:traj.json:16 --schedule edm:16 --sampler ddim                  KID ± SE, paired in the noise

A ``dp:FILE:K`` schedule must have been solved for the model (or the held-out table's model) and
its noise schedule; ``--other-model`` transfers it deliberately to another model of the same noise
schedule. Several paths evaluated directly share forward passes (bpd) or noise keys (kid) and get
paired differences against the first. KID samples each path with its own sampler (a trajectory
schedule: DDIM η = 0; others: ancestral) unless ``--sampler`` names one for all; features come from
the shipped proxy CNN (``--features proxy``) or, with ``--features inception:FILE``, from
pytorch-fid's Inception weights, which also gives FID.
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Callable
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
    p.add_argument("table", nargs="?", default=None, help="a held-out table .npz (--metric bpd; else --model and "
                   "--data)")
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


def run_bpd(args: argparse.Namespace) -> int:
    """Held-out bits/dim ± SE, from a held-out table or directly."""
    if args.table:
        from ddpmdp.evaluate import path_from_table
        from ddpmdp.path_specs import parse_schedule_spec
        from ddpmdp.table import load_table

        require(args.model is None, "give either TABLE.npz or --model/--data (direct evaluation), not both")
        table = load_table(args.table)
        noise = _table_schedule(table)
        scores = {spec: path_from_table(table, parse_schedule_spec(spec, noise, allow_other_model=args.other_model))
                  for spec in args.schedule}
    else:
        scores = _direct(args)
    result = {spec: s.as_dict() for spec, s in scores.items()}
    paired = {}
    if not args.table and len(scores) > 1:  # same images, shared forward passes: paired differences
        from ddpmdp.evaluate import paired_difference

        first = args.schedule[0]
        for spec in args.schedule[1:]:
            diff, se = paired_difference(scores[spec], scores[first])
            paired[spec] = {"minus": first, "bpd_diff": diff, "bpd_diff_se": se, "within_2se": abs(diff) <= 2 * se}
            result[spec]["paired_vs_first"] = paired[spec]
    if args.json:
        print(json.dumps(result), flush=True)
        return 0
    for spec, s in scores.items():
        extra = ""
        if spec in paired:
            p = paired[spec]
            extra = f"  [{p['bpd_diff']:+.4f} ± {p['bpd_diff_se']:.4f} vs {p['minus']}, paired]"
        print(f"{spec:<24s} K={s.K:<5d} {s.bpd:.4f} ± {s.bpd_se:.4f} bits/dim  "
              f"({s.split} split, {s.n_images} images; SE {s.se_kind.split(':')[0]}){extra}")
    common.print_summary("evaluate_done", metric="bpd", route="table" if args.table else "direct",
                         scores={spec: {"K": s.K, "bpd": s.bpd, "bpd_se": s.bpd_se} for spec, s in scores.items()})
    return 0


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
    if args.json:
        print(json.dumps(result), flush=True)
        return 0
    first = next(iter(scores.values())).kid
    print(f"# {first.label}; features {first.feature}; {first.n_generated} samples per path vs {first.n_real} "
          f"real images ({args.data}); SE: {first.se_kind}; KID in units of 1e-3")
    for spec, s in scores.items():
        extra = f"  FID {s.fid.value:.2f}" if s.fid is not None else ""
        if s.paired is not None:
            p = s.paired
            extra += f"  [{1e3 * p['kid_diff']:+.3f} ± {1e3 * p['kid_diff_se']:.3f} vs {p['minus']}, paired]"
        print(f"{spec:<24s} K={s.K:<4d} NFE={s.nfe:<4d} {s.sampler.describe():<24s} KID {1e3 * s.kid.value:.3f} ± "
              f"{1e3 * s.kid.se:.3f}{extra}")
    common.print_summary("evaluate_done", metric="kid", feature=first.feature, n_generated=first.n_generated,
                         n_real=first.n_real,
                         scores={spec: {"K": s.K, "nfe": s.nfe, "kid": s.kid.value, "kid_se": s.kid.se,
                                        **({"fid": s.fid.value} if s.fid is not None else {})}
                                 for spec, s in scores.items()})
    return 0


METRICS: dict[str, Metric] = {
    "bpd": Metric("held-out bits/dim ± SE (from TABLE.npz or directly)", {}, run_bpd),
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
