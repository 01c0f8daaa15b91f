"""``ddpmdp models [--json] [--csv FILE]``: the embedded models and their cards' held-out bits/dim."""
from __future__ import annotations

import argparse
import json
from typing import Any

from ddpmdp.cli import args as common
from ddpmdp.cli.registry import command

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("models", help=command("models").summary, description=common.describe(__doc__))
    common.add_json(p, "print the rows as one JSON line (the summary line)")
    p.add_argument("--csv", default=None, help="also write the table to this CSV file (refused if it exists, "
                   "unless --overwrite)")
    common.add_overwrite(p)
    p.set_defaults(func=run)
    return p


def _line(r: dict[str, Any]) -> str:
    bpd = (f"{r['heldout_bpd']:.3f} ± {r['heldout_bpd_se']:.3f} bits/dim on {r['heldout_images']} "
           f"{r['heldout_split']} images" if r["heldout_bpd"] is not None else "not measured")
    lossless = ""
    if r["lossless100_bpd"] is not None:
        lossless = (f"; lossless-100 {r['lossless100_bpd']:.3f} ± {r['lossless100_bpd_se']:.3f}, JPEG-100 "
                    f"{r['jpeg100_bpd']:.3f} ± {r['jpeg100_bpd_se']:.3f}")
    elif r["lossless100_note"]:
        lossless = f"; lossless-100: {r['lossless100_note']}"
    return (f"{r['name']:<18s} {r['objective']:<7s} {r['schedule']:<12s} {r['variance']:<14s} "
            f"{'ready' if r['available'] else 'no weights':<10s} full chain: {bpd}{lossless}")


def run(args: argparse.Namespace) -> int:
    import csv
    import io

    from ddpmdp.fileio import atomic_write_text
    from ddpmdp.models.embedded import MODEL_TABLE_COLUMNS, model_table

    common.check_outputs(args.csv, overwrite=args.overwrite, nothing="nothing was written")
    rows = model_table()
    if args.csv:
        buf = io.StringIO(newline="")
        w = csv.DictWriter(buf, fieldnames=MODEL_TABLE_COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.3f}" if isinstance(v, float) and "_bpd" in k else v) for k, v in r.items()})
        atomic_write_text(args.csv, buf.getvalue())
    if args.json:
        print(json.dumps(rows), flush=True)
        return 0
    for r in rows:
        print(_line(r))
    common.print_summary("models_done", models=[r["name"] for r in rows], csv=args.csv)
    return 0
