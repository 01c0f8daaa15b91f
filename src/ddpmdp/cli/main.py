"""The ``ddpmdp`` command line.

    ddpmdp table    --model SPEC --data SPEC --out TABLE.npz [...]   estimate L(t, s) (selection: train split)
    ddpmdp solve    TABLE.npz --budgets 8,16,32 [--json]             ELBO-optimal paths (and per-edge σ²)
    ddpmdp rescore  TABLE.npz --variance RULE --out NEW.npz          another rule's table, no network
    ddpmdp evaluate TABLE.npz --schedule PATH [--json]               bpd ± SE from a held-out table
    ddpmdp evaluate --model SPEC --data SPEC --schedule PATH         direct K-pass evaluation, fresh noise
    ddpmdp sample   --model SPEC --schedule PATH --n N --out X.png   samples along a path
    ddpmdp export   SOLVED.json:K --to diffusers|iddpm|k-diffusion   a path for other samplers
    ddpmdp model-info SPEC [--json]                                  architecture facts and fingerprints
    ddpmdp models [--json] [--csv FILE]                              the embedded models and their cards
    ddpmdp train    --name NAME --data SPEC --objective simple|hybrid|vlb --out DIR   small DDPMs

Path specs: ``even:K``, ``quadratic:K``, ``dp:SOLVED.json:K``, ``nodes:0,5,…,T``.
User errors print one line and exit with status 2.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Sequence, cast

import numpy as np

from ddpmdp.version import __version__
from ddpmdp.errors import DdpmdpError, require
from ddpmdp.path_specs import parse_schedule_spec
from ddpmdp.variances import VARIANCE_RULES, VarianceRule

__all__ = ["main"]


def _budgets(text: str) -> list[int]:
    try:
        ks = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise DdpmdpError(f"--budgets {text!r}: expected comma-separated integers such as 8,16,32") from None
    require(bool(ks), "--budgets is empty")
    return ks


def _model_args(p: argparse.ArgumentParser, schedule_alias: bool = False) -> None:
    p.add_argument("--model", required=True, help="model spec: module:callable, gaussian:DATA, iddpm:PRESET[:PATH], "
                   "ho[:PATH], diffusers:DIR, or an embedded model name")
    names = ["--noise-schedule", "--schedule"] if schedule_alias else ["--noise-schedule"]
    p.add_argument(*names, dest="noise_schedule", default=None,
                   help="for an nn.Module model: linear:T, cosine:T or a .npy of ᾱ")
    p.add_argument("--output", choices=["eps", "eps+v"], default=None, help="for an nn.Module model")
    p.add_argument("--time-input", choices=["iddpm", "ho", "node"], default=None, help="for an nn.Module model")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    p.add_argument("--data-dir", default=None, help="dataset folder (default: $DDPMDP_DATA)")
    p.add_argument("--bf16", action="store_true", help="run the network under bfloat16 autocast (ELBO math stays fp64)")
    p.add_argument("--channels-last", action="store_true", help="NHWC activations for the network")


def _run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--variance", choices=list(VARIANCE_RULES), default=None,
                   help="variance rule (default: learned_range for learned-variance models, else fixed_large); "
                   "analytic, optimal and best are estimated by `table` and then travel with dp:SOLVED.json:K "
                   "schedules, whose per-edge σ² evaluate and sample use")
    p.add_argument("--clip", dest="clip", action="store_true", default=True, help="clip x̂₀ to [-1, 1] (default)")
    p.add_argument("--no-clip", dest="clip", action="store_false")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _load_model(args):
    from ddpmdp.models.adapter import Numerics
    from ddpmdp.models.specs import load_model

    if args.device.startswith("cuda"):
        import torch

        require(torch.cuda.is_available(), f"--device {args.device}: CUDA is not available here; use --device cpu")
    numerics = Numerics(bf16=bool(vars(args).get("bf16")), channels_last=bool(vars(args).get("channels_last")))
    return load_model(args.model, device=args.device, data_dir=args.data_dir, schedule=args.noise_schedule,
                      output=args.output, time_input=args.time_input, numerics=numerics)


def _variance(args, model) -> VarianceRule:
    """``--variance`` (checked against the rules by argparse's choices), else the model's own rule."""
    return cast(VarianceRule, args.variance or model.variance)


def _cmd_table(args) -> int:
    from ddpmdp.data.specs import load_images
    from ddpmdp.table_estimation import run_table

    model = _load_model(args)
    spec = args.data
    if ":" not in spec and not spec.endswith(".npz"):
        spec = f"{spec}:{args.split or 'train'}"  # selection tables default to the training split
    data = load_images(spec, args.data_dir)
    if args.split and data.split not in (args.split, "unspecified"):
        raise DdpmdpError(f"--split {args.split} but the data spec {args.data!r} is the {data.split} split")
    data = data.subset(args.n_images)
    nodes = None
    if args.grid:
        from ddpmdp.grids import parse_grid

        require(args.grid_stride == 1, "give either --grid or --grid-stride, not both")
        nodes = parse_grid(args.grid, model.schedule.T)
    table = run_table(model, data, variance=_variance(args, model), clip=args.clip, grid_stride=args.grid_stride,
                      nodes=nodes, grid_spec=args.grid,
                      batch_size=args.batch_size, seed=args.seed, device=args.device, out=Path(args.out),
                      resume=args.resume, save_every=args.save_every, float32=args.float32,
                      progress=not args.quiet)
    summary = {"event": "table_done", "out": args.out, "grid_size": int(len(table.nodes)), "T": table.T,
               "n_images": int(table.meta["n_images"]), "variance": table.meta["variance"],
               "full_chain_bpd": None, "wall_seconds": table.meta.get("wall_seconds")}
    if len(table.nodes) == table.T + 1:
        idx = np.arange(1, table.T + 1)
        summary["full_chain_bpd"] = float(table.bpd(table.L[idx, idx - 1].sum() + table.prior))
    print(json.dumps(summary))
    return 0


def _cmd_solve(args) -> int:
    from ddpmdp.cli.rescore import schedule_entry
    from ddpmdp.dp import solve
    from ddpmdp.table import load_table

    table = load_table(args.table)
    ks = _budgets(args.budgets)
    G = len(table.nodes)
    require(ks[0] >= 1 and ks[-1] <= G - 1, f"budgets must lie in 1..{G - 1} for this table's {G} grid nodes "
            f"(grid {table.meta.get('grid') or table.meta.get('grid_stride')}); got {ks[0] if ks[0] < 1 else ks[-1]}")
    sol = solve(table.L, ks[-1], table.nodes)
    result = {"table": str(args.table), "T": table.T, "split": table.meta["split"], "variance": table.meta["variance"],
              "n_images": table.meta["n_images"], "note": "costs are the selection table's own values "
              "(optimistically biased); evaluate the paths on held-out data", "budgets": {}}
    for K in ks:
        nodes = sol.path(K)
        nats = float(sol.costs[K] + table.prior)
        result["budgets"][str(K)] = {"nodes": [int(n) for n in nodes], "nats": nats, "bpd": float(table.bpd(nats)),
                                     **schedule_entry(table, nodes)}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"# DP paths from {args.table} ({table.meta['split']} split, {table.meta['n_images']} images, "
              f"{table.meta['variance']}); bits/dim on the selection table incl. prior")
        for K in ks:
            e = result["budgets"][str(K)]
            print(f"K={K:<5d} bpd={e['bpd']:.4f}  nodes={','.join(map(str, e['nodes']))}")
    return 0


def _cmd_evaluate(args) -> int:
    if args.table:
        from ddpmdp.table import load_table
        from ddpmdp.evaluate import path_from_table

        require(args.model is None, "give either TABLE.npz or --model/--data (direct evaluation), not both")
        table = load_table(args.table)
        scores = {spec: path_from_table(table, parse_schedule_spec(spec, table.T)) for spec in args.schedule}
    else:
        from ddpmdp.data.specs import load_images
        from ddpmdp.evaluate import evaluate_paths

        require(args.model is not None and args.data is not None,
                "evaluate needs TABLE.npz, or --model and --data for a direct evaluation")
        model = _load_model(args)
        data = load_images(args.data, args.data_dir).subset(args.n_images)
        paths = {spec: parse_schedule_spec(spec, model.schedule.T) for spec in args.schedule}
        scores = evaluate_paths(model, data, paths, variance=_variance(args, model), clip=args.clip,
                                batch_size=args.batch_size, seed=args.seed, device=args.device,
                                progress=not args.quiet)
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
        print(json.dumps(result))
    else:
        for spec, s in scores.items():
            extra = ""
            if spec in paired:
                p = paired[spec]
                extra = f"  [{p['bpd_diff']:+.4f} ± {p['bpd_diff_se']:.4f} vs {p['minus']}, paired]"
            print(f"{spec:<24s} K={s.K:<5d} {s.bpd:.4f} ± {s.bpd_se:.4f} bits/dim  "
                  f"({s.split} split, {s.n_images} images; SE {s.se_kind.split(':')[0]}){extra}")
    return 0


def _cmd_sample(args) -> int:
    from ddpmdp.sampling import sample
    from ddpmdp.data.image_io import save_grid

    require(args.n >= 1, f"--n must be >= 1, got {args.n}")
    for target in [args.out] + ([args.npz] if args.npz else []):  # fail before the work, not after it
        folder = Path(target).parent if str(Path(target).parent) else Path(".")
        require(folder.is_dir(), f"output folder {str(folder)!r} of {target} does not exist; nothing was sampled")
        require(os.access(folder, os.W_OK), f"output folder {str(folder)!r} of {target} is not writable; "
                "nothing was sampled")
    model = _load_model(args)
    schedule = parse_schedule_spec(args.schedule, model.schedule.T)
    nodes = schedule.nodes
    shape = tuple(int(x) for x in args.shape.split(",")) if args.shape else model.image_shape
    require(shape is not None and len(shape) == 3, "give --shape C,H,W (the model does not declare its image shape)")
    assert shape is not None
    chw = (int(shape[0]), int(shape[1]), int(shape[2]))
    imgs = sample(model, schedule if args.sampler == "ancestral" else nodes, args.n, chw, method=args.sampler,
                  variance=_variance(args, model), eta=args.eta,
                  clip=args.clip, seed=args.seed, device=args.device, batch_size=args.batch_size,
                  progress=not args.quiet)
    save_grid(imgs, args.out)
    if args.npz:
        np.savez(args.npz, images=imgs, nodes=nodes)
    print(json.dumps({"event": "samples_done", "out": args.out, "n": int(args.n), "K": int(len(nodes) - 1)}))
    return 0


def _cmd_model_info(args) -> int:
    from ddpmdp.models.info import model_info

    info = model_info(args.spec, data_dir=args.data_dir)
    if args.json:
        print(json.dumps(info))
    else:
        for k, v in info.items():
            print(f"{k}: {v}")
    return 0


def _cmd_models(args) -> int:
    import csv

    from ddpmdp.models.embedded import MODEL_TABLE_COLUMNS, model_table

    rows = model_table()
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=MODEL_TABLE_COLUMNS)
            w.writeheader()
            for r in rows:
                w.writerow({k: (f"{v:.3f}" if isinstance(v, float) and "_bpd" in k else v) for k, v in r.items()})
    if args.json:
        print(json.dumps(rows))
    else:
        for r in rows:
            bpd = (f"{r['heldout_bpd']:.3f} ± {r['heldout_bpd_se']:.3f} bits/dim on {r['heldout_images']} "
                   f"{r['heldout_split']} images" if r["heldout_bpd"] is not None else "not measured")
            lossless = ""
            if r["lossless100_bpd"] is not None:
                lossless = (f"; lossless-100 {r['lossless100_bpd']:.3f} ± {r['lossless100_bpd_se']:.3f}, JPEG-100 "
                            f"{r['jpeg100_bpd']:.3f} ± {r['jpeg100_bpd_se']:.3f}")
            elif r["lossless100_note"]:
                lossless = f"; lossless-100: {r['lossless100_note']}"
            print(f"{r['name']:<18s} {r['objective']:<7s} {r['schedule']:<12s} {r['variance']:<14s} "
                  f"{'ready' if r['available'] else 'no weights':<10s} full chain: {bpd}{lossless}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ddpmdp", description=__doc__.split("\n\n")[0])
    p.add_argument("--version", action="version", version=f"ddpmdp {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("table", help="estimate the L(t, s) table (nats per image)")
    _model_args(t, schedule_alias=True)
    t.add_argument("--data", required=True, help="cifar10[:train|test], tiny-imagenet64[:train|test], FILE.npz, ...")
    t.add_argument("--split", choices=["train", "test"], default=None,
                   help="split for dataset specs without one (default: train)")
    t.add_argument("--n-images", type=int, default=None)
    t.add_argument("--grid-stride", type=int, default=1, help="use every k-th node (0 and T always kept)")
    t.add_argument("--grid", default=None, help="grid spec, e.g. log:120+even:8,16,32 (see elbo_table.parse_grid)")
    _run_args(t)
    t.add_argument("--out", required=True)
    t.add_argument("--resume", action="store_true", help="continue from OUT.progress.npz if present")
    t.add_argument("--save-every", type=int, default=10, help="batches between progress checkpoints")
    t.add_argument("--float32", action="store_true", help="store L and L_se as float32")
    t.set_defaults(func=_cmd_table)

    s = sub.add_parser("solve", help="ELBO-optimal paths for every budget from a table; --json records each "
                       "edge's variance rule and σ² (used by evaluate and sample with dp:FILE.json:K)")
    s.add_argument("table")
    s.add_argument("--budgets", required=True, help="comma-separated budgets, e.g. 8,16,32")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_cmd_solve)

    e = sub.add_parser("evaluate", help="bits/dim ± SE of paths (from a held-out table, or directly)")
    e.add_argument("table", nargs="?", default=None)
    e.add_argument("--schedule", action="append", required=True, help="path spec; repeat for several")
    e.add_argument("--model", default=None)
    e.add_argument("--noise-schedule", dest="noise_schedule", default=None)
    e.add_argument("--output", choices=["eps", "eps+v"], default=None)
    e.add_argument("--time-input", choices=["iddpm", "ho", "node"], default=None)
    e.add_argument("--device", default="cpu")
    e.add_argument("--data-dir", default=None)
    e.add_argument("--bf16", action="store_true")
    e.add_argument("--channels-last", action="store_true")
    e.add_argument("--data", default=None, help="held-out data for a direct evaluation")
    e.add_argument("--n-images", type=int, default=None)
    _run_args(e)
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=_cmd_evaluate)

    m = sub.add_parser("sample", help="sample along a path, write a PNG grid")
    _model_args(m)
    m.add_argument("--schedule", required=True, help="path spec: even:K, quadratic:K, dp:FILE.json:K, nodes:...")
    m.add_argument("--n", type=int, default=16)
    m.add_argument("--out", required=True, help="PNG grid")
    m.add_argument("--npz", default=None, help="also save uint8 images to this .npz")
    m.add_argument("--sampler", choices=["ancestral", "ddim"], default="ancestral")
    m.add_argument("--eta", type=float, default=0.0, help="DDIM η")
    m.add_argument("--shape", default=None, help="C,H,W if the model does not declare it")
    _run_args(m)
    m.set_defaults(func=_cmd_sample)

    from ddpmdp.cli.train import add_parser as _add_train

    _add_train(sub)
    from ddpmdp.cli.export import add_parser as _add_export

    _add_export(sub)
    from ddpmdp.cli.reproduce import add_parser as _add_reproduce
    from ddpmdp.cli.rescore import add_parser as _add_rescore

    _add_rescore(sub)

    _add_reproduce(sub)

    ms = sub.add_parser("models", help="the embedded models and their held-out full-chain bits/dim")
    ms.add_argument("--json", action="store_true")
    ms.add_argument("--csv", default=None, help="also write the table to this CSV file")
    ms.set_defaults(func=_cmd_models)

    i = sub.add_parser("model-info", help="parameter count, key count, fingerprint, schedule of a model spec")
    i.add_argument("spec")
    i.add_argument("--json", action="store_true")
    i.add_argument("--data-dir", default=None)
    i.set_defaults(func=_cmd_model_info)
    return p


def _flush_denormals() -> None:
    """Treat float32 denormals as zero on the CPU: activations of diffusion UNets drift into the
    denormal range along a sampling chain and then cost up to 10× per operation on x86. Values
    below 1.2e-38 cannot change any bits/dim or pixel the commands report."""
    import torch

    torch.set_flush_denormal(True)


def one_line_warning(message, category, filename, lineno, line=None) -> str:
    """Warnings as one line, ``ddpmdp: UserWarning: …`` (Python's default adds a line of source)."""
    return f"ddpmdp: {category.__name__}: {message}\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (2 for user errors, with one line on stderr)."""
    import warnings

    parser = build_parser()
    args = parser.parse_args(argv)
    warnings.formatwarning = one_line_warning
    _flush_denormals()
    try:
        return int(args.func(args) or 0)
    except DdpmdpError as exc:
        print(f"ddpmdp {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ddpmdp {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
