"""The code's shape, checked with `ast` over src/semireg: modules import only from their own layer
or below, at the top of the file; no import cycle; no private name taken across modules; no
function longer than 80 lines. A new module must be given a layer here before it passes."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "semireg"

# Lowest first. A module may import from its own layer or any layer below; the longest matching
# prefix decides a module's layer.
LAYERS = [
    ["semireg.version", "semireg.errors", "semireg.hardware"],
    # foundations: data, inputs, networks, loss functions, files, collectives, metrics
    [
        "semireg.data",
        "semireg.augment",
        "semireg.models",
        "semireg.methods",
        "semireg.classical",
        "semireg.phases",
        "semireg.rundir",
        "semireg.distributed",
        "semireg.evaluation",
        "semireg.robustness.corruptions",
        "semireg.report.browser",
        "semireg.systems.evaluation",
    ],
    ["semireg.systems"],  # multi-network systems, built on phases
    ["semireg.config"],  # validates names against the registries below
    ["semireg.report", "semireg.traindata", "semireg.optim"],
    ["semireg.finished"],
    ["semireg.runs"],  # the run lifecycle both loops use
    ["semireg.phase_loop", "semireg.classical_loop"],
    ["semireg.engine"],
    ["semireg.robustness", "semireg.export", "semireg.selection"],
    ["semireg.api", "semireg.cli"],
    ["semireg.estimator"],  # the scikit-learn estimator, built on the API
    ["semireg"],  # the package's __init__: the public names
]
# Third-party packages that may be imported inside a function, and why.
LAZY_IMPORTS = {
    "matplotlib": "about half a second to import; only runs that plot pay it",
    "torch.utils.tensorboard": "optional (pip install tensorboard)",
    "sklearn": "about 2 s to import (measured 2026-12-04): `semireg --help`, `recipes`, `compare` need none of it",
    "lightning_fabric": "about 2.5 s to import (it pulls in torch._dynamo): only training needs it",
}
# The one import of semireg's own inside a function: the package's lazy attribute for the estimator,
# whose module imports scikit-learn (~2 s) at its top.
LAZY_OWN = {("semireg", "semireg.estimator")}
MAX_FUNCTION_LINES = 80


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int:
    best, best_len = None, -1
    for i, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = i, len(prefix)
    if best is None:
        raise AssertionError(f"{module} has no layer in tests/test_structure.py LAYERS")
    return best


def resolve_from(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def sources():
    for path in sorted(SRC.rglob("*.py")):
        yield module_name(path), path.name == "__init__.py", path, ast.parse(path.read_text())


def imports_of(module, is_package, tree):
    """(node, imported module, names, inside a function) for every import in the file."""
    inside = set()
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            inside |= {id(n) for n in ast.walk(fn) if isinstance(n, (ast.Import, ast.ImportFrom))}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            target = resolve_from(module, is_package, node)
            names = [a.name for a in node.names]
            # `from . import rundir` names a submodule
            if target in ALL_MODULES or target == "semireg":
                subs = [f"{target}.{n}" for n in names if f"{target}.{n}" in ALL_MODULES]
                for sub in subs:
                    yield node, sub, [], id(node) in inside
                names = [n for n in names if f"{target}.{n}" not in ALL_MODULES]
                if not names and subs:
                    continue
            yield node, target, names, id(node) in inside
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield node, alias.name, [], id(node) in inside


ALL_MODULES = {m for m, *_ in sources()}


def own(target: str) -> bool:
    return target == "semireg" or target.startswith("semireg.")


def test_every_module_imports_from_its_layer_or_below_at_the_top():
    problems = []
    for module, is_package, path, tree in sources():
        mine = layer_of(module)
        for node, target, names, in_function in imports_of(module, is_package, tree):
            where = f"{path.relative_to(SRC.parent)}:{node.lineno}"
            if own(target):
                if in_function and (module, target) not in LAZY_OWN:
                    problems.append(f"{where}: imports {target} inside a function")
                if target != module and layer_of(target) > mine:
                    problems.append(f"{where}: {module} (layer {mine}) imports {target} (layer {layer_of(target)})")
            elif in_function and not target.startswith(tuple(LAZY_IMPORTS)):
                problems.append(f"{where}: imports {target} inside a function (not in LAZY_IMPORTS)")
    assert not problems, "\n".join(problems)


def test_no_private_name_is_imported_from_another_module():
    problems = []
    for module, is_package, path, tree in sources():
        for node, target, names, _ in imports_of(module, is_package, tree):
            private = [n for n in names if n.startswith("_") and n != "__version__"]
            if own(target) and target != module and private:
                problems.append(f"{path.relative_to(SRC.parent)}:{node.lineno}: {module} takes {private} from {target}")
    assert not problems, "\n".join(problems)


def test_no_import_cycle():
    graph = {m: set() for m in ALL_MODULES}
    for module, is_package, _, tree in sources():
        for _, target, _, _ in imports_of(module, is_package, tree):
            if target in ALL_MODULES and target != module:
                graph[module].add(target)
    # a package's __init__ re-exporting its submodules is the one allowed back edge
    for module in graph:
        graph[module] = {t for t in graph[module] if not module.startswith(t + ".")}
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == "open":
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(t) :] + [t]))
            if t not in state:
                visit(t)
        stack.pop()
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_no_function_is_longer_than_80_lines():
    long = []
    for module, _, path, tree in sources():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                start = min([node.lineno] + [d.lineno for d in node.decorator_list])
                n = node.end_lineno - start + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(SRC.parent)}:{node.lineno} {node.name}: {n} lines")
    assert not long, "\n".join(long)


@pytest.mark.parametrize("check", ["layer", "private", "cycle", "length"])
def test_the_checks_can_fail(tmp_path, check):
    """Each check, run over a tiny package that breaks its rule, reports it."""
    global SRC, ALL_MODULES
    pkg = tmp_path / "semireg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "errors.py").write_text("from .version import X\n" if check == "cycle" else "")
    bodies = {
        "layer": "from .errors import E\ndef f():\n    from .rundir import g\n",
        "private": "from .errors import _hidden\n",
        "cycle": "from .errors import E\nX = 1\n",
        "length": "def f():\n" + "    x = 1\n" * 90,
    }
    (pkg / "version.py").write_text(bodies[check])
    (pkg / "rundir.py").write_text("")
    SRC_saved, ALL_saved = SRC, ALL_MODULES
    SRC, ALL_MODULES = pkg, {m for m, *_ in sources()}
    try:
        test = {
            "layer": test_every_module_imports_from_its_layer_or_below_at_the_top,
            "private": test_no_private_name_is_imported_from_another_module,
            "cycle": test_no_import_cycle,
            "length": test_no_function_is_longer_than_80_lines,
        }[check]
        with pytest.raises(AssertionError):
            test()
    finally:
        SRC, ALL_MODULES = SRC_saved, ALL_saved


def test_the_command_line_starts_without_the_heavy_imports():
    """`semireg --help`, `recipes`, `compare` import neither scikit-learn nor Lightning Fabric (about
    4.5 s of start-up together, measured 2026-12-04): only the commands that need them pay for them."""
    import subprocess
    import sys

    code = "import sys, semireg.cli; print(sorted(m for m in ('sklearn', 'lightning_fabric') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out
