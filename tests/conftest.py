"""Shared fixtures: one seeded LeNet-5 run on digits, converted once, reused by the pipeline tests."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]


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
LIGHT_PROBE = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('tensorflow', 'tf_keras', 'keras'):
            raise ImportError('blocked: ' + name)
sys.meta_path.insert(0, Block())
from edgecnn.cli import main
rc = main(sys.argv[1:])
leaked = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tf_keras', 'keras'))
print('LEAKED', leaked)
print('ONNXRUNTIME', 'onnxruntime' in sys.modules)
sys.exit(rc if not leaked else 99)
"""


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


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """LeNet-5 trained on digits with seed 0, plus its float32 and int8 .tflite conversions."""
    from edgecnn.config import TrainConfig
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
