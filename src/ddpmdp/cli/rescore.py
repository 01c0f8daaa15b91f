"""``ddpmdp rescore TABLE --variance RULE --out NEW``: any variance rule's table from a table's node
statistics (M(t), Γ_t, decoder-candidate sums), without the network (:mod:`ddpmdp.rescore`)."""
from __future__ import annotations

import json

from ddpmdp.variances import VARIANCE_RULES

__all__ = ["add_parser", "schedule_entry"]


def _cmd_rescore(args) -> int:
    from ddpmdp.rescore import rescore
    from ddpmdp.table import load_table

    table = rescore(load_table(args.table), args.variance)
    table.save(args.out)
    print(json.dumps({"event": "rescore_done", "out": args.out, "variance": args.variance,
                      "sums_variance": table.meta.get("sums_variance"), "n_images": table.meta["n_images"]}))
    return 0


def schedule_entry(table, nodes) -> dict:
    """The per-edge rule and σ² of a solved path, for ``ddpmdp solve --json`` (empty for old tables)."""
    from ddpmdp.inference_schedule import InferenceSchedule

    if table.sigma2 is None:
        return {}
    sch = InferenceSchedule.from_table(table, nodes)
    return {"variance": sch.label(), "edges": sch.edges_json()}


def add_parser(sub) -> None:
    r = sub.add_parser("rescore", help="derive another variance rule's table from a table (no network)",
                       description="Derive the table of any variance rule from TABLE's node statistics. Scalar rules "
                       "(fixed_small, fixed_large, analytic, optimal) need M(t) (and Γ_t, and the decoder-candidate "
                       "sums of a table built with --variance analytic, optimal or best for non-fixed decoders); "
                       "learned_range and best need a table of a learned-variance model.")
    r.add_argument("table")
    r.add_argument("--variance", required=True, choices=list(VARIANCE_RULES),
                   help="optimal: per-edge KL-optimal σ² = β̃ + c²M(t)/d; analytic: Analytic-DPM; best: per edge the "
                   "better of learned_range and optimal")
    r.add_argument("--out", required=True, help="the new table .npz")
    r.set_defaults(func=_cmd_rescore)


