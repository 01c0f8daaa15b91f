"""Training with L_simple, L_hybrid and L_vlb; the importance sampler; exact resume; embedded weights.

Every training run here uses a one-level improved-diffusion UNet on 8×8 images with T ≤ 20,
so the whole file runs in well under a minute on a shared 2-core CPU.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import ddpmdp.models.embedded as embedded
from ddpmdp.models.embedded import EMBEDDED, adapter_from_file, config_to_dict, embedded_models, load_embedded
from ddpmdp.errors import DdpmdpError
from ddpmdp.gaussians import discretized_gaussian_log_likelihood, normal_kl
from ddpmdp.models.specs import load_model
from ddpmdp.models.nets.iddpm_unet import IDDPMConfig, IDDPMUNet
from ddpmdp.training.cards import save_weights_fp16
from ddpmdp.training.config import TrainConfig, checkpoint_path
from ddpmdp.training.loop import train
from ddpmdp.elbo_terms import q_sample
from ddpmdp.models.adapter import network_time
from ddpmdp.training.losses import compute_losses
from ddpmdp.training.samplers import LossSecondMomentResampler

MICRO = IDDPMConfig("micro-8px", image_size=8, model_channels=32, channel_mult=(1,), num_res_blocks=1,
                    attention_resolutions=(), num_heads=2, learn_sigma=True, dropout=0.0, diffusion_steps=20,
                    noise_schedule="cosine")


def smooth_images(n: int, seed: int) -> np.ndarray:
    """uint8 (n, 3, 8, 8) horizontal colour ramps: simple structure a tiny model learns quickly."""
    rng = np.random.default_rng(seed)
    a, b = rng.uniform(0, 255, (n, 3, 1, 1)), rng.uniform(0, 255, (n, 3, 1, 1))
    ramp = np.linspace(0.0, 1.0, 8)[None, None, None, :]
    return np.broadcast_to(a + (b - a) * ramp, (n, 3, 8, 8)).round().astype(np.uint8)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread: on a busy shared CPU, two spinning threads made steps ~30x slower."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def data_files(tmp_path_factory) -> tuple[str, str]:
    d = tmp_path_factory.mktemp("data")
    np.savez(d / "train.npz", images=smooth_images(64, 0), split="train")
    np.savez(d / "test.npz", images=smooth_images(8, 1), split="test")
    return str(d / "train.npz"), str(d / "test.npz")


def fixed_batch_loss(cfg: IDDPMConfig, weights: Path, objective: str) -> float:
    """Mean per-image objective (unit weights) of saved weights over 4 images × every node t, fixed ε."""
    adapter = adapter_from_file(cfg, weights)
    sched = cfg.schedule()
    T = sched.T
    x0 = torch.from_numpy(smooth_images(4, 7)).float() / 127.5 - 1.0
    x0 = x0.repeat_interleave(T, 0)
    t = torch.arange(1, T + 1).repeat(4)
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(3))
    x_t = q_sample(sched, x0, t, eps)
    with torch.no_grad():
        out = adapter.net(x_t, network_time(sched, t, "iddpm"))
        return float(compute_losses(sched, objective, x0, x_t, t, eps, out).loss.mean())


# ---- losses decrease ------------------------------------------------------------------
@pytest.mark.parametrize("objective", ["simple", "hybrid", "vlb"])
def test_loss_decreases(objective, data_files, tmp_path):
    cfg = MICRO.with_(learn_sigma=objective != "simple")
    base = dict(name=f"m-{objective}", data=data_files[0], out=tmp_path, preset=cfg, objective=objective,
                batch_size=16, lr=2e-3, ema=0.9, quiet=True)
    w0 = train(TrainConfig(**base, steps=0))
    before = fixed_batch_loss(cfg, w0, objective)
    w1 = train(TrainConfig(**base, steps=30, resume=True))
    after = fixed_batch_loss(cfg, w1, objective)
    print(objective, before, after)
    assert after < 0.8 * before, (objective, before, after)


def test_card_and_weights_file(data_files, tmp_path):
    from safetensors import safe_open

    cfg = MICRO
    w = train(TrainConfig(name="carded", data=data_files[0], out=tmp_path, preset=cfg, objective="hybrid", steps=2,
                          batch_size=8, eval_data=data_files[1], eval_images=4, quiet=True))
    card = json.loads(w.with_suffix(".json").read_text())
    import hashlib

    assert card["weights_sha256"] == hashlib.sha256(w.read_bytes()).hexdigest()
    assert card["weights_bytes"] == w.stat().st_size
    with safe_open(str(w), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}
    for key in ("name", "data", "split", "n_train_images", "steps", "batch_size", "objective", "schedule", "T",
                "ema_rate", "optimizer", "wall_seconds", "device", "parameters", "held_out", "note"):
        assert key in card, key
    assert card["n_train_images"] == 64 and card["steps"] == 2 and card["schedule"] == "cosine:20"
    assert card["parameters"] == sum(p.numel() for p in IDDPMUNet(cfg).parameters())
    held = card["held_out"]
    assert held["split"] == "test" and held["n_images"] == 4 and held["bpd"] > 0 and held["bpd_se"] > 0
    assert "far above the paper" in card["note"]  # the toy model's bpd is ≈ 9
    assert "not comparable" in embedded.bpd_note(3.9) and embedded.bpd_note(None) == embedded.BPD_NOTE
    # the held-out bpd is the evaluator's number for the saved weights
    from ddpmdp.data.specs import load_images
    from ddpmdp.evaluate import evaluate_paths

    score = evaluate_paths(adapter_from_file(cfg, w), load_images(data_files[1]).subset(4),
                           {"full": np.arange(21)}, variance="learned_range", batch_size=50)["full"]
    assert held["bpd"] == pytest.approx(score.bpd, rel=1e-6)


# ---- the loss terms against an independent computation ----------------------------------
def independent_L_t(abar: np.ndarray, x0, eps_hat, v, x_t, t: int) -> torch.Tensor:
    """Per-image L_t in nats from normal_kl / the discretised likelihood and ᾱ directly (float64)."""
    a_t, a_s = abar[t], abar[t - 1]
    beta_t = 1.0 - a_t / a_s
    x0_hat = (x_t - math.sqrt(1.0 - a_t) * eps_hat) / math.sqrt(a_t)
    if t == 1:
        beta2 = 1.0 - abar[2] / abar[1]
        bt_min = beta2 * (1.0 - abar[1]) / (1.0 - abar[2])
        logvar = v * math.log(1.0 - a_t) + (1.0 - v) * math.log(bt_min)
        return -discretized_gaussian_log_likelihood(x0, x0_hat, 0.5 * logvar).flatten(1).sum(1)
    bt = beta_t * (1.0 - a_s) / (1.0 - a_t)
    coef0 = math.sqrt(a_s) * beta_t / (1.0 - a_t)
    coeft = math.sqrt(1.0 - beta_t) * (1.0 - a_s) / (1.0 - a_t)
    mu_q = coef0 * x0 + coeft * x_t
    mu_p = coef0 * x0_hat + coeft * x_t
    logvar_p = v * math.log(beta_t) + (1.0 - v) * math.log(bt)
    return normal_kl(mu_q, torch.full_like(mu_q, math.log(bt)), mu_p, logvar_p).flatten(1).sum(1)


@pytest.mark.parametrize("objective", ["hybrid", "vlb"])
def test_losses_match_independent_computation(objective):
    sched = MICRO.schedule()
    T, abar = sched.T, sched.alphas_cumprod
    g = torch.Generator().manual_seed(0)
    B = 6
    x0 = (torch.randint(0, 256, (B, 3, 8, 8), generator=g).float() / 127.5 - 1.0)
    t = torch.tensor([1, 2, 5, 5, 13, T])
    eps = torch.randn(x0.shape, generator=g)
    x_t = q_sample(sched, x0, t, eps)
    out = torch.cat([eps + 0.3 * torch.randn(x0.shape, generator=g),
                     torch.rand(x0.shape, generator=g) * 2 - 1], 1).requires_grad_(True)
    terms = compute_losses(sched, objective, x0, x_t, t, eps, out)

    x0d, epsd, xtd = x0.double(), eps.double(), x_t.double()
    eps_hat, v = out[:, :3].detach().double(), (out[:, 3:].detach().double() + 1) / 2
    for i in range(B):
        ti = int(t[i])
        assert torch.allclose(xtd[i], math.sqrt(abar[ti]) * x0d[i] + math.sqrt(1 - abar[ti]) * epsd[i], atol=1e-6)
        L = independent_L_t(abar, x0d[i:i + 1], eps_hat[i:i + 1], v[i:i + 1], xtd[i:i + 1], ti)[0]
        mse = float((epsd[i] - eps_hat[i]).pow(2).mean())
        vlb = T * float(L) / (3 * 64 * math.log(2.0))
        want = mse + 0.001 * vlb if objective == "hybrid" else vlb
        assert float(terms.L_t[i].detach()) == pytest.approx(float(L), rel=1e-4, abs=1e-3)
        assert float(terms.mse[i].detach()) == pytest.approx(mse, rel=1e-5)
        assert float(terms.loss[i].detach()) == pytest.approx(want, rel=1e-4, abs=1e-5)
    # hybrid: the mean (ε channels) gets no gradient from the vlb term; vlb: it does
    (terms.loss - terms.mse).sum().backward()
    eps_grad, v_grad = out.grad[:, :3], out.grad[:, 3:]
    assert v_grad.abs().sum() > 0
    if objective == "hybrid":
        assert torch.count_nonzero(eps_grad) == 0
    else:
        assert eps_grad.abs().sum() > 0


# ---- importance sampler -----------------------------------------------------------------
def warmed_sampler(T: int = 8) -> tuple[LossSecondMomentResampler, np.ndarray]:
    s = LossSecondMomentResampler(T, history_per_term=3, uniform_prob=0.001)
    rng = np.random.default_rng(0)
    scale = np.linspace(1.0, 40.0, T)
    for _ in range(3):
        ts = torch.arange(1, T + 1)
        s.update(ts, torch.from_numpy(scale * rng.uniform(0.5, 1.5, T)))
    return s, scale


def test_resampler_uniform_until_warm_then_second_moment():
    s = LossSecondMomentResampler(5, history_per_term=2, uniform_prob=0.001)
    s.update(torch.tensor([1, 2, 3, 4]), torch.ones(4))
    s.update(torch.tensor([1, 2, 3, 4, 5]), torch.ones(5))
    assert not s.warmed_up() and torch.allclose(s.probabilities(), torch.full((5,), 0.2, dtype=torch.float64))
    s.update(torch.tensor([5, 1]), torch.tensor([3.0, 4.0]))  # t=1 is full: its oldest loss (1) is dropped
    assert s.warmed_up()
    assert s.history[0].tolist() == [1.0, 4.0]
    rms = torch.tensor([math.sqrt(8.5), 1, 1, 1, math.sqrt(5)], dtype=torch.float64)
    want = rms / rms.sum() * 0.999 + 0.001 / 5
    assert torch.allclose(s.probabilities(), want)


def test_resampler_weights_are_unbiased():
    s, _ = warmed_sampler()
    T = s.T
    p = s.probabilities()
    assert float(p.max() / p.min()) > 5  # genuinely non-uniform
    L = torch.from_numpy(np.random.default_rng(1).uniform(0, 10, T))  # any per-t loss
    t, w = s.sample(200_000, torch.Generator().manual_seed(0))
    # weights are exactly 1/(T p_t), so E_p[w L] = Σ_t p_t L_t/(T p_t) = mean L
    assert torch.allclose(w.double(), 1.0 / (T * p[t - 1]), rtol=1e-6)
    assert float((p * (1.0 / (T * p)) * L).sum()) == pytest.approx(float(L.mean()), rel=1e-12)
    wl = w.double() * L[t - 1]
    se = float(wl.std() / math.sqrt(len(wl)))
    assert abs(float(wl.mean()) - float(L.mean())) < 4 * se


# ---- resume -------------------------------------------------------------------------------
def _state(path: Path) -> dict:
    return torch.load(path, weights_only=True)


def test_resume_continues_exactly(data_files, tmp_path):
    cfg = MICRO.with_(diffusion_steps=6, dropout=0.1)  # dropout exercises the RNG state
    base = dict(name="r", data=data_files[0], preset=cfg, objective="vlb", batch_size=8, history_per_term=1,
                save_every=1, quiet=True)
    wa = train(TrainConfig(**base, out=tmp_path / "a", steps=4))
    train(TrainConfig(**base, out=tmp_path / "b", steps=2))
    wb = train(TrainConfig(**base, out=tmp_path / "b", steps=4, resume=True))
    sa, sb = _state(checkpoint_path(TrainConfig(**base, out=tmp_path / "a"))), _state(
        checkpoint_path(TrainConfig(**base, out=tmp_path / "b")))
    assert sa["step"] == sb["step"] == 4
    assert int(sa["sampler"]["counts"].sum()) == 6  # the resampler warmed up (history 1, T = 6)
    for part in ("model", "ema"):
        for k in sa[part]:
            assert torch.equal(sa[part][k], sb[part][k]), (part, k)
    for k, st in sa["optimizer"]["state"].items():
        assert all(torch.equal(st[n], sb["optimizer"]["state"][k][n]) for n in ("exp_avg", "exp_avg_sq"))
    assert torch.equal(sa["sampler"]["history"], sb["sampler"]["history"])
    assert torch.equal(sa["rng"], sb["rng"])
    assert wa.read_bytes() == wb.read_bytes(), _header_diff(wa, wb)


def test_cosine_schedule_with_flips_resumes_exactly(data_files, tmp_path):
    """A cosine learning rate and random flips (both new draws/values per step) still resume bitwise."""
    cfg = MICRO.with_(diffusion_steps=6)
    base = dict(name="r", data=data_files[0], preset=cfg, objective="hybrid", batch_size=8, save_every=1,
                quiet=True, lr_schedule="cosine", lr_min=1e-5, warmup_steps=1, hflip=True)
    wa = train(TrainConfig(**base, out=tmp_path / "a", steps=5))
    train(TrainConfig(**base, out=tmp_path / "b", steps=5, minutes=1e-9))  # stops before its first step
    train(TrainConfig(**{**base, "out": tmp_path / "b", "steps": 5, "resume": True}))
    wb = tmp_path / "b" / "r.safetensors"
    assert wa.read_bytes() == wb.read_bytes(), _header_diff(wa, wb)
    with pytest.raises(DdpmdpError, match="cannot resume.*steps"):  # a cosine run ends at its steps
        train(TrainConfig(**{**base, "out": tmp_path / "b", "steps": 9, "resume": True}))
    card = json.loads(wa.with_suffix(".json").read_text())
    assert card["augmentation"].startswith("random horizontal flip") and "cosine" in card["optimizer"]["lr_schedule"]


def test_learning_rate_schedule_values():
    from ddpmdp.training.config import learning_rate

    c = TrainConfig(name="x", data="d", out="o", steps=110, lr=1e-3, warmup_steps=10, lr_schedule="cosine",
                    lr_min=1e-4)
    assert learning_rate(c, 0, 0) == pytest.approx(1e-4)          # warm-up: lr·1/10
    assert learning_rate(c, 9, 0) == pytest.approx(1e-3)          # end of warm-up
    assert learning_rate(c, 10, 0) == pytest.approx(1e-3)         # cosine starts at the peak
    assert learning_rate(c, 60, 0) == pytest.approx(5.5e-4)       # half way: (lr + lr_min)/2
    assert learning_rate(c, 110, 0) == pytest.approx(1e-4)        # the end
    assert learning_rate(c, 60, 50) == pytest.approx(1e-3 * 1.0)  # a run started at 50: warm-up then peak
    const = TrainConfig(name="x", data="d", out="o", steps=110, lr=1e-3)
    assert {learning_rate(const, s, 0) for s in (0, 50, 109)} == {1e-3}


def test_flips_mirror_images(data_files, tmp_path):
    """With hflip, some training images are mirrored: the loss sees ramps in both directions."""
    cfg = MICRO.with_(diffusion_steps=6)
    base = dict(name="f", data=data_files[0], preset=cfg, objective="hybrid", batch_size=8, quiet=True, steps=1)
    a = train(TrainConfig(**base, out=tmp_path / "a"))
    b = train(TrainConfig(**base, out=tmp_path / "b", hflip=True))
    assert a.read_bytes() != b.read_bytes()


def test_init_from_earlier_weights_continues_counters(data_files, tmp_path):
    base = dict(data=data_files[0], preset=MICRO, objective="hybrid", batch_size=16, lr=2e-3, ema=0.9, quiet=True)
    w1 = train(TrainConfig(name="first", out=tmp_path / "a", steps=20, **base))
    card1 = json.loads(w1.with_suffix(".json").read_text())
    loss1 = fixed_batch_loss(MICRO, w1, "hybrid")
    # step 0 of the continuation: the weights are exactly the earlier EMA weights
    w2 = train(TrainConfig(name="second", out=tmp_path / "b", steps=20, init_from=str(w1), **base))
    from safetensors.torch import load_file

    first, second = load_file(str(w1)), load_file(str(w2))
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
    w3 = train(TrainConfig(name="third", out=tmp_path / "c", steps=50, warmup_steps=5, init_from=str(w1), **base))
    card3 = json.loads(w3.with_suffix(".json").read_text())
    assert card3["steps"] == 50 and card3["steps_this_run"] == 30
    assert card3["images_seen"] == card1["images_seen"] + 30 * 16
    assert card3["wall_seconds"] >= card1["wall_seconds"]
    assert card3["initialised_from"]["weights_sha256"] == card1["weights_sha256"]
    # the stages that made the weights: the first run, then this one, each with its data and steps
    assert [s["steps"] for s in card3["training_history"]] == [20, 30]
    assert all(s["data"] == data_files[0] and s["n_train_images"] == 64 for s in card3["training_history"])
    assert fixed_batch_loss(MICRO, w3, "hybrid") < loss1  # training went on from there, not from scratch
    # a corrupt or foreign source is refused before any training
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(w1.read_bytes()[:-10])
    bad.with_suffix(".json").write_text(w1.with_suffix(".json").read_text())
    with pytest.raises(DdpmdpError, match="truncated or corrupt"):
        train(TrainConfig(name="x", out=tmp_path / "d", steps=25, init_from=str(bad), **base))
    with pytest.raises(DdpmdpError, match="another architecture"):
        train(TrainConfig(name="y", out=tmp_path / "e", steps=25, init_from=str(w1),
                          **{**base, "preset": MICRO.with_(model_channels=64)}))


def _header_diff(a: Path, b: Path) -> str:
    import struct

    def header(p: Path) -> str:
        raw = p.read_bytes()
        n = struct.unpack("<Q", raw[:8])[0]
        return raw[8:8 + n].decode()

    return f"{header(a)[:300]}\n{header(b)[:300]}"


def test_existing_checkpoint_needs_resume_and_same_settings(data_files, tmp_path):
    base = dict(name="c", data=data_files[0], out=tmp_path, preset=MICRO, objective="hybrid", batch_size=8,
                quiet=True)
    train(TrainConfig(**base, steps=1))
    with pytest.raises(DdpmdpError, match="--resume"):
        train(TrainConfig(**base, steps=2))
    with pytest.raises(DdpmdpError, match="cannot resume.*lr"):
        train(TrainConfig(**base, steps=2, lr=5e-4, resume=True))


def test_user_errors(data_files, tmp_path):
    with pytest.raises(DdpmdpError, match="objective simple"):
        train(TrainConfig(name="e", data=data_files[0], out=tmp_path, preset=MICRO, objective="simple", steps=1))
    with pytest.raises(DdpmdpError, match="objective hybrid"):
        train(TrainConfig(name="e", data=data_files[0], out=tmp_path, preset=MICRO.with_(learn_sigma=False),
                          objective="hybrid", steps=1))
    with pytest.raises(DdpmdpError, match="trained with objective"):
        train(TrainConfig(name="cifar10-hybrid", data=data_files[0], out=tmp_path, objective="vlb", steps=1))
    with pytest.raises(DdpmdpError, match="expects"):  # 8×8 data for a 32×32 architecture
        train(TrainConfig(name="cifar10-hybrid", data=data_files[0], out=tmp_path, steps=1))
    with pytest.raises(DdpmdpError, match="not an embedded model"):
        train(TrainConfig(name="mine", data=data_files[0], out=tmp_path, steps=1))


def test_cli_arguments_map_to_config():
    import argparse

    from ddpmdp.cli.train import add_parser, config_from_args

    p = argparse.ArgumentParser()
    add_parser(p.add_subparsers(dest="command"))
    args = p.parse_args(["train", "--name", "cifar10-vlb", "--data", "cifar10:train", "--steps", "50",
                         "--batch-size", "32", "--lr", "1e-4", "--ema", "0.995", "--out", "o", "--resume",
                         "--minutes", "3", "--eval-data", "cifar10:test", "--eval-images", "10", "--quiet",
                         "--grad-clip", "0"])
    c = config_from_args(args)
    assert (c.name, c.steps, c.batch_size, c.lr, c.ema, c.resume, c.minutes, c.eval_images, c.quiet) == (
        "cifar10-vlb", 50, 32, 1e-4, 0.995, True, 3.0, 10, True)
    assert c.grad_clip is None and c.resolved_objective() == "vlb"
    assert c.architecture() == EMBEDDED["cifar10-vlb"].config


# ---- embedded weights ---------------------------------------------------------------------
def _write_embedded(folder: Path, name: str) -> Path:
    cfg = EMBEDDED[name].config
    torch.manual_seed(0)
    net = IDDPMUNet(cfg, zero_init=False)
    w = folder / f"{name}.safetensors"
    save_weights_fp16(net.state_dict(), w)
    import hashlib

    card = {"name": name, "architecture": config_to_dict(cfg), "weights_bytes": w.stat().st_size,
            "weights_sha256": hashlib.sha256(w.read_bytes()).hexdigest()}
    w.with_suffix(".json").write_text(json.dumps(card))
    return w


def test_embedded_missing_corrupt_and_valid(tmp_path, monkeypatch):
    monkeypatch.setattr(embedded, "WEIGHTS_DIR", tmp_path)
    name = "cifar10-simple"
    with pytest.raises(DdpmdpError, match=r"no weights.*cifar10-simple\.safetensors.*missing"):
        load_model(name)
    w = _write_embedded(tmp_path, name)
    m = load_model(name)
    assert m.image_shape == (3, 32, 32) and m.schedule.describe() == "linear:1000" and not m.learned_variance
    assert m.time_input == "iddpm" and m.variance == "fixed_large"
    assert m(torch.zeros(1, 3, 32, 32), 500).eps.shape == (1, 3, 32, 32)
    listing = embedded_models()
    assert set(listing) == {"cifar10-simple", "cifar10-hybrid", "cifar10-vlb", "imagenet64-hybrid"}
    assert listing[name]["available"] and listing[name]["card"]["name"] == name
    assert not listing["cifar10-vlb"]["available"]

    good = w.read_bytes()
    w.write_bytes(good[: len(good) // 2])  # truncated
    with pytest.raises(DdpmdpError, match=r"cifar10-simple\.safetensors is truncated.*reinstall"):
        load_model(name)
    bad = bytearray(good)
    bad[len(bad) // 2] ^= 0xFF  # corrupt, same size
    w.write_bytes(bytes(bad))
    with pytest.raises(DdpmdpError, match=r"cifar10-simple\.safetensors is corrupt.*reinstall"):
        load_model(name)
    w.write_bytes(good)
    w.with_suffix(".json").write_text("{not json")
    with pytest.raises(DdpmdpError, match=r"cifar10-simple\.json.*reinstall"):
        load_embedded(name)


def test_embedded_architectures_fit_5mb():
    for name, e in EMBEDDED.items():
        n = sum(p.numel() for p in IDDPMUNet(e.config).parameters())
        assert n * 2 <= 5_000_000, (name, n)
        assert e.config.learn_sigma == (e.objective != "simple")
        assert e.config.diffusion_steps == 1000
    assert EMBEDDED["cifar10-simple"].config.noise_schedule == "linear"
    assert EMBEDDED["imagenet64-hybrid"].config.image_size == 64
