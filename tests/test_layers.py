"""The package's shape: its folders are its layers. Every top-level entry of ``edgecnn/`` (a folder or a
file) is in exactly one layer; imports only point down the layers, and down the blocks' order inside the
blocks layer; there is no import circle, between modules nor between packages; and every function-local
import of edgecnn code says why it is not at the top (to keep TensorFlow off the light path). Read from
the source with ``ast``: no module is imported, so this runs in a second (the light checks at the end
import, in subprocesses)."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "edgecnn"

# The blocks, bottom to top: each imports only core and the blocks before it (a block that needs one
# after it is in the wrong place, or the function it needs is).
BLOCKS = (
    "runtime",  # interpreter, adapters, open_model, image prep (no TensorFlow)
    "edgetpu",  # Coral op table, check, compiler wrapper (no TensorFlow)
    "benchmarks",  # latency, memory, accuracy of deployed models (no TensorFlow)
    "detection",  # anchors, box coding, losses, the postprocess graph
    "data",  # dataset loaders, tf.data streams (detection targets come from detection/)
    "video",  # sources, overlays, live view (no TensorFlow; image folders come from data/)
    "archs",  # architecture registry, one file per family (SSD heads use detection's anchors)
    "segmentation",  # losses and metrics of the U-Net/DeepLab heads in archs/
    "optimize",  # prune, cluster, QAT (with QAT configs for archs' layers), distill
    "trainer",  # fit loop pieces and the model loader (it registers archs' layers and the QAT scope)
    "convert",  # the export path: formats, calibration (data/), metadata, ONNX (detection's decode)
    "insight",  # explain, quant-debug (through convert/), profile
)
# Bottom to top: (layer, the top-level entries of edgecnn/ in it). A module belongs to the layer of its
# top-level entry; nothing else decides.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("core", ("__init__.py", "core")),
    ("blocks", BLOCKS),
    ("tasks", ("tasks",)),
    ("pipelines", ("pipelines",)),
    ("cli", ("cli.py", "__main__.py")),
)
# The TensorFlow-free packages and modules: what the Pi runs. Enforced by the blocked-import tests too.
LIGHT = (
    "edgecnn.runtime",
    "edgecnn.benchmarks",
    "edgecnn.video",
    "edgecnn.tasks",
    "edgecnn.data",
    "edgecnn.edgetpu",
    "edgecnn.insight.occlusion",  # explain --method occlusion of a .tflite runs on the Pi
    "edgecnn.insight.heatmap",
    "edgecnn.pipelines.demo",  # the demo loop
    "edgecnn.pipelines.doctor",
    "edgecnn.core.keras_io",  # check_keras_path: the CLI checks a path before TensorFlow is imported
)
LAZY_MARK = "# lazy:"

Graph = Mapping[str, Iterable[str]]


def entries(package: Path = PACKAGE) -> list[str]:
    """The top-level entries of the package: its modules and its subpackages."""
    return sorted(
        p.name for p in package.iterdir() if (p.suffix == ".py" and p.is_file()) or (p / "__init__.py").is_file()
    )


def find_modules(package: Path = PACKAGE) -> dict[str, Path]:
    found = {}
    for path in package.rglob("*.py"):
        name = ".".join((package.name, *path.relative_to(package).with_suffix("").parts))
        found[name.removesuffix(".__init__")] = path
    return found


MODULES = find_modules()


def entry_of(module: str, modules: Mapping[str, Path] = MODULES) -> str:
    """``edgecnn.video.sources`` -> ``video``; ``edgecnn.cli`` -> ``cli.py``; ``edgecnn`` -> ``__init__.py``."""
    parts = module.split(".")
    if len(parts) == 1:
        return "__init__.py"
    is_package = len(parts) > 2 or modules[module].name == "__init__.py"
    return parts[1] if is_package else parts[1] + ".py"


def rank(entry: str, layers: tuple[tuple[str, tuple[str, ...]], ...] = LAYERS) -> tuple[int, int]:
    """(layer, place in the blocks' order) of a top-level entry; an entry may import entries of lower or
    equal rank (equal: within core, within cli)."""
    for i, (_, names) in enumerate(layers):
        if entry in names:
            return i, names.index(entry) if names is BLOCKS else 0
    raise AssertionError(f"edgecnn/{entry} is in no layer; add it to LAYERS in tests/test_layers.py")


def resolve(target: str, modules: Mapping[str, Path]) -> str | None:
    while target and target not in modules:
        target = target.rpartition(".")[0]
    return target or None


def imports(module: str, modules: Mapping[str, Path] = MODULES) -> list[tuple[str, int, bool]]:
    """(imported edgecnn module, line, function-local?) for every import in ``module``."""
    path = modules[module]
    root = module.split(".")[0]
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
        targets = {resolve(n, modules) for n in names if n.split(".")[0] == root}
        for target in targets - {None, module}:
            if not module.startswith(target + "."):  # a package's own __init__
                found.append((target, node.lineno, id(node) not in top))
    return found


def module_graph(modules: Mapping[str, Path] = MODULES) -> dict[str, set[str]]:
    return {m: {t for t, _, _ in imports(m, modules)} for m in modules}


def package_graph(modules: Mapping[str, Path] = MODULES) -> dict[str, set[str]]:
    """Top-level entry -> the other top-level entries its modules import (function-local imports too:
    a lazy import still ties the two packages together)."""
    graph: dict[str, set[str]] = {}
    for module, targets in module_graph(modules).items():
        graph.setdefault(entry_of(module, modules), set()).update(entry_of(t, modules) for t in targets)
    return {entry: targets - {entry} for entry, targets in graph.items()}


def find_circle(graph: Graph) -> list[str] | None:
    """One import circle of ``graph`` as a path that ends where it starts, or None (depth-first search)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (circle := visit(nxt)):
                return circle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (circle := visit(node)):
            return circle
    return None


def upward_imports(modules: Mapping[str, Path] = MODULES) -> list[str]:
    return [
        f"{m}:{line} imports {t} (edgecnn/{entry_of(t, modules)} is above edgecnn/{entry_of(m, modules)})"
        for m in modules
        for t, line, _ in imports(m, modules)
        if rank(entry_of(t, modules)) > rank(entry_of(m, modules))
    ]


def test_every_top_level_entry_is_in_exactly_one_layer() -> None:
    listed = [name for _, names in LAYERS for name in names]
    assert sorted(set(listed)) == sorted(listed), "an entry is listed twice in LAYERS"
    assert sorted(listed) == entries(), "LAYERS and the folders of edgecnn/ differ"


def test_imports_only_point_down() -> None:
    assert upward_imports() == []


def test_no_import_circle_between_modules() -> None:
    circle = find_circle(module_graph())
    assert circle is None, " -> ".join(circle)


def test_no_import_circle_between_packages() -> None:
    circle = find_circle(package_graph())
    assert circle is None, " -> ".join(circle)


def test_function_local_imports_say_why() -> None:
    unexplained = []
    for module, path in MODULES.items():
        lines = path.read_text().splitlines()
        for _, line, local in imports(module):
            if local and LAZY_MARK not in lines[line - 1]:
                unexplained.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {lines[line - 1].strip()}")
    assert sorted(set(unexplained)) == []


def plant(tmp_path: Path, files: dict[str, str]) -> dict[str, Path]:
    """A planted package ``edgecnn`` under ``tmp_path`` from {relative path: source}; its modules."""
    for rel, source in files.items():
        path = tmp_path / "edgecnn" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    return find_modules(tmp_path / "edgecnn")


def test_the_checks_find_an_upward_import_and_circles(tmp_path: Path) -> None:
    """The checks above can fail: the same functions on planted trees."""
    planted = {"__init__.py": "", "core/__init__.py": "from edgecnn.tasks import x\n", "tasks/__init__.py": ""}
    upward = plant(tmp_path / "up", planted)
    assert upward_imports(upward) == ["edgecnn.core:1 imports edgecnn.tasks (edgecnn/tasks is above edgecnn/core)"]
    # blocks have an order: data (below video) importing video is upward too
    blocks = plant(
        tmp_path / "order", {"data/__init__.py": "from edgecnn.video import frames\n", "video/__init__.py": ""}
    )
    assert upward_imports(blocks) == [
        "edgecnn.data:1 imports edgecnn.video (edgecnn/video is above edgecnn/data)"
    ]
    # no module circle, but a package circle: a.x -> b.y and b.z -> a.w
    crossed = plant(
        tmp_path / "crossed",
        {
            "a/__init__.py": "",
            "a/x.py": "from edgecnn.b import y\n",
            "a/w.py": "",
            "b/__init__.py": "",
            "b/y.py": "",
            "b/z.py": "def f():\n    from edgecnn.a import w  # lazy: hides nothing from the package check\n",
        },
    )
    assert find_circle(module_graph(crossed)) is None
    assert find_circle(package_graph(crossed)) == ["a", "b", "a"]
    assert find_circle({"m1": {"m2"}, "m2": {"m3"}, "m3": {"m1"}, "m4": set()}) == ["m1", "m2", "m3", "m1"]
    assert find_circle({"m1": {"m2"}, "m2": set()}) is None


def test_an_unlisted_folder_has_no_layer() -> None:
    with pytest.raises(AssertionError, match="edgecnn/utils is in no layer"):
        rank("utils")


@pytest.mark.parametrize("package", LIGHT)
def test_light_subpackages_never_import_tensorflow(package: str) -> None:
    names = sorted(m for m in MODULES if m == package or m.startswith(package + "."))
    assert names, f"{package} is in LIGHT but not in edgecnn/"
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


if __name__ == "__main__":  # python tests/test_layers.py: the package graph, bottom to top
    graph = package_graph()
    for entry in sorted(graph, key=rank):
        print(f"{entry:>13} -> {', '.join(sorted(graph[entry], key=rank)) or '-'}")
    print("circle:", find_circle(graph))
