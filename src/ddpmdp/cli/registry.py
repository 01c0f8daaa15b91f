"""The ``ddpmdp`` commands, listed once.

Each command lives in its own module under ``ddpmdp.cli`` with a module-level
``add_parser(subparsers)`` that adds its subparser and sets ``func`` (the run function). Modules
are imported lazily (:func:`load`): ``ddpmdp --help`` imports none of them, ``ddpmdp CMD …``
imports only CMD's module, and a command module imports heavy things (torch, the models, the
book) only inside its run function.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

from ddpmdp.errors import require

__all__ = ["Command", "COMMANDS", "NETWORK_COMMANDS", "command", "load"]


@dataclass(frozen=True)
class Command:
    """A command: its name, its module and the one-line summary ``ddpmdp --help`` shows.
    ``own_summary``: the command prints its JSON summary line itself (else ``main`` prints one)."""

    name: str
    module: str
    summary: str
    own_summary: bool = True


COMMANDS: tuple[Command, ...] = (
    Command("table", "ddpmdp.cli.table", "estimate the L(t, s) table (nats per image), or with --objective "
            "trajectory the C(t, s) table of DDIM steps from a teacher (RMS distance per dimension)"),
    Command("solve", "ddpmdp.cli.solve", "optimal paths for every budget from a table (ELBO: with each edge's "
            "variance rule and σ²; trajectory: for DDIM eta = 0), into a solved-schedule file (--out) used by "
            "evaluate, sample and export"),
    Command("rescore", "ddpmdp.cli.rescore", "derive another variance rule's table from a table (no network)"),
    Command("evaluate", "ddpmdp.cli.evaluate", "bits/dim ± SE of paths (from a held-out table, or directly), "
            "the distance of their DDIM samples from a teacher's (--metric teacher), or KID ± SE of their samples "
            "(--metric kid); NFE beside every number"),
    Command("sample", "ddpmdp.cli.sample", "sample along a path, write a PNG grid"),
    Command("export", "ddpmdp.cli.export", "a solved path as diffusers timesteps, improved-diffusion "
            "use_timesteps or k-diffusion sigmas (a trajectory schedule: for the deterministic sampler)"),
    Command("models", "ddpmdp.cli.models", "the embedded models and their held-out full-chain bits/dim"),
    Command("model-info", "ddpmdp.cli.model_info", "parameter count, key count, fingerprint, schedule of a model spec"),
    Command("download", "ddpmdp.cli.download", "download a data set (checksum-verified) into the data folder"),
    Command("train", "ddpmdp.cli.train", "train a small DDPM (L_simple, L_hybrid or L_vlb) on CPU or GPU"),
    Command("reproduce", "ddpmdp.cli.reproduce", "run the book's notebooks with papermill and build the book",
            own_summary=False),
)

NETWORK_COMMANDS = frozenset({"table", "evaluate", "sample", "train"})
"""Commands that run networks on the CPU (``main`` flushes float32 denormals for them)."""


def command(name: str) -> Command:
    """The registry entry of ``name``."""
    found = [c for c in COMMANDS if c.name == name]
    require(bool(found), f"unknown command {name!r}: use one of {', '.join(c.name for c in COMMANDS)}")
    return found[0]


def load(name: str) -> ModuleType:
    """Import the module of command ``name`` (it defines ``add_parser``)."""
    return importlib.import_module(command(name).module)
