"""diffusers in and out: the ``diffusers:DIR`` model spec, and exported paths sampled by diffusers' own
``DDPMScheduler`` (issue 14, scope 3), on tiny random ``UNet2DModel`` folders."""
from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")

from _diffusers import save_folder, tiny_unet  # noqa: E402
from ddpmdp.export import diffusers_timesteps, k_diffusion_sigmas, sigmas_to_nodes  # noqa: E402
from ddpmdp.models.adapter import Numerics  # noqa: E402
from ddpmdp.models.specs import load_model  # noqa: E402
from ddpmdp.noise import STREAM_SAMPLE, keyed_normal  # noqa: E402
from ddpmdp.sampling import sample_ancestral  # noqa: E402
from ddpmdp.schedules import cosine_schedule, linear_schedule  # noqa: E402

T = 50
SHAPE = (3, 8, 8)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("diffusers")
    return {
        "fixed_small": save_folder(root / "small", tiny_unet(seed=0), T=T, variance_type="fixed_small"),
        "fixed_large": save_folder(root / "large", tiny_unet(seed=0), T=T, variance_type="fixed_large"),
        "learned_range": save_folder(root / "learned", tiny_unet(learned=True, seed=1), T=T, pipeline=True,
                                     safe=False, variance_type="learned_range"),
    }


# ---- (a) ε through diffusers:DIR is the UNet's own output ------------------------------
@pytest.mark.parametrize("kind", ["fixed_small", "learned_range"])
def test_eps_equals_calling_the_unet(folders, kind):
    from diffusers import UNet2DModel

    sub = {"subfolder": "unet"} if kind == "learned_range" else {}
    unet = UNet2DModel.from_pretrained(folders[kind], **sub).eval()
    model = load_model(f"diffusers:{folders[kind]}")
    x = torch.randn(4, *SHAPE, generator=torch.Generator().manual_seed(3))
    for node in (1, 17, T):
        with torch.no_grad():
            ref = unet(x, torch.full((4,), node - 1)).sample  # diffusers' timestep = node - 1
        out = model(x, node)
        assert torch.equal(out.eps, ref[:, :3])
        if kind == "learned_range":
            assert torch.equal(out.v, (ref[:, 3:] + 1) / 2)
    assert model.image_shape == SHAPE
    assert model.schedule == linear_schedule(T)
    assert model.variance == kind and model.learned_variance == (kind == "learned_range")


@pytest.mark.parametrize("prediction", ["v_prediction", "sample"])
def test_v_and_sample_predictions_are_converted_to_eps_exactly(tmp_path, prediction):
    from diffusers import DDPMScheduler

    net = tiny_unet(seed=2)
    folder = save_folder(tmp_path / "m", net, T=T, prediction_type=prediction)
    model = load_model(f"diffusers:{folder}", numerics=Numerics(dtype="float64"))
    sched = DDPMScheduler.from_pretrained(folder, clip_sample=False)
    sched.set_timesteps(timesteps=[30, 10])
    x = torch.randn(2, *SHAPE, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    node = 31
    a = float(model.schedule.abar(node))
    with torch.no_grad():
        raw = net.double()(x, torch.full((2,), node - 1)).sample
    x0 = sched.step(raw, 30, x).pred_original_sample  # diffusers' own x̂₀ from v or x̂₀
    eps = model(x, node).eps
    assert torch.allclose((x - math.sqrt(1 - a) * eps) / math.sqrt(a), x0, atol=1e-10)


# ---- (b) diffusers' DDPMScheduler along an exported path = ddpmdp's sampler -----------------
@functools.lru_cache(maxsize=None)
def _unet(folder: str, pipeline: bool, float64: bool):
    from diffusers import UNet2DModel

    unet = UNet2DModel.from_pretrained(folder, **({"subfolder": "unet"} if pipeline else {})).eval()
    return unet.to(torch.float64 if float64 else torch.float32)


def diffusers_sample(folder, variance_type, nodes, n, seed, *, pipeline=False, float64=False, monkeypatch):
    """diffusers' own set_timesteps(timesteps=exported) + step() loop, fed ddpmdp's keyed noise
    (``randn_tensor`` in diffusers' DDPM module returns the noise of ddpmdp's step k).

    ``float64``: the UNet, the latents and the scheduler's ᾱ (from its own float32 β) in float64.
    Returns (x̂₀ at the last step, the scheduler's prev_sample at the last step)."""
    import diffusers.schedulers.scheduling_ddpm as ddpm
    from diffusers import DDPMScheduler

    dtype = torch.float64 if float64 else torch.float32
    sub = ({"subfolder": "unet"}, {"subfolder": "scheduler"}) if pipeline else ({}, {})
    unet = _unet(str(folder), pipeline, float64)
    sched = DDPMScheduler.from_pretrained(folder, **sub[1], variance_type=variance_type, clip_sample=True)
    if float64:
        sched.alphas_cumprod = torch.cumprod(1.0 - sched.betas.double(), 0)
        sched.one = torch.tensor(1.0, dtype=torch.float64)
    sched.set_timesteps(timesteps=diffusers_timesteps(nodes))
    idx = torch.arange(n)
    draws = iter(range(1, len(nodes)))

    def noise(shape, **kw):
        return keyed_normal(seed, idx, next(draws), SHAPE, stream=STREAM_SAMPLE).to(dtype)

    monkeypatch.setattr(ddpm, "randn_tensor", noise)
    x = keyed_normal(seed, idx, 0, SHAPE, stream=STREAM_SAMPLE).to(dtype)
    for t in sched.timesteps:
        with torch.no_grad():
            out = sched.step(unet(x, t).sample, t, x)
        x = out.prev_sample
    return out.pred_original_sample, out.prev_sample


PATHS = {"ends at node 1": [0, 1, 4, 11, 23, 38, T], "ends at node 3": [0, 3, 9, 20, 34, T], "dp": None}
MEASURED: dict[str, float] = {}


@pytest.fixture(scope="module")
def dp_paths(folders):
    """A DP path of each model: a table on 4 random images over every other node, solved for K = 5."""
    from _models import random_images

    import ddpmdp

    out = {}
    for kind, folder in folders.items():
        model = load_model(f"diffusers:{folder}")
        table = ddpmdp.estimate_table(model, random_images(4, shape=SHAPE, seed=5), variance=kind, batch_size=4,
                                      grid_stride=2)
        out[kind] = np.asarray(ddpmdp.solve(table.L, 5, table.nodes).path(5))
    return out


@pytest.mark.parametrize("precision", ["float64", "float32"])
@pytest.mark.parametrize("kind", ["fixed_small", "learned_range", "fixed_large"])
@pytest.mark.parametrize("path", list(PATHS))
def test_diffusers_ddpm_scheduler_matches_ddpmdp_sampler(folders, dp_paths, kind, path, precision, monkeypatch):
    """Every edge t → s ≥ 1 and ddpmdp's decoder mean x̂₀ agree, on fixed paths and on a DP path of each
    model. In float64 (both sides) to ≤ 1e-5 (measured ≤ 1.6e-6; diffusers' β are float32-rounded); as
    shipped in float32 to ≤ 1e-4 (measured ≤ 1.3e-5: x̂₀ = (x − √(1 − ᾱ)·ε̂)/√ᾱ cancels in float32 at
    ᾱ_T ≈ 4e-5, rounded differently on each side)."""
    nodes = dp_paths[kind] if PATHS[path] is None else np.array(PATHS[path])
    f64 = precision == "float64"
    model = load_model(f"diffusers:{folders[kind]}", numerics=Numerics(dtype=precision))
    ours = sample_ancestral(model, nodes, 6, SHAPE, variance=kind, clip=True, seed=7).double()
    x0, last = diffusers_sample(folders[kind], kind, nodes, 6, 7, pipeline=kind == "learned_range", float64=f64,
                                monkeypatch=monkeypatch)
    delta = float((x0.double() - ours).abs().max())
    MEASURED[f"{kind}/{path}/{precision}"] = delta
    print(f"max |diffusers - ddpmdp| {kind} {path} {precision}: {delta:.3g}")
    assert delta <= (1e-5 if f64 else 1e-4)
    gap = float((last - x0).abs().max())
    print(f"  decoder gap |prev_sample - x0_hat| at t1 = {nodes[1]}: {gap:.3g}; path {nodes.tolist()}")
    if nodes[1] == 1 or kind == "fixed_small":
        # timestep 0 gets no noise; at t₁ > 1 fixed_small's σ² = β̃_{t₁,0} = 0 is clamped to 1e-20
        assert gap <= 1e-5
    elif kind == "fixed_large":
        # the documented decoder difference: DDPMScheduler.step adds √(1 − ᾱ_{t₁})·z at its last step
        assert gap > 0.1
    # learned_range at t₁ > 1: σ² = exp(v·log(1 − ᾱ) + (1 − v)·log 1e-20), not asserted (depends on v)


# ---- (c) the k-diffusion σ list maps back to the same nodes --------------------------------
@pytest.mark.parametrize("schedule", [linear_schedule(1000), cosine_schedule(4000), linear_schedule(T)])
def test_k_diffusion_sigmas_map_back_to_the_same_nodes(schedule):
    rng = np.random.default_rng(0)
    for K in (1, 2, 5, 25, min(schedule.T, 200)):
        inner = np.sort(rng.choice(np.arange(1, schedule.T), size=K - 1, replace=False))
        nodes = np.concatenate([[0], inner, [schedule.T]])
        sig = k_diffusion_sigmas(nodes, schedule)
        assert sig[-1] == 0.0 and all(a > b for a, b in zip(sig, sig[1:]))
        for f32 in (True, False):
            assert np.array_equal(sigmas_to_nodes(sig, schedule, float32=f32), nodes)
    full = np.arange(schedule.T + 1)  # every node: neighbours too
    assert np.array_equal(sigmas_to_nodes(k_diffusion_sigmas(full, schedule), schedule), full)


# ---- ho:DIR and diffusers:DIR on the Ho CIFAR-10 layout ------------------------------------
def test_ho_and_diffusers_give_the_same_eps_on_the_ho_layout(tmp_path):
    from diffusers import DDPMScheduler, UNet2DModel

    from ddpmdp.models.nets.ho_unet import GOOGLE_DDPM_CIFAR10_CONFIG

    kw = {f.name: getattr(GOOGLE_DDPM_CIFAR10_CONFIG, f.name) for f in dataclasses.fields(GOOGLE_DDPM_CIFAR10_CONFIG)}
    kw.pop("block_out_channels")
    torch.manual_seed(0)  # the Ho layout (blocks, attention at 16×16, heads), narrow channels to stay cheap
    net = UNet2DModel(**kw, block_out_channels=(32, 64, 64, 64))
    net.save_pretrained(tmp_path)
    DDPMScheduler(num_train_timesteps=1000, variance_type="fixed_large").save_pretrained(tmp_path)
    ho, dif = load_model(f"ho:{tmp_path}"), load_model(f"diffusers:{tmp_path}")
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    for node in (1, 1000):
        assert torch.allclose(ho(x, node).eps, dif(x, node).eps, atol=1e-5)
    assert ho.schedule == dif.schedule and ho.variance == dif.variance == "fixed_large"


# ---- the β of every supported scheduler config -----------------------------------------------
@pytest.mark.parametrize("config", [
    dict(num_train_timesteps=1000),
    dict(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012),
    dict(num_train_timesteps=4000, beta_schedule="squaredcos_cap_v2"),
    dict(num_train_timesteps=50, trained_betas=list(np.linspace(1e-3, 0.2, 50))),
    dict(num_train_timesteps=200, beta_start=2e-4, beta_end=0.05),
])
def test_schedules_match_diffusers_own_alphas_cumprod(config):
    from diffusers import DDPMScheduler

    from ddpmdp.models.diffusers_folder import diffusers_schedule

    ours = diffusers_schedule(dict(config))
    theirs = DDPMScheduler(**config).alphas_cumprod.double().numpy()
    assert ours.T == config["num_train_timesteps"]
    np.testing.assert_allclose(ours.alphas_cumprod[1:], theirs, rtol=2e-5)  # diffusers: float32 β and cumprod
    if config.get("beta_schedule") == "squaredcos_cap_v2":
        assert ours == cosine_schedule(4000)
    if len(config) == 1:
        assert ours == linear_schedule(1000)
