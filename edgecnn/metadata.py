"""Self-describing models: what a deployed model needs to be used travels inside the model file.

* ``.tflite``: a JSON record in the flatbuffer's standard ``metadata`` table under the name
  ``edgecnn``; Netron and other tools show it, and any LiteRT interpreter ignores it.
* ``.keras``: the same JSON as an extra ``edgecnn.json`` entry in the Keras zip archive, which the
  Keras loader ignores.

Reading needs only the ``flatbuffers`` package (no TensorFlow), so the Pi runtime can use it.
Writing a .tflite goes through TensorFlow's own flatbuffer utilities at conversion time.
"""

from __future__ import annotations

import dataclasses
import json
import os
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import flatbuffers
from flatbuffers import table as fb_table

from edgecnn import __version__
from edgecnn.errors import EdgecnnError

METADATA_NAME = "edgecnn"
KERAS_ENTRY = "edgecnn.json"
TFLITE_IDENTIFIER = b"TFL3"

# Field slots (vtable offsets) from tensorflow/compiler/mlir/lite/schema/schema.fbs:
# Model { version, operator_codes, subgraphs, description, buffers, metadata_buffer, metadata, ... }
_MODEL_BUFFERS = 4 + 2 * 4
_MODEL_METADATA = 4 + 2 * 6
_METADATA_NAME = 4
_METADATA_BUFFER = 6
_BUFFER_DATA = 4
_BUFFER_OFFSET = 6
_BUFFER_SIZE = 8


@dataclass
class ModelInfo:
    """Everything a runtime needs to feed a model and read its outputs."""

    task: str = "classify"
    labels: list[str] = field(default_factory=list)
    input_size: list[int] = field(default_factory=lambda: [32, 32])  # height, width
    channels: int = 3
    pixel_format: str = "rgb"  # rgb | gray; pixels are uint8 0..255, normalization is in the graph
    normalization: str = "in-graph: x / 127.5 - 1"
    arch: str = ""
    quantization: str = "float32"
    data: dict[str, Any] = field(default_factory=dict)  # how the validation split was made
    extra: dict[str, Any] = field(default_factory=dict)  # task-specific: anchors, decoding, ...
    edgecnn_version: str = __version__

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> ModelInfo:
        raw = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})


# ----------------------------------------------------------------------------------------- tflite
def _tflite_bytes(path: str | os.PathLike) -> bytes:
    path = Path(path)
    if not path.is_file():
        raise EdgecnnError(f"model file not found: {path}; check the path")
    data = path.read_bytes()
    if len(data) < 8 or data[4:8] != TFLITE_IDENTIFIER:
        raise EdgecnnError(f"not a valid .tflite model: {path}; convert one with: edgecnn convert MODEL.keras")
    return data


def read_tflite_metadata(path: str | os.PathLike) -> dict[str, bytes]:
    """All entries of a .tflite's metadata table, by name (raw bytes)."""
    data = _tflite_bytes(path)
    try:
        return _read_metadata(bytearray(data), data)
    except (struct.error, IndexError, UnicodeDecodeError) as exc:  # a truncated or damaged flatbuffer
        raise EdgecnnError(f"corrupt .tflite model: {path} ({exc}); convert it again") from exc


def _read_metadata(buf: bytearray, data: bytes) -> dict[str, bytes]:
    model = fb_table.Table(buf, flatbuffers.encode.Get(flatbuffers.packer.uoffset, buf, 0))
    out: dict[str, bytes] = {}
    meta_off = model.Offset(_MODEL_METADATA)
    buffers_off = model.Offset(_MODEL_BUFFERS)
    if not meta_off or not buffers_off:
        return out
    buffers_vec = model.Vector(buffers_off)
    for i in range(model.VectorLen(meta_off)):
        entry = fb_table.Table(buf, model.Indirect(model.Vector(meta_off) + 4 * i))
        name_off = entry.Offset(_METADATA_NAME)
        name = entry.String(name_off + entry.Pos).decode() if name_off else ""
        buf_idx_off = entry.Offset(_METADATA_BUFFER)
        index = entry.Get(flatbuffers.number_types.Uint32Flags, buf_idx_off + entry.Pos) if buf_idx_off else 0
        buffer = fb_table.Table(buf, model.Indirect(buffers_vec + 4 * index))
        out[name] = _buffer_bytes(buffer, data)
    return out


def _buffer_bytes(buffer: fb_table.Table, data: bytes) -> bytes:
    data_off = buffer.Offset(_BUFFER_DATA)
    if data_off:
        start = buffer.Vector(data_off)
        return bytes(data[start : start + buffer.VectorLen(data_off)])
    # Models over 2 GB keep buffers after the flatbuffer, addressed by (offset, size).
    offset_off, size_off = buffer.Offset(_BUFFER_OFFSET), buffer.Offset(_BUFFER_SIZE)
    if offset_off and size_off:
        start = buffer.Get(flatbuffers.number_types.Uint64Flags, offset_off + buffer.Pos)
        size = buffer.Get(flatbuffers.number_types.Uint64Flags, size_off + buffer.Pos)
        return bytes(data[start : start + size])
    return b""


def read_tflite_info(path: str | os.PathLike) -> ModelInfo | None:
    """The edgecnn record of a .tflite, or None for a model edgecnn did not write."""
    raw = read_tflite_metadata(path).get(METADATA_NAME)
    return ModelInfo.from_json(raw) if raw else None


def embed_tflite_info(model_bytes: bytes, info: ModelInfo) -> bytes:
    """Return the .tflite flatbuffer with ``info`` in its metadata table (needs TensorFlow)."""
    from edgecnn.keras_env import flatbuffer_utils  # lazy: writing is conversion time; reading stays light
    from edgecnn.keras_env import tflite_schema as schema  # lazy: as above

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(model_bytes))
    buffer = schema.BufferT()
    buffer.data = list(info.to_json().encode())
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = METADATA_NAME
    entry.buffer = len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if m.name != METADATA_NAME.encode()] + [entry]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


# ------------------------------------------------------------------------------------------ keras
def write_keras_info(path: str | os.PathLike, info: ModelInfo) -> None:
    """Add the edgecnn record to a saved .keras archive (in place; the archive stays loadable)."""
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr(KERAS_ENTRY, info.to_json())


def read_keras_info(path: str | os.PathLike) -> ModelInfo | None:
    path = Path(path)
    if not path.is_file():
        raise EdgecnnError(f"model file not found: {path}; check the path")
    if not zipfile.is_zipfile(path):
        return None
    with zipfile.ZipFile(path) as zf:
        if KERAS_ENTRY not in zf.namelist():
            return None
        return ModelInfo.from_json(zf.read(KERAS_ENTRY))


def read_info(path: str | os.PathLike) -> ModelInfo | None:
    """The edgecnn record of a .tflite or .keras model, or None when it has none."""
    return read_tflite_info(path) if str(path).endswith(".tflite") else read_keras_info(path)
