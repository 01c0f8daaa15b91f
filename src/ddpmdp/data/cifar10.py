"""CIFAR-10 in the official "python version" layout (``cifar-10-batches-py/``).

Data spec ``cifar10:train`` or ``cifar10:test`` (the split is **required**: the DP table
is built on the training set and bits/dim are reported on the test set, so a silent
default would invite mixing them up). Files are looked up under
``data_root(data_dir)/cifar-10-batches-py/`` (``$DDPMDP_DATA`` or ``--data-dir``).

* Each batch is a Python-2 pickle of a dict with ``data`` (uint8 (10000, 3072): 1024 red,
  then 1024 green, then 1024 blue values, each plane row-major 32×32) and ``labels``
  (10000 ints in 0..9). Pickles are read by a restricted unpickler that admits only
  NumPy's array reconstruction (``_reconstruct``, ``ndarray``, ``dtype``) and latin-1
  ``_codecs.encode`` (bytes in Python-3-written protocol-2 pickles); any other global
  is refused.
* Images are returned as uint8 (N, 3, 32, 32) in the official order (train: batches 1..5).
* Each file's MD5 is compared with the official one. A file that differs still loads,
  with a :func:`warnings.warn` and a note in :attr:`ImageSet.notes`: bits/dim on it are
  not comparable to published numbers. A partial training set (e.g. only
  ``data_batch_1``) loads the batches that are present, with a note saying which.
* When the files for the requested split are all missing, loading fails at once, without any
  network access, with a message that says where to put the files and how to download them
  explicitly: ``ddpmdp download cifar10 [--data-dir DIR]`` (:func:`download_cifar10`: the
  official archive from :data:`URL`, MD5 :data:`ARCHIVE_MD5`, a mismatch is an error).
  ``load_cifar10(..., download=True)`` opts in to that download from Python.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import tarfile
import urllib.request
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ddpmdp.data.images import ImageSet, data_root
from ddpmdp.fileio import file_md5
from ddpmdp.errors import DdpmdpError, require

__all__ = ["URL", "ARCHIVE_MD5", "FILE_MD5", "FOLDER", "load_cifar10", "download_cifar10", "read_batch",
           "missing_message"]

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"
FOLDER = "cifar-10-batches-py"
FILE_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
    "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
}
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
SPLIT_FILES = {"train": TRAIN_FILES, "test": ("test_batch",)}

# What a CIFAR-10 batch pickle may reference (numpy ≥ 2 moved numpy.core to numpy._core).
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


def _reconstruct() -> Any:
    try:
        from numpy._core.multiarray import _reconstruct as fn  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct as fn  # type: ignore[no-redef]
    return fn


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    if encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"codec {encoding!r} is not allowed in a CIFAR-10 batch")
    return text.encode("latin1")


class _RestrictedUnpickler(pickle.Unpickler):
    """Admits only the NumPy globals needed to rebuild a uint8 array (and ``_codecs.encode``
    with latin-1, which Python 3 uses for bytes at protocol 2); everything else is refused."""

    def find_class(self, module: str, name: str) -> Any:
        if name == "_reconstruct" and module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            return _reconstruct()
        if (module, name) == ("_codecs", "encode"):  # how Python 3 writes bytes at protocol 2
            return _latin1_encode
        if (module, name) in _ALLOWED_GLOBALS:
            return _ALLOWED_GLOBALS[(module, name)]
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR-10 batch")


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR-10 batch pickle → (images uint8 (N, 3, 32, 32), labels int64 (N,)).

    Raises :class:`DdpmdpError` when the pickle is unreadable, references anything but
    NumPy array reconstruction, or holds data of the wrong shape or dtype.
    """
    try:
        with open(path, "rb") as f:
            obj = _RestrictedUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise DdpmdpError(f"{path} is not a readable CIFAR-10 batch ({exc}); replace it with the official file") from None
    require(isinstance(obj, dict), f"{path}: a CIFAR-10 batch must be a pickled dict, got {type(obj).__name__}")
    d = {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}
    require("data" in d and "labels" in d, f"{path}: a CIFAR-10 batch needs 'data' and 'labels' entries, "
            f"it has {sorted(map(str, d))}")
    data = d["data"]
    require(isinstance(data, np.ndarray) and data.dtype == np.uint8,
            f"{path}: 'data' must be a uint8 array, got {getattr(data, 'dtype', type(data).__name__)}")
    require(data.ndim == 2 and data.shape[1] == 3 * 32 * 32,
            f"{path}: 'data' must have shape (N, 3072) (32×32 RGB rows), got {data.shape}; is this CIFAR-10?")
    labels = np.asarray(d["labels"], dtype=np.int64)
    require(labels.shape == (data.shape[0],), f"{path}: {labels.size} labels for {data.shape[0]} images")
    return data.reshape(-1, 3, 32, 32), labels


def download_cifar10(root: Path, *, url: str | None = None, md5: str | None = None,
                     urlopen: Callable[..., Any] | None = None) -> Path:
    """Download and extract the official archive into ``root`` → ``root/cifar-10-batches-py``.

    The archive is streamed to ``root/cifar-10-python.tar.gz.part``, its MD5 compared with
    ``md5`` (mismatch → :class:`DdpmdpError`, partial file deleted), then only regular
    files under ``cifar-10-batches-py/`` are extracted. ``url`` and ``md5`` default to
    :data:`URL` and :data:`ARCHIVE_MD5`; ``urlopen`` defaults to
    :func:`urllib.request.urlopen` (tests pass a fake).
    """
    url = url or URL
    md5 = md5 or ARCHIVE_MD5
    opener = urlopen or urllib.request.urlopen
    root.mkdir(parents=True, exist_ok=True)
    part = root / "cifar-10-python.tar.gz.part"
    h = hashlib.md5()
    try:
        with opener(url, timeout=60) as resp, open(part, "wb") as out:
            for chunk in iter(lambda: resp.read(1 << 20), b""):
                h.update(chunk)
                out.write(chunk)
    except OSError as exc:  # URLError, timeouts, no network
        part.unlink(missing_ok=True)
        raise DdpmdpError(f"CIFAR-10 is not under {root} and downloading {url} failed ({exc}); put the "
                          f"official {FOLDER}/ folder there or set DDPMDP_DATA / --data-dir to where it is") from None
    if h.hexdigest() != md5:
        part.unlink(missing_ok=True)
        raise DdpmdpError(f"the downloaded CIFAR-10 archive has MD5 {h.hexdigest()}, expected {md5}: the download "
                          f"is corrupt or {url} served another file; retry, or download it manually into {root}")
    archive = root / "cifar-10-python.tar.gz"
    part.replace(archive)
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar.getmembers():
            name = Path(member.name)
            if not member.isfile() or name.is_absolute() or ".." in name.parts or name.parts[0] != FOLDER:
                continue
            target = root / name
            target.parent.mkdir(parents=True, exist_ok=True)
            src = tar.extractfile(member)
            assert src is not None
            with src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
    archive.unlink()
    return root / FOLDER


def missing_message(root: Path, what: str) -> str:
    """Where CIFAR-10 files go and how to download them explicitly (no download is attempted)."""
    return (f"{what} missing from {root / FOLDER}: put the official {FOLDER}/ folder under {root}, or download "
            f"it (checksum-verified, from {URL}) with: ddpmdp download cifar10 --data-dir {root}")


def load_cifar10(split: str, data_dir: str | os.PathLike | None = None, *, download: bool = False,
                 urlopen: Callable[..., Any] | None = None) -> ImageSet:
    """CIFAR-10 ``train`` (50,000 images, batches 1..5 in order) or ``test`` (10,000) as an
    :class:`ImageSet` of uint8 (N, 3, 32, 32); see the module docstring for checks and notes.
    Missing files are an error naming ``ddpmdp download cifar10``, unless ``download=True``."""
    require(split in SPLIT_FILES, f"unknown CIFAR-10 split {split!r}: use cifar10:train or cifar10:test")
    root = data_root(data_dir)
    require(root is not None, "CIFAR-10 needs a data folder: set DDPMDP_DATA or pass --data-dir (a folder that "
            f"holds, or will receive, {FOLDER}/)")
    assert root is not None
    folder = root / FOLDER
    wanted = SPLIT_FILES[split]
    present = [f for f in wanted if (folder / f).is_file()]
    if not present:
        require(download, missing_message(root, f"the CIFAR-10 {split} files are"))
        download_cifar10(root, urlopen=urlopen)
        present = [f for f in wanted if (folder / f).is_file()]
        require(bool(present), f"the CIFAR-10 archive did not contain {wanted[0]}")
    notes: list[str] = []
    images, labels, differing = [], [], []
    for name in present:
        x, y = read_batch(folder / name)
        images.append(x)
        labels.append(y)
        if file_md5(folder / name) != FILE_MD5[name]:
            differing.append(name)
    if differing:
        msg = (f"CIFAR-10 {', '.join(differing)} under {folder} {'differs' if len(differing) == 1 else 'differ'} "
               "from the official files (MD5 mismatch): "
               "bits/dim measured on them are not comparable to published numbers")
        warnings.warn(msg, stacklevel=2)
        notes.append(msg)
    if len(present) < len(wanted):
        missing = [f for f in wanted if f not in present]
        n = sum(len(x) for x in images)
        msg = (f"partial CIFAR-10 {split} set: loaded {', '.join(present)} ({n} images); "
               f"missing {', '.join(missing)}")
        warnings.warn(msg, stacklevel=2)
        notes.append(msg)
    return ImageSet(np.concatenate(images), f"cifar10:{split}", split, notes, np.concatenate(labels))


def cifar10_spec(argument: str, data_dir: Path | None) -> ImageSet:
    require(bool(argument), "the cifar10 data spec needs a split: cifar10:train or cifar10:test")
    return load_cifar10(argument, data_dir)


LOSSLESS_FILES = {"train": "cifar10_train_first4000_lossless.npz", "test": "cifar10_test_first100_lossless.npz"}
"""The lossless CIFAR-10 pair under the data folder: the first 4,000 training images and the first
100 test images with the exact official pixels. Each holds ``data`` uint8 (N, 3072) in the official
row layout, ``labels`` int64 (N,) and ``indices`` int64 (N,) (positions in the official split)."""
LOSSLESS_SHA256 = {"train": "db020c047e59ea4c2cf2781b42cb03a10cb6d9768e680aad9b6b31beb0c985f3",
                   "test": "664f3a9eafd7f834b707da6b4329570dc3cda899a63b8c9233cb2e859ae6e228"}
LOSSLESS_COUNTS = {"train": 4000, "test": 100}
LOSSLESS_FILE = LOSSLESS_FILES["test"]


def load_cifar10_lossless(split: str, data_dir: str | Path | None = None) -> ImageSet:
    """The lossless CIFAR-10 ``train`` (4,000) or ``test`` (100) images (:data:`LOSSLESS_FILES`
    under the data folder) as uint8 (N, 3, 32, 32), identity ``cifar10-lossless:SPLIT``. They are
    local files, never downloaded. Rows are the first N images of the official split, so
    ``cifar10:SPLIT`` restricted to its first N images holds the same images decoded from a JPEG
    copy (compare the two to measure what JPEG changes). A file whose sha256 differs from the
    project's shared copy still loads, with a note that travels into table metadata."""
    require(split in LOSSLESS_FILES, f"unknown lossless CIFAR-10 split {split!r}: use cifar10-lossless:train "
            "(4,000 images) or cifar10-lossless:test (100 images)")
    name = LOSSLESS_FILES[split]
    root = data_root(data_dir)
    require(root is not None, f"set $DDPMDP_DATA (or the data_dir parameter / --data-dir) to the folder that holds "
            f"{name}")
    assert root is not None
    path = root / name
    require(path.is_file(), f"{path} does not exist: the lossless CIFAR-10 {split} images are a local file "
            "(not downloaded); point $DDPMDP_DATA at the folder that holds it")
    with np.load(path, allow_pickle=False) as z:
        require("data" in z.files, f"{path}: expected a 'data' array (N, 3072) in the CIFAR-10 row layout")
        data = np.asarray(z["data"])
        labels = np.asarray(z["labels"], dtype=np.int64) if "labels" in z.files else None
    require(data.dtype == np.uint8 and data.ndim == 2 and data.shape[1] == 3072,
            f"{path}: 'data' must be uint8 (N, 3072), got {data.dtype} {data.shape}")
    notes = []
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    if sha != LOSSLESS_SHA256[split]:
        notes.append(f"{path.name} differs from the project's shared file (sha256 {sha[:16]}…)")
    return ImageSet(data.reshape(-1, 3, 32, 32), f"cifar10-lossless:{split}", split, notes, labels)


def load_cifar10_lossless100(data_dir: str | Path | None = None) -> ImageSet:
    """The 100 lossless CIFAR-10 test images: ``load_cifar10_lossless("test", data_dir)``."""
    return load_cifar10_lossless("test", data_dir)


def cifar10_lossless_spec(argument: str, data_dir: Path | None) -> ImageSet:
    """``cifar10-lossless:train`` (4,000 images) or ``cifar10-lossless:test`` (100 images)."""
    require(argument in LOSSLESS_FILES, "the cifar10-lossless data spec needs a split: cifar10-lossless:train "
            "(the first 4,000 training images) or cifar10-lossless:test (the first 100 test images)")
    return load_cifar10_lossless(argument, data_dir)


def cifar10_lossless100_spec(argument: str, data_dir: Path | None) -> ImageSet:
    """The old name of ``cifar10-lossless:test``, kept as an alias."""
    require(argument in ("", "test"), "cifar10-lossless100 is the old name of cifar10-lossless:test (the 100 "
            "lossless test images); use cifar10-lossless:test, or cifar10-lossless:train for the 4,000 train images")
    return load_cifar10_lossless("test", data_dir)
