"""Run an .onnx model with ONNX Runtime behind the same interface as :class:`~edgecnn.runtime.interpreter.TFLiteModel`.

``edgecnn convert --onnx`` writes models with a static (1, H, W, C) float32 input of raw 0..255 pixels (the
normalization is in the graph, as in the .tflite) and edgecnn's record in the ONNX ``metadata_props``
(key ``edgecnn``), so the task adapters, eval, benchmark and the demo use an :class:`OnnxModel` exactly as they
use a .tflite: ``set_input`` / ``invoke`` / ``output`` / ``snapshot`` / ``predict``, ``info``, ``labels``.

ONNX Runtime is an optional extra (``pip install 'edgecnn[onnx]'``) imported only when an .onnx model is
opened, so the light install and every .tflite command stay as they are. Execution providers are a table
(:data:`PROVIDERS`): ``--provider cpu|cuda|tensorrt|openvino``. A provider this onnxruntime build lacks, or
one that fails to start (ONNX Runtime would otherwise fall back to the CPU silently), is a one-line error.
TensorRT builds its fp16 engine (int8 for QDQ models) once and caches it beside the model
(``<model>_trt_cache/``), so later runs start in seconds.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from edgecnn.core.errors import EdgecnnError
from edgecnn.core.metadata import METADATA_NAME, ModelInfo, RecordError
from edgecnn.runtime.interpreter import Backend, DeployedModel, Outputs, check_threads
from edgecnn.runtime.validate import check_record

INSTALL = "pip install 'edgecnn[onnx]'"
FEEDABLE = {"tensor(float)": np.float32, "tensor(uint8)": np.uint8, "tensor(int8)": np.int8}
NUMERIC_OUTPUTS = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(uint8)": np.uint8,
    "tensor(int8)": np.int8,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
}


@dataclass(frozen=True)
class Provider:
    """An ONNX Runtime execution provider as ``--provider`` names it."""

    name: str  # the --provider value
    ep: str  # ONNX Runtime's name
    needs: str  # what to install when this onnxruntime build lacks it
    options: Callable[[Path, bool], dict[str, Any]] | None = None  # provider options: (model path, is int8 QDQ)


def _tensorrt_options(model: Path, int8: bool) -> dict[str, Any]:
    """fp16 engines, and for an int8 QDQ model int8 ones built from its own scales (explicit quantization: no
    calibration table), cached beside the model so later runs skip the build."""
    cache = model.with_name(model.stem + "_trt_cache")
    return {
        "trt_fp16_enable": True,
        "trt_int8_enable": int8,
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(cache),
        "trt_timing_cache_enable": True,
        "trt_timing_cache_path": str(cache),
    }


PROVIDERS: dict[str, Provider] = {
    p.name: p
    for p in (
        Provider("cpu", "CPUExecutionProvider", "pip install onnxruntime"),
        Provider("cuda", "CUDAExecutionProvider", "pip install onnxruntime-gpu, and a CUDA GPU with its driver"),
        Provider(
            "tensorrt",
            "TensorrtExecutionProvider",
            "pip install onnxruntime-gpu, TensorRT (pip install tensorrt) and a CUDA GPU",
            _tensorrt_options,
        ),
        Provider("openvino", "OpenVINOExecutionProvider", "pip install onnxruntime-openvino (instead of onnxruntime)"),
    )
}
FALLBACK = {"tensorrt": ("cuda", "cpu"), "cuda": ("cpu",), "openvino": ("cpu",), "cpu": ()}  # what runs the rest


def import_onnxruntime() -> Any:
    """The ``onnxruntime`` module, or the one-line error saying how to install it."""
    try:
        import onnxruntime  # the optional extra: imported only when an .onnx model is opened
    except ImportError as exc:
        raise EdgecnnError(f"running .onnx models needs ONNX Runtime ({exc}); install it with: {INSTALL}") from None
    return onnxruntime


def onnxruntime_errors(ort: ModuleType) -> tuple[type[BaseException], ...]:
    """The exception types ONNX Runtime raises (its pybind errors derive from Exception, not RuntimeError)."""
    state = ort.capi.onnxruntime_pybind11_state
    own = tuple(v for v in vars(state).values() if isinstance(v, type) and issubclass(v, Exception))
    return (*own, RuntimeError, ValueError)


def provider_chain(name: str, ort: ModuleType, model: Path, int8: bool = False) -> list[Any]:
    """The ``providers`` argument for ``name``: it first, then the ones that run what it leaves (TensorRT ->
    CUDA -> CPU); a provider name that does not exist or that this onnxruntime build lacks is an error."""
    if name not in PROVIDERS:
        raise EdgecnnError(f"unknown provider {name!r}; use one of: {', '.join(PROVIDERS)}")
    provider = PROVIDERS[name]
    available = ort.get_available_providers()
    if provider.ep not in available:
        have = ", ".join(n for n, p in PROVIDERS.items() if p.ep in available) or "none"
        raise EdgecnnError(
            f"--provider {name} is not available in onnxruntime {ort.__version__} here (available: {have}); "
            f"{provider.needs}"
        )
    chain: list[Any] = []
    for step in (name, *FALLBACK[name]):
        p = PROVIDERS[step]
        if p.ep in available:
            chain.append((p.ep, p.options(model, int8)) if p.options else p.ep)
    return chain


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def corrupt_onnx(path: str | os.PathLike, what: str) -> EdgecnnError:
    return EdgecnnError(f"corrupt .onnx model: {path} ({what}); convert it again with edgecnn convert --onnx")


def session_info(session: Any, path: Path) -> ModelInfo | None:
    """The edgecnn record in an ONNX session's ``metadata_props`` (None for a model edgecnn did not write)."""
    raw = session.get_modelmeta().custom_metadata_map.get(METADATA_NAME)
    try:
        return ModelInfo.from_json(raw) if raw else None
    except RecordError as exc:
        raise corrupt_onnx(path, str(exc)) from None


def _quantization(ort: ModuleType, path: Path) -> str | None:
    """The record's quantization, read through a plain CPU session (before a TensorRT engine is built)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except onnxruntime_errors(ort):
        return None  # the real load below says what is wrong
    info = session_info(session, path)
    return info.quantization if info else None


def _static_shape(shape: list[Any], what: str, path: Path) -> np.ndarray:
    if not all(isinstance(d, int) and d >= 0 for d in shape):
        raise EdgecnnError(
            f"{path}: {what} has a dynamic shape {shape}; edgecnn runs ONNX models with static shapes "
            "(export with edgecnn convert --onnx, batch 1)"
        )
    return np.asarray(shape, np.int64)


def _detail(index: int, node: Any, dtype: Any, path: Path, what: str) -> dict[str, Any]:
    """A TFLite-style tensor detail (what the adapters read): name, index, shape, dtype, quantization."""
    shape = _static_shape(list(node.shape), f"{what} {node.name!r}", path)
    return {"name": node.name, "index": index, "shape": shape, "dtype": dtype, "quantization": (0.0, 0)}


class OnnxModel(DeployedModel):
    """An ONNX Runtime session plus the model's edgecnn record, fed with uint8 pixels like a TFLiteModel."""

    def __init__(
        self,
        path: str | os.PathLike,
        threads: int | None = None,
        provider: str | None = None,
        ort: ModuleType | None = None,
    ) -> None:
        self.path = Path(path)
        check_threads(threads)
        if not self.path.is_file():
            raise EdgecnnError(f"model file not found: {self.path}; check the path")
        ort = ort or import_onnxruntime()
        self.provider = provider or "cpu"
        self.delegate = self.provider  # the results' "delegate" key names the execution provider
        self.threads = threads
        self.backend = Backend("onnxruntime", ort.__version__, ort)
        int8 = self.provider == "tensorrt" and _quantization(ort, self.path) == "int8"  # TensorRT's int8 flag
        chain = provider_chain(self.provider, ort, self.path, int8)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or 0  # 0: ONNX Runtime's default (one per physical core)
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: no per-session warnings on the console
        self._errors = onnxruntime_errors(ort)
        start = time.perf_counter()
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=chain)
        except self._errors as exc:
            raise EdgecnnError(
                f"cannot load model {self.path}: {_first_line(exc)}; re-export it with edgecnn convert --onnx"
            ) from None
        self.init_ms = (time.perf_counter() - start) * 1e3
        self.interpreter = self.session  # what the adapters may probe (a session has no TFLite signature list)
        wanted = PROVIDERS[self.provider].ep
        if wanted not in self.session.get_providers():  # ONNX Runtime fell back to the CPU without a word
            raise EdgecnnError(
                f"--provider {self.provider} did not start for {self.path} (onnxruntime ran "
                f"{', '.join(self.session.get_providers())} instead); {PROVIDERS[self.provider].needs}"
            )
        self.info = session_info(self.session, self.path)
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or inputs[0].type not in FEEDABLE or len(inputs[0].shape) != 4 or inputs[0].shape[0] != 1:
            found = ", ".join(f"{i.name} {i.type} {i.shape}" for i in inputs) or "none"
            raise EdgecnnError(
                f"{self.path} has inputs {found}; edgecnn feeds one image (1, height, width, channels) of float, "
                "uint8 or int8 (export with edgecnn convert --onnx)"
            )
        for output in outputs:
            if output.type not in NUMERIC_OUTPUTS:
                raise EdgecnnError(f"{self.path}: output {output.name!r} is {output.type}, not numbers")
        self.input = _detail(0, inputs[0], FEEDABLE[inputs[0].type], self.path, "input")
        self.outputs = [_detail(i, o, NUMERIC_OUTPUTS[o.type], self.path, "output") for i, o in enumerate(outputs)]
        problem = check_record(self.info, self.input["shape"], [d["shape"] for d in self.outputs])
        if problem:
            raise corrupt_onnx(self.path, problem)
        self._output_names = [o.name for o in outputs]
        self._feed = {inputs[0].name: np.zeros(self.input_shape, self.input["dtype"])}
        self._input_name = inputs[0].name
        self._values: list[np.ndarray] = []

    # -- I/O --------------------------------------------------------------------------------
    def set_input(self, pixels: np.ndarray) -> None:
        """Set one image (H, W, C) or batch (1, H, W, C) of 0..255 pixels (cast to the input's type)."""
        self._feed[self._input_name] = np.ascontiguousarray(pixels.reshape(self.input_shape), self.input["dtype"])

    def invoke(self) -> None:
        try:
            self._values = self.session.run(self._output_names, self._feed)
        except self._errors as exc:
            raise EdgecnnError(
                f"running model {self.path} failed: {_first_line(exc)}; if the model is damaged, convert it again"
            ) from None

    def output(self, i: int = 0) -> np.ndarray:
        """Output ``i`` of the last run as float32."""
        return self._values[i].astype(np.float32, copy=False)

    def scores(self, i: int = 0) -> np.ndarray:
        return self._values[i]

    def snapshot(self) -> Outputs:
        """The last run's outputs (ONNX Runtime returns new arrays each run: nothing to copy)."""
        return Outputs(self, list(self._values))

    def undelegated_ops(self) -> list[str]:
        """[]: ONNX Runtime places nodes itself (``provider_chain`` runs what a GPU provider leaves on the
        next one) and its Python API does not list the placement."""
        return []


def read_onnx_info(path: str | os.PathLike) -> ModelInfo | None:
    """The edgecnn record of an .onnx model (loaded on the CPU provider), or None when it has none."""
    return OnnxModel(path, threads=1).info
