"""Standard TFLite metadata (``TFLITE_METADATA``) beside edgecnn's own record, so MediaPipe Tasks and the LiteRT
Task Library read our models: image properties, normalization, the labels as an associated file, and the
detection and segmentation output descriptions.

The schema is ``metadata_schema.fbs`` of TFLite Support, now maintained in MediaPipe
(``mediapipe/tasks/metadata/metadata_schema.fbs``, file identifier ``M001``). What goes in is what MediaPipe's
own writers (``mediapipe.tasks.python.metadata.metadata_writers``: ``image_classifier``, ``object_detector``
``create_for_models_with_nms``, ``image_segmenter``) write, field for field: ``tests/test_tflite_metadata.py``
compares the two. Those writers cannot be used here: mediapipe 1.2 pins absl-py~=2.3 against
tensorflow-model-optimization's absl-py~=1.2, replaces opencv-python-headless with opencv-contrib-python, and
its metadata populator imports a native module (``mediapipe.tasks.cc.metadata.python``) its wheel no longer
ships; the unmaintained tflite-support would downgrade protobuf to 3.20 under TensorFlow 2.21. So the tables
are built here with ``flatbuffers`` (a base dependency), each field at its schema index.

* input ``image``: ImageProperties (RGB or GRAYSCALE), NormalizationOptions mean 0 / std 1 and stats 0..255:
  the model takes raw 0..255 pixels and normalizes them itself (``info.normalization``), so the identity is
  what a runtime must apply. MediaPipe refuses a float32 input without NormalizationOptions.
Which outputs a model has is its task's answer (:meth:`edgecnn.tasks.base.Task.metadata_outputs` returns one
of the writers below); this module keys nothing by task name.

* classify: output ``score`` (FeatureProperties, stats 0..1 for float32 / 0..255 for uint8) with
  ``labels.txt`` as TENSOR_AXIS_LABELS.
* detect: the four outputs of ``TFLite_Detection_PostProcess`` in the model's output order, named
  ``location`` (BoundingBoxProperties: ``[ymin, xmin, ymax, xmax]`` = index [1, 0, 3, 2], BOUNDARIES,
  RATIO), ``category`` (``labels.txt`` as TENSOR_VALUE_LABELS), ``score`` and ``number of detections``; the
  first three grouped as ``detection_result``. Roles come from the signature the exporter writes
  (:data:`edgecnn.runtime.detect.SIGNATURE_ROLES`), not from tensor order.
* segment: output ``segmentation_masks`` (ImageProperties GRAYSCALE, content range 1..2) with the labels as
  TENSOR_AXIS_LABELS, and custom metadata ``SEGMENTER_METADATA`` (activation SOFTMAX: the .tflite ends in
  logits).

Checked with MediaPipe 1.2.3 (``benchmarks/results/runtimes.md``): its displayer reads exactly what its own
writers write for the same models, and ImageClassifier, ObjectDetector and ImageSegmenter give edgecnn's
results, labels named, on float32 and int8 models (int8: now and then a score one quantization step apart,
MediaPipe's bundled XNNPACK rounding differently). Its ImageClassifier takes RGB models only ("Only RGB color
space is supported for now"): a gray model (LeNet-5 on digits) carries GRAYSCALE, which other readers use.

The labels file is packed into the .tflite as a zip archive appended after the flatbuffer (as the TFLite
Support populator does); interpreters and edgecnn's readers ignore it. ``min_parser_version`` is the oldest
metadata parser that knows every field used (the table of ``metadata_version.cc``).
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import flatbuffers

from edgecnn.core.errors import EdgecnnError
from edgecnn.core.keras_env import flatbuffer_utils
from edgecnn.core.keras_env import tflite_schema as schema
from edgecnn.core.metadata import ModelInfo
from edgecnn.runtime.detect import SIGNATURE_ROLES

METADATA_NAME = "TFLITE_METADATA"
IDENTIFIER = b"M001"
SEGMENTER_IDENTIFIER = b"V001"
LABELS_FILE = "labels.txt"
LABELS_DESCRIPTION = "Labels for categories that the model can recognize."

# enums of metadata_schema.fbs
AXIS_LABELS, VALUE_LABELS = 2, 3  # AssociatedFileType
RGB, GRAYSCALE = 1, 2  # ColorSpaceType
FEATURE, IMAGE, BOUNDING_BOX = 1, 2, 3  # ContentProperties union
NORMALIZATION = 1  # ProcessUnitOptions union
BOUNDARIES = 1  # BoundingBoxType
SOFTMAX = 2  # ImageSegmenterOptions.activation
# schema feature -> the parser version that introduced it (metadata_version.cc)
VERSIONS = {"base": "1.0.0", "tensor_groups": "1.2.0", "content_range": "1.5.0", "custom_metadata": "1.5.0"}


# ------------------------------------------------------------------------- a flatbuffer writer
@dataclass(frozen=True)
class Scalar:
    kind: str  # "int8", "uint8", "uint32", "int32"
    value: int


@dataclass(frozen=True)
class Numbers:
    kind: str  # "float32", "uint32", "uint8"
    values: tuple[Any, ...]
    alignment: int = 4


@dataclass(frozen=True)
class Table:
    """A table: field index (its position in the schema, unions counting two) -> value."""

    fields: dict[int, Any]


_PREPEND = {"int8": "Int8", "uint8": "Uint8", "uint32": "Uint32", "int32": "Int32", "float32": "Float32"}
_SIZE = {"int8": 1, "uint8": 1, "uint32": 4, "int32": 4, "float32": 4}


def _write(b: flatbuffers.Builder, node: Any) -> int:
    """Serialize a string, a :class:`Numbers` vector, a :class:`Table` or a list (of tables or strings)
    children first, as flatbuffers requires; returns the offset."""
    if isinstance(node, str):
        return b.CreateString(node)
    if isinstance(node, Numbers):
        b.StartVector(_SIZE[node.kind], len(node.values), max(node.alignment, _SIZE[node.kind]))
        prepend = getattr(b, "Prepend" + _PREPEND[node.kind])
        for value in reversed(node.values):
            prepend(value)
        return b.EndVector()
    if isinstance(node, list):
        offsets = [_write(b, item) for item in node]
        b.StartVector(4, len(offsets), 4)
        for offset in reversed(offsets):
            b.PrependUOffsetTRelative(offset)
        return b.EndVector()
    offsets = {i: _write(b, v) for i, v in node.fields.items() if not isinstance(v, Scalar)}
    b.StartObject(max(node.fields) + 1 if node.fields else 0)
    for i, value in sorted(node.fields.items()):
        if isinstance(value, Scalar):
            getattr(b, f"Prepend{_PREPEND[value.kind]}Slot")(i, value.value, 0)
        else:
            b.PrependUOffsetTRelativeSlot(i, offsets[i], 0)
    return b.EndObject()


def serialize(root: Table, identifier: bytes) -> bytes:
    b = flatbuffers.Builder(1024)
    b.Finish(_write(b, root), identifier)
    return bytes(b.Output())


# ----------------------------------------------------------------------- the schema's tables
def associated_file(name: str, description: str, kind: int) -> Table:
    """AssociatedFile { name, description, type, locale, version }."""
    return Table({0: name, 1: description, 2: Scalar("int8", kind)})


def content(properties_type: int, properties: Table, value_range: tuple[int, int] | None = None) -> Table:
    """Content { content_properties (union: type, value), range: ValueRange { min, max } }."""
    fields: dict[int, Any] = {0: Scalar("uint8", properties_type), 1: properties}
    if value_range is not None:
        fields[2] = Table({0: Scalar("int32", value_range[0]), 1: Scalar("int32", value_range[1])})
    return Table(fields)


def stats(low: float | None = None, high: float | None = None) -> Table:
    """Stats { max: [float], min: [float] } (empty when the value range is not known)."""
    if low is None or high is None:
        return Table({})
    return Table({0: Numbers("float32", (float(high),)), 1: Numbers("float32", (float(low),))})


def tensor(
    name: str,
    description: str,
    body: Table,
    process_units: list[Table] | None = None,
    value_stats: Table | None = None,
    files: list[Table] | None = None,
) -> Table:
    """TensorMetadata { name, description, dimension_names, content, process_units, stats, associated_files }."""
    fields: dict[int, Any] = {0: name, 1: description, 3: body}
    if process_units:
        fields[4] = process_units
    if value_stats is not None:
        fields[5] = value_stats
    if files:
        fields[6] = files
    return Table(fields)


def image_input(info: ModelInfo, dtype: str) -> Table:
    """The input image: colour space, identity normalization (the model normalizes raw pixels in-graph)."""
    colour = GRAYSCALE if info.pixel_format == "gray" else RGB
    normalization = Table(
        {0: Scalar("uint8", NORMALIZATION), 1: Table({0: Numbers("float32", (0.0,)), 1: Numbers("float32", (1.0,))})}
    )
    return tensor(
        "image",
        "Input image to be processed.",
        content(IMAGE, Table({0: Scalar("int8", colour)})),
        [normalization],
        stats(0, 255) if dtype in ("uint8", "float32") else None,
    )


def labels_file(kind: int) -> list[Table]:
    return [associated_file(LABELS_FILE, LABELS_DESCRIPTION, kind)]


# ------------------------------------------------------------------------------- per task
@dataclass(frozen=True)
class Outputs:
    """What a task writes: model name and description, output metadata, groups, custom metadata, features."""

    name: str
    description: str
    tensors: list[Table]
    groups: list[Table] | None = None
    custom: list[Table] | None = None
    features: tuple[str, ...] = ("base",)


def classify_outputs(model: Any) -> Outputs:
    dtype = _type_name(model, model.subgraphs[0].outputs[0])
    score_stats = stats(0, 255) if dtype == "uint8" else stats(0, 1) if dtype == "float32" else None
    score = tensor(
        "score",
        "Score of the labels respectively.",
        content(FEATURE, Table({})),
        value_stats=score_stats,
        files=labels_file(AXIS_LABELS),
    )
    return Outputs(
        "ImageClassifier",
        "Identify the most prominent object in the image from a known set of categories.",
        [score],
    )


DETECTION_TENSORS = {  # role -> (metadata name, description)
    "boxes": ("location", "The locations of the detected boxes."),
    "classes": ("category", "The categories of the detected boxes."),
    "scores": ("score", "The scores of the detected boxes."),
    "count": ("number of detections", "The number of the detected boxes."),
}


def detect_outputs(model: Any) -> Outputs:
    """The postprocess op's four outputs described in the model's output order (roles from its signature)."""
    roles = detection_roles(model)
    per_row = (2, 2)  # content range: the box / class / score is dimension 2 of (1, N, ...)
    bodies = {
        "boxes": content(
            BOUNDING_BOX,
            Table({0: Numbers("uint32", (1, 0, 3, 2)), 1: Scalar("int8", BOUNDARIES)}),  # RATIO is the default
            per_row,
        ),
        "classes": content(FEATURE, Table({}), per_row),
        "scores": content(FEATURE, Table({}), per_row),
        "count": content(FEATURE, Table({})),
    }
    tensors = []
    for role in roles:
        name, description = DETECTION_TENSORS[role]
        files = labels_file(VALUE_LABELS) if role == "classes" else None
        tensors.append(tensor(name, description, bodies[role], value_stats=stats(), files=files))
    group = Table({0: "detection_result", 1: [DETECTION_TENSORS[r][0] for r in ("boxes", "classes", "scores")]})
    return Outputs(
        "ObjectDetector",
        "Identify which of a known set of objects might be present and provide information about their "
        "positions within the given image or a video stream.",
        tensors,
        groups=[group],
        features=("base", "tensor_groups", "content_range"),
    )


def segment_outputs(model: Any) -> Outputs:
    masks = tensor(
        "segmentation_masks",
        "Masks over the target objects with high accuracy.",
        content(IMAGE, Table({0: Scalar("int8", GRAYSCALE)}), (1, 2)),
        value_stats=stats(),
        files=labels_file(AXIS_LABELS),
    )
    options = serialize(Table({0: Scalar("int8", SOFTMAX)}), SEGMENTER_IDENTIFIER)  # ImageSegmenterOptions
    custom = Table({0: "SEGMENTER_METADATA", 1: Numbers("uint8", tuple(options), alignment=16)})
    return Outputs(
        "ImageSegmenter",
        "Semantic image segmentation predicts whether each pixel of an image is associated with a certain class.",
        [masks],
        custom=[custom],
        features=("base", "content_range", "custom_metadata"),
    )


DescribeOutputs = Callable[[Any], Outputs]  # a task's writer above (Task.metadata_outputs): model -> Outputs


def _type_name(model: Any, index: int) -> str:
    kind = model.subgraphs[0].tensors[index].type
    return {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}[kind].lower()


def detection_roles(model: Any) -> list[str]:
    """The role (boxes, classes, scores, count) of each output of a detection .tflite, in output order, from
    its one signature's output names (what edgecnn's exporter and the TF2 Object Detection API write)."""
    outputs = list(model.subgraphs[0].outputs)
    signatures = model.signatureDefs or []
    by_index = {}
    if len(signatures) == 1:
        by_index = {m.tensorIndex: SIGNATURE_ROLES.get(m.name.decode()) for m in signatures[0].outputs or []}
    roles = [by_index.get(int(i)) for i in outputs]
    if len(outputs) != 4 or sorted(r for r in roles if r) != sorted(SIGNATURE_ROLES.values()):
        raise EdgecnnError(
            f"cannot describe the detector's {len(outputs)} outputs for MediaPipe: a detection model ends in "
            "TFLite_Detection_PostProcess with its signature (export it with edgecnn convert)"
        )
    return roles  # type: ignore[return-value]


# ------------------------------------------------------------------------------- writing
def standard_metadata(model: Any, info: ModelInfo, describe: DescribeOutputs) -> bytes:
    """The ``TFLITE_METADATA`` flatbuffer for a model (a ``tflite_schema.ModelT``) and its edgecnn record;
    ``describe`` is the task's description of its outputs (:meth:`edgecnn.tasks.base.Task.metadata_outputs`)."""
    outputs = describe(model)
    graph = model.subgraphs[0]
    subgraph: dict[int, Any] = {
        2: [image_input(info, _type_name(model, graph.inputs[0]))],
        3: outputs.tensors,
    }
    if outputs.groups:
        subgraph[8] = outputs.groups
    if outputs.custom:
        subgraph[9] = outputs.custom
    version = max((VERSIONS[f] for f in outputs.features), key=lambda v: tuple(int(p) for p in v.split(".")))
    author = f"edgecnn {info.edgecnn_version}" + (f" ({info.arch})" if info.arch else "")
    root = Table({0: outputs.name, 1: outputs.description, 3: [Table(subgraph)], 4: author, 7: version})
    return serialize(root, IDENTIFIER)


def _set_entry(model: Any, name: str, data: bytes) -> None:
    """Add (or replace) metadata entry ``name`` of a ``ModelT`` with ``data`` in a new buffer."""
    buffer = schema.BufferT()
    buffer.data = list(data)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = name
    entry.buffer = len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if m.name != name.encode()] + [entry]


def embed_standard_metadata(model_bytes: bytes, info: ModelInfo, describe: DescribeOutputs) -> bytes:
    """The .tflite (with edgecnn's record already in, :func:`edgecnn.core.metadata.embed_tflite_info`: what edgecnn
    reads) plus the standard metadata (entry ``TFLITE_METADATA``: what MediaPipe reads) and ``labels.txt`` packed
    after the flatbuffer as a zip archive. One more pass over the flatbuffer: 0.08 s for MobileNetV2's 14 MB."""
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(model_bytes))
    _set_entry(model, METADATA_NAME, standard_metadata(model, info, describe))
    archive = io.BytesIO(bytes(flatbuffer_utils.convert_object_to_bytearray(model)))
    with zipfile.ZipFile(archive, "a") as zf:  # "a" on a non-zip: the archive goes after the flatbuffer
        zf.writestr(LABELS_FILE, "\n".join(info.labels))
    return archive.getvalue()
