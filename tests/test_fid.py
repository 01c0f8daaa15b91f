"""FID: the Fréchet distance against closed forms, streaming statistics, the Inception-v3
construction (keys, shapes, parameter count, forward shape) and the proxy classifier."""
from __future__ import annotations

import hashlib
import io
import json
import os
import pickle

import numpy as np
import pytest
import torch

from ddpmdp.data.images import ImageSet
from ddpmdp.errors import DdpmdpError
from ddpmdp.fid.frechet import PROXY_LABEL, FeatureStats, StreamingStats, feature_statistics, fid_from_stats, frechet_distance
from ddpmdp.fid.inception import FIDInceptionV3, InceptionExtractor, check_inception_state_dict, inception_spec
from ddpmdp.fid import frechet, inception, proxy
from ddpmdp.fid.proxy import ProxyCNN, load_cifar10_labelled, load_proxy_extractor, train_proxy_classifier


def _spd(rng: np.random.Generator, d: int) -> np.ndarray:
    a = rng.normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def _orthogonal(rng: np.random.Generator, d: int) -> np.ndarray:
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    return q


# ---- Fréchet distance -----------------------------------------------------------------------------
def test_identical_statistics_give_zero():
    rng = np.random.default_rng(0)
    mu, c = rng.normal(size=20), _spd(rng, 20)
    assert frechet_distance(mu, c, mu, c) == pytest.approx(0.0, abs=1e-9 * np.trace(c))


def test_commuting_covariances_match_closed_form():
    """C₁ = Q diag(a) Qᵀ, C₂ = Q diag(b) Qᵀ ⇒ d² = ‖μ₁ − μ₂‖² + Σ (√a − √b)²."""
    rng = np.random.default_rng(1)
    d = 12
    q = _orthogonal(rng, d)
    a, b = rng.uniform(0.1, 3.0, d), rng.uniform(0.1, 3.0, d)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    got = frechet_distance(mu1, q @ np.diag(a) @ q.T, mu2, q @ np.diag(b) @ q.T)
    assert got == pytest.approx(expected, rel=1e-10)
    # one dimension: (μ₁ − μ₂)² + (σ₁ − σ₂)²
    assert frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([-1.0]), np.array([[9.0]])) == (
        pytest.approx(4.0 + 1.0))


def test_general_covariances_match_trace_of_sqrt_of_product():
    """tr((C₁^{1/2} C₂ C₁^{1/2})^{1/2}) = Σ √λ(C₁C₂) (C₁C₂ has real positive eigenvalues)."""
    rng = np.random.default_rng(2)
    c1, c2 = _spd(rng, 10), _spd(rng, 10)
    mu1, mu2 = rng.normal(size=10), rng.normal(size=10)
    lam = np.linalg.eigvals(c1 @ c2)
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(c1) + np.trace(c2) - 2 * np.sum(np.sqrt(lam.real))
    assert frechet_distance(mu1, c1, mu2, c2) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(mu1, c1, mu2, c2) == pytest.approx(frechet_distance(mu2, c2, mu1, c1), rel=1e-9)


def test_rank_deficient_covariances_stay_finite_and_nonnegative():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(5, 30)), rng.normal(size=(6, 30)) + 0.5
    d = frechet_distance(x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False))
    assert np.isfinite(d) and d > 0
    assert frechet_distance(x.mean(0), np.cov(x, rowvar=False), x.mean(0), np.cov(x, rowvar=False)) < 1e-8


def test_frechet_rejects_bad_shapes_and_nan():
    with pytest.raises(DdpmdpError, match="covariances"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(3), np.eye(4))
    with pytest.raises(DdpmdpError, match="NaN"):
        frechet_distance(np.array([np.nan]), np.eye(1), np.zeros(1), np.eye(1))


# ---- statistics -------------------------------------------------------------------------------------
def test_streaming_statistics_equal_batch_statistics():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(1001, 7)) * rng.uniform(0.1, 5, 7) + 1e3  # large offset: tests stability
    acc = StreamingStats(7)
    for lo, hi in [(0, 1), (1, 64), (64, 65), (65, 500), (500, 1001)]:
        acc.update(x[lo:hi])
    acc.update(x[:0])
    assert acc.n == 1001
    np.testing.assert_allclose(acc.mean, x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(acc.covariance(), np.cov(x, rowvar=False), rtol=1e-9, atol=1e-12)
    t = StreamingStats(7)
    t.update(torch.from_numpy(x))
    np.testing.assert_allclose(t.covariance(), acc.covariance(), rtol=1e-9)
    with pytest.raises(DdpmdpError):
        acc.update(x[:, :3])


class _MeanColour(frechet.FeatureExtractor):
    """A cheap extractor for plumbing tests: per-channel means, (B, 3)."""

    dims = 3
    feature = "mean-colour"
    label = "test metric"
    comparable_to_published = False

    def __init__(self) -> None:
        super().__init__("cpu")
        self.net = torch.nn.Identity()

    def preprocess(self, images: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(images).double().mean(dim=(2, 3))


def test_feature_statistics_from_array_and_batches_agree_and_round_trip(tmp_path):
    rng = np.random.default_rng(5)
    imgs = rng.integers(0, 256, (50, 3, 4, 4), dtype=np.uint8)
    ex = _MeanColour()
    a = feature_statistics(ex, imgs, batch_size=7, source="a")
    b = feature_statistics(ex, (imgs[i:i + 13] for i in range(0, 50, 13)))
    np.testing.assert_allclose(a.mu, b.mu)
    np.testing.assert_allclose(a.cov, b.cov, atol=1e-10)
    r = fid_from_stats(a, b)
    assert r.value == pytest.approx(0.0, abs=1e-8) and r.label == "test metric" and not r.comparable_to_published
    a.save(tmp_path / "s.npz")
    c = FeatureStats.load(tmp_path / "s.npz")
    assert c.n == 50 and c.feature == "mean-colour" and c.source == "a"
    np.testing.assert_array_equal(c.cov, a.cov)
    other = FeatureStats(a.mu, a.cov, a.n, "another extractor", "x", False)
    with pytest.raises(DdpmdpError, match="different extractors"):
        fid_from_stats(a, other)


# ---- Inception-v3 ------------------------------------------------------------------------------------
def test_inception_construction_matches_the_fid_weights_layout():
    with torch.device("meta"):
        net = FIDInceptionV3()
    n_params = sum(p.numel() for p in net.parameters())
    assert n_params == inception.INCEPTION_PARAMETERS == 23_850_960
    spec = inception_spec()
    assert len(spec) == inception.INCEPTION_STATE_KEYS == 472
    from ddpmdp.models.nets import count_parameters, key_shape_fingerprint

    assert count_parameters(spec) == inception.INCEPTION_STATE_SCALARS
    assert key_shape_fingerprint(spec) == inception.INCEPTION_FINGERPRINT
    # torchvision Inception3 names, 1008-class fc, no auxiliary head, FID-patched blocks present
    assert spec["Conv2d_1a_3x3.conv.weight"] == (32, 3, 3, 3)
    assert spec["Conv2d_1a_3x3.bn.running_var"] == (32,)
    assert spec["Mixed_5b.branch_pool.conv.weight"] == (32, 192, 1, 1)
    assert spec["Mixed_6e.branch7x7dbl_5.conv.weight"] == (192, 192, 1, 7)
    assert spec["Mixed_7c.branch3x3dbl_3b.conv.weight"] == (384, 384, 3, 1)
    assert spec["fc.weight"] == (1008, 2048)
    assert not any(k.startswith("AuxLogits") for k in spec)
    assert net.Mixed_7b.pool == "avg" and net.Mixed_7c.pool == "max"
    assert inception.INCEPTION_URL.endswith(inception.INCEPTION_FILE) and inception.INCEPTION_SHA256_PREFIX in inception.INCEPTION_FILE


def test_inception_state_dict_check_names_the_problem():
    sd = {k: torch.empty(s, device="meta") for k, s in inception_spec().items()}
    sd["Conv2d_1a_3x3.bn.num_batches_tracked"] = torch.zeros((), dtype=torch.long)  # tolerated
    assert len(check_inception_state_dict(dict(sd))) == 472
    bad = dict(sd)
    del bad["Mixed_6c.branch7x7_2.conv.weight"]
    with pytest.raises(DdpmdpError, match="Mixed_6c.branch7x7_2.conv.weight"):
        check_inception_state_dict(bad)
    aux = dict(sd, **{"AuxLogits.fc.weight": torch.empty(1000, 768, device="meta")})
    with pytest.raises(DdpmdpError, match="AuxLogits"):
        check_inception_state_dict(aux)
    imnet = dict(sd, **{"fc.weight": torch.empty(1000, 2048, device="meta"), "fc.bias": torch.empty(1000)})
    with pytest.raises(DdpmdpError, match="1000 classes"):
        check_inception_state_dict(imnet)


def test_inception_forward_shape_and_file_loading(tmp_path):
    torch.manual_seed(0)
    ex = InceptionExtractor(None)  # random weights: plumbing only
    assert not ex.comparable_to_published and "RANDOM" in ex.feature
    imgs = np.random.default_rng(6).integers(0, 256, (1, 3, 32, 32), dtype=np.uint8)
    x = ex.preprocess(imgs)
    assert x.shape == (1, 3, 299, 299) and -1.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert ex.preprocess(imgs[:, :1]).shape == (1, 3, 299, 299)  # grey images are repeated to RGB
    feats = ex.features(imgs)  # one full 299×299 forward pass
    assert feats.shape == (1, 2048) and feats.dtype == np.float64 and np.isfinite(feats).all()
    assert (feats >= 0).all()  # pool3 averages post-ReLU maps
    # a state_dict file with the right keys loads strictly; the sha256 prefix is enforced by default
    path = tmp_path / "inception.pth"
    torch.save(ex.net.state_dict(), path)
    with pytest.raises(DdpmdpError, match="sha256"):
        InceptionExtractor(path)
    loaded = InceptionExtractor(path, check_hash=False)
    assert not loaded.comparable_to_published and "not comparable" in loaded.label
    for (k, v), w in zip(ex.net.state_dict().items(), loaded.net.state_dict().values()):
        assert torch.equal(v, w), k


class _FakeResponse(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_inception_weights_download_only_when_asked(tmp_path, monkeypatch):
    with pytest.raises(DdpmdpError, match="download"):
        inception.inception_weights(tmp_path)
    payload = b"not the inception weights"
    with pytest.raises(DdpmdpError, match="sha256"):
        inception.inception_weights(tmp_path, download=True, urlopen=lambda url, timeout: _FakeResponse(payload))
    assert list(tmp_path.iterdir()) == []  # a bad download leaves nothing behind
    monkeypatch.setattr(inception, "INCEPTION_SHA256_PREFIX", hashlib.sha256(payload).hexdigest()[:8])
    got = inception.inception_weights(tmp_path, download=True, urlopen=lambda url, timeout: _FakeResponse(payload))
    assert got.read_bytes() == payload and got.name == inception.INCEPTION_FILE
    assert inception.inception_weights(tmp_path) == got  # found without downloading

    def offline(url, timeout):
        raise OSError("no network")

    with pytest.raises(DdpmdpError, match="by hand"):
        inception.inception_weights(tmp_path / "other", download=True, urlopen=offline)


# ---- the proxy classifier ----------------------------------------------------------------------------
def _toy_classes(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """10 classes told apart by colour and a horizontal/vertical stripe pattern, plus noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    colours = np.array([[r, g, b] for r in (60, 190) for g in (60, 190) for b in (60, 190)] + [[128] * 3] * 2)
    x = np.empty((n, 3, 32, 32))
    stripes = (np.arange(32) // 4 % 2) * 40.0
    for i, k in enumerate(y):
        x[i] = colours[k][:, None, None] + (stripes[None, :, None] if k == 9 else stripes[None, None, :] * (k == 8))
    x += rng.normal(0, 25, x.shape)
    return np.clip(x, 0, 255).astype(np.uint8), y


def test_proxy_training_beats_chance_and_saves_weights(tmp_path):
    x, y = _toy_classes(160, seed=7)
    xt, yt = _toy_classes(100, seed=8)
    before = proxy.classifier_accuracy(ProxyCNN().eval(), x, y)
    net, report = train_proxy_classifier(x, y, xt, yt, epochs=2, batch_size=32, lr=3e-3, seed=0,
                                         out=tmp_path / "proxy.pt")
    after = proxy.classifier_accuracy(net, x, y)
    assert after > 0.4 and after > before + 0.2, (before, after)  # chance: 0.1
    assert report.test_accuracy > 0.3 and report.steps == 10 and report.threads == 1 and report.seconds > 0
    assert json.loads((tmp_path / "proxy.json").read_text())["test_accuracy"] == report.test_accuracy
    ex = load_proxy_extractor(tmp_path / "proxy.pt")
    assert ex.label == PROXY_LABEL and not ex.comparable_to_published
    assert report.weights_sha256 is not None and report.weights_sha256[:16] in ex.feature
    feats = ex.features(xt[:5])
    assert feats.shape == (5, 128)
    with torch.no_grad():
        np.testing.assert_allclose(feats, net.features(torch.from_numpy(xt[:5]).float() / 127.5 - 1).double(),
                                   rtol=1e-5, atol=1e-6)
    stats = feature_statistics(ex, xt, batch_size=50, source="toy")
    assert fid_from_stats(stats, stats).value == pytest.approx(0.0, abs=1e-6)
    assert "not comparable" in str(fid_from_stats(stats, stats))
    with pytest.raises(DdpmdpError, match="32"):
        ex.features(np.zeros((1, 3, 64, 64), np.uint8))


def test_proxy_training_is_seeded():
    x, y = _toy_classes(64, seed=9)
    state = torch.get_rng_state()
    a, _ = train_proxy_classifier(x, y, epochs=1, batch_size=16, seed=3, max_steps=2)
    b, _ = train_proxy_classifier(x, y, epochs=1, batch_size=16, seed=3, max_steps=2)
    assert torch.equal(state, torch.get_rng_state())  # the global RNG is untouched
    for (k, v), w in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(v, w), k


def test_proxy_training_in_float64_matches_float32_and_is_cached_apart(tmp_path):
    """dtype=float64 (the smoke runs): same training in float64 (CPU-independent), weights returned and
    saved in float32."""
    from ddpmdp.fid.proxy import load_proxy_extractor

    x, y = _toy_classes(64, seed=9)
    a, ra = train_proxy_classifier(x, y, epochs=1, batch_size=16, seed=3, max_steps=2)
    b, rb = train_proxy_classifier(x, y, epochs=1, batch_size=16, seed=3, max_steps=2, dtype=torch.float64,
                                   out=tmp_path / "p64.pt")
    assert all(v.dtype == torch.float32 for v in b.state_dict().values() if v.is_floating_point())
    for (k, v), w in zip(a.state_dict().items(), b.state_dict().values()):
        if v.is_floating_point():
            torch.testing.assert_close(w.float(), v, rtol=1e-3, atol=1e-4, msg=k)
    ex = load_proxy_extractor(tmp_path / "p64.pt")
    assert all(p.dtype == torch.float32 for p in ex.classifier.parameters())
    assert ex.features(x[:3]).shape == (3, 128)


def test_cifar10_labels_are_read_with_the_safe_reader(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(10)
    data = rng.integers(0, 256, (20, 3072), dtype=np.uint8)
    labels = rng.integers(0, 10, 20).tolist()
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({b"batch_label": b"testing batch 1 of 1", b"labels": labels, b"data": data}, f, protocol=2)
    with pytest.warns(UserWarning, match="MD5"):
        images, y = load_cifar10_labelled("test", tmp_path, download=False)
    assert images.images.shape == (20, 3, 32, 32) and images.split == "test"
    np.testing.assert_array_equal(images.images, data.reshape(-1, 3, 32, 32))
    np.testing.assert_array_equal(y, labels)


# ---- the shipped proxy -------------------------------------------------------------------------------
@pytest.mark.skipif(not os.environ.get("DDPMDP_DATA"), reason="DDPMDP_DATA is not set (point it at the shared data)")
def test_shipped_proxy_matches_its_card_and_classifies_cifar10():
    """The shipped weights load, their sha256 is the card's, and their accuracy on the first 1,000
    CIFAR-10 test images is the card's test accuracy (on all 10,000) within sampling error."""
    card = json.loads(proxy.SHIPPED_PROXY.with_suffix(".json").read_text())
    ex = load_proxy_extractor(proxy.SHIPPED_PROXY)
    assert ex.report["weights_sha256"] == card["weights_sha256"] and card["weights_sha256"][:16] in ex.feature
    assert card["steps"] == 1200 and card["seed"] == 0 and card["n_test"] == 10_000
    test, y = load_cifar10_labelled("test", download=False)
    acc = proxy.classifier_accuracy(ex.classifier, test.images[:1000], y[:1000])
    se = (card["test_accuracy"] * (1 - card["test_accuracy"]) / 1000) ** 0.5
    assert acc > 0.5 and abs(acc - card["test_accuracy"]) < 4 * se, (acc, card["test_accuracy"])


def test_default_proxy_is_the_shipped_one_and_a_changed_file_is_refused(tmp_path, monkeypatch):
    def no_training(*a, **k):
        raise AssertionError("the default proxy must not be trained when the shipped one exists")

    monkeypatch.setattr(proxy, "train_proxy_classifier", no_training)
    monkeypatch.setattr(proxy, "load_cifar10_labelled", lambda split, data_dir=None: (
        ImageSet(np.zeros((2, 3, 32, 32), np.uint8), f"toy:{split}", split), np.zeros(2, np.int64)))
    ex = proxy.proxy_extractor(tmp_path / "cache")
    assert ex.feature.endswith(f"{ex.report['weights_sha256'][:16]})")
    assert not (tmp_path / "cache").exists()
    with pytest.raises(AssertionError, match="must not be trained"):  # a non-default proxy is trained
        proxy.proxy_extractor(tmp_path / "cache", max_steps=2)
    bad = tmp_path / proxy.SHIPPED_PROXY.name
    data = bytearray(proxy.SHIPPED_PROXY.read_bytes())
    data[-1] ^= 1
    bad.write_bytes(bytes(data))
    bad.with_suffix(".json").write_text(proxy.SHIPPED_PROXY.with_suffix(".json").read_text())
    with pytest.raises(DdpmdpError, match="does not match its card"):
        load_proxy_extractor(bad)
