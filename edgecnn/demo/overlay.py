"""Drawing on frames: classification labels and the HUD (FPS, inference time)."""

from __future__ import annotations

import cv2
import numpy as np

from edgecnn.runtime.classify import Class

FONT = cv2.FONT_HERSHEY_SIMPLEX


def _text(frame: np.ndarray, text: str, org: tuple[int, int], scale: float, colour: tuple[int, int, int]) -> None:
    """Text with a dark outline so it reads on any background."""
    thickness = max(1, int(round(scale * 2)))
    cv2.putText(frame, text, org, FONT, scale, (0, 0, 0), thickness + 2, cv2.LINE_AA)
    cv2.putText(frame, text, org, FONT, scale, colour, thickness, cv2.LINE_AA)


def draw_classes(frame: np.ndarray, classes: list[Class]) -> np.ndarray:
    scale = max(0.4, frame.shape[0] / 720)
    for i, c in enumerate(classes):
        colour = (0, 255, 0) if i == 0 else (220, 220, 220)
        _text(frame, f"{c.label}: {100 * c.score:.1f}%", (10, int(60 * scale + i * 34 * scale)), scale, colour)
    return frame


def draw_hud(frame: np.ndarray, fps: float, inference_ms: float) -> np.ndarray:
    scale = max(0.35, frame.shape[0] / 900)
    _text(frame, f"{fps:5.1f} FPS  infer {inference_ms:5.1f} ms", (10, int(24 * scale + 8)), scale, (255, 255, 0))
    return frame
