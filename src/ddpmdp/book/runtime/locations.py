"""Where the repository's book and generated files live, independent of the working directory.

papermill runs a notebook with its own folder as the working directory, nbval runs it where
the stored copy lies, and the book build runs at the repository root. All three resolve
output paths through :func:`repo_root`, so a table written by a notebook always lands in
``book/_generated/`` (``toolchain.md`` §4.1).
"""
from __future__ import annotations

import os
from pathlib import Path

from ddpmdp.errors import DdpmdpError

__all__ = ["repo_root", "find_repo_root", "MARKERS"]

MARKERS = ("_toc.yml", "pyproject.toml")
"""Files that together mark the repository root."""


def repo_root(start: str | os.PathLike | None = None) -> Path:
    """The nearest folder at or above ``start`` (default: the working directory) that holds
    both ``_toc.yml`` and ``pyproject.toml``.

    ``$DDPMDP_REPO`` overrides the search (useful when a notebook runs from a temporary
    folder outside the checkout).

    Raises:
        DdpmdpError: when no such folder exists above ``start``.
    """
    env = os.environ.get("DDPMDP_REPO")
    if env:
        root = Path(env).expanduser().resolve()
        if not all((root / m).is_file() for m in MARKERS):
            raise DdpmdpError(f"$DDPMDP_REPO = {env!r} does not hold {' and '.join(MARKERS)}")
        return root
    here = Path(start if start is not None else Path.cwd()).expanduser().resolve()
    for folder in (here, *here.parents):
        if all((folder / m).is_file() for m in MARKERS):
            return folder
    raise DdpmdpError(f"no folder at or above {here} holds {' and '.join(MARKERS)}: run from inside the ddpmdp "
                      "repository, or set DDPMDP_REPO")


def find_repo_root(start: str | os.PathLike | None = None) -> Path | None:
    """:func:`repo_root`, or None outside a checkout (a notebook downloaded from the book)."""
    try:
        return repo_root(start)
    except DdpmdpError:
        return None

