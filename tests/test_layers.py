"""The package's shape: imports only point down the layers, there is no import circle, and every
function-local import of edgecnn code says why it is not at the top (to keep TensorFlow off the
light path). Read from the source with ``ast``: no module is imported, so this runs in a second."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "edgecnn"

# Bottom to top. A module belongs to the first entry whose name is its own or a package above it;
# it may import its own layer (without a circle) and those below it, never one above.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "core",
        (
            "edgecnn",
            "edgecnn.core.errors",
            "edgecnn.core.quiet",
            "edgecnn.core.fileio",
            "edgecnn.core.keras_env",
            "edgecnn.core.metadata",
            "edgecnn.core.config",
        ),
    ),
    (
        "blocks",
        (
            "edgecnn.archs",
            "edgecnn.data",
            "edgecnn.runtime",
            "edgecnn.benchmarks",
            "edgecnn.convert",
            "edgecnn.trainer",
            "edgecnn.detection",
            "edgecnn.segmentation",
            "edgecnn.optimize",
            "edgecnn.edgetpu",
            "edgecnn.insight.profile",
            "edgecnn.video.sources",
            "edgecnn.video.overlay",
            "edgecnn.insight",
        ),
    ),
    ("tasks", ("edgecnn.tasks",)),
    ("pipelines", ("edgecnn.pipelines", "edgecnn.video", "edgecnn.pipelines.doctor")),
    ("cli", ("edgecnn.cli", "edgecnn.__main__")),
)
# The TensorFlow-free subpackages: what the Pi runs. Enforced by the blocked-import tests too.
LIGHT = (
    "edgecnn.runtime",
    "edgecnn.benchmarks",
    "edgecnn.video",
    "edgecnn.tasks",
    "edgecnn.data",
    "edgecnn.edgetpu",
    "edgecnn.insight.occlusion",  # explain --method occlusion of a .tflite runs on the Pi
    "edgecnn.insight.heatmap",
)
LAZY_MARK = "# lazy:"


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(("edgecnn", *path.relative_to(PACKAGE).with_suffix("").parts))
        found[name.removesuffix(".__init__")] = path
    return found


MODULES = modules()


def layer_of(module: str) -> int:
    best, rank = -1, None
    for i, (_, names) in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > best:
                best, rank = len(name), i
    assert rank is not None, f"{module} is in no layer; add it to LAYERS"
    return rank


def resolve(target: str) -> str | None:
    while target and target not in MODULES:
        target = target.rpartition(".")[0]
    return target or None


def imports(module: str) -> list[tuple[str, int, bool]]:
    """(imported edgecnn module, line, function-local?) for every import in ``module``."""
    path = MODULES[module]
    tree = ast.parse(path.read_text())
    top = {id(node) for node in tree.body}
    base = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = node.module or ""
            if node.level:
                parts = base.split(".")[: len(base.split(".")) - node.level + 1]
                target = ".".join(parts + ([target] if target else []))
            names = [f"{target}.{alias.name}" for alias in node.names] + [target]
        targets = {resolve(n) for n in names if n.startswith("edgecnn")}
        for target in targets - {None, module}:
            if not module.startswith(target + "."):  # a package's own __init__
                found.append((target, node.lineno, id(node) not in top))
    return found


def test_every_module_has_a_layer() -> None:
    for module in MODULES:
        layer_of(module)


def test_imports_only_point_down() -> None:
    upward = [
        f"{m}:{line} imports {t} ({LAYERS[layer_of(t)][0]} is above {LAYERS[layer_of(m)][0]})"
        for m in MODULES
        for t, line, _ in imports(m)
        if layer_of(t) > layer_of(m)
    ]
    assert upward == []


def test_no_import_circle() -> None:
    graph = {m: {t for t, _, _ in imports(m)} for m in MODULES}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (circle := visit(nxt)):
                return circle
        stack.pop()
        state[node] = 2
        return None

    for module in sorted(graph):
        if module not in state:
            circle = visit(module)
            assert circle is None, " -> ".join(circle)


def test_function_local_imports_say_why() -> None:
    unexplained = []
    for module, path in MODULES.items():
        lines = path.read_text().splitlines()
        for _, line, local in imports(module):
            if local and LAZY_MARK not in lines[line - 1]:
                unexplained.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {lines[line - 1].strip()}")
    assert sorted(set(unexplained)) == []


def test_the_detector_finds_a_circle_and_an_upward_import(tmp_path: Path) -> None:
    """The checks above can fail: the same code on a planted tree."""
    global MODULES
    saved = MODULES
    try:
        pkg = tmp_path / "edgecnn"
        (pkg / "tasks").mkdir(parents=True)
        (pkg / "__init__.py").write_text("")
        (pkg / "errors.py").write_text("from edgecnn.tasks import x\n")
        (pkg / "tasks" / "__init__.py").write_text("from edgecnn.core.errors import y\n")
        MODULES = {
            "edgecnn": pkg / "__init__.py",
            "edgecnn.core.errors": pkg / "errors.py",
            "edgecnn.tasks": pkg / "tasks" / "__init__.py",
        }
        with pytest.raises(AssertionError, match="edgecnn.core.errors:1 imports edgecnn.tasks"):
            test_imports_only_point_down()
        with pytest.raises(AssertionError, match="edgecnn.core.errors -> edgecnn.tasks -> edgecnn.core.errors"):
            test_no_import_circle()
    finally:
        MODULES = saved


@pytest.mark.parametrize("package", LIGHT)
def test_light_subpackages_never_import_tensorflow(package: str) -> None:
    names = sorted(m for m in MODULES if m == package or m.startswith(package + "."))
    code = (
        "import importlib, sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('tensorflow', 'tf_keras', 'keras', 'tensorflow_model_optimization',\n"
        "                                  'onnxruntime', 'onnx', 'tf2onnx'):\n"  # the onnx extra: lazy, for .onnx only
        "            raise ImportError(name)\n"
        "sys.meta_path.insert(0, Block())\n"
        f"for name in {names!r}:\n"
        "    importlib.import_module(name)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
