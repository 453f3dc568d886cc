"""`semireg compare`: runs that differ only by seed form one row with mean ± std."""

import json
import statistics

import pytest

from semireg.cli import main
from semireg.errors import RunDirError
from semireg.report.compare import compare, config_key, group_runs, plot_eval_curves


def fake_run(root, name, seed, accuracy, *, lr=1e-3, threads=1):
    run = root / f"{name}-{seed}-{lr}-{threads}"
    run.mkdir(parents=True)
    config = {
        "name": name,
        "train": {"seed": seed, "lr": lr, "threads": threads, "progress": False},
        "data": {"data_dir": f"/somewhere/{seed}"},
    }
    (run / "config.json").write_text(json.dumps(config))
    (run / "results.json").write_text(
        json.dumps({"test": {"accuracy": accuracy, "macro_f1": accuracy - 0.01}, "train_time_s": 10.0 * (seed + 1)})
    )
    return run


def test_seeds_are_grouped_and_other_settings_are_not(tmp_path):
    runs = [fake_run(tmp_path, "a", s, acc, threads=s + 1) for s, acc in enumerate([0.90, 0.92, 0.97])]
    runs.append(fake_run(tmp_path, "a", 0, 0.5, lr=1e-2))  # same name, another learning rate: another row
    runs.append(fake_run(tmp_path, "b", 0, 0.8))
    groups = group_runs(runs)
    assert [len(g.runs) for g in groups] == [3, 1, 1]
    mean, std = groups[0].mean_std("test.accuracy")
    assert mean == pytest.approx(statistics.mean([0.90, 0.92, 0.97]))
    assert std == pytest.approx(statistics.stdev([0.90, 0.92, 0.97]))
    # same name, told apart by the key in which they differ
    assert groups[0].label == "a (train.lr=0.001)" and groups[1].label == "a (train.lr=0.01)"
    assert groups[2].label == "b"


def test_table_chart_and_json(tmp_path):
    runs = [fake_run(tmp_path / "r", "fixmatch", s, acc) for s, acc in enumerate([0.98, 0.99])]
    table = compare(runs, out_dir=tmp_path / "out")
    assert "| fixmatch | 2 (0, 1) | 98.50 ± 0.71 |" in table
    saved = json.loads((tmp_path / "out" / "compare.json").read_text())
    assert saved[0]["test.accuracy"]["values"] == [0.98, 0.99]
    assert (tmp_path / "out" / "compare.png").stat().st_size > 1000
    assert (tmp_path / "out" / "curves.png").stat().st_size > 1000


def test_accuracy_against_time_draws_one_line_per_run_with_evaluations(tmp_path):
    runs = [fake_run(tmp_path, m, 0, 0.9) for m in ("fixmatch", "supervised", "vat")]
    for run, speed in zip(runs[:2], (1.0, 3.0)):
        records = [
            {"kind": "eval", "step": s, "split": "test", "time": s / speed, "accuracy": 0.5 + s / 1000}
            for s in (100, 200, 300)
        ]
        records.insert(1, {"kind": "train", "step": 150, "time": 1.0, "loss": 0.3})
        (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    # the third run has no metrics.jsonl: no line, no error
    assert plot_eval_curves(group_runs(runs), tmp_path / "curves.png") == 2
    assert (tmp_path / "curves.png").stat().st_size > 1000


def test_unfinished_run_and_missing_metric_are_clear_errors(tmp_path, capsys):
    run = fake_run(tmp_path, "a", 0, 0.9)
    (run / "results.json").unlink()
    with pytest.raises(RunDirError, match="no results.json"):
        group_runs([run])
    good = fake_run(tmp_path, "b", 0, 0.9)
    assert main(["compare", str(good), "--metric", "val.accuracy"]) == 2
    assert "no 'val.accuracy'" in capsys.readouterr().err


def test_the_config_key_ignores_only_what_cannot_change_a_result():
    a = {"train": {"seed": 0, "threads": 1, "lr": 0.1}, "data": {"data_dir": "x"}}
    b = {"train": {"seed": 5, "threads": 4, "lr": 0.1}, "data": {"data_dir": "y"}}
    c = {"train": {"seed": 0, "threads": 1, "lr": 0.2}, "data": {"data_dir": "x"}}
    assert config_key(a) == config_key(b) != config_key(c)
    assert (
        config_key({**a, "description": "old words"}) == config_key({**a, "description": "new words"}) == config_key(a)
    )
