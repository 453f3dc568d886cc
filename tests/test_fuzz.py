"""Fuzzing (hypothesis) of what reads outside input: the IDX parser, recipes and `key=value`
overrides, the class-folder (and .npz) loaders. Whatever the bytes, nothing escapes but the
project's own errors (SemiregError), and what is accepted is consistent.

CI runs a fixed (derandomised) set of examples; benchmarks/qa/fuzz.py runs many random ones:
SEMIREG_FUZZ_EXAMPLES=N and SEMIREG_FUZZ_RANDOM=1.
"""

import gzip
import io
import math
import os
import string
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from semireg.config import config_for, fill_short_keys, load_recipe, parse_override
from semireg.data.folders import load_folder, load_npz
from semireg.data.idx import _DTYPES, parse_idx, read_bytes
from semireg.errors import SemiregError

EXAMPLES = int(os.environ.get("SEMIREG_FUZZ_EXAMPLES", "120"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=os.environ.get("SEMIREG_FUZZ_RANDOM") != "1",
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _only_our_errors(fn, *args):
    """fn's result, or None when it raised a SemiregError; anything else fails the test."""
    try:
        return fn(*args)
    except SemiregError as exc:
        assert str(exc), "an error must say what is wrong"
        return None


# ----------------------------------------------------------------------------- IDX


def _idx(code: int, dims: list[int], payload: bytes) -> bytes:
    return bytes([0, 0, code, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims) + payload


@FUZZ
@given(st.binary(max_size=400))
def test_idx_parser_on_arbitrary_bytes(data):
    _only_our_errors(parse_idx, data)


@FUZZ
@given(
    code=st.sampled_from(sorted(_DTYPES) + [0x00, 0x0A, 0xFF]),
    dims=st.lists(st.one_of(st.integers(0, 6), st.integers(0, 2**32 - 1)), min_size=0, max_size=5),
    extra=st.integers(-8, 8),
    seed=st.integers(0, 2**16),
)
@example(code=8, dims=[0, 87, 472778, 473287, 473793], extra=0, seed=0)  # found by fuzzing: was a ValueError
def test_idx_parser_on_headers_with_any_dimensions(code, dims, extra, seed):
    size = np.dtype(_DTYPES[code]).itemsize if code in _DTYPES else 1
    count = math.prod(dims)
    n = max(0, min(count * size + extra, 4096))  # never allocate more than a few KB
    payload = np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()
    arr = _only_our_errors(parse_idx, _idx(code, dims, payload))
    if arr is not None:  # accepted: exactly the declared shape, from exactly the declared bytes
        assert list(arr.shape) == dims and arr.size * size == n


_GOOD = _idx(0x08, [3, 2, 2], bytes(range(12)))


@FUZZ
@given(
    flips=st.lists(st.tuples(st.integers(0, 200), st.integers(1, 255)), max_size=6),
    cut=st.integers(0, 200),
    compress=st.booleans(),
)
def test_damaged_idx_files_raw_or_gzipped(flips, cut, compress):
    data = bytearray(gzip.compress(_GOOD) if compress else _GOOD)
    for pos, mask in flips:
        if pos < len(data):
            data[pos] ^= mask
    data = bytes(data[: max(cut, 1)] if cut < len(data) else data)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x-idx3-ubyte"
        path.write_bytes(data)
        raw = _only_our_errors(read_bytes, path)
        if raw is not None:
            _only_our_errors(parse_idx, raw, str(path))


# ----------------------------------------------------------------------------- recipes and overrides

KEYS = [
    "steps",
    "lr",
    "train.steps",
    "train.lr",
    "train.batch_size",
    "train.optimizer",
    "train.schedule",
    "data.dataset",
    "data.n_labeled",
    "data.protocol",
    "model.name",
    "model.hidden",
    "method.name",
    "method.eps",
    "method.xi",
    "augment.pad",
    "augment.ra_magnitude",
    "logger",
    "version",
    "teacher",
    "train",
    "data",
    "method",
    "x.y.z",
]
TOML_VALUES = [
    "1",
    "-3",
    "0",
    "1e-3",
    "2.5",
    "nan",
    "inf",
    "true",
    "false",
    '"vat"',
    '"cnn"',
    '"cosine"',
    "[1, 2]",
    "[]",
    '["a"]',
    '{ name = "vat" }',
    "{}",
    "[[1], [2]]",
    "1979-05-27",
    '"',
    "[",
    "{",
    "= =",
    "",
]


@FUZZ
@given(st.text(max_size=60))
def test_override_parser_on_arbitrary_text(item):
    _only_our_errors(parse_override, item)


@FUZZ
@example(items=[("method.name", "[1, 2]")])  # found by fuzzing: was a TypeError
@example(items=[("version", '"vat"')])  # found by fuzzing: was a TypeError
@given(
    items=st.lists(
        st.tuples(st.sampled_from(KEYS), st.one_of(st.sampled_from(TOML_VALUES), st.text(max_size=12))),
        min_size=1,
        max_size=4,
    )
)
def test_overrides_resolve_or_raise_a_config_error(items):
    recipe = load_recipe("demo")

    def resolve_all():
        overrides = dict(parse_override(f"{k}={v}") for k, v in items)
        fill_short_keys(overrides)
        return config_for(recipe, "vat", 0, overrides)

    cfg = _only_our_errors(resolve_all)
    if cfg is not None:  # accepted: the resolved config has the declared types
        assert isinstance(cfg.train.steps, int) and isinstance(cfg.train.lr, float)
        assert isinstance(cfg.model.hidden, list) and cfg.logger in ("jsonl", "tensorboard")


def _toml_table(entries: list[tuple[str, str]]) -> str:
    return "".join(f"{k} = {v}\n" for k, v in entries)


SECTIONS = ["data", "model", "method", "train", "augment", "robustness", "variants", "stages", "other"]
FIELDS = [
    "name",
    "steps",
    "lr",
    "dataset",
    "n_labeled",
    "hidden",
    "eps",
    "pad",
    "seed",
    "teacher",
    "extends",
    "description",
    "seeds",
    "batch_size",
    "schedule",
    "version",
    "protocol",
]


@FUZZ
@given(
    top=st.lists(st.tuples(st.sampled_from(FIELDS), st.sampled_from(TOML_VALUES)), max_size=3),
    tables=st.lists(
        st.tuples(
            st.sampled_from(SECTIONS),
            st.booleans(),
            st.lists(st.tuples(st.sampled_from(FIELDS), st.sampled_from(TOML_VALUES)), max_size=4),
        ),
        max_size=5,
    ),
    noise=st.text(max_size=20),
)
@example(top=[], tables=[("train", True, [])], noise="")  # found by fuzzing: [[train]] was an AttributeError
def test_recipe_files_load_or_raise_a_config_error(top, tables, noise):
    text = _toml_table(top)
    for name, array, entries in tables:
        text += (f"[[{name}]]\n" if array else f"[{name}]\n") + _toml_table(entries)
    text += noise
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzzed.toml"
        path.write_bytes(text.encode("utf-8", errors="replace"))

        def load_and_resolve():
            recipe = load_recipe(str(path))
            return [
                config_for(recipe, v, s, {}, st_)
                for v, _ in recipe.variants
                for s in recipe.seeds[:2]
                for st_, _ in recipe.stages
            ]

        _only_our_errors(load_and_resolve)


# ----------------------------------------------------------------------------- class folders and .npz

MODES = ["L", "RGB", "RGBA", "P", "1", "I;16", "CMYK", "LA"]


def _image_bytes(kind: str, mode: str, w: int, h: int, seed: int) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    if kind == "random":
        return rng.integers(0, 256, rng.integers(0, 300), dtype=np.uint8).tobytes()
    img = Image.new(mode, (w, h))
    buf = io.BytesIO()
    fmt = "JPEG" if (kind == "jpeg" and mode in ("L", "RGB")) or mode == "CMYK" else "PNG"  # PNG has no CMYK
    img.save(buf, format=fmt)
    data = buf.getvalue()
    if kind == "truncated":
        data = data[: rng.integers(0, len(data))]
    return data


FILE = st.tuples(
    st.sampled_from(["png", "jpeg", "random", "truncated"]),
    st.sampled_from(MODES),
    st.integers(1, 5),
    st.integers(1, 5),
    st.integers(0, 1000),
    st.sampled_from([".png", ".jpg", ".jpeg", ".bmp", ".txt"]),
)
NAME = st.text(alphabet=string.ascii_letters + string.digits + "_-. ", min_size=1, max_size=8).filter(
    lambda s: s.strip(" .") == s and s not in (".", "..")
)


@FUZZ
@given(
    tree=st.lists(
        st.tuples(st.sampled_from(["", "train/", "test/", "deep/er/"]), NAME, st.lists(FILE, min_size=0, max_size=4)),
        min_size=0,
        max_size=4,
    ),
    as_tar=st.booleans(),
    cut=st.one_of(st.none(), st.integers(0, 2000)),
)
def test_class_folder_loader_on_arbitrary_trees(tree, as_tar, cut):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "images"
        root.mkdir()
        for prefix, cls, files in tree:
            folder = root / prefix / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i, (kind, mode, w, h, seed, suffix) in enumerate(files):
                (folder / f"{i}{suffix}").write_bytes(_image_bytes(kind, mode, w, h, seed))
        source = root
        if as_tar:
            source = Path(tmp) / "images.tar.gz"
            with tarfile.open(source, "w:gz") as tar:
                tar.add(root, arcname="images")
            if cut is not None:
                source.write_bytes(source.read_bytes()[:cut])
        ds = _only_our_errors(load_folder, source, Path(tmp) / "cache")
        if ds is not None:  # accepted: (N, C, H, W) pixels in [0, 1] and labels that name a class
            assert ds.x_train.ndim == 4 and ds.x_train.shape[1] in (1, 3) and len(ds.x_train) == len(ds.y_train)
            assert ds.x_train.dtype == torch.uint8  # pixels as decoded (0-255); floats are made per batch
            assert int(ds.y_train.max()) < ds.num_classes == len(ds.class_names)


@FUZZ
@given(st.binary(max_size=300), st.booleans())
def test_npz_loader_on_arbitrary_bytes(data, zip_magic):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.npz"
        path.write_bytes((b"PK\x03\x04" if zip_magic else b"") + data)
        _only_our_errors(load_npz, path)


@pytest.mark.parametrize(
    "arrays",
    [
        {"x": np.zeros((4, 8, 8)), "y": np.array([0, 1, 0, 1])},
        {"x": np.zeros((4, 8)), "y": np.array([0.5, 1, 0, 1])},
        {"x": np.zeros((3, 2)), "y": np.array([0, 1])},
        {"x": np.array(["a", "b"]), "y": np.array([0, 1])},
        {"y": np.array([0, 1])},
    ],
)
def test_npz_loader_on_odd_arrays(tmp_path, arrays):
    np.savez(tmp_path / "a.npz", **arrays)
    _only_our_errors(load_npz, tmp_path / "a.npz")


@FUZZ
@given(
    x_shape=st.lists(st.integers(0, 4), min_size=0, max_size=5),
    x_dtype=st.sampled_from(["uint8", "float32", "float64", "int64", "bool", "complex64"]),
    y=st.lists(st.one_of(st.integers(-3, 12), st.floats(allow_nan=True, allow_infinity=True)), max_size=5),
    num_classes=st.one_of(st.none(), st.integers(-2, 12)),
    with_test=st.booleans(),
)
def test_npz_loader_on_arbitrary_arrays(x_shape, x_dtype, y, num_classes, with_test):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "a.npz"
        arrays = {"x": np.zeros(x_shape, dtype=x_dtype), "y": np.array(y)}
        if num_classes is not None:
            arrays["num_classes"] = np.array(num_classes)
        if with_test:
            arrays.update(x_test=np.zeros(x_shape, dtype=x_dtype), y_test=np.array(y))
        np.savez(path, **arrays)
        ds = _only_our_errors(load_npz, path)
        if ds is not None and len(ds.y_train):  # accepted: labels name classes that exist
            assert 0 <= int(ds.y_train.min()) and int(ds.y_train.max()) < ds.num_classes
            assert len(ds.x_train) == len(ds.y_train)


# ----------------------------------------------------------------------------- CSV

CELL = st.one_of(
    st.sampled_from(["", "1", "-2.5", "nan", "inf", "1e400", "1e300", "3e38", "cat", " ", '"', "1,2", "\n", "０"]),
    st.text(max_size=6),
    st.floats(allow_nan=True).map(str),
)


@FUZZ
@given(
    header=st.lists(st.sampled_from(["label", "target", "a", "b", "c", "", "label"]), min_size=0, max_size=5),
    rows=st.lists(st.lists(CELL, min_size=0, max_size=6), min_size=0, max_size=8),
    raw=st.one_of(st.none(), st.binary(max_size=200)),
    standardize=st.booleans(),
)
def test_csv_loader_on_arbitrary_tables(header, rows, raw, standardize):
    import csv as csv_module

    from semireg.data.tabular import load_csv

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "t.csv"
        if raw is not None:
            path.write_bytes(raw)
        else:
            with open(path, "w", newline="") as f:
                writer = csv_module.writer(f)
                writer.writerow(header)
                writer.writerows(rows)
        ds = _only_our_errors(load_csv, path, "", (), standardize)
        if ds is not None:  # accepted: finite features, labels naming classes, every row somewhere
            assert ds.x_train.ndim == 2 and len(ds.x_train) == len(ds.y_train) > 0
            assert bool(torch.isfinite(ds.x_train).all())
            assert int(ds.y_train.max()) < ds.num_classes == len(ds.class_names)
            unlabelled = 0 if ds.x_unlabeled is None else len(ds.x_unlabeled)
            if raw is None:
                assert len(ds.y_train) + unlabelled == sum(1 for r in rows if any(c.strip() for c in r))


@pytest.mark.filterwarnings("ignore:A single label was found")  # scikit-learn's note on one-class inputs
@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 6).flatmap(
        lambda k: st.tuples(
            st.just(k), st.lists(st.tuples(st.integers(0, k - 1), st.integers(0, k - 1)), min_size=1, max_size=40)
        )
    )
)
def test_classification_metrics_agree_with_scikit_learn(case):
    """semireg computes its metrics in numpy (sklearn.metrics costs ~2 s of start-up): the same
    numbers as scikit-learn's, classes without samples or predictions included (zero_division=0)."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    from semireg.evaluation import classification_metrics

    k, pairs = case
    y_true, y_pred = np.array([t for t, _ in pairs]), np.array([p for _, p in pairs])
    ours = classification_metrics(y_true, y_pred, k)
    labels = list(range(k))
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    assert ours["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred))
    assert ours["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0))
    np.testing.assert_allclose(ours["per_class"]["precision"], precision)
    np.testing.assert_allclose(ours["per_class"]["recall"], recall)
    np.testing.assert_allclose(ours["per_class"]["f1"], f1)
    assert ours["per_class"]["support"] == support.tolist()
    assert ours["confusion"] == confusion_matrix(y_true, y_pred, labels=labels).tolist()


# ----------------------------------------------------------------------------- partially labelled data

LABEL_VALUES = st.one_of(
    st.integers(-2, 3),
    st.sampled_from(["a", "b", "", "-1", None, float("nan"), 1.5, True]),
    st.floats(allow_nan=True, allow_infinity=True),
)


@FUZZ
@given(labels=st.lists(LABEL_VALUES, min_size=0, max_size=12), width=st.integers(0, 3), bad_x=st.booleans())
@example(labels=[0, "a"], width=2, bad_x=False)  # mixed types: one error naming row 1
def test_partially_labelled_data_is_split_or_refused_before_training(labels, width, bad_x):
    """What every entry point does with `(x, y)` before training: the unlabelled rows split out and
    the rest checked, or one SemiregError; the labelled and unlabelled rows add up to the input."""
    from semireg.api import partition, user_data

    x = np.arange(len(labels) * max(width, 1), dtype=np.float32).reshape(len(labels), max(width, 1))
    if bad_x and len(x):
        x[-1, 0] = np.nan
    parts = _only_our_errors(partition, (x, labels))
    if parts is None:
        return
    x_l, y_l, x_u = parts
    assert len(x_l) == len(y_l) and len(x_l) + (0 if x_u is None else len(x_u)) == len(labels)
    data = _only_our_errors(user_data, (x_l, y_l), x_u, None, None, None)
    if data is not None:
        assert torch.isfinite(data.x_l).all() and int(data.y_l.min()) >= 0 and int(data.y_l.max()) < data.num_classes
