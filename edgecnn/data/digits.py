"""scikit-learn's handwritten digits (1,797 real 8x8 scans, 10 classes), upscaled: the default data.

It ships inside scikit-learn, so it works offline and in CI.
"""

from __future__ import annotations

import cv2
import numpy as np

from edgecnn.core.errors import EdgecnnError
from edgecnn.data.base import ImageData


def load_digits(img_size: int) -> ImageData:
    """Gray (N, S, S, 1) digits; :func:`~edgecnn.data.registry.load_data` converts to RGB when asked."""
    try:
        from sklearn.datasets import load_digits as sk_load_digits
    except ImportError as exc:
        raise EdgecnnError("the digits dataset needs scikit-learn: pip install scikit-learn") from exc
    bunch = sk_load_digits()
    small = (bunch.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)  # 0..16 ink -> 0..255
    x = np.stack([cv2.resize(im, (img_size, img_size), interpolation=cv2.INTER_LINEAR) for im in small])
    return ImageData(x[..., None], bunch.target.astype(np.int64), [str(d) for d in range(10)], "gray")
