"""ImageNet 64×64 (both "downsampled ImageNet" variants) and the Tiny-ImageNet stand-in.

Data specs:

* ``imagenet64:PATH`` — PATH is looked up as given, then under the data root
  (``$DDPMDP_DATA`` or ``--data-dir``). It may be

  - an ``.npz`` file of Chrabaszcz et al. (2017) "Imagenet64x64" (``val_data.npz``,
    ``train_data_batch_N.npz``): ``data`` uint8 (N, 12288), each row 4096 red, then
    4096 green, then 4096 blue values, each plane row-major 64×64; ``labels`` 1..1000;
  - a folder holding such ``.npz`` files (``val_data.npz`` alone, or the
    ``train_data_batch_N.npz`` files, loaded in numeric order; pointing at one file
    is lighter on memory);
  - a folder of 64×64 PNGs, e.g. van den Oord et al. (2016)'s ``valid_64x64/``
    (read recursively in sorted path order, as improved-diffusion's ``load_data`` does;
    needs Pillow, which matplotlib already requires).

  The variant is recorded in the identity (``imagenet64:npz:…`` or ``imagenet64:png:…``)
  and in the notes. improved-diffusion's ImageNet 64 checkpoints were trained and
  evaluated on the PNG variant; the npz variant loads with a warning that bits/dim
  will not match published numbers (``checkpoints.md`` §5.2).
* ``tiny-imagenet64[:train|test]`` — ``DATA_ROOT/tiny-imagenet64/val_data.npz``, the
  Tiny-ImageNet-200 validation set (10,000 real 64×64 ImageNet photos, 200 classes) in
  the npz layout above. Fixed split in file order: **train = rows 0..7999, test = rows
  8000..9999** (the file's order is class-shuffled; both parts contain all 200 classes).
  Without a split all 10,000 images are returned (split ``all``). It is **not**
  ImageNet 64: bits/dim on it are not comparable to published numbers (noted, no warning).

All loaders return uint8 (N, 3, 64, 64); wrong shapes raise :class:`DdpmdpError`.
"""
from __future__ import annotations

import hashlib
import re
import warnings
from pathlib import Path

import numpy as np

from ddpmdp.data.images import ImageSet, data_root
from ddpmdp.errors import DdpmdpError, require

__all__ = ["load_imagenet64", "load_tiny_imagenet64", "read_npz_batch", "read_png_folder",
           "TINY_SHA256", "TINY_SPLIT"]

ROW = 3 * 64 * 64
TINY_FILE = Path("tiny-imagenet64") / "val_data.npz"
TINY_SHA256 = "2d71352b894221fe0403dde686a14d4b55ebb52b7b2d8a2ee3f37a7d290e4fa3"
"""sha256 of the project's shared ``tiny-imagenet64/val_data.npz`` (``shared/data/README.md``)."""
TINY_SPLIT = {"train": slice(0, 8000), "test": slice(8000, 10000), "all": slice(0, 10000)}

_NPZ_NOTE = ("ImageNet 64 npz variant (Chrabaszcz et al. 2017, 'Imagenet64x64'): improved-diffusion's checkpoints "
             "were trained and evaluated on the van den Oord et al. (2016) PNG variant, so bits/dim on it are not "
             "comparable to published ImageNet 64 numbers")
_PNG_NOTE = ("ImageNet 64 PNG-folder variant (the van den Oord et al. 2016 layout); ddpmdp cannot verify where the "
             "PNGs came from")
_TINY_NOTE = ("Tiny-ImageNet-200 validation images, a 64×64 stand-in: not downsampled ImageNet 64; bits/dim on it "
              "are not comparable to published ImageNet 64 numbers")


def read_npz_batch(path: Path) -> np.ndarray:
    """One downsampled-ImageNet ``.npz`` → uint8 (N, 3, 64, 64) (planar R, G, B rows)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            require("data" in z.files, f"{path}: an ImageNet 64 npz must hold a 'data' array, it holds {sorted(z.files)}")
            data = z["data"]
    except (OSError, ValueError) as exc:
        if isinstance(exc, DdpmdpError):
            raise
        raise DdpmdpError(f"{path} is not a readable .npz file ({exc})") from None
    require(data.dtype == np.uint8, f"{path}: 'data' must be uint8, got {data.dtype}")
    if data.ndim == 2 and data.shape[1] == 3 * 32 * 32:
        raise DdpmdpError(f"{path}: rows of 3072 values are 32×32 images (Imagenet32); imagenet64 needs 12288 "
                          "values per row (3×64×64)")
    require(data.ndim == 2 and data.shape[1] == ROW and data.shape[0] >= 1,
            f"{path}: 'data' must have shape (N, 12288) (64×64 RGB rows, planar R, G, B), got {data.shape}")
    return data.reshape(-1, 3, 64, 64)


def read_png_folder(folder: Path) -> tuple[np.ndarray, list[Path]]:
    """All ``*.png`` under ``folder`` (recursive, sorted paths) → uint8 (N, 3, 64, 64) and the file list.

    Images are converted to RGB (grey PNGs are replicated into 3 channels); any image that
    is not 64×64 raises :class:`DdpmdpError` naming the file.
    """
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow comes with matplotlib
        raise DdpmdpError("reading a folder of PNGs needs Pillow (pip install pillow); or use the npz variant") from None
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() == ".png" and p.is_file())
    require(bool(files), f"{folder} holds no .png files and no .npz files; it is not an ImageNet 64 folder")
    out = np.empty((len(files), 3, 64, 64), dtype=np.uint8)
    for i, f in enumerate(files):
        try:
            with Image.open(f) as im:
                rgb = im.convert("RGB")
        except OSError as exc:
            raise DdpmdpError(f"{f} is not a readable PNG ({exc})") from None
        require(rgb.size == (64, 64), f"{f} is {rgb.size[0]}×{rgb.size[1]}, not 64×64; imagenet64 needs 64×64 images")
        out[i] = np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1)
    return out, files


def _resolve(path: str, data_dir: Path | None) -> Path:
    p = Path(path).expanduser()
    if p.exists() or p.is_absolute():
        return p
    root = data_root(data_dir)
    if root is not None and (root / p).exists():
        return root / p
    return p


def _batch_number(p: Path) -> int:
    m = re.search(r"(\d+)$", p.stem)
    return int(m.group(1)) if m else 0


def load_imagenet64(path: str | Path, data_dir: str | Path | None = None) -> ImageSet:
    """ImageNet 64 from an npz file, a folder of npz batches or a folder of PNGs (module docstring)."""
    p = _resolve(str(path), Path(data_dir) if data_dir is not None else None)
    require(p.exists(), f"ImageNet 64 path {str(path)!r} does not exist (also looked under the data root); pass "
            "val_data.npz, a folder of train_data_batch_N.npz, or a folder of 64×64 PNGs")
    if p.is_file():
        require(p.suffix == ".npz", f"{p}: ImageNet 64 files must be .npz (the pickled non-npz download is not "
                "supported; use Imagenet64_val_npz / Imagenet64_train_npz)")
        files = [p]
    else:
        files = sorted(p.glob("*.npz"), key=lambda f: (not f.stem.startswith("val"), _batch_number(f), f.name))
        if files:
            kinds = {f.stem.startswith("val") for f in files}
            require(len(kinds) == 1, f"{p} holds both validation and training npz files; point at one file or "
                    "separate them")
    if files:
        images = np.concatenate([read_npz_batch(f) for f in files])
        split = "val" if files[0].stem.startswith("val") else "train" if files[0].stem.startswith("train") \
            else "unspecified"
        warnings.warn(_NPZ_NOTE, stacklevel=2)
        name = files[0].name if len(files) == 1 else f"{p.name}/*.npz"
        return ImageSet(images, f"imagenet64:npz:{name}", split, [_NPZ_NOTE] + (
            [f"loaded {len(files)} npz files: {', '.join(f.name for f in files)}"] if len(files) > 1 else []))
    images, _files = read_png_folder(p)
    split = "val" if "val" in p.name.lower() else "train" if "train" in p.name.lower() else "unspecified"
    return ImageSet(images, f"imagenet64:png:{p.name}", split, [_PNG_NOTE])


def load_tiny_imagenet64(split: str = "all", data_dir: str | Path | None = None) -> ImageSet:
    """Tiny-ImageNet-200 val as 64×64 images: ``train`` rows 0..7999, ``test`` rows 8000..9999, ``all``."""
    require(split in TINY_SPLIT, f"unknown tiny-imagenet64 split {split!r}: use train, test, or omit it for all")
    root = data_root(data_dir)
    require(root is not None, f"tiny-imagenet64 needs a data folder holding {TINY_FILE}: set DDPMDP_DATA or "
            "pass --data-dir")
    assert root is not None
    path = root / TINY_FILE
    require(path.is_file(), f"{path} does not exist; put the Tiny-ImageNet npz there or fix DDPMDP_DATA / --data-dir")
    images = read_npz_batch(path)
    require(len(images) == 10000, f"{path} holds {len(images)} images; the fixed tiny-imagenet64 split needs "
            "exactly 10,000")
    notes = [_TINY_NOTE, f"split {split}: rows {TINY_SPLIT[split].start}..{TINY_SPLIT[split].stop - 1} of {path.name}"]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    if h.hexdigest() != TINY_SHA256:
        notes.append(f"{path} differs from the project's shared file (sha256 {h.hexdigest()[:16]}…)")
    return ImageSet(np.ascontiguousarray(images[TINY_SPLIT[split]]), f"tiny-imagenet64:{split}", split, notes)


def imagenet64_spec(argument: str, data_dir: Path | None) -> ImageSet:
    require(bool(argument), "the imagenet64 data spec needs a path: imagenet64:PATH (val_data.npz, a folder of "
            "npz batches, or a folder of 64×64 PNGs)")
    return load_imagenet64(argument, data_dir)


def tiny_imagenet64_spec(argument: str, data_dir: Path | None) -> ImageSet:
    return load_tiny_imagenet64(argument or "all", data_dir)

