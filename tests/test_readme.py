"""The README's Python example runs as written."""

import re
from pathlib import Path


def test_readme_python_examples_run(capsys):
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks
    namespace = {}
    for block in blocks:  # later examples continue the first one
        exec(compile(block, "README.md", "exec"), namespace)
    out = capsys.readouterr().out
    assert "'accuracy'" in out and "'swap_accuracy'" in out


def test_readme_own_data_commands_run(tmp_path, monkeypatch, capsys):
    """The "Your own data" commands, as written, on a wine CSV and a folder of images (with a cap on
    steps and budget appended, so that the test stays short)."""
    import csv
    import shlex

    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_wine

    from semireg.cli import main

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = re.search(r"## Your own data\n\n```bash\n(.*?)```", text, flags=re.S).group(1)
    commands = [shlex.split(line, comments=True) for line in block.splitlines() if line.startswith("semireg ")]
    assert len(commands) == 5
    monkeypatch.chdir(tmp_path)
    wine = load_wine()
    with open("wine.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(list(wine.feature_names) + ["label"])
        for i, (row, t) in enumerate(zip(wine.data, wine.target)):
            w.writerow([f"{v:g}" for v in row] + [wine.target_names[t] if i % 6 == 0 else ""])
    rng = np.random.default_rng(0)
    for folder, n in (("pets/cat", 6), ("pets/dog", 6), ("pets/unlabeled", 10), ("pile/day1", 10)):
        Path(folder).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(f"{folder}/{i}.png")
    for argv in commands:
        caps = ["train.steps=10"] + (
            ["--budget", "90s", "--folds", "2", "--methods", "supervised,fixmatch"] if argv[1] == "select" else []
        )
        assert main(argv[1:] + (caps if argv[1] != "predict" else [])) == 0, argv
    out = capsys.readouterr().out
    assert "class_" in out and out.count("recommended:") == 2
    assert Path("runs/wine-select/final").is_dir() and Path("runs/pets/report.html").exists()
