"""Helpers of the detection and segmentation end-to-end tests (test_detect_e2e.py, test_segment_e2e.py)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
from conftest import run_cli

SIZE = 96


def train_run(arch: str, data: str, out: Path, epochs: int, batch: int) -> Path:
    """``edgecnn train``'s library call: a short seeded run at 96x96 on a built-in dataset."""
    from edgecnn.core.config import TrainConfig
    from edgecnn.pipelines.train import train

    config = TrainConfig(arch=arch, data=data, img=SIZE, epochs=epochs, batch=batch, lr=3e-3, seed=0, out=str(out))
    return train(config, verbose=0).run_dir


def convert_int8(run: Path) -> dict:
    result = run_cli("convert", str(run), "--int8", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def write_frames(data: str, folder: Path, n: int = 6) -> Path:
    """Validation images of a built-in set as PNG files: the demo's folder source."""
    from edgecnn.data import load_split

    val = load_split(data, "detect" if data == "shapes" else "segment", 160, None, 0, 0.2).val
    folder.mkdir()
    for i, image in enumerate(val.x[:n]):
        cv2.imwrite(str(folder / f"{i}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return folder
