"""The proxy: a small CIFAR-10 classifier whose 128-d penultimate features give a
proxy-FID. It ranks samplers of one model against each other and is **not comparable to
published FIDs**; every result carries the label :data:`PROXY_LABEL`.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ddpmdp.data.images import ImageSet, validate_images
from ddpmdp.errors import DdpmdpError, require
from ddpmdp.fid.frechet import FeatureExtractor, PROXY_LABEL, PROXY_STEPS

__all__ = [
    "ProxyCNN",
    "ProxyExtractor",
    "ProxyTrainingReport",
    "train_proxy_classifier",
    "classifier_accuracy",
    "load_proxy_extractor",
    "proxy_extractor",
    "load_cifar10_labelled",
    "SHIPPED_PROXY",
]

#: The proxy the package ships (seed 0, float32, the default 1200 steps, trained on the CIFAR-10
#: training files under ``$DDPMDP_DATA`` by ``scripts/train_proxy.py``); its ``.json`` card beside
#: it holds the training report and the file's sha256.
SHIPPED_PROXY = Path(__file__).with_name("weights") / "proxy_cnn_seed0.safetensors"


# ---- the proxy: a small CIFAR-10 classifier ----------------------------------------------------


class ProxyCNN(nn.Module):
    """A small CIFAR-10 classifier (≈ 0.36M parameters) whose penultimate layer gives proxy
    features: three [3×3 conv → BatchNorm → ReLU → 2×2 max pool] stages (32, 64, 128 channels;
    32 → 4 pixels), a 2048 → 128 linear layer with ReLU (the **features**), and a 128 → 10 head.

    forward: x float32 (B, 3, 32, 32) in [−1, 1] → logits (B, 10); :meth:`features` → (B, 128).
    """

    feature_dims = 128

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for cin, cout in ((3, 32), (32, 64), (64, 128)):
            layers += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                       nn.MaxPool2d(2)]
        self.body = nn.Sequential(*layers)
        self.penultimate = nn.Linear(128 * 4 * 4, self.feature_dims)
        self.head = nn.Linear(self.feature_dims, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, 32, 32) in [−1, 1] → penultimate features ReLU(W·body(x) + b), (B, 128)."""
        return F.relu(self.penultimate(self.body(x).flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, 32, 32) in [−1, 1] → class logits (B, 10)."""
        return self.head(self.features(x))


class _FeatureHead(nn.Module):
    def __init__(self, net: ProxyCNN) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.features(x)


def _to_model_space(images: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).to(device).float().div_(127.5).sub_(1.0)


class ProxyExtractor(FeatureExtractor):
    """Proxy features: uint8 (B, 3, 32, 32) → x = u8/127.5 − 1 → :class:`ProxyCNN` penultimate
    (B, 128). Labelled :data:`PROXY_LABEL`; ``feature`` names the weights' sha256 so that
    statistics from differently trained proxies are never compared."""

    dims = ProxyCNN.feature_dims
    label = PROXY_LABEL
    comparable_to_published = False

    def __init__(self, net: ProxyCNN, weights_sha256: str, *, device: str | torch.device = "cpu",
                 report: dict[str, Any] | None = None) -> None:
        super().__init__(device)
        self.classifier = net.to(self.device).eval()
        self.net = _FeatureHead(self.classifier)
        self.feature = f"proxy-cnn-penultimate-128 (ddpmdp ProxyCNN trained on CIFAR-10, sha256 {weights_sha256[:16]})"
        self.report = report or {}

    def preprocess(self, images: np.ndarray) -> torch.Tensor:
        require(images.shape[1:] == (3, 32, 32), f"the proxy classifier takes CIFAR-10-sized images "
                f"(3, 32, 32), got {images.shape[1:]}")
        return _to_model_space(images, self.device)

    def describe(self) -> dict[str, Any]:
        return dict(super().describe(), proxy_training=self.report)


@dataclass
class ProxyTrainingReport:
    """How a proxy classifier was trained: accuracies (fractions) on the test split and on the
    last epoch's training batches, counts, seconds of wall time, and the saved file."""

    test_accuracy: float
    train_accuracy: float
    n_train: int
    n_test: int
    epochs: float
    steps: int
    batch_size: int
    lr: float
    seed: int
    threads: int
    seconds: float
    weights: str | None = None
    weights_sha256: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


def load_cifar10_labelled(split: str, data_dir: str | os.PathLike | None = None, *, download: bool = False
                          ) -> tuple[ImageSet, np.ndarray]:
    """CIFAR-10 images **and labels**: (ImageSet uint8 (N, 3, 32, 32), int64 (N,) in 0..9), as
    :func:`ddpmdp.data.cifar10.load_cifar10` reads them (no download unless asked)."""
    from ddpmdp.data.cifar10 import load_cifar10

    images = load_cifar10(split, data_dir, download=download)
    require(images.labels is not None, f"CIFAR-10 {split}: the batches hold no labels")
    assert images.labels is not None
    labels = images.labels
    require(bool(((labels >= 0) & (labels <= 9)).all()), "CIFAR-10 labels must lie in 0..9")
    return images, labels


@torch.no_grad()
def classifier_accuracy(net: ProxyCNN, images: np.ndarray, labels: np.ndarray, *, batch_size: int = 500) -> float:
    """Top-1 accuracy (fraction in [0, 1]) of ``net`` on uint8 (N, 3, 32, 32) images."""
    net.eval()
    device = next(net.parameters()).device
    correct = 0
    for lo in range(0, len(images), batch_size):
        logits = net(_to_model_space(images[lo:lo + batch_size], device))
        correct += int((logits.argmax(1).cpu().numpy() == labels[lo:lo + batch_size]).sum())
    return correct / max(len(images), 1)


def train_proxy_classifier(train_images: np.ndarray, train_labels: np.ndarray,
                           test_images: np.ndarray | None = None, test_labels: np.ndarray | None = None, *,
                           epochs: float | None = None, batch_size: int = 128, lr: float = 3e-3,
                           weight_decay: float = 5e-4, seed: int = 0, threads: int = 1, max_steps: int | None = None,
                           out: str | Path | None = None, progress: bool = False,
                           data_info: dict[str, Any] | None = None, dtype: torch.dtype = torch.float32
                           ) -> tuple[ProxyCNN, ProxyTrainingReport]:
    """Train :class:`ProxyCNN` with cross-entropy: AdamW (``lr``, ``weight_decay``), cosine decay to 0,
    random horizontal flips, minibatches of ``batch_size`` from a seeded permutation per epoch.

    Args:
        train_images: uint8 (N, 3, 32, 32); train_labels: int (N,) in 0..9.
        test_images, test_labels: held-out split for the reported accuracy (optional).
        epochs: passes over the training set (fractions allowed). Default: a fixed budget of
            :data:`PROXY_STEPS` = 1200 steps (≈ 3 epochs of the 50,000 CIFAR-10 training images,
            about 3 minutes on one CPU thread), and at least one epoch. ``max_steps`` caps the steps.
        seed: seeds the initialisation, the permutations and the flips (global RNG untouched).
        threads: torch intra-op threads during training (restored afterwards).
        out: if given, ``state_dict`` is saved there (``torch.save``) with a ``.json`` report beside it.
        dtype: training precision; float64 makes the weights independent of the CPU's summation
            order (AdamW's first steps turn tiny float32 gradient differences into whole steps).
            The returned and saved weights are float32 either way (rounded).

    Returns:
        (network in eval mode, :class:`ProxyTrainingReport`).
    """
    validate_images(train_images, "proxy training images")
    require(train_images.shape[1:] == (3, 32, 32), f"proxy training images must be (N, 3, 32, 32), "
            f"got {train_images.shape}")
    y_all = np.asarray(train_labels, dtype=np.int64)
    require(y_all.shape == (len(train_images),) and bool(((y_all >= 0) & (y_all <= 9)).all()),
            "train_labels must be (N,) integers in 0..9")
    require((epochs is None or epochs > 0) and batch_size >= 1 and threads >= 1,
            "epochs, batch_size and threads must be positive")
    n = len(train_images)
    steps_per_epoch = max(1, math.ceil(n / batch_size))
    if epochs is None:
        epochs = max(1.0, PROXY_STEPS / steps_per_epoch)
    steps = max(1, math.ceil(epochs * steps_per_epoch))
    if max_steps is not None:
        steps = min(steps, int(max_steps))
    rng = np.random.default_rng(seed)
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    start = time.perf_counter()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = ProxyCNN().to(dtype)
        opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 0.5 * (1 + math.cos(math.pi * min(k, steps) / steps)))
        net.train()
        order = np.empty(0, dtype=np.int64)
        correct = seen = 0
        from tqdm import tqdm

        for step in tqdm(range(steps), disable=not progress, desc="proxy classifier", unit="step"):
            if step % steps_per_epoch == 0:
                order = rng.permutation(n)
                correct = seen = 0
            lo = (step % steps_per_epoch) * batch_size
            idx = np.sort(order[lo:lo + batch_size])
            xb = train_images[idx]
            flip = rng.random(len(idx)) < 0.5
            xb = np.where(flip[:, None, None, None], xb[..., ::-1], xb)
            x = _to_model_space(xb).to(dtype)
            y = torch.from_numpy(y_all[idx])
            logits = net(x)
            loss = F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            correct += int((logits.argmax(1) == y).sum())
            seen += len(idx)
        net = net.float().eval()
        seconds = time.perf_counter() - start
        test_acc = float("nan")
        if test_images is not None and test_labels is not None:
            test_acc = classifier_accuracy(net, test_images, np.asarray(test_labels, dtype=np.int64))
    finally:
        torch.set_num_threads(old_threads)
    report = ProxyTrainingReport(test_acc, correct / max(seen, 1), n, 0 if test_images is None else len(test_images),
                                 steps / steps_per_epoch, steps, batch_size, lr, seed, threads, seconds,
                                 data=dict(data_info or {}))
    if out is not None:
        out = Path(out)
        torch.save(net.state_dict(), out)
        from ddpmdp.fileio import file_sha256

        report.weights, report.weights_sha256 = str(out), file_sha256(out)
        out.with_suffix(".json").write_text(json.dumps(asdict(report), indent=1, sort_keys=True))
    return net, report


def load_proxy_extractor(path: str | Path, *, device: str | torch.device = "cpu") -> ProxyExtractor:
    """A :class:`ProxyExtractor` from weights saved by :func:`train_proxy_classifier`."""
    from ddpmdp.fileio import file_sha256
    from ddpmdp.models.state_dicts import read_state_dict

    p = Path(path)
    sd = read_state_dict(p)
    net = ProxyCNN()
    try:
        net.load_state_dict(sd)
    except RuntimeError as exc:
        raise DdpmdpError(f"{p} does not hold ProxyCNN weights ({str(exc).splitlines()[0]})") from None
    side = p.with_suffix(".json")
    report = json.loads(side.read_text()) if side.is_file() else {}
    sha = file_sha256(p)
    require(report.get("weights_sha256") in (None, sha), f"{p} does not match its card {side.name} (sha256 "
            f"{sha[:16]}…, the card says {str(report.get('weights_sha256'))[:16]}…): the file was changed or "
            "truncated; restore it from the repository or retrain it with scripts/train_proxy.py")
    return ProxyExtractor(net, sha, device=device, report=report)


def proxy_extractor(cache_dir: str | Path, data_dir: str | os.PathLike | None = None, *, seed: int = 0,
                    train_if_missing: bool = True, device: str | torch.device = "cpu", progress: bool = False,
                    **train_kwargs: Any) -> ProxyExtractor:
    """The proxy extractor cached under ``cache_dir`` (``proxy_cnn_seed{seed}.pt`` plus its
    ``.json`` training report), trained on the CIFAR-10 training split and scored on the test
    split on first use (:func:`train_proxy_classifier`, ``train_kwargs`` passed through; about
    3 minutes on one CPU thread). An existing file is reused whatever ``train_kwargs`` say:
    delete it to retrain. ``dtype=torch.float64`` in ``train_kwargs`` trains in float64 and caches
    ``proxy_cnn_seed{seed}_float64.pt`` (its weights are stored, and used, in float32).

    With the default settings (seed 0, float32, no other ``train_kwargs``) and no file in
    ``cache_dir``, the shipped proxy :data:`SHIPPED_PROXY` is used instead of training one: the
    same network on every machine, so proxy-FIDs do not depend on the CPU that trained it."""
    cache = Path(cache_dir)
    dtype = train_kwargs.get("dtype", torch.float32)
    path = cache / (f"proxy_cnn_seed{seed}.pt" if dtype == torch.float32 else
                    f"proxy_cnn_seed{seed}_{str(dtype).removeprefix('torch.')}.pt")
    if not path.is_file():
        if seed == 0 and dtype == torch.float32 and not set(train_kwargs) - {"dtype"} and SHIPPED_PROXY.is_file():
            return load_proxy_extractor(SHIPPED_PROXY, device=device)
        require(train_if_missing, f"no proxy classifier at {path}; call with train_if_missing=True")
        cache.mkdir(parents=True, exist_ok=True)
        train, y = load_cifar10_labelled("train", data_dir)
        test, y_test = load_cifar10_labelled("test", data_dir)
        info = {"train": train.identity, "train_sha": train.fingerprint(), "test": test.identity,
                "notes": train.notes + test.notes}
        train_proxy_classifier(train.images, y, test.images, y_test, seed=seed, out=path, progress=progress,
                               data_info=info, **train_kwargs)
    return load_proxy_extractor(path, device=device)
