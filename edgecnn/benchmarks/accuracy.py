"""Classification accuracy: top-1, top-5, per-class accuracy and the confusion matrix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgecnn.core.fileio import atomic_path


def classification_metrics(probs: np.ndarray, y: np.ndarray, labels: list[str]) -> dict[str, Any]:
    """Metrics over (N, C) scores and (N,) true class ids; top-5 only where there are more than 5 classes."""
    pred = probs.argmax(axis=1)
    n = len(labels)
    confusion = np.zeros((n, n), np.int64)
    np.add.at(confusion, (y, pred), 1)
    support = confusion.sum(axis=1)
    per_class = {labels[i]: round(float(confusion[i, i] / support[i]), 4) if support[i] else None for i in range(n)}
    out: dict[str, Any] = {
        "images": int(len(y)),
        "top1": round(float((pred == y).mean()), 4),
        "per_class": per_class,
        "confusion": confusion.tolist(),
    }
    if n > 5:
        top5 = np.argsort(-probs, axis=1)[:, :5]
        out["top5"] = round(float((top5 == y[:, None]).any(axis=1).mean()), 4)
    return out


def confusion_png(confusion: np.ndarray, labels: list[str], path: Path, title: str = "") -> Path:
    """Draw the confusion matrix with OpenCV (rows: truth, columns: prediction); no matplotlib needed."""
    confusion = np.asarray(confusion)
    n = len(labels)
    cell, margin = max(24, min(60, 600 // max(n, 1))), 90
    size = margin + n * cell + 10
    canvas = np.full((size + 20, size, 3), 255, np.uint8)
    row_sums = confusion.sum(axis=1, keepdims=True).clip(min=1)
    frac = confusion / row_sums
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, 0.35
    for i in range(n):
        for j in range(n):
            x0, y0 = margin + j * cell, margin + i * cell
            shade = int(255 * (1 - frac[i, j]))
            cv2.rectangle(canvas, (x0, y0), (x0 + cell, y0 + cell), (255, shade, shade), -1)
            if confusion[i, j]:
                colour = (255, 255, 255) if frac[i, j] > 0.5 else (0, 0, 0)
                cv2.putText(canvas, str(confusion[i, j]), (x0 + 3, y0 + cell // 2 + 4), font, scale, colour, 1)
        cv2.putText(canvas, labels[i][:10], (4, margin + i * cell + cell // 2 + 4), font, scale, (0, 0, 0), 1)
        cv2.putText(canvas, labels[i][:4], (margin + i * cell + 3, margin - 8), font, scale, (0, 0, 0), 1)
    cv2.putText(canvas, "true \\ predicted", (4, 20), font, 0.45, (0, 0, 0), 1)
    if title:
        cv2.putText(canvas, title[:60], (4, size + 12), font, 0.4, (0, 0, 0), 1)
    with atomic_path(path) as tmp:
        ok, encoded = cv2.imencode(".png", canvas)
        tmp.write_bytes(encoded.tobytes())
    return path
