"""Files: atomic writes and checksums.

Every file that a long job writes goes through :func:`atomic_write`: the content is written to
a temporary file in the same folder, fsynced, renamed over the target and the folder is fsynced,
so a reader (or a resumed run after ``kill -9``) never sees a partial file.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ddpmdp.errors import DdpmdpError

__all__ = ["atomic_write", "atomic_savez", "atomic_write_text", "file_digests", "file_sha256", "file_md5"]


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object]) -> None:
    """``write(tmp_path)``, fsync, rename over ``path``, fsync the folder."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise DdpmdpError(f"output folder {str(folder)!r} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except PermissionError:
        raise DdpmdpError(f"cannot write to {str(folder)!r} (permission denied)") from None
    os.close(fd)
    try:
        write(Path(tmp))
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(folder)


def atomic_savez(path: str | os.PathLike, arrays: dict[str, Any]) -> None:
    """``np.savez`` through :func:`atomic_write`."""
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    atomic_write(path, write)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """UTF-8 ``text`` through :func:`atomic_write`."""
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def file_digests(path: str | os.PathLike) -> tuple[str, str]:
    """(sha256, md5) hex digests of a file's bytes, read once in 1 MiB chunks."""
    sha, md5 = hashlib.sha256(), hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            sha.update(chunk)
            md5.update(chunk)
    return sha.hexdigest(), md5.hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 hex digest of a file."""
    return file_digests(path)[0]


def file_md5(path: str | os.PathLike) -> str:
    """md5 hex digest of a file (the checksum the official CIFAR-10 archive publishes)."""
    return file_digests(path)[1]
