"""Folders of photos as people keep them: many sizes, greyscale / RGBA / palette images, EXIF
orientation, an unreadable file; trained on, predicted on (a new file of another size), resumed."""

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from semireg.cli import main
from semireg.data.folders import decode_folder, fit_image
from semireg.errors import DataError

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}


def photo(colour, size, mode="RGB", seed=0):
    """A noisy image of one colour, `size` (width, height), saved in `mode`."""
    rng = np.random.default_rng(seed)
    w, h = size
    pixels = np.clip(np.array(colour)[None, None] + rng.normal(0, 25, (h, w, 3)), 0, 255).astype(np.uint8)
    img = Image.fromarray(pixels)
    if mode == "RGBA":
        img = img.convert("RGBA")
    elif mode == "P":
        img = img.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    return img


def save(img, path, exif_orientation=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    if exif_orientation:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        img.convert("RGB").save(path.with_suffix(".jpg"), exif=exif)
    else:
        img.save(path.with_suffix(".png"))


def photo_folder(root):
    rng = np.random.default_rng(0)
    for c, (name, colour) in enumerate(COLOURS.items()):
        for i in range(8):
            size = (int(rng.integers(40, 90)), int(rng.integers(40, 90)))
            mode = ("RGB", "RGBA", "P")[i % 3]
            save(photo(colour, size, mode, seed=10 * c + i), root / "pets" / name / f"{i}", 6 if i == 7 else None)
    for i in range(30):  # the pile without classes
        colour = list(COLOURS.values())[i % 3]
        save(
            photo(colour, (int(rng.integers(30, 120)), int(rng.integers(30, 120))), seed=100 + i),
            root / "pile" / f"{i}",
        )
    return root / "pets", root / "pile"


def test_fit_image_scales_the_shorter_side_and_crops_the_centre():
    img = Image.new("L", (100, 50))
    img.paste(255, (40, 0, 60, 50))  # a white band in the middle of the long side
    out = fit_image(img, (20, 20), "L")
    assert out.shape == (20, 20)
    assert out[:, 8:12].mean() > 200 and out[:, :3].mean() < 30  # centre kept, not squeezed
    rgba = Image.new("RGBA", (10, 10), (0, 0, 0, 0))  # fully transparent: white
    assert (fit_image(rgba, None, "RGB") == 255).all()


def test_exif_orientation_is_applied():
    img = Image.new("RGB", (40, 20))  # stored landscape; orientation 6 displays it portrait
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif)
    with Image.open(io.BytesIO(buf.getvalue())) as again:
        assert fit_image(again, None, "RGB").shape == (40, 20, 3)


def test_a_folder_of_many_sizes_and_modes_decodes_to_one_size_said_in_one_line(tmp_path, capsys):
    pets, _ = photo_folder(tmp_path)
    arrays = decode_folder(pets)
    x = arrays["x_train"]
    assert x.dtype == np.uint8 and x.shape[1] == 3 and x.shape[2] == x.shape[3] and len(x) == 24
    assert "sizes" in capsys.readouterr().err  # the chosen size said
    assert decode_folder(pets, image_size=32)["x_train"].shape[2:] == (32, 32)


def test_an_unreadable_file_is_named_or_skipped_and_counted(tmp_path, capsys):
    pets, _ = photo_folder(tmp_path)
    (pets / "red" / "broken.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match="broken.png: cannot decode image"):
        decode_folder(pets)
    assert len(decode_folder(pets, skip_unreadable=True)["x_train"]) == 24
    assert "skipped 1 unreadable file(s)" in capsys.readouterr().err


def test_photos_train_predict_a_new_size_and_resume(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    pets, pile = photo_folder(tmp_path)
    run = tmp_path / "run"
    args = [
        "train",
        f"data.dataset=folder:{pets}",
        "data.n_labeled=-1",
        "data.n_test=0",
        f"data.unlabeled={pile}",
        "method.name=fixmatch",
        "model.name=cnn_small",
        "model.hidden=[8,16]",
        "train.batch_size=8",
        "train.checkpoint_every=10",
        "train.progress=false",
        "--run-dir",
        str(run),
    ]
    assert main([*args, "train.steps=10"]) == 0
    assert "sizes" in capsys.readouterr().err  # the size chosen from the data, said in one line
    new = tmp_path / "new.jpg"
    photo(COLOURS["green"], (150, 61)).save(new)  # another size and aspect than any training image
    capsys.readouterr()
    assert main(["predict", str(run), str(new)]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 1
    # An interrupted run goes on: its config asks for 20 steps, its checkpoint holds 10. The photos decode
    # again (from the cache) to the very tensors the run recorded, so its fingerprint matches.
    saved = json.loads((run / "config.json").read_text())
    saved["train"]["steps"] = 20
    (run / "config.json").write_text(json.dumps(saved))
    assert main(["train", "--resume", str(run)]) == 0
    assert torch.load(run / "checkpoint.pt", weights_only=True)["step"] == 20
