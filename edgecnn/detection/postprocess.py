"""Export a detector with the standard ``TFLite_Detection_PostProcess`` op (box decoding + NMS) at its end.

As the TF Object Detection API's TF2 exporter (``object_detection/export_tflite_graph_lib_tf2.py``)
does: the traced graph calls an empty ``tf.function`` whose ``experimental_implements`` attribute
names the op and its settings; the TFLite converter replaces that function with the custom op. Its
inputs are the raw box encodings (1, A, 4), the class scores with a zero background column in front
(1, A, classes + 1: the op skips column 0, as older runtimes require) and the anchors as a constant
(A, 4) ``[ycenter, xcenter, h, w]``. The anchors and the box scales come from the model's ``extra``
record, so the op decodes exactly what training encoded.

The op runs in float32 on the CPU (the Edge TPU compiler leaves it there, after the int8 body). In an
int8 model the converter puts two DEQUANTIZE ops in front of it, the input stays uint8/int8 as ``io``
says, and the four outputs are float32:

* ``boxes`` (1, N, 4) ``[ymin, xmin, ymax, xmax]`` normalized; not clipped to 0..1 (the op does not
  clip), so a box at the image border may reach slightly beyond it: consumers clip;
* ``classes`` (1, N) class ids as floats (0-based, no background);
* ``scores`` (1, N), best first;
* ``count`` (1,) the number of valid rows; rows after it are not written by the op (garbage).

How consumers find them (TensorFlow 2.21, measured): the model has one signature, ``serving_default``,
whose outputs are ``output_0`` = count, ``output_1`` = scores, ``output_2`` = classes, ``output_3`` =
boxes, exactly what pycoral's ``detect.get_objects`` reads when a signature is present (the TF2 Object
Detection API layout). By position, ``get_output_details()`` lists scores, boxes, count, classes
(tensors ``StatefulPartitionedCall:1, :3, :0, :2``): again the TF2 OD API order, which pycoral's
no-signature branch and name-based readers ("StatefulPartitionedCall" -> boxes 1, classes 3, scores
0) also handle. :func:`edgecnn.runtime.detect.read_detections` reads either layout.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from edgecnn.core.errors import EdgecnnError
from edgecnn.core.graph import Graph, variables_only
from edgecnn.core.keras_env import tf
from edgecnn.detection.anchors import generate_anchors
from edgecnn.detection.nms import DEFAULT_NMS, NmsSettings
from edgecnn.runtime.detect import POSTPROCESS_OP as OP_NAME
from edgecnn.runtime.detect import SIGNATURE_ROLES


def plain(value: Any) -> Any:
    """A JSON round trip: turns the trackable dict/list wrappers Keras puts around model attributes
    (``model.edgecnn_extra``) into plain Python values."""

    def default(obj: Any) -> Any:
        if hasattr(obj, "keys"):
            return {k: obj[k] for k in obj.keys()}
        return list(obj)

    return json.loads(json.dumps(value, default=default))


def implements_signature(
    num_classes: int,
    box_scale: list[float],
    nms: NmsSettings = DEFAULT_NMS,
    use_regular_nms: bool = False,
    detections_per_class: int = 100,
) -> str:
    """The ``experimental_implements`` text the converter turns into the op's options (an attribute list
    in protobuf text format, as the Object Detection API exporter writes it)."""
    y, x, h, w = (float(s) for s in box_scale)
    attrs = [
        ("max_detections", f"i: {int(nms.max_detections)}"),
        ("max_classes_per_detection", "i: 1"),
        ("detections_per_class", f"i: {int(detections_per_class)}"),
        ("use_regular_nms", f"b: {str(bool(use_regular_nms)).lower()}"),
        ("nms_score_threshold", f"f: {float(nms.score_threshold)!r}"),
        ("nms_iou_threshold", f"f: {float(nms.iou_threshold)!r}"),
        ("y_scale", f"f: {y!r}"),
        ("x_scale", f"f: {x!r}"),
        ("h_scale", f"f: {h!r}"),
        ("w_scale", f"f: {w!r}"),
        ("num_classes", f"i: {int(num_classes)}"),
    ]
    return " ".join([f'name: "{OP_NAME}"', *(f'attr {{ key: "{k}" value {{ {v} }} }}' for k, v in attrs)])


def _check(model: Any, extra: dict[str, Any]) -> tuple[np.ndarray, list[float], int]:
    """Validate the settings once; returns (anchors, box_scale, num_classes)."""
    if not isinstance(extra, dict) or "anchors" not in extra or "box_scale" not in extra:
        raise EdgecnnError(
            "the model's record has no anchors/box_scale; train it with edgecnn (a detect architecture) or "
            "pass the builder's Built.extra"
        )
    anchors = generate_anchors(extra["anchors"])
    shapes = [tuple(s) for s in model.output_shape] if isinstance(model.output_shape, list) else []
    if len(shapes) != 2 or shapes[0][1:] != (len(anchors), 4) or shapes[1][1] != len(anchors):
        raise EdgecnnError(
            f"model outputs {model.output_shape} do not match its {len(anchors)} anchors; a detector outputs "
            "[(batch, A, 4) box encodings, (batch, A, classes) scores]"
        )
    return anchors, [float(s) for s in extra["box_scale"]], int(shapes[1][2])


def detection_function(model: Any, extra: dict[str, Any], nms: NmsSettings = DEFAULT_NMS) -> Any:
    """A concrete function (1, H, W, C) float pixels -> the postprocess op's four outputs, for the converter."""
    extra = plain(extra)
    anchor_rows, box_scale, num_classes = _check(model, extra)
    signature = implements_signature(num_classes, box_scale, nms)

    @tf.function(experimental_implements=signature)
    def postprocess(box_encodings: Any, class_predictions: Any, anchors: Any) -> tuple[Any, ...]:
        # A placeholder body: the converter swaps the whole function for the TFLite op.
        zero = tf.constant(0.0, tf.float32)
        return zero, zero, zero, zero

    anchor_tensor = tf.constant(anchor_rows, tf.float32)

    def serve(pixels: Any) -> dict[str, Any]:
        box_encodings, class_scores = model(pixels, training=False)
        background = tf.zeros_like(class_scores[..., :1])
        with_background = tf.concat([background, class_scores], axis=-1)
        boxes, classes, scores, count = postprocess(box_encodings, with_background, anchor_tensor)
        named = {"boxes": boxes, "classes": classes, "scores": scores, "count": count}
        return {key: named[value] for key, value in SIGNATURE_ROLES.items()}

    spec = tf.TensorSpec([1, *model.input_shape[1:]], tf.float32, name="pixels")
    return tf.function(serve).get_concrete_function(spec)


def detection_graph(model: Any, extra: dict[str, Any], nms: NmsSettings = DEFAULT_NMS) -> Graph:
    """The detector's deployable graph: the postprocess op at its end, a custom op with float32 outputs
    (with int8 the body is full int8 and the input uint8/int8 as ``io`` says)."""
    return Graph(detection_function(model, extra, nms), variables_only(model), custom_ops=True, float_outputs=True)
