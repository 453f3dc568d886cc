import gzip
import io
import tarfile

import numpy as np
import pytest
import torch
from conftest import SHARED_DATA, cifar_archive, mnist_available

from semireg.config import resolve
from semireg.data import IndexSampler, load_dataset, make_split, official_test_subset
from semireg.data.folders import load_folder, load_npz
from semireg.data.idx import parse_idx
from semireg.data.mnist import load_mnist
from semireg.errors import ConfigError, DataError
from semireg.traindata import data_from_config

needs_mnist = pytest.mark.skipif(not mnist_available(), reason="../shared/data/mnist not present")


def idx_bytes(arr: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return header + arr.astype(np.uint8).tobytes()


def test_idx_round_trip_and_corruption():
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    data = idx_bytes(arr)
    assert np.array_equal(parse_idx(data), arr)
    for bad in (data[:-1], data[:6], b"\x01\x00\x08\x01", data[:2] + b"\x42" + data[3:]):
        with pytest.raises(DataError):
            parse_idx(bad)


@needs_mnist
def test_mnist_loads_with_checked_md5():
    ds = load_dataset("mnist")
    assert ds.x_train.shape == (60000, 1, 28, 28) and ds.x_test.shape == (10000, 1, 28, 28)
    assert ds.x_train.dtype == torch.uint8  # a quarter of float32's bytes; floats per batch
    assert abs(ds.x_train.float().mean().item() / 255 - 0.1307) < 1e-3
    assert torch.bincount(ds.y_test).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@needs_mnist
def test_mnist_corrupt_file_is_refused(tmp_path):
    for name in ("train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (tmp_path / name).write_bytes((SHARED_DATA / "mnist" / name).read_bytes())
    raw = gzip.decompress((SHARED_DATA / "mnist" / "train-images-idx3-ubyte.gz").read_bytes())
    (tmp_path / "train-images-idx3-ubyte").write_bytes(raw[:-100])  # truncated, uncompressed
    with pytest.raises(DataError, match="md5"):
        load_mnist([tmp_path])


def test_mnist_missing_never_downloads_implicitly(tmp_path, monkeypatch):
    monkeypatch.setenv("SEMIREG_DATA", str(tmp_path / "nothing"))
    import urllib.request

    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: pytest.fail("tried to download"))
    with pytest.raises(DataError, match="--download"):
        load_dataset("mnist", data_dir=str(tmp_path / "empty"))


def test_digits_offline():
    ds = load_dataset("digits")
    assert ds.x_train.shape == (1797, 1, 8, 8) and 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0


def test_npz_dataset(tmp_path):
    x = np.random.randint(0, 255, (20, 3, 4, 4), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(20) % 4)
    ds = load_npz(tmp_path / "d.npz")
    assert ds.num_classes == 4 and ds.x_train.dtype == torch.float32 and ds.x_train.max() <= 1.0
    np.savez(tmp_path / "bad.npz", x=x)
    with pytest.raises(DataError, match="missing array 'y'"):
        load_npz(tmp_path / "bad.npz")


def _png(color, size=(6, 6)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def test_class_folders_directory_and_cache(tmp_path):
    root = tmp_path / "imgs"
    for cls, color in (("cat", (255, 0, 0)), ("dog", (0, 0, 255))):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            (root / cls / f"{i}.png").write_bytes(_png(color))
    ds = load_folder(root, cache=tmp_path / "cache")
    assert ds.class_names == ["cat", "dog"] and ds.x_train.shape == (6, 3, 6, 6)
    assert (ds.x_train[ds.y_train == 0][:, 0] == 255).all()  # cats are red (uint8 pixels)
    assert list((tmp_path / "cache" / "folders").glob("*.npz"))  # decoded once, cached


def test_class_folder_tar_refuses_escaping_member(tmp_path):
    path = tmp_path / "evil.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        data = _png((0, 0, 0))
        info = tarfile.TarInfo("../escape/x.png")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(DataError, match="outside"):
        load_folder(path, cache=tmp_path / "cache")


def test_cifar10_jpeg_class_folders_real(real_cifar):
    ds = load_dataset(f"folder:{cifar_archive()}")  # the class-folder loader, from the session's decode cache
    assert ds.x_train.shape == (50000, 3, 32, 32) and ds.x_test.shape == (10000, 3, 32, 32)
    assert ds.class_names[0] == "airplane" and torch.bincount(ds.y_test).tolist() == [1000] * 10


def test_holdout_split_seed001_protocol():
    y = np.arange(60000) % 10
    s = make_split(y, 10, protocol="holdout", n_labeled=100, n_test=10000, seed=1)
    assert (len(s.test), len(s.labeled), len(s.unlabeled)) == (10000, 100, 49900)
    assert len(np.intersect1d(s.test, s.labeled)) == 0 and len(np.intersect1d(s.labeled, s.unlabeled)) == 0
    assert len(np.intersect1d(s.test, s.unlabeled)) == 0
    s2 = make_split(y, 10, protocol="holdout", n_labeled=100, n_test=10000, seed=1)
    assert np.array_equal(s.labeled, s2.labeled)
    s3 = make_split(y, 10, protocol="holdout", n_labeled=100, n_test=10000, seed=2)
    assert not np.array_equal(s.labeled, s3.labeled)


def test_balanced_split_and_its_errors():
    y = np.arange(1000) % 10
    s = make_split(y, 10, protocol="standard", n_labeled=40, balanced=True, seed=0)
    assert np.bincount(y[s.labeled]).tolist() == [4] * 10
    with pytest.raises(ConfigError, match="multiple"):
        make_split(y, 10, protocol="standard", n_labeled=45, balanced=True)
    with pytest.raises(ConfigError, match="larger"):
        make_split(y, 10, protocol="standard", n_labeled=5000)


def test_sampler_covers_each_epoch_and_resumes_exactly():
    s = IndexSampler(10, 4, seed=3)
    first = torch.cat([s.next() for _ in range(5)])  # 20 = two epochs
    assert sorted(first[:10].tolist()) == list(range(10)) and sorted(first[10:].tolist()) == list(range(10))
    state = s.state_dict()
    ahead = [s.next() for _ in range(3)]
    s2 = IndexSampler(10, 4, seed=999)
    s2.load_state_dict(state)
    assert all(torch.equal(a, s2.next()) for a in ahead)


def test_n_test_under_standard_is_a_fixed_subset_of_the_official_test_set(tmp_path):
    # Until 2026-12-05 data.n_test was ignored under protocol "standard": asking for 40 test images
    # evaluated all of them without a word.
    rng = np.random.default_rng(0)
    path = tmp_path / "with_test.npz"
    np.savez(
        path,
        x=rng.random((200, 1, 4, 4), dtype=np.float32),
        y=np.arange(200) % 4,
        x_test=rng.random((100, 1, 4, 4), dtype=np.float32),
        y_test=np.arange(100) % 4,
    )

    def test_set(n_test, seed=0):
        cfg = resolve(
            {
                "data": {"dataset": f"npz:{path}", "protocol": "standard", "n_labeled": 20, "n_test": n_test},
                "train": {"seed": seed},
            }
        )
        return data_from_config(cfg)[0].eval_sets.get("test")

    x_all, _ = test_set(10000)
    assert len(x_all) == 100  # the default: every official test image
    x_40, y_40 = test_set(40)
    assert len(x_40) == len(y_40) == 40
    rows = [int(np.flatnonzero((x_all.flatten(1) == row).all(1))[0]) for row in x_40.flatten(1)]
    assert len(set(rows)) == 40  # distinct official test images
    assert torch.equal(test_set(40, seed=3)[0], x_40)  # the same images for every seed (and on resume)
    assert len(test_set(0)[0]) == 100  # 0 holds none out of the training images: the official set stays whole
    assert official_test_subset(100, 100) is None and official_test_subset(100, 0) is None
    with pytest.raises(ConfigError, match="n_test"):
        official_test_subset(100, -1)
