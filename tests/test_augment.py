import pytest
import torch

from semireg.augment import (
    RANDAUGMENT_OPS,
    AugmentConfig,
    Augmenter,
    equalize,
    pad_crop,
    rand_augment,
    random_crop,
    random_flip,
    resize_crop,
)
from semireg.errors import ConfigError


def images(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    # Smooth structured images (a gradient plus blobs) so that every operation has something to change.
    base = torch.linspace(0, 1, 32).view(1, 1, 1, 32).expand(n, 3, 32, 32)
    return (0.6 * base + 0.4 * torch.rand(n, 3, 32, 32, generator=g)).clamp(0, 1)


@pytest.mark.parametrize("name,op", RANDAUGMENT_OPS, ids=[n for n, _ in RANDAUGMENT_OPS])
def test_each_op_keeps_shape_and_range_and_changes_the_image(name, op):
    x = images(16)
    v = torch.linspace(-1, 1, 16)
    v = torch.where(v.abs() < 0.3, torch.full_like(v, 0.9), v)  # strong magnitudes only
    y = op(x, v, 0.5)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert y.min() >= 0 and y.max() <= 1
    if name != "identity":
        assert (y - x).abs().amax(dim=(1, 2, 3)).gt(1e-3).sum() >= 12, f"{name} left most images unchanged"


def test_rand_augment_draws_operations_per_image():
    x = images(1).expand(256, 3, 32, 32).contiguous()  # one image, repeated
    g = torch.Generator().manual_seed(0)
    y, ops = rand_augment(x, num_ops=2, magnitude=9, generator=g, return_ops=True)
    # Per-image policies: many distinct operation pairs and many distinct outputs in one batch.
    assert len({tuple(o) for o in ops.tolist()}) > 50
    distinct = torch.unique(y.flatten(1).mul(255).round(), dim=0)
    assert len(distinct) > 100
    # Images that drew the same pair of ops with the same signs are not required to match, but a
    # batch-wide policy (kornia's auto.RandAugment) would make every row identical: it is not.
    assert ops[:, 0].unique().numel() == len(RANDAUGMENT_OPS)


def test_rand_augment_is_deterministic_under_a_seed():
    x = images(32)
    a = rand_augment(x, generator=torch.Generator().manual_seed(3))
    b = rand_augment(x, generator=torch.Generator().manual_seed(3))
    c = rand_augment(x, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() <= 1


def test_batched_rand_augment_is_each_image_through_its_own_operations():
    """Grouping by operation and warping all geometric images of a position in one gather must give
    what each image's own operations, applied one after the other, give (bit for bit)."""
    x, num_ops = images(96), 2
    out = rand_augment(
        x,
        num_ops=num_ops,
        magnitude=9.0,
        magnitude_mode="uniform",
        fill=0.5,
        generator=torch.Generator().manual_seed(5),
    )
    g = torch.Generator().manual_seed(5)  # the same draws, in rand_augment's order
    ops = torch.randint(len(RANDAUGMENT_OPS), (96, num_ops), generator=g)
    level = torch.full((96, num_ops), 0.9) * torch.rand(96, num_ops, generator=g)
    sign = torch.where(torch.rand(96, num_ops, generator=g) < 0.5, -1.0, 1.0)
    signed = (level * sign).clamp(-1.0, 1.0)
    for i in range(96):
        img = x[i : i + 1]
        for j in range(num_ops):
            img = RANDAUGMENT_OPS[int(ops[i, j])][1](img, signed[i : i + 1, j], 0.5)
        assert torch.equal(out[i : i + 1], img), (i, [RANDAUGMENT_OPS[int(k)][0] for k in ops[i]])


def test_magnitude_zero_is_only_sign_free_ops():
    # At magnitude 0 every magnitude-driven op is the identity; only autocontrast/equalize act.
    x = images(64)
    y, ops = rand_augment(x, num_ops=1, magnitude=0.0, generator=torch.Generator().manual_seed(0), return_ops=True)
    names = [RANDAUGMENT_OPS[i][0] for i in ops[:, 0].tolist()]
    for i, name in enumerate(names):
        if name not in ("autocontrast", "equalize", "posterize"):
            assert torch.allclose(y[i], x[i], atol=1e-5), name


def test_weak_views():
    x = images(64)
    g = torch.Generator().manual_seed(0)
    flipped = random_flip(x, g)
    same = (flipped == x).flatten(1).all(1)
    mirrored = (flipped == x.flip(-1)).flatten(1).all(1)
    assert (same | mirrored).all() and 10 < same.sum() < 54
    crop = pad_crop(x, 4, g)
    assert crop.shape == x.shape
    offsets = {
        tuple(torch.nonzero((c[0, 4:28, 4:28] - x[i, 0, 4:28, 4:28]).abs() < 1e-7).shape) for i, c in enumerate(crop)
    }
    assert len(offsets) > 1  # different images, different offsets
    rc = resize_crop(x, 96, 72, g)
    assert rc.shape == (64, 3, 72, 72)
    with pytest.raises(ValueError):
        random_crop(x, 40, g)


def test_random_crop_takes_a_window_of_the_image():
    x = torch.arange(2 * 1 * 8 * 8, dtype=torch.float32).view(2, 1, 8, 8)
    out = random_crop(x, 5, torch.Generator().manual_seed(0))
    for i in range(2):
        windows = [x[i, :, r : r + 5, c : c + 5] for r in range(4) for c in range(4)]
        assert any(torch.equal(out[i], w) for w in windows)


def test_equalize_matches_pil():
    from PIL import Image, ImageOps

    x = images(4, seed=1)
    ours = equalize(x, torch.zeros(4), 0.5)
    for i in range(4):
        arr = x[i].permute(1, 2, 0).mul(255).round().byte().numpy()
        ref = (
            torch.from_numpy(__import__("numpy").array(ImageOps.equalize(Image.fromarray(arr))))
            .permute(2, 0, 1)
            .float()
            / 255
        )
        assert torch.allclose(ours[i], ref, atol=1.5 / 255)


def test_augmenter_state_resumes_the_same_draws():
    x = images(16)
    a = Augmenter(AugmentConfig(flip=True, pad=4), seed=1)
    a.weak(x)
    state = a.state_dict()
    first = a.strong(a.weak(x))
    b = Augmenter(AugmentConfig(flip=True, pad=4), seed=99)
    b.load_state_dict(state)
    assert torch.equal(first, b.strong(b.weak(x)))


def test_augment_config_is_validated():
    with pytest.raises(ConfigError):
        Augmenter(AugmentConfig(resize=96, crop=100))
    with pytest.raises(ConfigError):
        Augmenter(AugmentConfig(ra_magnitude=12))
    eval_view = Augmenter(AugmentConfig(resize=96, crop=72)).eval_view(images(2))
    assert eval_view.shape == (2, 3, 72, 72)
