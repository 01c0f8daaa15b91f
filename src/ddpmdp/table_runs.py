"""The one driver of long table runs: batches, progress files, resume, sharding, atomic save.

A table run (:class:`TableRun`) is a sequence of numbered batches whose sums
(:class:`~ddpmdp.table.TableStats`) add up to the table: batches of images for the ELBO table
(:func:`ddpmdp.table_estimation.run_table`), batches of seeds for the trajectory table
(:func:`ddpmdp.trajectory.run_trajectory_table`). Noise is keyed by the global image or seed
index, so a batch's sums do not depend on how the run is cut into batches or processes.

:func:`drive` runs one: batch b goes to rank b mod W (W = world size under torchrun, else 1).
Each rank adds its batch sums in batch order and, every ``save_every`` batches, writes its sums
and the number of batches done to ``OUT.progress[.rankRofW].npz`` atomically (temporary file,
fsync, rename; the previous checkpoint is kept as ``….prev``). A resumed run loads the sums and
continues with the next batch, so its table is bitwise identical to an uninterrupted run.
Resuming with different arguments (:attr:`TableRun.config`) is refused, naming the argument.
At the end the ranks' sums are reduced (SUM) and rank 0 alone writes the table; progress files
are then removed. A W-process table equals the single-process table to float64 rounding.
"""
from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ddpmdp.errors import DdpmdpError, require
from ddpmdp.fileio import atomic_savez
from ddpmdp.progress import progress_bar
from ddpmdp.table import ElboTable, TableStats

__all__ = ["TableRun", "drive", "progress_path", "check_output_folder"]


@dataclass(frozen=True)
class TableRun:
    """What one table run computes.

    ``desc``: the progress bar's label; ``grid``: int64 (G,) table nodes; ``n_batches``: batches
    in the whole run (all ranks); ``batch_size``: items per batch (the bar's unit scale);
    ``passes_per_batch``: forward passes per batch (the bar counts passes); ``config``: the
    arguments a resumed run must share (JSON values); ``zeros(device)``: empty sums;
    ``batches(numbers, device, on_pass)``: yields (batch number, its sums) for the given batch
    numbers in order, calling ``on_pass()`` after each forward pass; ``finish(stats, extra)``:
    the table from the reduced sums, ``extra`` holding ``wall_seconds``, ``world_size`` and
    ``batch_size`` for its metadata."""

    desc: str
    grid: np.ndarray
    n_batches: int
    batch_size: int
    passes_per_batch: int
    config: dict[str, Any]
    zeros: Callable[[str], TableStats]
    batches: Callable[[Sequence[int], str, Callable[[], None]], Iterator[tuple[int, TableStats]]]
    finish: Callable[[TableStats, dict[str, Any]], ElboTable]


def check_output_folder(out: Path | None) -> None:
    """Refuse, before any work, an output whose folder is missing or not writable."""
    if out is None:
        return
    folder = out.parent if str(out.parent) else Path(".")
    require(folder.is_dir(), f"output folder {str(folder)!r} does not exist")
    require(os.access(folder, os.W_OK), f"output folder {str(folder)!r} is not writable; nothing was computed")


def _dist():
    """(rank, world size, process group initialised here?) from torchrun's environment."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, False
    import torch.distributed as dist

    created = False
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() and os.environ.get("DDPMDP_BACKEND") != "gloo" else "gloo"
        dist.init_process_group(backend=backend)
        created = True
    return dist.get_rank(), dist.get_world_size(), created


def progress_path(out: Path, rank: int, world: int) -> Path:
    """Where rank ``rank`` of ``world`` keeps its progress for output ``out``."""
    suffix = ".progress.npz" if world == 1 else f".progress.rank{rank}of{world}.npz"
    return out.with_name(out.name + suffix)


def _save_progress(path: Path, stats: TableStats, done: int, config: dict) -> None:
    arrays: dict[str, np.ndarray] = stats.to_arrays()
    arrays["batches_done"] = np.asarray(done, dtype=np.int64)
    arrays["config"] = np.array(json.dumps(config))
    if path.exists():
        # keep the last checkpoint as ``.prev`` by a hard link, so that ``path`` itself is never absent: a
        # kill -9 at any point leaves the old or the new checkpoint under ``path`` (rename where links fail)
        prev = path.with_name(path.name + ".prev")
        prev.unlink(missing_ok=True)
        try:
            os.link(path, prev)
        except OSError:
            os.replace(path, prev)
    atomic_savez(path, arrays)


def _read_progress(path: Path, grid: np.ndarray, device) -> tuple[TableStats, int, dict]:
    with np.load(path, allow_pickle=False) as z:
        config = json.loads(str(z["config"]))
        stats = TableStats.from_arrays(z, grid, device)
        return stats, int(z["batches_done"]), config


def _load_progress(path: Path, grid: np.ndarray, config: dict, device) -> tuple[TableStats, int]:
    """Sums and batches done from the newest readable checkpoint; refuses differing arguments."""
    candidates = [p for p in (path, path.with_name(path.name + ".prev")) if p.exists()]
    for i, p in enumerate(candidates):
        try:
            stats, done, saved = _read_progress(p, grid, device)
        except Exception as exc:  # noqa: BLE001 - a damaged file: try the previous checkpoint
            if i + 1 < len(candidates):
                warnings.warn(f"progress file {p} is unreadable ({exc}); resuming from {candidates[i + 1]}")
                continue
            raise DdpmdpError(f"progress file {p} is unreadable ({type(exc).__name__}) and no earlier checkpoint "
                              "exists; delete it to start over") from None
        diff = [k for k in config if saved.get(k) != config[k]]
        if diff:
            k = diff[0]
            raise DdpmdpError(f"cannot resume {p.name}: argument {k!r} was {saved.get(k)!r} and is now {config[k]!r}; "
                              "use the original arguments or delete the progress file")
        return stats, done
    raise AssertionError("no candidates")  # pragma: no cover


def _rank_device(device: str) -> tuple[int, int, bool, str]:
    """(rank, world size, process group created here?, this rank's device): under torchrun a bare
    ``cuda`` becomes ``cuda:LOCAL_RANK``."""
    rank, world, created = _dist()
    if world > 1 and device.startswith("cuda") and ":" not in device:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', rank)) % max(1, torch.cuda.device_count())}"
    return rank, world, created, device


def drive(run: TableRun, *, out: Path | None, device: str = "cpu", resume: bool = False, save_every: int = 10,
          float32: bool = False, progress: bool = True) -> ElboTable:
    """Run ``run``; with ``out``, write the table (rank 0) with atomic progress files and resume.
    ``out=None`` keeps everything in memory (no progress files). Under torchrun a bare ``cuda``
    device becomes ``cuda:LOCAL_RANK``."""
    require(save_every >= 1, f"--save-every must be >= 1, got {save_every}")
    check_output_folder(out)
    rank, world, created, device = _rank_device(device)
    ppath = progress_path(out, rank, world) if out is not None else None
    if ppath is not None and (ppath.exists() or ppath.with_name(ppath.name + ".prev").exists()):
        require(resume, f"{ppath.name} holds a partial run: pass --resume to continue it, or delete it to start over")
        stats, done = _load_progress(ppath, run.grid, run.config, device)
    else:
        stats, done = run.zeros(device), 0
    todo = [b for b in range(run.n_batches) if b % world == rank and b >= done]
    bar = progress_bar(len(todo) * run.passes_per_batch, run.batch_size, progress and rank == 0, run.desc)
    t0 = time.time()
    since_save = 0
    try:
        for number, batch_stats in run.batches(todo, device, bar.update):
            stats.add_(batch_stats)
            done, since_save = number + 1, since_save + 1
            if ppath is not None and since_save >= save_every:
                _save_progress(ppath, stats, done, run.config)
                since_save = 0
    except BaseException:
        if ppath is not None and since_save:
            _save_progress(ppath, stats, done, run.config)  # keep what was computed
        raise
    finally:
        bar.close()
    if world > 1:
        import torch.distributed as dist

        for v in stats.tensors().values():
            dist.all_reduce(v)
        n = torch.tensor([stats.n], dtype=torch.int64, device=stats.s1.device)
        dist.all_reduce(n)
        stats.n = int(n.item())
    table = run.finish(stats, {"wall_seconds": round(time.time() - t0, 3), "world_size": world,
                               "batch_size": int(run.batch_size)})
    if rank == 0 and out is not None:
        table.save(out, float32=float32)
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
    if ppath is not None:
        # the checkpoints, and temporary files of checkpoint writes cut short by a kill -9
        stale = ppath.parent.glob(f".{ppath.name}.*.tmp")
        for p in (ppath, ppath.with_name(ppath.name + ".prev"), *stale):
            p.unlink(missing_ok=True)
    if created:
        import torch.distributed as dist

        dist.destroy_process_group()
    return table
