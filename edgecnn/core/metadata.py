"""Self-describing models: what a deployed model needs to be used travels inside the model file.

* ``.tflite``: a JSON record in the flatbuffer's standard ``metadata`` table under the name
  ``edgecnn``; Netron and other tools show it, and any LiteRT interpreter ignores it.
* ``.keras``: the same JSON as an extra ``edgecnn.json`` entry in the Keras zip archive, which the
  Keras loader ignores.

Reading needs no TensorFlow (not even the ``flatbuffers`` package): :class:`FlatTable` reads tables with
every offset checked against the file, so a damaged model is the one-line :func:`corrupt_model` error and
the Pi runtime can use it; :mod:`edgecnn.runtime.validate` reads whole models with it. Writing a .tflite
goes through TensorFlow's own flatbuffer utilities at conversion time.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn import __version__
from edgecnn.core.errors import EdgecnnError

METADATA_NAME = "edgecnn"
KERAS_ENTRY = "edgecnn.json"
TFLITE_IDENTIFIER = b"TFL3"

# Field indices from tensorflow/compiler/mlir/lite/schema/schema.fbs (a field's vtable slot is 4 + 2 * index):
# Model { version, operator_codes, subgraphs, description, buffers, metadata_buffer, metadata, ... }
MODEL_BUFFERS = 4
MODEL_METADATA = 6
_METADATA_NAME = 0
_METADATA_BUFFER = 1
_BUFFER_DATA = 0
_BUFFER_OFFSET = 1
_BUFFER_SIZE = 2

U8, I8, U16, I32, U32, I64, U64, F32 = (struct.Struct(f"<{c}") for c in "BbHiIqQf")


class FlatbufferError(ValueError):
    """A damaged flatbuffer field: an offset outside the file, a vector longer than the file, a string that is
    not UTF-8. The caller names the file (:func:`corrupt_model`)."""


def corrupt_model(path: str | os.PathLike, what: str) -> EdgecnnError:
    """The one-line error for a model file that is damaged or inconsistent."""
    if str(path).endswith((".keras", ".h5")):
        return EdgecnnError(f"corrupt .keras model: {path} ({what}); train or save it again")
    return EdgecnnError(f"corrupt .tflite model: {path} ({what}); convert it again")


def _need(buf: bytes, pos: int, size: int) -> None:
    if pos < 0 or pos + size > len(buf):
        raise FlatbufferError(f"offset {pos} + {size} bytes lies outside the {len(buf)}-byte flatbuffer")


_OUTSIDE = "an offset points outside the file"
_VTABLES: dict[int, struct.Struct] = {}  # field count -> the struct that reads a vtable's field offsets


def _vtable_struct(fields: int) -> struct.Struct:
    if fields not in _VTABLES:
        _VTABLES[fields] = struct.Struct(f"<{fields}H")
    return _VTABLES[fields]


class FlatTable:
    """A flatbuffer table whose every read is bounds-checked (``flatbuffers.table.Table`` trusts the offsets,
    so a damaged file gives it struct errors, negative positions wrapping to the end, or endless vectors);
    any damage is a :class:`FlatbufferError`. Absent fields read as their schema default, as in the generated
    code. The vtable is read once, in one ``struct`` call: a model's thousands of tables stay cheap."""

    __slots__ = ("buf", "pos", "_fields")

    def __init__(self, buf: bytes, pos: int) -> None:
        try:
            vtable = pos - I32.unpack_from(buf, pos)[0]
            if vtable < 0:  # struct would read a negative offset from the end of the buffer
                raise FlatbufferError(f"table at {pos} has its vtable before the start of the file")
            vsize = U16.unpack_from(buf, vtable)[0]
            if vsize < 4 or vsize % 2:
                raise FlatbufferError(f"table at {pos} has a damaged vtable")
            self._fields: tuple[int, ...] = _vtable_struct((vsize - 4) // 2).unpack_from(buf, vtable + 4)
        except struct.error:
            raise FlatbufferError(_OUTSIDE) from None
        self.buf, self.pos = buf, pos

    @classmethod
    def root(cls, buf: bytes) -> FlatTable:
        _need(buf, 0, 8)
        return cls(buf, U32.unpack_from(buf, 0)[0])

    def has(self, index: int) -> bool:
        return index < len(self._fields) and self._fields[index] > 0

    def scalar(self, index: int, kind: struct.Struct, default: Any = 0) -> Any:
        off = self._fields[index] if index < len(self._fields) else 0
        if not off:
            return default
        try:
            return kind.unpack_from(self.buf, self.pos + off)[0]
        except struct.error:
            raise FlatbufferError(_OUTSIDE) from None

    def _target(self, index: int) -> int | None:
        """Where the offset stored in field ``index`` points (a table, vector or string), or None."""
        off = self._fields[index] if index < len(self._fields) else 0
        if not off:
            return None
        try:
            return self.pos + off + U32.unpack_from(self.buf, self.pos + off)[0]
        except struct.error:
            raise FlatbufferError(_OUTSIDE) from None

    def table(self, index: int) -> FlatTable | None:
        at = self._target(index)
        return None if at is None else FlatTable(self.buf, at)

    def span(self, index: int, itemsize: int = 1) -> tuple[int, int]:
        """(start, length) of a vector field, checked to lie inside the file; (0, 0) when absent."""
        at = self._target(index)
        if at is None:
            return 0, 0
        _need(self.buf, at, 4)
        length = U32.unpack_from(self.buf, at)[0]
        _need(self.buf, at + 4, length * itemsize)
        return at + 4, length

    def length(self, index: int) -> int:
        return self.span(index, 4)[1]

    def tables(self, index: int) -> list[FlatTable]:
        start, length = self.span(index, 4)
        return [self.table_at(start + 4 * i) for i in range(length)]

    def item(self, index: int, i: int) -> FlatTable:
        """Table ``i`` of a vector-of-tables field (without reading the others)."""
        start, length = self.span(index, 4)
        if not 0 <= i < length:
            raise FlatbufferError(f"index {i} is past the end of a vector of {length}")
        return self.table_at(start + 4 * i)

    def table_at(self, at: int) -> FlatTable:
        """The table an offset stored at ``at`` (inside the file) points to."""
        return FlatTable(self.buf, at + U32.unpack_from(self.buf, at)[0])

    def numbers(self, index: int, kind: str) -> tuple[Any, ...]:
        """A vector of scalars (``kind`` a struct code: i, I, q, f, B, ?) as a tuple; () when absent."""
        start, length = self.span(index, struct.calcsize(kind))
        return struct.unpack_from(f"<{length}{kind}", self.buf, start) if length else ()

    def array(self, index: int, dtype: str) -> np.ndarray:
        """A vector of scalars as a read-only numpy view of the file (no copy); empty when absent."""
        size = np.dtype(dtype).itemsize
        start, length = self.span(index, size)
        return np.frombuffer(self.buf, dtype, length, start) if length else np.empty(0, dtype)

    def string(self, index: int) -> str:
        start, length = self.span(index, 1)
        try:
            return self.buf[start : start + length].decode()
        except UnicodeDecodeError as exc:
            raise FlatbufferError(f"a string is not UTF-8 ({exc.reason} at byte {exc.start})") from None


def buffer_span(buffer: FlatTable) -> tuple[int, int]:
    """(start, size) of a Buffer's data in the file: the inline vector, or for models over 2 GB the
    (offset, size) pair that addresses bytes after the flatbuffer; (0, 0) for an empty buffer."""
    if buffer.has(_BUFFER_DATA):
        return buffer.span(_BUFFER_DATA)
    offset = buffer.scalar(_BUFFER_OFFSET, U64)
    size = buffer.scalar(_BUFFER_SIZE, U64)
    if offset > 1 and size:  # as LiteRT reads them: offset 1 is a writer's placeholder, not data
        _need(buffer.buf, offset, size)
        return offset, size
    return 0, 0


# ------------------------------------------------------------------------------------- the record
class RecordError(ValueError):
    """An edgecnn record that is not what edgecnn writes (bad JSON, a field of the wrong type or value)."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


_TEXT_FIELDS = ("normalization", "arch", "quantization", "edgecnn_version")


def _check_record(raw: Any) -> None:
    """Raise :class:`RecordError` naming the first field whose type or value edgecnn never writes."""
    if not isinstance(raw, dict):
        raise RecordError(f"its edgecnn metadata is a JSON {type(raw).__name__}, not an object")
    checks: dict[str, tuple[Callable[[Any], bool], str]] = {
        "task": (lambda v: isinstance(v, str), "a string"),
        "labels": (lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v), "a list of strings"),
        "input_size": (
            lambda v: isinstance(v, list) and len(v) == 2 and all(_is_int(x) and 0 < x <= 2**16 for x in v),
            "[height, width] in pixels",
        ),
        "channels": (lambda v: _is_int(v) and 0 < v <= 2**16, "a positive whole number"),
        "pixel_format": (lambda v: v in ("rgb", "gray"), "'rgb' or 'gray'"),
        "data": (lambda v: isinstance(v, dict), "an object"),
        "extra": (lambda v: isinstance(v, dict), "an object"),
        **{name: (lambda v: isinstance(v, str), "a string") for name in _TEXT_FIELDS},
    }
    for name, (ok, should) in checks.items():
        if name in raw and not ok(raw[name]):
            raise RecordError(f"edgecnn metadata field {name!r} is {json.dumps(raw[name])[:40]}, not {should}")
    data = raw.get("data", {})
    for name, ok, should in (
        ("spec", lambda v: isinstance(v, str), "a string"),
        ("seed", _is_int, "a whole number"),
        ("val_fraction", lambda v: _is_number(v) and 0 <= v < 1, "a fraction"),
    ):
        if name in data and not ok(data[name]):
            raise RecordError(f"edgecnn metadata field data.{name} is {json.dumps(data[name])[:40]}, not {should}")


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
        """Parse a record; :class:`RecordError` when it is not valid JSON or a field has a type or value
        edgecnn never writes (the runtime would otherwise fail on it later, far from the cause)."""
        try:
            raw = json.loads(text)
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError alike
            raise RecordError(f"its edgecnn metadata is not valid JSON: {exc}") from None
        _check_record(raw)
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
    return tflite_metadata(_tflite_bytes(path), path)


def tflite_metadata(data: bytes, path: str | os.PathLike) -> dict[str, bytes]:
    """The metadata entries of a .tflite's bytes; a damaged table is the one-line corrupt-model error."""
    try:
        return _read_metadata(data)
    except FlatbufferError as exc:
        raise corrupt_model(path, str(exc)) from None


def _read_metadata(data: bytes) -> dict[str, bytes]:
    model = FlatTable.root(data)
    out: dict[str, bytes] = {}
    for entry in model.tables(MODEL_METADATA):
        name = entry.string(_METADATA_NAME)
        index = entry.scalar(_METADATA_BUFFER, U32)
        count = model.length(MODEL_BUFFERS)
        if index >= count:
            raise FlatbufferError(f"metadata {name!r} names buffer {index}, but the model has {count}")
        start, size = buffer_span(model.item(MODEL_BUFFERS, index))
        out[name] = data[start : start + size]
    return out


def read_tflite_info(path: str | os.PathLike) -> ModelInfo | None:
    """The edgecnn record of a .tflite, or None for a model edgecnn did not write."""
    return tflite_info(_tflite_bytes(path), path)


def tflite_info(data: bytes, path: str | os.PathLike) -> ModelInfo | None:
    """The edgecnn record in a .tflite's bytes (None when it has none); a damaged one is a one-line error."""
    raw = tflite_metadata(data, path).get(METADATA_NAME)
    try:
        return ModelInfo.from_json(raw) if raw else None
    except RecordError as exc:
        raise corrupt_model(path, str(exc)) from None


def embed_tflite_info(model_bytes: bytes, info: ModelInfo) -> bytes:
    """Return the .tflite flatbuffer with ``info`` in its metadata table (needs TensorFlow)."""
    from edgecnn.core.keras_env import flatbuffer_utils  # lazy: writing is conversion time; reading stays light
    from edgecnn.core.keras_env import tflite_schema as schema  # lazy: as above

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
        raw = zf.read(KERAS_ENTRY)
    try:
        return ModelInfo.from_json(raw)
    except RecordError as exc:
        raise corrupt_model(path, str(exc)) from None


def read_info(path: str | os.PathLike) -> ModelInfo | None:
    """The edgecnn record of a .tflite or .keras model, or None when it has none."""
    return read_tflite_info(path) if str(path).endswith(".tflite") else read_keras_info(path)
