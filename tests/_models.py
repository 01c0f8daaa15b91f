"""Small models shared by the tests."""
from __future__ import annotations

import numpy as np
import torch

from ddpmdp.fid.frechet import FeatureExtractor
from ddpmdp.models.adapter import ModelOutput, Numerics, TorchModelAdapter
from ddpmdp.models.gaussian_data import GaussianDataModel
from ddpmdp.schedules import Schedule


class TinyNet(torch.nn.Module):
    """A seeded two-layer conv net with a time embedding; out_channels = C or 2C (ε, o = tanh)."""

    def __init__(self, channels: int = 3, learned: bool = True, seed: int = 0, hidden: int = 16):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.learned = learned
        self.c1 = torch.nn.Conv2d(channels, hidden, 3, padding=1)
        self.c2 = torch.nn.Conv2d(hidden, channels * (2 if learned else 1), 3, padding=1)
        self.temb = torch.nn.Linear(1, hidden)
        for p in self.parameters():
            with torch.no_grad():
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)

    def forward(self, x, t):
        h = torch.nn.functional.silu(self.c1(x) + self.temb(t[:, None] / 1000.0)[:, :, None, None])
        out = self.c2(h)
        if self.learned:
            C = x.shape[1]
            return torch.cat([out[:, :C], torch.tanh(out[:, C:])], 1)
        return out


def tiny_adapter(schedule: Schedule, channels: int = 3, learned: bool = True, seed: int = 0,
                 image_shape: tuple[int, int, int] | None = None, dtype: str = "float32") -> TorchModelAdapter:
    return TorchModelAdapter(TinyNet(channels, learned, seed), schedule, time_input="iddpm",
                             output="eps+v" if learned else "eps", identity=f"tiny(seed={seed})",
                             image_shape=image_shape, numerics=Numerics(dtype=dtype))  # type: ignore[arg-type]


class Wrapper:
    """Carries the model contract of a wrapped model (schedule, variance, shape, info, numerics)."""

    def __init__(self, model):
        self.model = model
        self.schedule, self.learned_variance, self.identity = model.schedule, model.learned_variance, model.identity
        self.variance, self.image_shape, self.info, self.numerics = (model.variance, model.image_shape, model.info,
                                                                     model.numerics)

    def fingerprint(self):
        return self.model.fingerprint()


class CallCounter(Wrapper):
    """Wraps a model and counts forward calls."""

    def __init__(self, model):
        super().__init__(model)
        self.calls = 0

    def fingerprint(self):
        return self.model.fingerprint()

    def __call__(self, x_t, t) -> ModelOutput:
        self.calls += 1
        return self.model(x_t, t)


class NaNAt(Wrapper):
    """Returns NaN at one node."""

    def __init__(self, model, bad_t: int):
        super().__init__(model)
        self.bad_t, self.identity = bad_t, "nan"

    def fingerprint(self):
        return "nan"

    def __call__(self, x_t, t):
        out = self.model(x_t, t)
        if t == self.bad_t:
            out.eps = out.eps * float("nan")
        return out


def random_images(n: int, shape=(3, 8, 8), seed: int = 0) -> np.ndarray:
    """Smooth-ish random uint8 images (N, C, H, W)."""
    rng = np.random.default_rng(seed)
    base = rng.normal(0, 1, size=(n, *shape))
    base = base + rng.normal(0, 1, size=(n, shape[0], 1, 1))
    return np.clip(127.5 + 50 * base, 0, 255).astype(np.uint8)


def gaussian_model(images: np.ndarray, schedule: Schedule, v: float | None = None) -> GaussianDataModel:
    return GaussianDataModel.fit(images, schedule, v=v)


def cli_tiny_model():
    """A ``module:callable`` target for subprocess tests: TinyNet (learned variance) on cosine:40."""
    from ddpmdp.schedules import cosine_schedule

    return tiny_adapter(cosine_schedule(40), channels=3, learned=True, seed=7, image_shape=(3, 8, 8))


def cli_tiny32_model():
    """A ``module:callable`` target with CIFAR-sized samples (the proxy's input): TinyNet (ε only) on cosine:30."""
    from ddpmdp.schedules import cosine_schedule

    return tiny_adapter(cosine_schedule(30), channels=3, learned=False, seed=7, image_shape=(3, 32, 32))


def cli_nan_model():
    """Like :func:`cli_tiny_model`, but returns NaN at node 30 for images with index ≥ 24."""
    base = cli_tiny_model()

    class _Late(Wrapper):
        calls = 0

        def __call__(self, x_t, t):
            out = base(x_t, t)
            if t == 30 and x_t.shape[0] == 4 and _Late.calls >= 2 * 39:
                out.eps = out.eps * float("nan")
            _Late.calls += 1
            return out

    return _Late(base)


def cli_slow_model():
    """:func:`cli_tiny_model` with a 3 ms pause per forward pass, so that a kill lands mid-run."""
    import time

    base = cli_tiny_model()

    class _Slow(Wrapper):
        def __call__(self, x_t, t):
            time.sleep(0.003)
            return base(x_t, t)

    return _Slow(base)


class MeansExtractor(FeatureExtractor):
    """Per-channel means and standard deviations of uint8 images: a 6-d stand-in for FID/KID features;
    ``feature``/``label`` name it in captions."""

    dims, comparable_to_published = 6, False

    def __init__(self, feature: str = "means", label: str = "test features") -> None:
        super().__init__("cpu")
        self.net = torch.nn.Identity()
        self.feature, self.label = feature, label

    def preprocess(self, images: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(images).double() / 255.0
        return torch.cat([x.mean((2, 3)), x.std((2, 3))], 1)
