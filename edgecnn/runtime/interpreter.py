"""Load a .tflite with the lightest interpreter present and run it with uint8 pixels in.

Interpreter packages are tried in order: ``ai_edge_litert`` (LiteRT, current), ``tflite_runtime``
(legacy, numpy<2 only), ``tensorflow.lite`` (only if TensorFlow happens to be installed).
``EDGECNN_RUNTIME`` pins one of them. Quantization to and from the model's I/O types happens in
exactly one place: :meth:`TFLiteModel.set_input` and :meth:`TFLiteModel.output`.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from edgecnn.core.errors import EdgecnnError
from edgecnn.core.metadata import ModelInfo, _tflite_bytes, corrupt_model, tflite_info
from edgecnn.core.quiet import native_stderr_silenced
from edgecnn.runtime.validate import check_record, validate_tflite

# name -> (module, distribution on PyPI)
BACKENDS: dict[str, tuple[str, str]] = {
    "ai_edge_litert": ("ai_edge_litert.interpreter", "ai-edge-litert"),
    "tflite_runtime": ("tflite_runtime.interpreter", "tflite-runtime"),
    "tensorflow": ("tensorflow.lite.python.interpreter", "tensorflow"),
}
DELEGATES = ("none", "xnnpack", "edgetpu")
THREADS_PER_CORE = 4  # --threads above this many per core only slows a run down (and 100000 crashes LiteRT)
EDGETPU_LIBRARY = {"Linux": "libedgetpu.so.1", "Darwin": "libedgetpu.1.dylib", "Windows": "edgetpu.dll"}


@dataclass(frozen=True)
class Backend:
    """An importable interpreter package."""

    name: str
    version: str
    module: ModuleType

    @property
    def Interpreter(self) -> type:  # noqa: N802 (mirrors the package's class name)
        return self.module.Interpreter

    def load_delegate(self, library: str, options: dict[str, str] | None = None) -> Any:
        """The package's ``Delegate``, built so that a failed load leaves nothing behind: LiteRT's own
        ``load_delegate`` raises from inside ``Delegate.__init__`` and the half-built object's ``__del__``
        then prints an AttributeError traceback (or frees a NULL delegate) after our one-line error."""
        delegate_class = getattr(self.module, "Delegate", None)
        if delegate_class is None:
            return self.module.load_delegate(library, options)
        delegate = delegate_class.__new__(delegate_class)
        delegate._library = None  # what __del__ checks before it frees anything
        try:
            delegate.__init__(library, options)
        except BaseException:
            delegate._library = None
            raise
        return delegate


def _dist_version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _numpy_problem(name: str, version: str) -> str | None:
    """tflite-runtime <= 2.14 was built against numpy 1 and fails with a SystemError under numpy 2."""
    if name != "tflite_runtime":
        return None
    major_minor = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    if int(np.__version__.split(".")[0]) >= 2 and major_minor <= (2, 14):
        return (
            f"tflite-runtime {version} needs numpy<2 but numpy {np.__version__} is installed; "
            "run: pip install ai-edge-litert (or pip install 'numpy<2')"
        )
    return None


def find_backend(name: str | None = None) -> Backend:
    """The first usable interpreter package (or the one named / pinned by EDGECNN_RUNTIME)."""
    name = name or os.environ.get("EDGECNN_RUNTIME") or None
    if name is not None and name not in BACKENDS:
        raise EdgecnnError(f"unknown runtime {name!r}; use one of: {', '.join(BACKENDS)}")
    problems: list[str] = []
    for candidate in [name] if name else list(BACKENDS):
        module_name, dist = BACKENDS[candidate]
        version = _dist_version(dist) or _dist_version(dist.replace("tensorflow", "tensorflow-cpu"))
        if version is None:
            problems.append(f"{dist} is not installed")
            continue
        problem = _numpy_problem(candidate, version)
        if problem:
            problems.append(problem)
            continue
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            problems.append(f"{dist} {version} does not import ({exc})")
            continue
        return Backend(candidate, version, module)
    raise EdgecnnError("no TFLite interpreter can be used: " + "; ".join(problems))


def make_delegates(backend: Backend, delegate: str, device: str | None = None) -> list[Any]:
    """The experimental_delegates list for a delegate name; XNNPACK is LiteRT's built-in default."""
    if delegate not in DELEGATES:
        raise EdgecnnError(f"unknown delegate {delegate!r}; use one of: {', '.join(DELEGATES)}")
    if delegate != "edgetpu":
        return []
    library = EDGETPU_LIBRARY.get(platform.system(), "libedgetpu.so.1")
    options = {"device": device} if device else {}
    try:
        return [backend.load_delegate(library, options)]
    except (ValueError, OSError, RuntimeError, AttributeError) as exc:  # AttributeError: not a delegate library
        reason = _first_line(exc) if str(exc).strip() else "not found"
        raise EdgecnnError(
            f"cannot load the Edge TPU delegate {library} ({reason}); "
            "install the Edge TPU runtime (Debian package libedgetpu1-std) and plug in the accelerator"
        ) from exc


def check_threads(threads: int | None) -> None:
    """1 to THREADS_PER_CORE x the cores: LiteRT segfaults creating a pool of 100000 threads."""
    if threads is None:
        return
    cores = os.cpu_count() or 1
    limit = THREADS_PER_CORE * cores
    if not 1 <= threads <= limit:
        raise EdgecnnError(
            f"--threads {threads} is out of range; use 1 to {limit} ({THREADS_PER_CORE} per core, {cores} cores here)"
        )


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


@functools.cache
def _reporting(interpreter_class: type) -> type:
    """A subclass of the package's Interpreter whose ``invoke`` turns a RuntimeError (a kernel or delegate
    failing on what it finds at run time: a damaged model, an Edge TPU unplugged) into the one-line error
    naming the model. The subclass costs one Python call per invoke (well under a microsecond)."""

    class Interpreter(interpreter_class):
        edgecnn_model = ""  # the path named in errors

        def invoke(self) -> None:
            try:
                super().invoke()
            except RuntimeError as exc:
                raise EdgecnnError(
                    f"running model {self.edgecnn_model} failed: {_first_line(exc)}; "
                    "if the model is damaged, convert it again"
                ) from exc

    return Interpreter


def _resolver(backend: Backend, delegate: str) -> Any:
    """'none' disables LiteRT's default XNNPACK delegate; everything else keeps the default."""
    resolver = getattr(backend.module, "OpResolverType", None)
    if resolver is None:
        return None
    return resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES if delegate == "none" else resolver.AUTO


class DeployedModel:
    """What a deployed model's users read, the same for every runtime (:class:`TFLiteModel`, and
    :class:`edgecnn.runtime.onnx.OnnxModel`): shapes, labels and pixel format from the input details and
    the embedded record, and a batch ``predict`` over ``set_input`` / ``invoke`` / ``output``."""

    path: Path
    input: dict[str, Any]
    outputs: list[dict[str, Any]]
    info: ModelInfo | None
    interpreter: Any  # the runtime's own object (a LiteRT Interpreter, an ONNX Runtime session): what adapters probe
    backend: Backend  # the runtime package that runs it
    delegate: str  # the delegate (.tflite) or execution provider (.onnx) name
    threads: int | None
    init_ms: float  # the time to load it

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.input["shape"])

    @property
    def input_hw(self) -> tuple[int, int]:
        return self.input_shape[1], self.input_shape[2]

    @property
    def channels(self) -> int:
        return self.input_shape[3]

    @property
    def labels(self) -> list[str]:
        if self.info and self.info.labels:
            return list(self.info.labels)
        n = int(np.prod(self.outputs[0]["shape"][1:]))
        return [str(i) for i in range(n)]

    @property
    def pixel_format(self) -> str:
        if self.info:
            return self.info.pixel_format
        return "gray" if self.channels == 1 else "rgb"

    def set_input(self, pixels: np.ndarray) -> None:
        raise NotImplementedError

    def invoke(self) -> None:
        raise NotImplementedError

    def output(self, i: int = 0) -> np.ndarray:
        raise NotImplementedError

    def scores(self, i: int = 0) -> np.ndarray:
        raise NotImplementedError

    def undelegated_ops(self) -> list[str]:
        raise NotImplementedError

    def predict(self, images: np.ndarray, progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Run each image of (N, H, W, C) and stack output 0: (N, ...)."""
        results = []
        for image in images:
            self.set_input(image)
            self.invoke()
            results.append(self.output(0)[0])
            if progress:
                progress(1)
        return np.stack(results)


class TFLiteModel(DeployedModel):
    """An interpreter plus the model's edgecnn record, fed with uint8 pixels."""

    def __init__(
        self,
        path: str | os.PathLike,
        threads: int | None = None,
        delegate: str = "xnnpack",
        device: str | None = None,
        backend: Backend | None = None,
    ) -> None:
        self.path = Path(path)
        check_threads(threads)
        data = _tflite_bytes(self.path)
        validate_tflite(data, self.path)  # a model LiteRT would crash on is a one-line error instead
        self.info: ModelInfo | None = tflite_info(data, self.path)
        self.backend = backend or find_backend()
        self.delegate = delegate
        self.threads = threads
        kwargs: dict[str, Any] = {
            "model_path": str(self.path),
            "num_threads": threads,
            "experimental_delegates": make_delegates(self.backend, delegate, device) or None,
        }
        resolver = _resolver(self.backend, delegate)
        if resolver is not None:
            kwargs["experimental_op_resolver_type"] = resolver
        start = time.perf_counter()
        crash = (
            f"edgecnn: error: the TFLite interpreter crashed (SIGNAL) loading {self.path}: the model is damaged or "
            f"not supported by {self.backend.name} {self.backend.version}; convert it again"
        )
        try:
            # Silenced: "INFO: Created TensorFlow Lite XNNPACK delegate" on every load; a crash still says so.
            with native_stderr_silenced(crash):
                self.interpreter = _reporting(self.backend.Interpreter)(**kwargs)
                self.interpreter.edgecnn_model = str(self.path)
                self.interpreter.allocate_tensors()
            self.init_ms = (time.perf_counter() - start) * 1e3
            self.input = self.interpreter.get_input_details()[0]
            self.outputs = self.interpreter.get_output_details()
        except (ValueError, RuntimeError, IndexError) as exc:
            raise EdgecnnError(
                f"cannot load model {self.path}: {_first_line(exc)}; re-export it with edgecnn convert"
            ) from exc
        self._input_index = self.input["index"]
        problem = check_record(self.info, self.input["shape"], [d["shape"] for d in self.outputs])
        if problem:
            raise corrupt_model(self.path, problem)

    # -- I/O --------------------------------------------------------------------------------
    def set_input(self, pixels: np.ndarray) -> None:
        """Set one image (H, W, C) or batch (1, H, W, C) of 0..255 pixels, quantizing if needed."""
        x = pixels.reshape(self.input_shape)
        self.interpreter.set_tensor(self._input_index, quantize(x, self.input))

    def invoke(self) -> None:
        self.interpreter.invoke()

    def output(self, i: int = 0) -> np.ndarray:
        """Output ``i`` of the last run, dequantized to float32."""
        return dequantize(self.interpreter.get_tensor(self.outputs[i]["index"]), self.outputs[i])

    def scores(self, i: int = 0) -> np.ndarray:
        """Output ``i`` in an order-preserving form: the stored integers of a quantized output (its scale
        is positive, so argmax and ranking are those of the real values) without a float conversion."""
        return self.interpreter.get_tensor(self.outputs[i]["index"])

    def snapshot(self) -> Outputs:
        """The last run's outputs, copied: what the adapters read while the interpreter runs the next frame."""
        return Outputs(self, [self.interpreter.get_tensor(d["index"]) for d in self.outputs])

    def undelegated_ops(self) -> list[str]:
        """The ops the delegate left to the plain kernels, in graph order ([] when it took them all)."""
        names = {op["index"]: op["op_name"] for op in self.interpreter._get_ops_details()}
        return [names[i] for i in self.undelegated_op_indices()]

    def undelegated_op_indices(self) -> list[int]:
        """The indices of the ops the delegate left to the plain kernels, in graph order.

        A delegate replaces each partition of the graph with one DELEGATE node whose inputs and outputs are
        the partition's edges; the ops on a path from those inputs to those outputs are the partition.
        (LiteRT's Python API shows the plan only through ``_get_ops_details``.)"""
        ops = self.interpreter._get_ops_details()
        delegates = [op for op in ops if op["op_name"] == "DELEGATE"]
        producer = {int(t): op for op in ops if op["op_name"] != "DELEGATE" for t in op["outputs"]}
        inside: set[int] = set()
        for delegate in delegates:
            edge = {int(t) for t in delegate["inputs"]}
            todo = [int(t) for t in delegate["outputs"]]
            while todo:
                op = producer.get(todo.pop())
                if op is None or op["index"] in inside:
                    continue
                inside.add(op["index"])
                todo.extend(int(t) for t in op["inputs"] if int(t) >= 0 and int(t) not in edge)
        return [op["index"] for op in ops if op["op_name"] != "DELEGATE" and op["index"] not in inside]

    def op_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for op in self.interpreter._get_ops_details():  # the public API has no op listing
            counts[op["op_name"]] = counts.get(op["op_name"], 0) + 1
        return counts


class Outputs:
    """One run's outputs of a :class:`TFLiteModel` (its stored tensors, copied), read like the model itself
    (``output``, ``scores``; everything else is the model's), so the adapters decode a frame's results in one
    thread while the interpreter runs the next frame in another."""

    def __init__(self, model: DeployedModel, values: list[np.ndarray]) -> None:
        self.model = model
        self._values = values

    def output(self, i: int = 0) -> np.ndarray:
        return dequantize(self._values[i], self.model.outputs[i])

    def scores(self, i: int = 0) -> np.ndarray:
        return self._values[i]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)


def quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    """Map real values to a tensor's dtype using its (scale, zero_point); float passes through."""
    dtype = detail["dtype"]
    if np.issubdtype(dtype, np.floating):
        return x.astype(dtype, copy=False)
    scale, zero_point = detail["quantization"]
    if scale == 1.0 and zero_point == 0 and x.dtype == dtype:
        return x
    info = np.iinfo(dtype)
    q = np.round(x.astype(np.float32) / (scale or 1.0) + zero_point)
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(q: np.ndarray, detail: dict) -> np.ndarray:
    """Map a tensor's stored values to real float32 values; float passes through."""
    if np.issubdtype(detail["dtype"], np.floating):
        return q.astype(np.float32, copy=False)
    scale, zero_point = detail["quantization"]
    if scale == 0:
        return q.astype(np.float32)
    return (q.astype(np.float32) - zero_point) * scale


def load_model(
    path: str | os.PathLike, threads: int | None = None, delegate: str = "xnnpack", device: str | None = None
) -> TFLiteModel:
    """Open a .tflite model; a .keras/.h5 file or a missing/corrupt file is a one-line user error."""
    path = Path(path)
    if path.suffix in (".keras", ".h5"):
        raise EdgecnnError(f"{path} is a Keras model; this command runs .tflite models: edgecnn convert {path} --int8")
    return TFLiteModel(path, threads=threads, delegate=delegate, device=device)
