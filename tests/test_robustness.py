"""CIFAR-10-C corruptions: constants, severity ordering, determinism, cache, released files, the report."""

import json

import numpy as np
import pytest
import torch

from semireg.robustness import CORRUPTIONS, CORRUPTIONS_15, CORRUPTIONS_EXTRA, corrupt, robustness_summary
from semireg.robustness import corruptions as C
from semireg.robustness.evaluate import corrupted_images, released_images

# The reference generator's own constants are not monotone in pixel distance for these: glass
# blur's severity 2-3 blur the swapped pixels more (smoother, closer); elastic's affine amplitude
# falls from 2.56 to 0.96 px while its elastic field grows; frost and spatter change their blend
# or switch water -> mud at severity 4; saturate desaturates at 1-2 and over-saturates at 3-5;
# motion blur's radius 6 -> 8 at sigma 2 adds taps of negligible weight (severities 3 and 4 tie).
NOT_MONOTONE = {"glass_blur", "elastic_transform", "frost", "spatter", "saturate", "motion_blur"}


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(0)
    # Natural-ish images: smooth colour gradients plus texture, 32x32.
    ramp = torch.linspace(0.1, 0.9, 32)
    base = torch.stack([ramp.view(1, 32).expand(32, 32), ramp.view(32, 1).expand(32, 32), torch.full((32, 32), 0.5)])
    x = base[None] * 0.7 + 0.3 * torch.rand(48, 3, 32, 32, generator=g)
    return x.clamp(0, 1)


def rms(a, b):
    return float((a - b).pow(2).mean().sqrt())


def test_nineteen_corruptions_with_cifar_constants():
    assert len(CORRUPTIONS_15) == 15 and len(CORRUPTIONS_EXTRA) == 4 and len(CORRUPTIONS) == 19
    # Spot-check constants that differ between CIFAR-10-C and ImageNet-C (imagecorruptions).
    x = torch.full((1, 3, 32, 32), 0.5)
    assert torch.allclose(
        C.contrast(x + torch.linspace(-0.2, 0.2, 32), 5, None).std(),
        (x + torch.linspace(-0.2, 0.2, 32)).std() * 0.15,
        rtol=1e-4,
    )
    # CIFAR gaussian noise sigma at severity 1 is 0.04 (ImageNet-C: 0.08).
    g = torch.Generator().manual_seed(0)
    noise = C.gaussian_noise(torch.full((64, 3, 32, 32), 0.5), 1, g) - 0.5
    assert abs(float(noise.std()) - 0.04) < 0.002


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_every_corruption_changes_the_image_and_grows_with_severity(images, name):
    dist = []
    for s in range(1, 6):
        y = corrupt(images, name, s, seed=0)
        assert y.shape == images.shape and y.min() >= 0 and y.max() <= 1
        d = rms(y, images)
        assert d > 2e-3, f"{name} severity {s} barely changes the image"
        dist.append(d)
    if name in NOT_MONOTONE:
        assert max(dist[3:]) > min(dist[:3]) * 0.9 or name == "elastic_transform"
    else:
        assert all(a < b for a, b in zip(dist, dist[1:])), f"{name}: {dist}"


def test_corruptions_are_deterministic_and_seeded(images):
    a = corrupt(images, "shot_noise", 3, seed=0)
    b = corrupt(images, "shot_noise", 3, seed=0)
    c = corrupt(images, "shot_noise", 3, seed=1)
    assert torch.equal(a, b) and not torch.equal(a, c)
    # Quantised to uint8 levels, as the released files are.
    assert torch.allclose(a * 255, (a * 255).round(), atol=1e-3)


def test_brightness_and_saturate_match_an_hsv_round_trip():
    from matplotlib.colors import hsv_to_rgb, rgb_to_hsv

    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 32, 32, generator=g)
    x[0, :, :4, :4] = 0.3  # grey pixels: hue 0
    arr = x.permute(0, 2, 3, 1).numpy()
    hsv = rgb_to_hsv(arr)
    hsv_b = hsv.copy()
    hsv_b[..., 2] = np.clip(hsv_b[..., 2] + 0.3, 0, 1)
    ref_b = torch.from_numpy(hsv_to_rgb(hsv_b)).permute(0, 3, 1, 2).float()
    assert torch.allclose(C.brightness(x, 5, g), ref_b, atol=1e-5)
    hsv_s = hsv.copy()
    hsv_s[..., 1] = np.clip(hsv_s[..., 1] * 2.5 + 0.2, 0, 1)
    ref_s = torch.from_numpy(hsv_to_rgb(hsv_s)).permute(0, 3, 1, 2).float()
    assert torch.allclose(C.saturate(x, 5, g), ref_s, atol=1e-5)


def test_generated_images_are_cached(images, tmp_path):
    first = corrupted_images(images, "fog", 2, seed=0)
    cached = list((tmp_path / "cache" / "semireg" / "corruptions").rglob("fog-2.npy"))
    assert len(cached) == 1
    again = corrupted_images(images, "fog", 2, seed=0)
    assert torch.allclose(first, again, atol=1 / 255)


def test_two_writers_of_one_cache_file_both_succeed(images, monkeypatch):
    """Two runs evaluated at once generate the same corruption file: each writes its temporary file, then
    both rename. With one shared temporary name the second rename found nothing (FileNotFoundError,
    2026-12-04, two students of one teacher); each writer now has its own."""
    import threading

    both_written = threading.Barrier(2, timeout=60)
    save = np.save

    def save_then_wait(path, array, *args, **kwargs):
        save(path, array, *args, **kwargs)
        both_written.wait()  # neither renames before both have written

    monkeypatch.setattr(np, "save", save_then_wait)
    results, errors = [], []

    def writer():
        try:
            results.append(corrupted_images(images, "contrast", 3, seed=0))
        except Exception as exc:  # noqa: BLE001 - the test reports what a writer raised
            errors.append(exc)

    threads = [threading.Thread(target=writer) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(results) == 2 and torch.equal(results[0], results[1])
    assert torch.equal(corrupted_images(images, "contrast", 3, seed=0), results[0].mul(255).round().div(255))


def test_released_files_are_read_by_severity_block(tmp_path):
    n = 10
    arr = np.zeros((5 * n, 32, 32, 3), np.uint8)
    for s in range(5):
        arr[s * n : (s + 1) * n] = 50 * s
    labels = np.tile(np.arange(n) % 10, 5).astype(np.uint8)
    np.save(tmp_path / "fog.npy", arr)
    np.save(tmp_path / "labels.npy", labels)
    idx = np.array([1, 3])
    out = released_images(tmp_path, "fog", 3, idx, labels[idx].astype(np.int64))
    assert out.shape == (2, 3, 32, 32) and torch.allclose(out, torch.full_like(out, 100 / 255))
    from semireg.errors import DataError

    with pytest.raises(DataError, match="labels do not match"):
        released_images(tmp_path, "fog", 3, idx, np.array([7, 7]))


def test_summary_figures():
    acc = {name: {str(s): 0.5 for s in range(1, 6)} for name in CORRUPTIONS}
    acc["fog"]["5"] = 0.0
    s = robustness_summary(acc, clean=0.8)
    assert s["mean_c15"] == pytest.approx((74 * 0.5) / 75)
    assert s["mce_c15"] == pytest.approx(1 - s["mean_c15"])
    assert s["mean_c19_s5"] == pytest.approx(18 * 0.5 / 19)
    assert s["mean_c15_relative"] == pytest.approx(s["mean_c15"] / 0.8)
    partial = robustness_summary({"fog": {"5": 0.3}}, clean=0.8)
    assert partial["mean_c15"] is None and partial["mean_c19_s5"] is None  # never a mean of a subset


def test_robustness_command_on_a_finished_run(tmp_path, images):
    from semireg.cli import main

    x = (images * 255).round().byte().numpy()
    y = (np.arange(48) % 3).astype(np.int64)
    np.savez(tmp_path / "toy.npz", x=x, y=y, x_test=x[:24], y_test=y[:24])
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "demo",
                "--run-dir",
                str(run),
                "--variant",
                "labels-only",
                "--seeds",
                "0",
                f"data.dataset=npz:{tmp_path / 'toy.npz'}",
                "data.protocol=standard",
                "data.n_labeled=24",
                "data.balanced=false",
                "model.name=cnn_small",
                "model.hidden=[8]",
                "train.steps=4",
                "train.eval_every=0",
                "train.progress=false",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "robustness",
                str(run),
                "--n-images",
                "12",
                "--corruptions",
                "fog,contrast,saturate",
                "--severities",
                "1,5",
            ]
        )
        == 0
    )
    result = json.loads((run / "robustness.json").read_text())
    assert set(result["accuracy"]) == {"fog", "contrast", "saturate"} and result["n_images"] == 12
    assert result["summary"]["mean_c15"] is None  # a subset never reports the 15 x 5 mean
    assert (run / "robustness_heatmap.png").exists() and (run / "robustness_bars.png").exists()
