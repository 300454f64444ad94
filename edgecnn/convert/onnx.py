"""Keras -> .onnx through tf2onnx: the same deployable graph as the .tflite, edgecnn's record in ``metadata_props``.

What goes in is what the .tflite gets (the task's :meth:`~edgecnn.tasks.base.Task.deployable` model): a
static (1, H, W, C) float32 input named ``pixels`` taking raw 0..255 pixels (the normalization is a layer
inside the model), classifiers ending in their probabilities, segmenters in their logits. A detector's
.tflite ends in the ``TFLite_Detection_PostProcess`` custom op, which ONNX lacks; its .onnx instead ends in
the same decoding written with standard ops (:func:`detection_function`: the box coding of
:func:`edgecnn.detection.targets.decode`, each anchor's best class, one class-agnostic
``NonMaxSuppression``), with the four outputs of the op in its TF1 order: ``detection_boxes`` (1, N, 4)
``[ymin, xmin, ymax, xmax]``, ``detection_classes`` (1, N), ``detection_scores`` (1, N),
``num_detections`` (1,), rows after the count zero. :func:`edgecnn.runtime.detect.read_detections` reads
that order by position.

Which function a task exports is the task's answer (:meth:`~edgecnn.tasks.base.Task.onnx_function`); the
rows ``onnx-float32`` and ``onnx-int8`` of :data:`edgecnn.convert.formats.FORMATS` are the formats, and
:func:`edgecnn.convert.export.export` writes them.

edgecnn's record (task, labels, input size, pixel format, normalization, dataset split, anchors) is the
``edgecnn`` entry of the model's ``metadata_props``, the JSON the .tflite carries, so ``eval``,
``benchmark`` and ``demo`` need no other flag. Module level stays light: the CLI reads :data:`OPSETS`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np

from edgecnn.core.errors import EdgecnnError
from edgecnn.core.metadata import METADATA_NAME, ModelInfo
from edgecnn.core.quiet import native_stderr_silenced

OPSETS = (13, 18)  # the opsets tf2onnx 1.17 writes (ONNX Runtime >= 1.17 runs them all)
DEFAULT_OPSET = 17
INPUT_NAME = "pixels"
TAIL_SCOPE = "postprocess"  # name scope of the detection decoding: the int8 quantizer leaves it float
DETECTION_OUTPUTS = ("detection_boxes", "detection_classes", "detection_scores", "num_detections")
INSTALL = "pip install 'edgecnn[onnx]'"


def import_converter() -> tuple[Any, Any]:
    """(onnx, tf2onnx), or the one-line error saying how to install them."""
    try:
        import onnx  # the optional extra: only ``convert --onnx`` needs the converter
        import tf2onnx
    except ImportError as exc:
        raise EdgecnnError(f"--onnx needs the ONNX converter ({exc}); install it with: {INSTALL}") from None
    return onnx, tf2onnx


# ------------------------------------------------------------------------------------ the graphs
def _input_spec(model: Any) -> Any:
    from edgecnn.core.keras_env import tf  # lazy: the CLI reads OPSETS on the light install

    _, h, w, c = model.input_shape
    if h is None or w is None:
        raise EdgecnnError("the model has a dynamic input size; rebuild it with a fixed (H, W, C) input")
    return tf.TensorSpec([1, int(h), int(w), int(c)], tf.float32, name=INPUT_NAME)


def plain_function(model: Any, output_name: str) -> Any:
    """The model at batch 1 as it is: (1, H, W, C) pixels -> its output, named ``output_name`` (the task's
    :attr:`~edgecnn.tasks.base.Task.onnx_output`: probabilities, or logits)."""
    from edgecnn.core.keras_env import tf  # lazy: as above

    return tf.function(
        lambda pixels: {output_name: model(pixels, training=False)}, input_signature=[_input_spec(model)]
    )


def detection_function(model: Any, info: ModelInfo) -> Any:
    """The detector with its decoding and NMS in standard ops, as ``TFLite_Detection_PostProcess`` computes
    them (box scales and anchors from the record, each anchor's best class, one class-agnostic NMS at the
    record's settings, at most ``max_detections``): the four outputs of the op, in its TF1 order."""
    from edgecnn.core.keras_env import tf  # lazy: as above
    from edgecnn.detection.anchors import generate_anchors  # lazy: TensorFlow stays off the CLI's path
    from edgecnn.detection.nms import DEFAULT_NMS  # lazy: as above
    from edgecnn.detection.postprocess import plain  # lazy: as above

    extra = plain(info.extra)
    if "anchors" not in extra or "box_scale" not in extra:
        raise EdgecnnError("the detector's record has no anchors/box_scale; train it with edgecnn (a detect arch)")
    anchor_rows = generate_anchors(extra["anchors"])
    sy, sx, sh, sw = (float(s) for s in extra["box_scale"])
    nms = DEFAULT_NMS
    n = int(nms.max_detections)

    def serve(pixels: Any) -> dict[str, Any]:
        encodings, class_scores = model(pixels, training=False)
        with tf.name_scope(TAIL_SCOPE):
            anchors = tf.constant(anchor_rows, tf.float32)  # inside: tf2onnx makes it an initializer
            e = encodings[0]
            yc = e[:, 0] / sy * anchors[:, 2] + anchors[:, 0]
            xc = e[:, 1] / sx * anchors[:, 3] + anchors[:, 1]
            half_h = 0.5 * tf.exp(e[:, 2] / sh) * anchors[:, 2]
            half_w = 0.5 * tf.exp(e[:, 3] / sw) * anchors[:, 3]
            boxes = tf.stack([yc - half_h, xc - half_w, yc + half_h, xc + half_w], axis=1)
            best = tf.reduce_max(class_scores[0], axis=-1)
            classes = tf.cast(tf.argmax(class_scores[0], axis=-1), tf.float32)
            picked, count = tf.raw_ops.NonMaxSuppressionV4(
                boxes=boxes,
                scores=best,
                max_output_size=n,
                iou_threshold=float(nms.iou_threshold),
                score_threshold=float(nms.score_threshold),
                pad_to_max_output_size=True,
            )
            valid = tf.cast(tf.range(n) < count, tf.float32)
            values = (
                tf.gather(boxes, picked) * valid[:, None],
                tf.gather(classes, picked) * valid,
                tf.gather(best, picked) * valid,
            )
            outputs = [v[None] for v in values] + [tf.cast(count, tf.float32)[None]]
        return dict(zip(DETECTION_OUTPUTS, outputs, strict=True))  # tf2onnx orders outputs by name: this order

    return tf.function(serve, input_signature=[_input_spec(model)])


def _erfc(ctx: Any, node: Any, name: str, args: Any) -> Any:
    """Erfc (exact GELU under TensorFlow 2.21, ConvNeXt's activation), which tf2onnx 1.17 has no handler for:
    ``erfc(x) = 1 - erf(x)`` with ONNX's Erf."""
    from tf2onnx import utils  # the optional extra; only called by tf2onnx itself

    node.type = "Erf"
    one = ctx.make_const(utils.make_name(node.name + "_one"), np.array(1.0, np.float32))
    sub = ctx.insert_new_node_on_output("Sub", node.output[0], name=utils.make_name(node.name + "_erfc"))
    ctx.replace_inputs(sub, [one.output[0], node.output[0]])
    return node


# TensorFlow ops tf2onnx converts only with these handlers: {op: (handler, args)}
OP_HANDLERS: dict[str, tuple[Callable[..., Any], list[Any]]] = {"Erfc": (_erfc, [])}


def unsupported_ops(proto: Any) -> dict[str, int]:
    """Nodes tf2onnx left as TensorFlow ops (it logs them and carries on): ONNX Runtime would refuse the
    model at load time with a long message; the converter says so in one line instead."""
    onnx, _ = import_converter()
    found = Counter(n.op_type for n in proto.graph.node if not onnx.defs.has(n.op_type, n.domain or ""))
    return dict(sorted(found.items()))


def keras_to_onnx(function: Any, info: ModelInfo, opset: int = DEFAULT_OPSET) -> Any:
    """A task's batch-1 ``tf.function`` (:meth:`~edgecnn.tasks.base.Task.onnx_function`: :func:`plain_function`
    or :func:`detection_function`) as an ``onnx.ModelProto`` with ``info`` embedded."""
    _, tf2onnx = import_converter()

    low, high = OPSETS
    if not low <= opset <= high:
        raise EdgecnnError(f"--opset {opset} is not allowed; use {low}..{high} (tf2onnx {tf2onnx.__version__})")
    try:
        with native_stderr_silenced():
            proto, _ = tf2onnx.convert.from_function(
                function, input_signature=function.input_signature, opset=opset, custom_op_handlers=OP_HANDLERS
            )
    except Exception as exc:  # tf2onnx raises ValueError/KeyError/RuntimeError with long logs
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise EdgecnnError(f"ONNX conversion (tf2onnx, opset {opset}) failed: {first}") from exc
    left = unsupported_ops(proto)
    if left:
        ops = ", ".join(f"{op} x{n}" for op, n in left.items())
        raise EdgecnnError(
            f"ONNX conversion (tf2onnx {tf2onnx.__version__}, opset {opset}) left TensorFlow ops ONNX has no "
            f"kernel for: {ops}; replace the layers that use them, or convert to .tflite"
        )
    embed_onnx_info(proto, info)
    return proto


def embed_onnx_info(proto: Any, info: ModelInfo) -> None:
    """Put ``info`` in the model's ``metadata_props`` as entry ``edgecnn`` (replacing an older one)."""
    kept = [p for p in proto.metadata_props if p.key != METADATA_NAME]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_NAME, info.to_json()


def op_counts(model: bytes) -> dict[str, int]:
    """The nodes of an .onnx (bytes) by op type (the report's ``ops``)."""
    onnx, _ = import_converter()
    return dict(sorted(Counter(node.op_type for node in onnx.load_model_from_string(model).graph.node).items()))


def tail_nodes(graph: Any) -> list[str]:
    """The nodes of the detection decoding and everything computed from them (tf2onnx's helper nodes of
    the NMS carry no scope): what int8 quantization leaves float, as the .tflite keeps its postprocess op."""
    tail = {n.name for n in graph.node if n.name.startswith(TAIL_SCOPE + "/")}
    tensors = {out for n in graph.node if n.name in tail for out in n.output}
    for node in graph.node:  # nodes are stored in topological order
        if node.name not in tail and any(i in tensors for i in node.input):
            tail.add(node.name)
            tensors.update(node.output)
    return [n.name for n in graph.node if n.name in tail]
