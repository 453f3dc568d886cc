"""The results page and README's headline table are what benchmarks/reproduce/results_page.py writes from
figures.json; the docs hold no path of the machine they were written on."""

import importlib.util
import json
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def results_page():
    spec = importlib.util.spec_from_file_location("results_page", ROOT / "benchmarks" / "reproduce" / "results_page.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_results_page_and_headline_are_generated_from_figures_json():
    page = results_page()
    figures = json.loads((ROOT / "benchmarks" / "results" / "figures.json").read_text())
    assert (ROOT / "docs" / "results.md").read_text() == page.page(figures), (
        "run python benchmarks/reproduce/results_page.py"
    )
    readme = (ROOT / "README.md").read_text()
    assert readme == page.readme_with(readme, figures), "run python benchmarks/reproduce/results_page.py"


def test_a_changed_figure_changes_the_page():
    page = results_page()
    figures = json.loads((ROOT / "benchmarks" / "results" / "figures.json").read_text())
    figures["mnist-100/fixmatch/test_accuracy"]["mean"] += 1.0
    assert (ROOT / "docs" / "results.md").read_text() != page.page(figures)


def test_sizes_a_reader_can_take_in():
    assert len((ROOT / "docs" / "results.md").read_text().splitlines()) <= 300
    assert len((ROOT / "README.md").read_bytes()) <= 12 * 1024


# Folders every machine has: a clone under /tmp names /tmp/ for its own reasons (scratch files in tests).
SYSTEM_FOLDERS = {"/", "/tmp", "/var/tmp", "/home", "/root", "/usr", "/opt"}


def test_no_absolute_path_of_the_checkout_in_tracked_files():
    needles = [str(ROOT) + "/"] + ([str(ROOT.parent) + "/"] if str(ROOT.parent) not in SYSTEM_FOLDERS else [])
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    if tracked.returncode != 0:  # not a git checkout (an sdist): nothing to check
        return
    hits = []
    for name in tracked.stdout.splitlines():
        path = ROOT / name
        if path.suffix in {".png", ".jpg", ".gz"} or not path.is_file():
            continue
        text = path.read_text(errors="ignore")
        hits += [f"{name} ({needle})" for needle in needles if needle in text]
    assert not hits, f"absolute paths of this checkout in {hits}"
