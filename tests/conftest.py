"""Shared fixtures (one seeded LeNet-5 run on digits, converted once, reused by the pipeline tests) and the
test lanes.

Lanes: ``python -m pytest`` runs everything but ``slow`` and ``pi`` (CI); ``python -m pytest -m "not tf"`` is
the fast lane, without TensorFlow or a trained run. A test is ``tf`` when its file says so
(``pytestmark = pytest.mark.tf``: such files are not even imported in the fast lane), when it is marked
``@pytest.mark.tf``, or when it uses a fixture that trains or converts (:data:`TF_FIXTURES`, directly or through
another fixture). The fast lane checks the marks rather than trusting them: it blocks ``import tensorflow``
(and Keras) in this process and, through a ``sitecustomize`` on ``PYTHONPATH``, in every Python subprocess a
test starts, and fails a test that tried. ``slow`` and ``pi`` tests run only when ``-m`` names them, so a
command-line ``-m "not tf"`` (which replaces addopts' ``-m``) still leaves them out.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]

# fixtures that train or convert a model (TensorFlow): every test using one, even through another fixture, is tf
TF_FIXTURES: set[str] = set()  # filled by @tf_fixture
# markers that select themselves: their tests run only when -m names them (a CLI -m replaces addopts' -m)
OPT_IN_MARKERS = ("slow", "pi")
HEAVY = ("tensorflow", "tf_keras", "keras", "tensorflow_model_optimization")
# Installed first thing in the fast lane's processes (this one, xdist workers, every Python subprocess): importing
# TensorFlow or Keras raises, and the attempt is recorded for the test's teardown check (code may catch it).
FAST_LANE_BLOCK = f"""
import sys
class _FastLaneBlock:
    attempts = []
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {HEAVY!r}:
            self.attempts.append(name)
            raise ModuleNotFoundError(
                name + " is blocked: the fast lane (-m 'not tf') runs without TensorFlow; mark the test tf", name=name
            )
if not any(type(f).__name__ == '_FastLaneBlock' for f in sys.meta_path):
    sys.meta_path.insert(0, _FastLaneBlock())
"""


def tf_fixture(*args: object, **kwargs: object):
    """``pytest.fixture`` for a fixture that trains or converts: the tests using it are marked tf."""

    def register(function):
        TF_FIXTURES.add(function.__name__)
        return pytest.fixture(*args, **kwargs)(function)

    return register


def fast_lane(config: pytest.Config) -> bool:
    """Whether ``-m`` leaves ``tf`` tests out (``-m "not tf"``, ``-m "not tf and not slow"``, ...)."""
    return re.search(r"\bnot\s+tf\b", config.option.markexpr or "") is not None


_SITE_DIR: list[str] = []  # the controller's sitecustomize folder, removed at the end


def pytest_configure(config: pytest.Config) -> None:
    if not fast_lane(config):
        return
    exec(FAST_LANE_BLOCK, {"__name__": "fast_lane_block"})
    if not hasattr(config, "workerinput"):  # the controller: xdist workers and subprocesses inherit the environment
        site = tempfile.mkdtemp(prefix="edgecnn_fast_lane_")
        Path(site, "sitecustomize.py").write_text(FAST_LANE_BLOCK)
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (site, os.environ.get("PYTHONPATH")) if p)
        _SITE_DIR.append(site)


def pytest_unconfigure(config: pytest.Config) -> None:
    for site in _SITE_DIR:
        shutil.rmtree(site, ignore_errors=True)


def _file_marked_tf(path: Path) -> bool:
    """A module-level ``pytestmark`` that includes ``pytest.mark.tf``, read from the source (not imported)."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "pytestmark" for t in node.targets):
            return re.search(r"\bmark\.tf\b", ast.unparse(node.value)) is not None
    return False


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """The fast lane does not import a file marked tf (importing it would import TensorFlow)."""
    if fast_lane(config) and collection_path.suffix == ".py" and collection_path.name.startswith("test_"):
        return True if _file_marked_tf(collection_path) else None
    return None


@pytest.hookimpl(tryfirst=True)  # before pytest applies -m, which then sees the marks added here
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark tf the tests that use a TensorFlow fixture; leave out opt-in markers that ``-m`` does not name."""
    for item in items:
        if TF_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.tf)
    named = config.option.markexpr or ""
    unwanted = [m for m in OPT_IN_MARKERS if not re.search(rf"\b{m}\b", named)]
    dropped = [item for item in items if any(item.get_closest_marker(m) for m in unwanted)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if item not in dropped]


@pytest.fixture(autouse=True)
def _no_tensorflow_in_fast_lane(request: pytest.FixtureRequest) -> object:
    """In the fast lane, a test whose code tried to import TensorFlow fails, even if the ImportError was caught."""
    block = next((f for f in sys.meta_path if type(f).__name__ == "_FastLaneBlock"), None)
    if block is None:
        yield
        return
    block.attempts.clear()
    yield
    if block.attempts:
        pytest.fail(
            f"{request.node.nodeid} imported {block.attempts[0]} in the fast lane (-m 'not tf'): "
            "mark it tf (pytestmark or @pytest.mark.tf, or make its model in a @tf_fixture)",
            pytrace=False,
        )


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the installed ``edgecnn`` entry point as a user would, capturing its output."""
    return subprocess.run(
        [sys.executable, "-m", "edgecnn", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=900,
    )


# Runs the CLI in a fresh interpreter where importing tensorflow (or keras) raises, then checks
# sys.modules as well: the command must both succeed and leave no TensorFlow module loaded.
# TF_BLOCK goes first in a ``python -c`` program, TF_LEAK_CHECK last (it prints LEAKED [...]).
TF_BLOCK = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('tensorflow', 'tf_keras', 'keras'):
            raise ImportError('blocked: ' + name)
sys.meta_path.insert(0, Block())
"""
TF_LEAK_CHECK = """
leaked = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tf_keras', 'keras'))
print('LEAKED', leaked)
"""
LIGHT_PROBE = (
    TF_BLOCK
    + """
from edgecnn.cli import main
rc = main(sys.argv[1:])
"""
    + TF_LEAK_CHECK
    + """
print('ONNXRUNTIME', 'onnxruntime' in sys.modules)
sys.exit(rc if not leaked else 99)
"""
)


def run_light_cli(*args: str) -> subprocess.CompletedProcess:
    """``edgecnn ARGS`` as on a light install: TensorFlow cannot be imported; prints LEAKED [...] at the end."""
    return subprocess.run([sys.executable, "-c", LIGHT_PROBE, *args], capture_output=True, text=True, timeout=300)


def fake_compiler(tmp_path: Path, log: str) -> Path:
    """A stand-in edgetpu_compiler: prints ``log`` and writes NAME_edgetpu.tflite into -o DIR."""
    script = tmp_path / "edgetpu_compiler"
    script.write_text(
        f"#!{sys.executable}\n"
        "import sys, pathlib\n"
        "if sys.argv[1:] == ['--version']:\n"
        "    print('Edge TPU Compiler version 16.0.384591198'); sys.exit(0)\n"
        "out = pathlib.Path(sys.argv[sys.argv.index('-o') + 1]); model = pathlib.Path(sys.argv[-1])\n"
        "(out / (model.stem + '_edgetpu.tflite')).write_bytes(model.read_bytes())\n"
        f"print({log!r})\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


@tf_fixture(scope="session")
def digits_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """LeNet-5 trained on digits with seed 0, plus its float32 and int8 .tflite conversions."""
    from edgecnn.core.config import TrainConfig
    from edgecnn.pipelines.convert import ConvertOptions, convert
    from edgecnn.pipelines.train import train

    run = tmp_path_factory.mktemp("digits") / "run"
    result = train(TrainConfig(arch="lenet5", data="digits", img=32, epochs=20, seed=0, out=str(run)), verbose=0)
    for fmt in ("float32", "int8"):
        convert(result.model_path, None, ConvertOptions(format=fmt))
    return run


@pytest.fixture(scope="session")
def digits_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 30-frame .mp4 of validation digits."""
    from edgecnn.data import load_split
    from edgecnn.pipelines.quickstart import write_clip

    val = load_split("digits", "classify", 32, None, 0, 0.2).val
    return write_clip(val.x[:10, :, :, 0], tmp_path_factory.mktemp("clip") / "clip.mp4")


@pytest.fixture()
def image_folder(tmp_path: Path) -> Path:
    """Two classes of real photos (scikit-image samples), 6 crops each, and one corrupt file."""
    from skimage import data as skdata

    root = tmp_path / "photos"
    rng = np.random.default_rng(0)
    for name, image in (("astronaut", skdata.astronaut()), ("coffee", skdata.coffee())):
        (root / name).mkdir(parents=True)
        h, w = image.shape[:2]
        for i in range(6):
            y, x = rng.integers(0, h - 200), rng.integers(0, w - 200)
            crop = np.ascontiguousarray(image[y : y + 200, x : x + 200, ::-1])  # RGB -> BGR for cv2
            import cv2

            cv2.imwrite(str(root / name / f"{i}.png"), crop)
    (root / "coffee" / "broken.jpg").write_bytes(b"not a jpeg")
    return root
