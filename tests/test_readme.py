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
