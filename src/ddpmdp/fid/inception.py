"""The Inception-v3 pool3 network of TensorFlow's FID, in plain PyTorch, and its extractor.

:class:`FIDInceptionV3` uses the parameter names of pytorch-fid's ported weights
``pt_inception-2015-12-05-6726825d.pth`` (:data:`INCEPTION_URL`); only with those weights are
numbers comparable to published FIDs. The weights are never shipped: :func:`inception_weights`
finds them in a folder and downloads them (sha256-checked) only when asked.
"""
from __future__ import annotations

import hashlib
import urllib.request
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ddpmdp.errors import DdpmdpError, require
from ddpmdp.fid.frechet import FID_LABEL, FeatureExtractor

__all__ = [
    "FIDInceptionV3",
    "InceptionExtractor",
    "inception_weights",
    "check_inception_state_dict",
    "inception_spec",
    "INCEPTION_URL",
    "INCEPTION_FILE",
    "INCEPTION_SHA256_PREFIX",
    "INCEPTION_PARAMETERS",
    "INCEPTION_STATE_SCALARS",
    "INCEPTION_STATE_KEYS",
    "INCEPTION_FINGERPRINT",
]


# ---- Inception-v3 pool3 (the FID network) ------------------------------------------------------

INCEPTION_URL = ("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
                 "pt_inception-2015-12-05-6726825d.pth")
"""pytorch-fid's port of TensorFlow's ``inception-2015-12-05`` graph (the FID network)."""
INCEPTION_FILE = "pt_inception-2015-12-05-6726825d.pth"
INCEPTION_SHA256_PREFIX = "6726825d"
"""torch.hub naming: the file name ends with the first hex digits of the file's sha256. The
full digest is not recorded here (unverified); :func:`inception_weights` checks the prefix."""
INCEPTION_PARAMETERS = 23_850_960
"""Learnable parameters of :class:`FIDInceptionV3`: torchvision's ``Inception3`` without the
auxiliary head (27,161,264 − 3,326,696 = 23,834,568 at 1000 classes) plus 8 × 2049 for the
1008-class ``fc`` of the TensorFlow graph. 21,785,568 of them precede ``fc`` (pool3)."""
INCEPTION_STATE_SCALARS = 23_885_392
"""Scalars in the state_dict (parameters plus BatchNorm running means and variances)."""
INCEPTION_STATE_KEYS = 472
"""state_dict entries of :class:`FIDInceptionV3`, excluding BatchNorm ``num_batches_tracked``
(the port may or may not contain those; they are ignored)."""
INCEPTION_FINGERPRINT = "954403df03f5a6d824cbccdc11f2b359003e906b126822a8a9a1afc4b6c8b849"
"""sha256 of the sorted ``key:shape`` lines (:func:`ddpmdp.models.nets.key_shape_fingerprint`), same keys."""


class _Conv(nn.Module):
    """Conv (no bias) → BatchNorm(eps = 1e-3) → ReLU; torchvision's ``BasicConv2d`` names."""

    def __init__(self, cin: int, cout: int, kernel: int | tuple[int, int], stride: int = 1,
                 padding: int | tuple[int, int] = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _tf_avg_pool(x: torch.Tensor) -> torch.Tensor:
    """3×3 stride-1 average pool that, like TensorFlow, ignores the zero padding."""
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class _MixedA(nn.Module):
    """Mixed_5b/5c/5d: 1×1 | 1×1→5×5 | 1×1→3×3→3×3 | avgpool→1×1; out 224 + pool_features."""

    def __init__(self, cin: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = _Conv(cin, 64, 1)
        self.branch5x5_1 = _Conv(cin, 48, 1)
        self.branch5x5_2 = _Conv(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = _Conv(cin, 64, 1)
        self.branch3x3dbl_2 = _Conv(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _Conv(96, 96, 3, padding=1)
        self.branch_pool = _Conv(cin, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1x1(x), self.branch5x5_2(self.branch5x5_1(x)),
                          self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                          self.branch_pool(_tf_avg_pool(x))], 1)


class _MixedB(nn.Module):
    """Mixed_6a (grid reduction 35 → 17): 3×3/2 | 1×1→3×3→3×3/2 | maxpool/2; out 480 + cin."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3 = _Conv(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = _Conv(cin, 64, 1)
        self.branch3x3dbl_2 = _Conv(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _Conv(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch3x3(x), self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                          F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class _MixedC(nn.Module):
    """Mixed_6b..6e: factorised 7×7 branches with c7 channels; out 768."""

    def __init__(self, cin: int, c7: int) -> None:
        super().__init__()
        self.branch1x1 = _Conv(cin, 192, 1)
        self.branch7x7_1 = _Conv(cin, c7, 1)
        self.branch7x7_2 = _Conv(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = _Conv(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = _Conv(cin, c7, 1)
        self.branch7x7dbl_2 = _Conv(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = _Conv(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = _Conv(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = _Conv(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = _Conv(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            d = layer(d)
        return torch.cat([self.branch1x1(x), b7, d, self.branch_pool(_tf_avg_pool(x))], 1)


class _MixedD(nn.Module):
    """Mixed_7a (grid reduction 17 → 8): 1×1→3×3/2 | 1×1→1×7→7×1→3×3/2 | maxpool/2; out 512 + cin."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3_1 = _Conv(cin, 192, 1)
        self.branch3x3_2 = _Conv(192, 320, 3, stride=2)
        self.branch7x7x3_1 = _Conv(cin, 192, 1)
        self.branch7x7x3_2 = _Conv(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = _Conv(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = _Conv(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.branch7x7x3_1(x)
        for layer in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            b = layer(b)
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), b, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class _MixedE(nn.Module):
    """Mixed_7b/7c: expanded 3×3 branches; out 2048. The FID graph pools with a TF-style
    average in Mixed_7b and with a 3×3 **max** pool in Mixed_7c (a quirk of that graph)."""

    def __init__(self, cin: int, pool: Literal["avg", "max"]) -> None:
        super().__init__()
        self.pool = pool
        self.branch1x1 = _Conv(cin, 320, 1)
        self.branch3x3_1 = _Conv(cin, 384, 1)
        self.branch3x3_2a = _Conv(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = _Conv(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = _Conv(cin, 448, 1)
        self.branch3x3dbl_2 = _Conv(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = _Conv(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = _Conv(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = _Conv(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_1(x)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = _tf_avg_pool(x) if self.pool == "avg" else F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        return torch.cat([self.branch1x1(x), self.branch3x3_2a(b3), self.branch3x3_2b(b3),
                          self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d), self.branch_pool(pooled)], 1)


class FIDInceptionV3(nn.Module):
    """The Inception-v3 graph of TensorFlow's FID (``inception-2015-12-05``), plain PyTorch.

    Parameter names follow torchvision's ``Inception3(num_classes=1008, aux_logits=False)``
    with pytorch-fid's patched blocks, so pytorch-fid's ported weights load strictly.
    ``fc`` (1008 logits) is kept only so that the key list matches; it is unused.

    forward: x float32 (B, 3, 299, 299) in [−1, 1] → pool3 features (B, 2048) (the global
    average of Mixed_7c, after ReLU).
    """

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = _Conv(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = _Conv(32, 32, 3)
        self.Conv2d_2b_3x3 = _Conv(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = _Conv(64, 80, 1)
        self.Conv2d_4a_3x3 = _Conv(80, 192, 3)
        self.Mixed_5b = _MixedA(192, 32)
        self.Mixed_5c = _MixedA(256, 64)
        self.Mixed_5d = _MixedA(288, 64)
        self.Mixed_6a = _MixedB(288)
        self.Mixed_6b = _MixedC(768, 128)
        self.Mixed_6c = _MixedC(768, 160)
        self.Mixed_6d = _MixedC(768, 160)
        self.Mixed_6e = _MixedC(768, 192)
        self.Mixed_7a = _MixedD(768)
        self.Mixed_7b = _MixedE(1280, "avg")
        self.Mixed_7c = _MixedE(2048, "max")
        self.fc = nn.Linear(2048, 1008)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c,
                      self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
            x = block(x)
        return x.mean(dim=(2, 3))


def inception_spec() -> dict[str, tuple[int, ...]]:
    """state_dict key → shape of :class:`FIDInceptionV3` without ``num_batches_tracked``
    (built on the meta device: no memory, no time)."""
    with torch.device("meta"):
        net = FIDInceptionV3()
    return {k: tuple(v.shape) for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}


def check_inception_state_dict(sd: dict[str, torch.Tensor], what: str = "state_dict") -> dict[str, torch.Tensor]:
    """Check a state_dict against :class:`FIDInceptionV3`: every key, every shape, and the
    parameter count; ``num_batches_tracked`` entries are dropped. Returns the filtered dict.
    Raises :class:`DdpmdpError` naming the first missing, unexpected or misshapen key."""
    from ddpmdp.models.nets import count_parameters, key_shape_fingerprint

    spec = inception_spec()
    sd = {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    missing = [k for k in spec if k not in sd]
    extra = [k for k in sd if k not in spec]
    if missing or extra:
        aux = " (it has AuxLogits: a torchvision ImageNet Inception, not the FID one)" if any(
            k.startswith("AuxLogits") for k in extra) else ""
        raise DdpmdpError(f"{what} is not the FID Inception-v3: "
                          + (f"first missing key {missing[0]!r} ({len(missing)} missing); " if missing else "")
                          + (f"first unexpected key {extra[0]!r} ({len(extra)} unexpected)" if extra else "") + aux)
    for k, shape in spec.items():
        if tuple(sd[k].shape) != shape:
            raise DdpmdpError(f"{what}: {k!r} has shape {tuple(sd[k].shape)}, the FID Inception-v3 needs {shape}"
                              + (" (1000 classes: torchvision's ImageNet weights, not the FID port)"
                                 if k.startswith("fc.") and sd[k].shape[0] == 1000 else ""))
    require(count_parameters(sd) == INCEPTION_STATE_SCALARS and key_shape_fingerprint(sd) == INCEPTION_FINGERPRINT,
            f"{what}: parameter count or key fingerprint differs from the FID Inception-v3")
    return sd


def inception_weights(folder: str | Path, *, download: bool = False,
                      urlopen: Callable[..., Any] | None = None) -> Path:
    """Path of pytorch-fid's FID Inception weights in ``folder``, downloaded from
    :data:`INCEPTION_URL` only when ``download=True`` and the file is absent.

    The file's sha256 must start with :data:`INCEPTION_SHA256_PREFIX` (checked after a
    download; a mismatching download is deleted). Raises :class:`DdpmdpError` saying where
    to put the file when it is absent and downloading was not asked for or failed.
    """
    folder = Path(folder)
    path = folder / INCEPTION_FILE
    if path.is_file():
        return path
    require(download, f"the FID Inception weights are not at {path}; download {INCEPTION_URL} there "
            "(or pass download=True on a machine with network access)")
    folder.mkdir(parents=True, exist_ok=True)
    part = path.with_suffix(".part")
    h = hashlib.sha256()
    try:
        with (urlopen or urllib.request.urlopen)(INCEPTION_URL, timeout=60) as resp, open(part, "wb") as out:
            for chunk in iter(lambda: resp.read(1 << 20), b""):
                h.update(chunk)
                out.write(chunk)
    except OSError as exc:
        part.unlink(missing_ok=True)
        raise DdpmdpError(f"downloading {INCEPTION_URL} failed ({exc}); put {INCEPTION_FILE} into {folder} "
                          "by hand") from None
    if not h.hexdigest().startswith(INCEPTION_SHA256_PREFIX):
        part.unlink(missing_ok=True)
        raise DdpmdpError(f"the downloaded Inception weights have sha256 {h.hexdigest()[:16]}…, expected a digest "
                          f"starting with {INCEPTION_SHA256_PREFIX}; the download is corrupt or the URL changed")
    part.replace(path)
    return path


class InceptionExtractor(FeatureExtractor):
    """FID features: uint8 (B, C, H, W) → x = u8/127.5 − 1 ∈ [−1, 1] (pytorch-fid's 2·(u8/255) − 1;
    grey images repeated to 3 channels) → bilinear resize to 299×299 (``align_corners=False``,
    as pytorch-fid; TensorFlow's resize differs slightly) → pool3 (B, 2048).

    ``weights``: a path to pytorch-fid's file (keys, shapes, parameter count and, unless
    ``check_hash=False``, the sha256 prefix are checked), or ``None`` for **random**
    weights, which only test plumbing and are labelled so.
    """

    dims = 2048

    def __init__(self, weights: str | Path | None, *, device: str | torch.device = "cpu",
                 check_hash: bool = True) -> None:
        super().__init__(device)
        from ddpmdp.fileio import file_sha256
        from ddpmdp.models.state_dicts import read_state_dict

        self.net = FIDInceptionV3()
        if weights is None:
            self.feature = "inception-v3-pool3 RANDOM WEIGHTS (plumbing only)"
            self.label = "Fréchet distance of random-weight Inception features (meaningless)"
            self.comparable_to_published = False
        else:
            p = Path(weights)
            sha = file_sha256(p) if p.is_file() else ""
            if check_hash and p.is_file():
                require(sha.startswith(INCEPTION_SHA256_PREFIX), f"{p} has sha256 {sha[:16]}…, not the FID "
                        f"Inception weights (expected {INCEPTION_SHA256_PREFIX}…); pass check_hash=False to "
                        "use another port of the same graph")
            sd = check_inception_state_dict(read_state_dict(p), str(p))
            result = self.net.load_state_dict(sd, strict=False)
            assert not result.unexpected_keys and all(k.endswith("num_batches_tracked") for k in result.missing_keys)
            self.comparable_to_published = sha.startswith(INCEPTION_SHA256_PREFIX)
            self.feature = f"inception-v3-pool3 (weights sha256 {sha[:16]})"
            self.label = FID_LABEL if self.comparable_to_published else (
                "FID with unverified Inception weights (not comparable to published FID)")
        self.net.to(self.device).eval()

    def preprocess(self, images: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(images)).to(self.device).float().div_(127.5).sub_(1.0)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
