"""``ddpmdp model-info SPEC [--json]``: parameter count, state_dict keys, fingerprint and noise
schedule of a model spec (:func:`ddpmdp.models.info.model_info`)."""
from __future__ import annotations

import argparse
import json
from typing import Any

from ddpmdp.cli import args as common
from ddpmdp.cli.registry import command

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("model-info", help=command("model-info").summary, description=common.describe(__doc__))
    p.add_argument("spec", help="a model spec (as for --model)")
    common.add_json(p, "print the facts as one JSON line (the summary line)")
    common.add_data_dir(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from ddpmdp.models.info import model_info

    info = model_info(args.spec, data_dir=args.data_dir)
    if args.json:
        print(json.dumps(info), flush=True)
        return 0
    for k, v in info.items():
        print(f"{k}: {v}")
    common.print_summary("model_info_done", spec=args.spec, fingerprint=info.get("fingerprint"))
    return 0
