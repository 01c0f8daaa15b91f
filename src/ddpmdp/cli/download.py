"""``ddpmdp download cifar10 [--data-dir DIR]``: fetch a data set into the data folder, explicitly.

Nothing else in ddpmdp touches the network for data: a missing data set is an error that names
this command. CIFAR-10 comes from the official archive (its MD5 checked; only the
``cifar-10-batches-py/`` files are extracted). ImageNet 64 and the Tiny-ImageNet stand-in have no
download here: put their files under the data folder (the README's *Data* section).
"""
from __future__ import annotations

import argparse
from typing import Any

from ddpmdp.cli import args as common
from ddpmdp.cli.registry import command
from ddpmdp.errors import require

__all__ = ["add_parser", "run", "DATASETS"]

DATASETS = ("cifar10",)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("download", help=command("download").summary, description=common.describe(__doc__))
    p.add_argument("dataset", choices=DATASETS, help="the data set to download")
    common.add_data_dir(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from ddpmdp.data import cifar10
    from ddpmdp.data.images import data_root

    root = data_root(args.data_dir)
    require(root is not None, "set DDPMDP_DATA or pass --data-dir: the folder that will hold the data set")
    assert root is not None
    folder = root / cifar10.FOLDER
    present = [f for f in cifar10.FILE_MD5 if (folder / f).is_file()]
    if len(present) == len(cifar10.FILE_MD5):
        common.print_summary("download_done", dataset=args.dataset, path=str(folder), downloaded=False,
                             note="already present; nothing was downloaded")
        return 0
    require(not present, f"{folder} holds part of CIFAR-10 ({', '.join(present)}); move it away to download the "
            "whole set, or add the missing files by hand")
    print(f"downloading {cifar10.URL} into {root} (MD5 {cifar10.ARCHIVE_MD5})", flush=True)
    got = cifar10.download_cifar10(root)
    common.print_summary("download_done", dataset=args.dataset, path=str(got), downloaded=True,
                         files=sorted(p.name for p in got.iterdir() if p.is_file()))
    return 0
