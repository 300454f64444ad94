"""The demo's drawing: what it writes on a frame stays readable at every frame size."""

from __future__ import annotations

import numpy as np
import pytest

from edgecnn.runtime.classify import Class
from edgecnn.video.overlay import draw_classes, draw_hud


def inked_rows(frame: np.ndarray) -> np.ndarray:
    return np.flatnonzero(frame.any(axis=(1, 2)))


@pytest.mark.parametrize("height", [128, 256, 480, 720, 1080])
def test_top_classes_are_drawn_below_the_hud_line(height: int) -> None:
    """The HUD (FPS, inference ms) and the first class label never share a pixel row (they overlapped at
    256x256 before, as a browser screenshot of the live view showed)."""
    hud = draw_hud(np.zeros((height, height * 4 // 3, 3), np.uint8), 99.3, 4.4)
    labels = draw_classes(np.zeros_like(hud), [Class(5, "five", 0.785), Class(9, "nine", 0.145)])
    assert inked_rows(hud).size and inked_rows(labels).size
    assert inked_rows(hud).max() < inked_rows(labels).min() < height // 2
