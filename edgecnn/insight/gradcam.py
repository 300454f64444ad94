"""Grad-CAM (Selvaraju et al., 2017): where in a convolutional map the evidence for a class lies.

The class logit's gradient with respect to a convolutional map, averaged over space, weights that map's
channels; their weighted sum, ReLU'd, is the class map. It is then placed on the input pixels where its
cells look: adjacent cells are one *jump* apart (the product of the strides before the layer, from
:func:`edgecnn.insight.profile.profile_model`) and centred on the image, which is exact for valid and 'same'
padding alike (a plain stretch of LeNet-5's 10x10 map over 32x32 pixels puts it up to 5 pixels off).
Works on any Keras classifier, a nested backbone's last convolution included
(:func:`edgecnn.insight.layers.capture`).
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from edgecnn.core.keras_env import tf
from edgecnn.insight.attacks import output_logits
from edgecnn.insight.layers import capture, gradcam_layer, path_of, spatial_output
from edgecnn.insight.profile import profile_model


def gradcam(model: Any, images: np.ndarray, targets: np.ndarray | None, layer: Any = None) -> tuple[np.ndarray, Any]:
    """Grad-CAM maps (N, H, W) >= 0 on the input pixels and the class probabilities (N, classes) of
    ``images`` (N, H, W, C) raw 0..255 pixels; ``targets`` the class to explain per image (None: the
    predicted one); ``layer`` a Keras layer (None: the last convolution's block, :func:`gradcam_layer`)."""
    layer = layer or gradcam_layer(model)
    spatial_output(layer, "--layer")
    x = tf.convert_to_tensor(np.asarray(images, np.float32))
    with capture(layer) as seen, tf.GradientTape() as tape:
        out = model(x, training=False)
        logits = output_logits(model, out)
        chosen = tf.argmax(out, axis=-1, output_type=tf.int32) if targets is None else tf.constant(targets, tf.int32)
        score = tf.reduce_sum(tf.gather(logits, chosen, axis=1, batch_dims=1))
    maps = seen[-1]
    grads = tape.gradient(score, maps)
    weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
    cams = tf.nn.relu(tf.reduce_sum(weights * maps, axis=-1)).numpy()
    jump = layer_jump(model, layer, cams.shape[1:], images.shape[1:3])
    return np.stack([to_input(cam, jump, images.shape[1:3]) for cam in cams]), out.numpy()


def layer_jump(model: Any, layer: Any, map_hw: tuple[int, ...], image_hw: tuple[int, ...]) -> tuple[float, float]:
    """Input pixels between adjacent cells of ``layer``'s map; the plain ratio when the profile cannot say."""
    try:
        return tuple(float(j) for j in profile_model(model).layer(path_of(model, layer)).jump)  # type: ignore[return-value]
    except (KeyError, ValueError, TypeError):  # a layer the profiler does not know: same-padding estimate
        return image_hw[0] / map_hw[0], image_hw[1] / map_hw[1]


def to_input(cam: np.ndarray, jump: tuple[float, float], image_hw: tuple[int, ...]) -> np.ndarray:
    """The (h, w) map on the (H, W) input: cell i's centre at ``c0 + i * jump``, the cells centred on the
    image, bilinear between cells; each cell stands for the jump x jump square around its centre, so the
    edge cells' values reach half a jump past them and the pixels beyond (valid padding's border, which
    no cell is centred on) get 0."""
    (h, w), (big_h, big_w) = cam.shape, image_hw[:2]
    jy, jx = jump
    y0 = (big_h - 1 - (h - 1) * jy) / 2
    x0 = (big_w - 1 - (w - 1) * jx) / 2
    matrix = np.float32([[jx, 0, x0], [0, jy, y0]])
    placed = cv2.warpAffine(
        cam.astype(np.float32), matrix, (big_w, big_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    ys, xs = np.arange(big_h)[:, None], np.arange(big_w)[None, :]
    covered = (np.abs(ys - (big_h - 1) / 2) <= (h * jy) / 2) & (np.abs(xs - (big_w - 1) / 2) <= (w * jx) / 2)
    return np.where(covered, placed, 0.0).astype(np.float32)
