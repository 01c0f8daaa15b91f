"""Dataset loaders: CIFAR-10 pickles, ImageNet 64 (npz and PNG variants), Tiny-ImageNet.

Synthetic files in the exact official structures are always tested; the shared offline
data under ``$DDPMDP_DATA`` is tested when the variable is set (CI sets it).
"""
from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
import urllib.error
import warnings
from pathlib import Path

import numpy as np
import pytest

from ddpmdp.data import cifar10, imagenet64
from ddpmdp.data.images import to_model_space
from ddpmdp.data.specs import load_images
from ddpmdp.errors import DdpmdpError

DATA = os.environ.get("DDPMDP_DATA")
needs_data = pytest.mark.skipif(not DATA, reason="DDPMDP_DATA is not set (point it at the shared offline data)")


# ---- synthetic CIFAR-10 ----------------------------------------------------------------------
def cifar_batch_bytes(n: int, seed: int, *, bad_shape: bool = False) -> tuple[bytes, np.ndarray]:
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, (n, 1024 if bad_shape else 3072), dtype=np.uint8)
    obj = {b"batch_label": b"training batch", b"labels": [int(x) for x in rng.integers(0, 10, n)],
           b"data": data, b"filenames": [b"f%d.png" % i for i in range(n)]}
    return pickle.dumps(obj, protocol=2), data


def make_cifar(root: Path, files: dict[str, int]) -> dict[str, np.ndarray]:
    folder = root / cifar10.FOLDER
    folder.mkdir(parents=True)
    rows = {}
    for i, (name, n) in enumerate(files.items()):
        raw, rows[name] = cifar_batch_bytes(n, i)
        (folder / name).write_bytes(raw)
    return rows


def test_cifar10_layout_scaling_and_notes(tmp_path: Path) -> None:
    rows = make_cifar(tmp_path, {"test_batch": 7})
    with pytest.warns(UserWarning, match="test_batch .*differs from the official files"):
        ds = load_images("cifar10:test", tmp_path)
    assert ds.images.shape == (7, 3, 32, 32) and ds.images.dtype == np.uint8
    assert (ds.identity, ds.split) == ("cifar10:test", "test")
    r = rows["test_batch"]
    # row layout: 1024 R, 1024 G, 1024 B, each plane row-major 32×32
    assert ds.images[2, 0, 3, 5] == r[2, 3 * 32 + 5]
    assert ds.images[2, 1, 0, 0] == r[2, 1024]
    assert ds.images[2, 2, 31, 31] == r[2, 3071]
    x = to_model_space(ds.images)
    assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0
    assert abs(float(x[2, 0, 3, 5]) - (r[2, 3 * 32 + 5] / 127.5 - 1)) < 1e-6
    assert any("not comparable to published numbers" in n for n in ds.notes)


def test_cifar10_partial_train_set_in_order(tmp_path: Path) -> None:
    rows = make_cifar(tmp_path, {"data_batch_2": 3, "data_batch_1": 4})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = cifar10.load_cifar10("train", tmp_path)
    assert len(ds) == 7
    assert np.array_equal(ds.images[:4].reshape(4, -1), rows["data_batch_1"])  # batch 1 first
    assert any("partial CIFAR-10 train set: loaded data_batch_1, data_batch_2 (7 images); missing data_batch_3"
               in n for n in ds.notes)
    assert len(caught) == 2


def test_cifar10_official_md5_gives_no_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_cifar(tmp_path, {"test_batch": 2})
    md5 = hashlib.md5((tmp_path / cifar10.FOLDER / "test_batch").read_bytes()).hexdigest()
    monkeypatch.setitem(cifar10.FILE_MD5, "test_batch", md5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = cifar10.load_cifar10("test", tmp_path)
    assert ds.notes == []


def test_cifar10_md5_table_is_the_official_one() -> None:
    assert cifar10.ARCHIVE_MD5 == "c58f30108f718f92721af3b95e74349a"
    assert cifar10.URL == "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    assert cifar10.FILE_MD5["test_batch"] == "40351d587109b95175f43aff81a1287e"
    assert cifar10.FILE_MD5["data_batch_1"] == "c99cafc152244af753f735de768cd75f"
    assert len(cifar10.FILE_MD5) == 7


def test_cifar10_wrong_shapes_and_malicious_pickles(tmp_path: Path) -> None:
    folder = tmp_path / cifar10.FOLDER
    folder.mkdir()
    raw, _ = cifar_batch_bytes(3, 0, bad_shape=True)
    (folder / "test_batch").write_bytes(raw)
    with pytest.raises(DdpmdpError, match=r"'data' must have shape \(N, 3072\).*got \(3, 1024\)"):
        load_images("cifar10:test", tmp_path)

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    (folder / "test_batch").write_bytes(pickle.dumps({b"data": Evil()}, protocol=2))
    with pytest.raises(DdpmdpError, match="not a readable CIFAR-10 batch.*global posix.system is not allowed"):
        load_images("cifar10:test", tmp_path)
    (folder / "test_batch").write_bytes(b"\x80\x02}q\x00")  # truncated pickle
    with pytest.raises(DdpmdpError, match="not a readable CIFAR-10 batch"):
        load_images("cifar10:test", tmp_path)


def test_cifar10_spec_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DdpmdpError, match="needs a split: cifar10:train or cifar10:test"):
        load_images("cifar10", tmp_path)
    with pytest.raises(DdpmdpError, match="unknown CIFAR-10 split 'val'"):
        load_images("cifar10:val", tmp_path)
    monkeypatch.delenv("DDPMDP_DATA", raising=False)
    with pytest.raises(DdpmdpError, match="set DDPMDP_DATA or pass --data-dir"):
        load_images("cifar10:test")


# ---- mocked download ------------------------------------------------------------------------------
def fake_archive() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, payload in ((f"{cifar10.FOLDER}/test_batch", cifar_batch_bytes(5, 9)[0]),
                              (f"{cifar10.FOLDER}/readme.html", b"<html/>"),
                              ("../escape.txt", b"should not be extracted")):
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


class FakeResponse(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def test_download_md5_mismatch_is_an_error(tmp_path: Path) -> None:
    calls = []

    def opener(url, timeout=None):
        calls.append(url)
        return FakeResponse(fake_archive())

    with pytest.raises(DdpmdpError, match="downloaded CIFAR-10 archive has MD5 [0-9a-f]{32}, expected "
                                          "c58f30108f718f92721af3b95e74349a"):
        cifar10.load_cifar10("test", tmp_path, download=True, urlopen=opener)
    assert calls == [cifar10.URL]
    assert not list(tmp_path.glob("*.part")) and not (tmp_path / cifar10.FOLDER).exists()


def test_download_success_extracts_only_the_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = fake_archive()
    monkeypatch.setattr(cifar10, "ARCHIVE_MD5", hashlib.md5(archive).hexdigest())
    root = tmp_path / "data"
    with pytest.warns(UserWarning, match="differs from the official files"):
        ds = cifar10.load_cifar10("test", root, download=True,
                                 urlopen=lambda url, timeout=None: FakeResponse(archive))
    assert len(ds) == 5
    assert not (tmp_path / "escape.txt").exists() and not (root / "escape.txt").exists()
    assert not (root / "cifar-10-python.tar.gz").exists()


def test_download_without_network_says_where_to_put_files(tmp_path: Path) -> None:
    def offline(url, timeout=None):
        raise urllib.error.URLError("Temporary failure in name resolution")

    with pytest.raises(DdpmdpError, match="downloading .*failed.*put the official cifar-10-batches-py/ folder there"):
        cifar10.load_cifar10("train", tmp_path, download=True, urlopen=offline)


# ---- ImageNet 64 ----------------------------------------------------------------------------------
def write_npz(path: Path, n: int, seed: int = 0, row: int = 12288) -> np.ndarray:
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, (n, row), dtype=np.uint8)
    np.savez(path, data=data, labels=rng.integers(1, 1001, n))
    return data


def test_imagenet64_npz_variant(tmp_path: Path) -> None:
    data = write_npz(tmp_path / "val_data.npz", 4)
    with pytest.warns(UserWarning, match="Chrabaszcz"):
        ds = imagenet64.load_imagenet64(tmp_path / "val_data.npz")
    assert ds.images.shape == (4, 3, 64, 64)
    assert ds.images[1, 0, 2, 3] == data[1, 2 * 64 + 3] and ds.images[1, 2, 0, 0] == data[1, 8192]
    assert ds.identity == "imagenet64:npz:val_data.npz" and ds.split == "val"
    assert any("not comparable to published ImageNet 64 numbers" in n for n in ds.notes)


def test_imagenet64_npz_folder_relative_to_data_root(tmp_path: Path) -> None:
    folder = tmp_path / "Imagenet64_train_npz"
    folder.mkdir()
    parts = {i: write_npz(folder / f"train_data_batch_{i}.npz", 2, seed=i) for i in (10, 2, 1)}
    with pytest.warns(UserWarning):
        ds = load_images("imagenet64:Imagenet64_train_npz", tmp_path)
    assert len(ds) == 6 and ds.split == "train"
    assert np.array_equal(ds.images.reshape(6, -1), np.concatenate([parts[1], parts[2], parts[10]]))
    write_npz(folder / "val_data.npz", 1)
    with pytest.raises(DdpmdpError, match="both validation and training npz files"):
        load_images(f"imagenet64:{folder}")


def test_imagenet64_npz_file_through_the_spec(tmp_path: Path) -> None:
    write_npz(tmp_path / "val_data.npz", 2)
    with pytest.warns(UserWarning, match="Chrabaszcz"):
        assert load_images(f"imagenet64:{tmp_path / 'val_data.npz'}").identity == "imagenet64:npz:val_data.npz"


def test_imagenet64_wrong_shapes(tmp_path: Path) -> None:
    write_npz(tmp_path / "in32.npz", 2, row=3072)
    with pytest.raises(DdpmdpError, match="32×32 images \\(Imagenet32\\); imagenet64 needs 12288"):
        imagenet64.load_imagenet64(tmp_path / "in32.npz")
    np.savez(tmp_path / "hwc.npz", data=np.zeros((2, 64, 64, 3), np.uint8))
    with pytest.raises(DdpmdpError, match=r"must have shape \(N, 12288\).*got \(2, 64, 64, 3\)"):
        imagenet64.load_imagenet64(tmp_path / "hwc.npz")
    np.savez(tmp_path / "nodata.npz", images=np.zeros((2, 12288), np.uint8))
    with pytest.raises(DdpmdpError, match="must hold a 'data' array"):
        imagenet64.load_imagenet64(tmp_path / "nodata.npz")
    bad = tmp_path / "folder_of_wrong_rows"
    bad.mkdir()
    write_npz(bad / "val_data.npz", 2, row=3072)
    with pytest.raises(DdpmdpError, match="Imagenet32"):
        load_images(f"imagenet64:{bad}")
    with pytest.raises(DdpmdpError, match="does not exist"):
        load_images(f"imagenet64:{tmp_path / 'missing'}")
    with pytest.raises(DdpmdpError, match="needs a path"):
        load_images("imagenet64")


def test_imagenet64_png_folder(tmp_path: Path) -> None:
    Image = pytest.importorskip("PIL.Image")
    folder = tmp_path / "valid_64x64"
    (folder / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    grey = rng.integers(0, 256, (64, 64), dtype=np.uint8)
    Image.fromarray(rgb).save(folder / "b.png")
    Image.fromarray(grey).save(folder / "a.png")
    Image.fromarray(rgb).save(folder / "sub" / "c.png")
    ds = load_images(f"imagenet64:{folder}")
    assert ds.identity == "imagenet64:png:valid_64x64" and ds.split == "val" and len(ds) == 3
    assert np.array_equal(ds.images[0], np.stack([grey] * 3))  # sorted: a.png, b.png, sub/c.png
    assert np.array_equal(ds.images[1], rgb.transpose(2, 0, 1))
    assert any("PNG-folder variant" in n for n in ds.notes)
    Image.fromarray(rgb[:32, :32]).save(folder / "d.png")
    with pytest.raises(DdpmdpError, match="d.png is 32×32, not 64×64"):
        load_images(f"imagenet64:{folder}")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DdpmdpError, match="holds no .png files"):
        load_images(f"imagenet64:{empty}")


def test_tiny_imagenet64_split_on_a_fake_file(tmp_path: Path) -> None:
    (tmp_path / "tiny-imagenet64").mkdir()
    data = write_npz(tmp_path / "tiny-imagenet64" / "val_data.npz", 10000)
    train = load_images("tiny-imagenet64:train", tmp_path)
    test = load_images("tiny-imagenet64:test", tmp_path)
    assert (len(train), len(test)) == (8000, 2000)
    assert np.array_equal(test.images[0].reshape(-1), data[8000])
    assert any("differs from the project's shared file" in n for n in train.notes)
    with pytest.raises(DdpmdpError, match="unknown tiny-imagenet64 split 'val'"):
        load_images("tiny-imagenet64:val", tmp_path)
    write_npz(tmp_path / "tiny-imagenet64" / "val_data.npz", 10)
    with pytest.raises(DdpmdpError, match="holds 10 images"):
        load_images("tiny-imagenet64", tmp_path)


# ---- the shared offline data -------------------------------------------------------------------------
@needs_data
def test_shared_cifar10_test_set() -> None:
    with pytest.warns(UserWarning, match="test_batch .*differs from the official files"):
        ds = load_images("cifar10:test")
    assert ds.images.shape == (10000, 3, 32, 32)
    assert any("not comparable to published numbers" in n for n in ds.notes)
    lossless = Path(DATA) / "cifar10_test_first100_lossless.npz"
    if lossless.is_file():  # exact official pixels of rows 0..99: JPEG error only (MAE ≈ 6)
        with np.load(lossless) as z:
            exact = z["data"].reshape(-1, 3, 32, 32).astype(np.float64)
        mae = np.abs(ds.images[:100].astype(np.float64) - exact).mean()
        assert mae < 8.0
        shifted = np.abs(ds.images[1:101].astype(np.float64) - exact).mean()
        assert shifted > 30.0


@needs_data
def test_shared_cifar10_partial_train_set() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = load_images("cifar10:train")
    assert len(ds) == 10000 and ds.identity == "cifar10:train"
    assert any("loaded data_batch_1 (10000 images); missing data_batch_2" in n for n in ds.notes)
    assert any("data_batch_1" in str(w.message) and "MD5" in str(w.message) for w in caught)
    means = ds.images.reshape(10000, 3, -1).mean(axis=(0, 2))
    assert np.allclose(means, [125.79, 123.24, 114.03], atol=0.05)  # shared/data/README.md


@needs_data
def test_shared_tiny_imagenet64() -> None:
    train, test, full = (load_images(s) for s in ("tiny-imagenet64:train", "tiny-imagenet64:test", "tiny-imagenet64"))
    assert (len(train), len(test), len(full)) == (8000, 2000, 10000)
    assert full.split == "all" and test.identity == "tiny-imagenet64:test"
    assert np.array_equal(full.images[8000:], test.images)
    assert any("not downsampled ImageNet 64" in n for n in train.notes)
    assert not any("differs from the project's shared file" in n for n in train.notes)
    means = full.images.reshape(10000, 3, -1).mean(axis=(0, 2))
    assert np.allclose(means, [123.00, 114.62, 101.51], atol=0.05)


@needs_data
def test_lossless_cifar10_pair_specs() -> None:
    """``cifar10-lossless:train|test`` load exactly the shared files' pixels and labels. The first
    pixels are the official CIFAR-10 values (train image 0, a frog: red row 59, 43, 50, 68; test
    image 0, a cat: 158, 159, 165, 166), so a transposed or shifted layout fails."""
    train, test = load_images("cifar10-lossless:train"), load_images("cifar10-lossless:test")
    assert (train.identity, train.split, test.identity, test.split) == (
        "cifar10-lossless:train", "train", "cifar10-lossless:test", "test")
    assert train.images.shape == (4000, 3, 32, 32) and test.images.shape == (100, 3, 32, 32)
    assert train.images.dtype == np.uint8 and test.images.dtype == np.uint8
    assert train.images[0, 0, 0, :4].tolist() == [59, 43, 50, 68] and train.images[0, 1, 0, :3].tolist() == [62, 46, 48]
    assert test.images[0, 0, 0, :4].tolist() == [158, 159, 165, 166] and test.images[0, 1, 0, :3].tolist() == [112, 111, 116]
    assert train.images[-1, 2, -1, -4:].tolist() == [51, 54, 49, 57]
    for ds, name in ((train, "cifar10_train_first4000_lossless.npz"), (test, "cifar10_test_first100_lossless.npz")):
        with np.load(Path(DATA) / name) as z:
            assert np.array_equal(ds.images.reshape(len(ds), -1), z["data"])
            assert ds.labels is not None and np.array_equal(ds.labels, z["labels"])
        assert ds.notes == []  # the shared files' sha256 match
    assert train.labels is not None and train.labels[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]
    assert test.labels is not None and test.labels[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    # the same images as the JPEG copies' first rows: labels equal, pixels within JPEG error
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        jpeg_train = load_images("cifar10:train").subset(4000)
    assert jpeg_train.labels is not None and np.array_equal(jpeg_train.labels, train.labels)
    assert np.abs(jpeg_train.images.astype(float) - train.images).mean() < 8.0
    assert np.array_equal(load_images("cifar10-lossless100").images, test.images)  # the old name
    assert np.array_equal(train.subset(5).labels, train.labels[:5])
    for bad in ("cifar10-lossless", "cifar10-lossless:val", "cifar10-lossless100:train"):
        with pytest.raises(DdpmdpError, match="cifar10-lossless:test"):
            load_images(bad)
