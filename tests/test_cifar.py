"""The canonical CIFAR-10 python loader, on small files in the same format that the tests write."""

import io
import os
import pickle
import tarfile

import numpy as np
import pytest
import torch

from semireg.data import load_dataset
from semireg.data.cifar10 import CLASSES, load_cifar10_python, safe_unpickle
from semireg.errors import DataError


def batch_bytes(n, seed, protocol=2):
    rng = np.random.default_rng(seed)
    batch = {
        b"batch_label": b"testing",
        b"labels": [int(v) for v in rng.integers(0, 10, n)],
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"filenames": [b"x.png"] * n,
    }
    return pickle.dumps(batch, protocol=protocol), batch


def write_archive(path, members):
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def canonical_members(n=20, protocol=2):
    members, batches = {}, {}
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        data, batch = batch_bytes(n, i, protocol)
        members[f"cifar-10-batches-py/{name}"] = data
        batches[name] = batch
    members["cifar-10-batches-py/batches.meta"] = pickle.dumps(
        {b"label_names": [c.encode() for c in CLASSES]}, protocol=2
    )
    return members, batches


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_reads_the_canonical_format(tmp_path, protocol):
    members, batches = canonical_members(protocol=protocol)
    path = tmp_path / "cifar-10-python.tar.gz"
    write_archive(path, members)
    ds = load_cifar10_python(path)
    assert ds.x_train.shape == (100, 3, 32, 32) and ds.x_test.shape == (20, 3, 32, 32)
    first = batches["data_batch_1"]
    # Row-major (N, 3072) = 1024 red, 1024 green, 1024 blue values.
    assert ds.x_train.dtype == torch.uint8  # pixels as stored: floats are made per batch
    assert np.array_equal(ds.x_train[0].numpy(), first[b"data"][0].reshape(3, 32, 32))
    assert ds.y_train[:20].tolist() == first[b"labels"]
    assert ds.class_names == CLASSES


def test_dataset_name_finds_the_archive(tmp_path):
    members, _ = canonical_members()
    write_archive(tmp_path / "cifar-10-python.tar.gz", members)
    ds = load_dataset("cifar10", str(tmp_path))
    assert ds.name == "cifar10" and len(ds.x_train) == 100


class Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/semireg-pwned",))


def test_refuses_a_pickle_that_would_run_code(tmp_path):
    evil = pickle.dumps({"data": Exploit(), "labels": [0]}, protocol=2)
    with pytest.raises(DataError, match="refusing to unpickle"):
        safe_unpickle(evil, "evil")
    members, _ = canonical_members()
    members["cifar-10-batches-py/data_batch_3"] = evil
    path = tmp_path / "cifar-10-python.tar.gz"
    write_archive(path, members)
    with pytest.raises(DataError, match="refusing"):
        load_cifar10_python(path)
    assert not os.path.exists("/tmp/semireg-pwned")


def test_refuses_an_archive_member_outside_the_target(tmp_path):
    members, _ = canonical_members()
    members["cifar-10-batches-py/../../escape"] = b"x"
    path = tmp_path / "cifar-10-python.tar.gz"
    write_archive(path, members)
    with pytest.raises(DataError, match="outside"):
        load_cifar10_python(path)
    members.pop("cifar-10-batches-py/../../escape")
    members["/etc/evil"] = b"x"
    write_archive(path, members)
    with pytest.raises(DataError, match="outside"):
        load_cifar10_python(path)


def test_malformed_batches_are_data_errors(tmp_path):
    with pytest.raises(DataError):
        safe_unpickle(b"not a pickle", "junk")
    with pytest.raises(DataError, match="uint8"):
        members, _ = canonical_members()
        members["cifar-10-batches-py/test_batch"] = pickle.dumps(
            {"data": np.zeros((3, 10), np.float32), "labels": [0, 1, 2]}
        )
        path = tmp_path / "c.tar.gz"
        write_archive(path, members)
        load_cifar10_python(path)


def test_jpeg_copy_is_named_as_such(real_cifar):
    ds = real_cifar
    assert ds.name == "cifar10-jpeg" and ds.class_names == CLASSES and ds.x_test.shape == (10000, 3, 32, 32)
