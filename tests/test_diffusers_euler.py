"""Trajectory schedules exported for the deterministic sampler (issue 19, item 4; ``method.md`` §13.1):
diffusers' own ``EulerDiscreteScheduler`` loop along an exported path reproduces ddpmdp's DDIM (η = 0)
sampler from the same initial noise, with and without clipping, in float64 and float32; the exported
snippet is the code that runs; k-diffusion's ``sample_euler`` semantics with the clipping denoiser."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")

from _diffusers import save_folder, tiny_unet  # noqa: E402
from _trajectory import write_trajectory_file  # noqa: E402
from ddpmdp.export import diffusers_timesteps, export, k_diffusion_sigmas  # noqa: E402
from ddpmdp.export_loops import diffusers_ddim_euler, loop_source  # noqa: E402
from ddpmdp.models.adapter import Numerics  # noqa: E402
from ddpmdp.models.specs import load_model  # noqa: E402
from ddpmdp.noise import STREAM_SAMPLE, keyed_normal  # noqa: E402
from ddpmdp.sampling import sample_ddim  # noqa: E402
from ddpmdp.strides import edm_stride  # noqa: E402

T = 50
SHAPE = (3, 8, 8)
N = 6


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("euler")
    return {
        "epsilon": save_folder(root / "eps", tiny_unet(seed=0), T=T, variance_type="fixed_large"),
        "learned": save_folder(root / "learned", tiny_unet(learned=True, seed=1), T=T, pipeline=True,
                               safe=False, variance_type="learned_range"),
        "v_prediction": save_folder(root / "v", tiny_unet(seed=2), T=T, prediction_type="v_prediction"),
    }


def euler_scheduler(folder, nodes, *, pipeline: bool = False):
    """The exported snippet's scheduler: the folder's config as an EulerDiscreteScheduler that takes ε."""
    from diffusers import EulerDiscreteScheduler

    config = EulerDiscreteScheduler.load_config(folder, **({"subfolder": "scheduler"} if pipeline else {}))
    sched = EulerDiscreteScheduler.from_config(config, prediction_type="epsilon", use_karras_sigmas=False,
                                               interpolation_type="linear", final_sigmas_type="zero")
    sched.set_timesteps(timesteps=diffusers_timesteps(nodes))
    return sched, config.get("prediction_type", "epsilon")


def diffusers_euler_sample(folder, nodes, seed, *, clip, dtype, pipeline=False):
    from diffusers import UNet2DModel

    unet = UNet2DModel.from_pretrained(folder, **({"subfolder": "unet"} if pipeline else {})).eval().to(dtype)
    sched, prediction = euler_scheduler(folder, nodes, pipeline=pipeline)
    z = keyed_normal(seed, torch.arange(N), 0, SHAPE, stream=STREAM_SAMPLE).to(dtype)  # ddpmdp's x_T of sample i
    return diffusers_ddim_euler(unet, sched, z, clip=clip, prediction_type=prediction)


PATHS = {"ends at node 1": [0, 1, 4, 11, 23, 38, T], "ends at node 3": [0, 3, 9, 20, 34, T],
         "edm:8": None, "full chain": list(range(T + 1))}  # None: edm_stride(T, 8) of the model's schedule
MEASURED: dict[str, float] = {}


def _nodes(path, model):
    return np.asarray(edm_stride(T, 8, model.schedule) if PATHS[path] is None else PATHS[path], dtype=np.int64)


@pytest.mark.parametrize("precision", ["float64", "float32"])
@pytest.mark.parametrize("clip", [True, False], ids=["clip", "no-clip"])
@pytest.mark.parametrize("path", list(PATHS))
def test_diffusers_euler_loop_matches_ddpmdp_ddim(folders, path, clip, precision):
    """diffusers' EulerDiscreteScheduler(set_timesteps(timesteps=exported)) driven by the exported loop =
    ddpmdp's sample_ddim(η = 0) from the same x_T, on a saved random UNet2DModel.

    Tolerance, as max |Δ| relative to max |x̂₀| (x̂₀ ∈ [−1, 1] with clipping; up to ~1.4e3 without it on this
    random UNet): ≤ 1e-4 with clipping (measured ≤ 4.9e-5 absolute), ≤ 3e-6 relative without (measured
    ≤ 7.4e-7). float64 is barely tighter than float32: EulerDiscreteScheduler keeps σ in float32 and
    step() rounds the sample to float32 whatever the model's dtype, so y = x/√ᾱ (|y| up to σ_T·|z| ≈ 600
    here) carries float32 rounding on both precisions."""
    f64 = precision == "float64"
    model = load_model(f"diffusers:{folders['epsilon']}", numerics=Numerics(dtype=precision))
    nodes = _nodes(path, model)
    ours = sample_ddim(model, nodes, N, SHAPE, eta=0.0, clip=clip, seed=7).double()
    theirs = diffusers_euler_sample(folders["epsilon"], nodes, 7, clip=clip,
                                    dtype=torch.float64 if f64 else torch.float32).double()
    scale = max(1.0, float(ours.abs().max()))
    delta = float((theirs - ours).abs().max()) / scale
    MEASURED[f"{path}/{'clip' if clip else 'no-clip'}/{precision}"] = delta
    print(f"max |diffusers Euler - ddpmdp DDIM| / max(1, max|x0|) {path} clip={clip} {precision}: {delta:.3g} "
          f"(scale {scale:.3g})")
    assert delta <= (1e-4 if clip else 3e-6)
    if clip:
        assert float(ours.abs().max()) <= 1.0


@pytest.mark.parametrize("kind", ["learned", "v_prediction"])
def test_learned_variance_and_v_prediction_unets_follow_the_same_loop(folders, kind):
    """The loop takes the first C output channels (a learned-variance UNet's) and converts v to x̂₀ as
    diffusers does; ddpmdp's diffusers:DIR adapter converts v to ε exactly."""
    model = load_model(f"diffusers:{folders[kind]}")
    nodes = np.array(PATHS["ends at node 1"])
    for clip in (True, False):
        ours = sample_ddim(model, nodes, N, SHAPE, eta=0.0, clip=clip, seed=3).double()
        theirs = diffusers_euler_sample(folders[kind], nodes, 3, clip=clip, dtype=torch.float32,
                                        pipeline=kind == "learned").double()
        scale = max(1.0, float(ours.abs().max()))
        assert float((theirs - ours).abs().max()) / scale <= (1e-4 if clip else 3e-6)


def test_the_exported_snippet_runs_and_matches_ddpmdp_ddim(folders, tmp_path, monkeypatch):
    """``ddpmdp export traj.json:5 --to diffusers`` (Python: export(...)) for a trajectory schedule: the
    snippet holds the loop's source verbatim, and executed as printed (float32, its own torch.randn noise)
    it matches sample_ddim started from that same noise (≤ 1e-4; x̂₀ clipped)."""
    import ddpmdp.sampling as sampling

    folder = folders["epsilon"]
    model = load_model(f"diffusers:{folder}")
    solved = write_trajectory_file(tmp_path / "traj.json", model, budgets=(3, 5))
    result = export(f"{solved}:5", "diffusers", model=model, model_dir=str(folder))
    assert result["sampler"] == {"kind": "ddim", "eta": 0.0, "clip": True} and result["objective"] == "trajectory"
    assert result["scheduler"] == "EulerDiscreteScheduler" and result["not_expressible"] == []
    snippet = result["snippet"]
    assert loop_source() in snippet and "EulerDiscreteScheduler" in snippet and "clip=True" in snippet
    assert "DDPMScheduler" not in snippet and str(folder) in snippet
    ns: dict = {}
    exec(compile(snippet.replace("(16,", f"({N},"), "exported-snippet", "exec"), ns)  # noqa: S102
    z, x = ns["z"], ns["x"]
    nodes = np.array(result["nodes"])
    assert diffusers_timesteps(nodes) == result["timesteps"] == [int(t) for t in ns["scheduler"].timesteps]

    def start(seed, idx, k, shape, **kw):  # sample_ddim's x_T := the snippet's z
        assert k == 0
        return z[idx]

    monkeypatch.setattr(sampling, "keyed_normal", start)
    ours = sample_ddim(model, nodes, N, SHAPE, eta=0.0, clip=True, seed=0)
    assert float((x - ours).abs().max()) <= 1e-4
    # the same path exported for DDPM (another sampler) is refused without the override
    from ddpmdp.errors import DdpmdpError

    with pytest.raises(DdpmdpError, match="--other-sampler"):
        export(f"{solved}:5", "diffusers", sampler="ancestral")
    assert "DDPMScheduler" in export(f"{solved}:5", "diffusers", sampler="ancestral",
                                     allow_other_sampler=True)["snippet"]


def test_k_diffusion_sample_euler_with_the_clipping_denoiser_matches_ddpmdp_ddim(folders):
    """k-diffusion's DiscreteEpsDDPMDenoiser (quantize=True) and sample_euler, restated from
    crowsonkb/k-diffusion (external.py, sampling.py), along the exported σ list, with the snippet's
    ClippedDenoiser: = sample_ddim (η = 0, clip) from the same x_T, in float64 to ≤ 1e-9."""
    model = load_model(f"diffusers:{folders['epsilon']}", numerics=Numerics(dtype="float64"))
    sched = model.schedule
    nodes = np.array(PATHS["ends at node 3"])
    sigmas = torch.tensor(k_diffusion_sigmas(nodes, sched), dtype=torch.float64)
    table = torch.from_numpy(np.sqrt((1 - sched.alphas_cumprod[1:]) / sched.alphas_cumprod[1:]))

    def denoiser(x, sigma):  # DiscreteEpsDDPMDenoiser.forward, quantize=True; ddpmdp node = t + 1
        t = int((sigma.log() - table.log()).abs().argmin())
        eps = model(x / (sigma ** 2 + 1) ** 0.5, t + 1).eps
        return x - sigma * eps

    for clip in (True, False):
        def model_wrap(x, sigma, clip=clip):  # the snippet's ClippedDenoiser
            d = denoiser(x, sigma)
            return d.clamp(-1, 1) if clip else d

        z = keyed_normal(5, torch.arange(N), 0, SHAPE, stream=STREAM_SAMPLE).double()
        x = z * (sigmas[0] ** 2 + 1) ** 0.5
        for i in range(len(sigmas) - 1):  # sample_euler with s_churn = 0
            denoised = model_wrap(x, sigmas[i])
            d = (x - denoised) / sigmas[i]
            x = x + d * (sigmas[i + 1] - sigmas[i])
        ours = sample_ddim(model, nodes, N, SHAPE, eta=0.0, clip=clip, seed=5).double()
        scale = max(1.0, float(ours.abs().max()))
        assert float((x - ours).abs().max()) / scale <= 1e-9, clip
    snippet = export_k(folders)
    assert "ClippedDenoiser(model_wrap)" in snippet and "sample_euler" in snippet and "** 2 + 1) ** 0.5" in snippet


def export_k(folders):
    from ddpmdp.export import SolvedPath, export_path
    from ddpmdp.inference_schedule import SamplerSpec, ScheduleIdentity

    model = load_model(f"diffusers:{folders['epsilon']}")
    s = model.schedule
    ident = ScheduleIdentity(model.identity, model.fingerprint(), s.describe(), s.fingerprint(), T, "trajectory",
                             SamplerSpec("ddim", 0.0, True))
    path = SolvedPath("x.json:5", 5, T, np.array(PATHS["ends at node 3"]), (), None, {}, ident)
    res = export_path(path, "k-diffusion", model=model)
    assert res["sampler"]["kind"] == "ddim" and math.isclose(res["sigmas"][-1], 0.0)
    return res["snippet"]
