"""The command line: one-line errors without tracebacks, nothing overwritten, the demo recipe."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import halfway, measured

from semireg.cli import main


def run_cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "semireg.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


BAD_INPUT = [
    (["train", "no-such-recipe"], "unknown recipe"),
    (["train", "demo", "train.bogus=1"], "unknown key 'train.bogus'"),
    (["train", "demo", "train.steps=abc"], "train.steps: expected int"),
    (["train", "demo", "data.n_labeled=5000"], "larger than"),
    (["train", "demo", "data.n_labeled=55"], "not a multiple"),
    (["train", "demo", "--variant", "vat", "data.n_unlabeled=0"], "unlabelled set is empty"),
    (["train", "demo", "model.name=cnn_keras", "model.hidden=[]", "data.dataset=npz:FLAT"], "takes images"),
    (["train", "demo", "model.name=cnn_keras"], "does not take option"),
]


def _bad_args(tmp_path, args):
    flat = tmp_path / "flat.npz"  # (N, D) vectors: no image for a CNN
    np.savez(flat, x=np.random.rand(900, 64).astype("float32"), y=np.arange(900) % 10)
    return [a.replace("FLAT", str(flat)) for a in args] + ["--runs-root", str(tmp_path / "runs")]


def _one_error_line(stderr: str, needle: str) -> None:
    errors = [line for line in stderr.splitlines() if line.startswith("semireg: error:")]
    assert len(errors) == 1 and needle in errors[0] and "Traceback" not in stderr, stderr


@pytest.mark.parametrize("args,needle", BAD_INPUT)
def test_bad_input_is_one_line_without_traceback(tmp_path, capsys, args, needle):
    # In-process (`main` is the console script's entry point): a command-line start-up costs ~5 s of CPU
    # each; the subprocess test below checks that the real process prints the same one line.
    assert main(_bad_args(tmp_path, args)) == 2
    _one_error_line(capsys.readouterr().err, needle)
    assert not any((tmp_path / "runs").rglob("*.pt"))  # nothing written


def test_bad_input_from_a_real_process_is_one_line_and_exit_status_2(tmp_path):
    args, needle = BAD_INPUT[1]
    proc = run_cli(*_bad_args(tmp_path, args))
    assert proc.returncode == 2
    _one_error_line(proc.stderr, needle)


def test_train_eval_resume_and_refusal(tmp_path, capsys):
    root = tmp_path / "runs"
    args = ["train", "demo", "--variant", "vat", "--runs-root", str(root), "train.steps=30", "train.progress=false"]
    assert main(args) == 0
    run = root / "demo" / "vat" / "seed0"
    assert (run / "results.json").exists() and (run / "split.npz").exists()
    before = (run / "checkpoint.pt").read_bytes()
    assert main(args) == 2  # exists: refused, untouched
    assert "--overwrite" in capsys.readouterr().err
    assert (run / "checkpoint.pt").read_bytes() == before
    assert main(["eval", str(run)]) == 0
    out = json.loads((run / "eval.json").read_text())
    saved = json.loads((run / "results.json").read_text())
    assert out["test"]["accuracy"] == pytest.approx(saved["test"]["accuracy"])
    assert main(["train", "--resume", str(run)]) == 0  # finished run: resumes to the same end


def test_recipes_lists_one_line_each(capsys):
    assert main(["recipes"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert any(line.startswith("mnist-100-vat") for line in lines) and len(lines) >= 3


def test_npz_data_through_the_cli(tmp_path):
    rng = np.random.default_rng(0)
    y = np.arange(300) % 3
    x = (rng.normal(size=(300, 6)) + 3 * y[:, None]).astype("float32")
    np.savez(tmp_path / "mine.npz", x=x, y=y)
    proc = run_cli(
        "train",
        "demo",
        "--variant",
        "labels-only",
        f"data.dataset=npz:{tmp_path / 'mine.npz'}",
        "data.n_test=60",
        "data.n_labeled=30",
        "train.steps=50",
        "--runs-root",
        str(tmp_path / "runs"),
    )
    assert proc.returncode == 0, proc.stderr
    assert "labels-only" in proc.stdout


@pytest.mark.slow
def test_demo_runs_offline_and_vat_beats_labels_only(tmp_path):
    proc = run_cli("demo", "--runs-root", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(next(tmp_path.glob("demo-*/demo/summary.json")).read_text())
    acc = {}
    for row in summary:
        acc.setdefault(row["variant"], []).append(row["accuracy"])
    assert len(acc["vat"]) == 3
    # halfway between no gain and the smallest gain of a single seed measured on the three CPU kinds
    bar = halfway(0.0, measured("demo", "vat_minus_labels_only")["lowest"])
    assert sum(acc["vat"]) / 3 > sum(acc["labels-only"]) / 3 + bar, (acc, bar)
    assert list(tmp_path.glob("demo-*/demo/vat/seed0/confusion.png"))
    assert "±" in proc.stdout  # mean ± std over the seeds


def test_staged_recipe_runs_teacher_then_student_then_robustness(tmp_path):
    import json

    import numpy as np

    from semireg.cli import main

    g = np.random.default_rng(0)
    y = (np.arange(60) % 3).astype(np.int64)
    x = (g.random((60, 3, 32, 32)) * 80).astype(np.uint8)
    for k in range(3):
        x[y == k, :, :, k * 10 : k * 10 + 10] += 150
    np.savez(tmp_path / "toy.npz", x=x, y=y, x_test=x[:30], y_test=y[:30])
    recipe = tmp_path / "staged.toml"
    recipe.write_text(f"""
[data]
dataset = "npz:{tmp_path / "toy.npz"}"
protocol = "standard"
n_labeled = 50
n_val = 10
n_unlabeled = 0
[model]
name = "cnn_small"
hidden = [8]
[augment]
flip = true
pad = 2
[train]
steps = 6
batch_size = 10
eval_every = 3
progress = false
early_stop_patience = 5
[robustness]
after_train = true
corruptions = ["contrast", "fog"]
severities = [5]
[[stages]]
name = "teacher"
[[stages]]
name = "student"
teacher = "@teacher"
method = {{ name = "consistency" }}
""")
    root = tmp_path / "runs"
    assert main(["train", str(recipe), "--runs-root", str(root)]) == 0
    teacher, student = root / "staged" / "teacher", root / "staged" / "student"
    cfg = json.loads((student / "config.json").read_text())
    assert cfg["teacher"] == str(teacher.resolve()) and cfg["method"]["name"] == "consistency"
    for run in (teacher, student):
        result = json.loads((run / "robustness.json").read_text())
        assert set(result["accuracy"]) == {"contrast", "fog"}
        page = (run / "report.html").read_text()  # rebuilt after the robustness run: its pictures and table
        assert 'alt="robustness_heatmap"' in page and "robustness (" in page
    assert "student" in (root / "staged" / "summary.md").read_text()
    # A stage naming a later (or unknown) stage as its teacher is refused when the recipe loads.
    bad = tmp_path / "bad.toml"
    bad.write_text('[[stages]]\nname = "student"\nteacher = "@teacher"\n[[stages]]\nname = "teacher"\n')
    assert main(["train", str(bad), "--runs-root", str(root)]) == 2


@pytest.mark.parametrize(
    "recipe,extra",
    [
        ("mnist-began", ["method.filters=4", "method.h_dim=8", "method.n_samples=8", "method.judge_epochs=1"]),
        (
            "mnist-disentangle",
            [
                "--variant",
                "post",
                "method.hidden=16",
                "method.probe_train=200",
                "method.probe_epochs=1",
                "method.judge_epochs=1",
                "method.tsne_points=60",
            ],
        ),
    ],
)
def test_multi_network_recipes_through_the_cli(tmp_path, capsys, recipe, extra):
    # digits (8x8, no file needed) stands in for MNIST; a finished run resumes to the same end.
    args = [
        "train",
        recipe,
        "--runs-root",
        str(tmp_path),
        "data.dataset=digits",
        "data.n_labeled=1000",
        "data.n_test=300",
        "train.steps=4",
        "train.epochs=0",
        "train.eval_every=2",
        "train.log_every=2",
        "train.progress=false",
        *extra,
    ]
    assert main(args) == 0
    table = capsys.readouterr().out
    assert "| run | seed |" in table and "train time" in table
    run = next(p.parent for p in tmp_path.rglob("results.json"))
    assert (run / "checkpoint.pt").exists() and (run / "curves.png").exists()
    page = (run / "report.html").read_text()
    pictures = sorted(p.stem for p in run.glob("*.png") if p.name != "curves.png")
    assert pictures and all(f'alt="{name}"' in page for name in pictures)  # the system's own pictures
    assert main(["report", str(run), str(run), "--out", str(tmp_path / "cmp.html")]) == 0  # on headline metrics
    assert "headline." in (tmp_path / "cmp.html").read_text()
    assert main(["export", str(run)]) == 0  # every network's weights, names prefixed by the network
    from safetensors.torch import load_file

    exported = load_file(str(run / "model.safetensors"))
    state = torch.load(run / "checkpoint.pt", weights_only=True)["nets"]
    assert exported.keys() == state.keys() and all(torch.equal(exported[k], state[k]) for k in state)
    assert main(["train", "--resume", str(run)]) == 0
    assert main(["eval", str(run)]) == 0  # the system's evaluation again, from the checkpoint
    again, saved = json.loads((run / "eval.json").read_text()), json.loads((run / "results.json").read_text())
    assert again["round"] == 4
    for key in saved["headline"]:
        assert again[key] == pytest.approx(saved[key], abs=1e-6), key
    assert main(["train", recipe, "--runs-root", str(tmp_path), "method.no_such_option=1"]) == 2
