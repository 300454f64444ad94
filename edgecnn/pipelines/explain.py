"""``edgecnn explain``: why a classifier predicts what it does, as heatmap overlays a user can open.

Four methods, one table: Grad-CAM, saliency and SmoothGrad read gradients of the Keras model; occlusion
only runs the model, so it also explains an int8 .tflite, with the light install (no TensorFlow is
imported on that path). Each image gets an overlay PNG captioned with the predicted and the explained
class; several images also get one grid PNG; ``explain.json`` has the numbers.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from edgecnn.core.config import Range, opt
from edgecnn.core.errors import EdgecnnError
from edgecnn.core.fileio import check_output_dir, ensure_dir, write_bytes, write_text
from edgecnn.core.metadata import ModelInfo
from edgecnn.data.images import read_image
from edgecnn.insight import heatmap
from edgecnn.insight.occlusion import occlusion_map
from edgecnn.runtime.image import to_model_pixels
from edgecnn.runtime.interpreter import load_model

# A method: (loaded model, pixels (N, H, W, C) uint8, targets or None, options) -> (maps (N, h, w), probs)
Explain = Callable[["Loaded", np.ndarray, "np.ndarray | None", "ExplainOptions"], tuple[np.ndarray, np.ndarray]]


@dataclass
class Loaded:
    """A model to explain: a Keras model, or a .tflite run by the light runtime (``keras`` is None)."""

    path: Path
    info: ModelInfo
    keras: Any = None
    tflite: Any = None

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        """Class probabilities (N, classes) of uint8 pixels (N, H, W, C)."""
        if self.keras is not None:
            return self.keras.predict(pixels.astype(np.float32), batch_size=64, verbose=0)
        return self.tflite.predict(pixels)


@dataclass(frozen=True)
class Method:
    name: str
    run: Explain
    needs_keras: bool  # gradients: a .tflite cannot be explained this way


def _gradcam(model: Loaded, pixels: np.ndarray, targets: np.ndarray | None, options: ExplainOptions) -> Any:
    from edgecnn.insight.gradcam import gradcam  # lazy: TensorFlow stays off the .tflite occlusion path
    from edgecnn.insight.layers import find_layer  # lazy: as above

    layer = find_layer(model.keras, options.layer) if options.layer else None
    return gradcam(model.keras, pixels, targets, layer)


def _saliency(model: Loaded, pixels: np.ndarray, targets: np.ndarray | None, options: ExplainOptions) -> Any:
    from edgecnn.insight.saliency import saliency  # lazy: TensorFlow stays off the .tflite occlusion path

    return saliency(model.keras, pixels, targets)


def _smoothgrad(model: Loaded, pixels: np.ndarray, targets: np.ndarray | None, options: ExplainOptions) -> Any:
    from edgecnn.insight.saliency import smoothgrad  # lazy: TensorFlow stays off the .tflite occlusion path

    return smoothgrad(model.keras, pixels, targets)


def _occlusion(model: Loaded, pixels: np.ndarray, targets: np.ndarray | None, options: ExplainOptions) -> Any:
    probs = model.predict(pixels)
    chosen = probs.argmax(-1) if targets is None else targets
    maps = np.stack([occlusion_map(model.predict, image, int(t)) for image, t in zip(pixels, chosen, strict=True)])
    return maps, probs


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("gradcam", _gradcam, True),
        Method("saliency", _saliency, True),
        Method("smoothgrad", _smoothgrad, True),
        Method("occlusion", _occlusion, False),
    )
}


@dataclass(frozen=True)
class ExplainOptions:
    method: str = field(
        default="gradcam",
        metadata=opt(
            "gradcam, saliency, smoothgrad: gradients of a Keras model; occlusion: any model, int8 .tflite "
            "included, without TensorFlow",
            choices=tuple(METHODS),
        ),
    )
    layer: str | None = field(  # None: the last convolution, nested backbones included
        default=None,
        metadata=opt("Grad-CAM's layer (default: the last convolution, nested too)", metavar="NAME"),
    )
    target: int | None = field(  # explain this class instead of the predicted one
        default=None,
        metadata=opt("explain class K (default: predicted)", flag="--class", metavar="K", range=Range(0)),
    )
    out: str = field(
        default="explain", metadata=opt("folder for the overlay PNGs, the grid and explain.json", required=True)
    )


@dataclass
class Explained:
    """One image's explanation, as written to explain.json."""

    image: str
    predicted: int
    predicted_label: str
    probability: float
    explained: int
    explained_label: str
    png: str
    map_shape: list[int]


@dataclass
class ExplainReport:
    model: str
    method: str
    layer: str | None
    images: list[Explained]
    grid: str | None
    json: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise EdgecnnError(f"unknown --method {name!r}; choose one of: {', '.join(METHODS)}")
    return METHODS[name]


def load_for_explain(path: Path, method: Method) -> Loaded:
    """The Keras model (gradient methods) or the .tflite (occlusion; no TensorFlow imported)."""
    if path.suffix == ".tflite":
        if method.needs_keras:
            raise EdgecnnError(
                f"--method {method.name} needs gradients, which a .tflite has not; explain the Keras model "
                f"(model.keras) or use --method occlusion for {path.name}"
            )
        runner = load_model(path)
        info = runner.info or ModelInfo(
            labels=runner.labels,
            input_size=list(runner.input_hw),
            channels=runner.channels,
            pixel_format=runner.pixel_format,
        )
        return Loaded(path, info, tflite=runner)
    from edgecnn.pipelines.convert import info_from_model  # lazy: TensorFlow stays off the .tflite path
    from edgecnn.trainer.load import load_keras  # lazy: as above

    model, info = load_keras(path)
    return Loaded(path, info or info_from_model(model), keras=model)


def read_pixels(paths: list[Path], info: ModelInfo) -> np.ndarray:
    """Each image file at the model's size and pixel format, (N, H, W, C) uint8; unreadable is an error."""
    images = []
    for path in paths:
        image = read_image(path) if path.is_file() else None
        if image is None:
            raise EdgecnnError(f"cannot read image {path}; give .png/.jpg files")
        own = "gray" if image.shape[2] == 1 else "rgb"
        images.append(to_model_pixels(image, tuple(info.input_size), info.pixel_format, src=own))
    return np.stack(images)


def _label(info: ModelInfo, k: int) -> str:
    return info.labels[k] if 0 <= k < len(info.labels) else str(k)


def explain(model_path: str | os.PathLike, images: list[str], options: ExplainOptions) -> ExplainReport:
    """Explain each image and write the overlays, the grid and explain.json into ``options.out``."""
    method = get_method(options.method)
    if options.layer and method.name != "gradcam":
        raise EdgecnnError(f"--layer picks Grad-CAM's layer; drop it or use --method gradcam (not {method.name})")
    out = check_output_dir(options.out, "explain output")
    paths = [Path(p) for p in images]
    model = load_for_explain(Path(model_path), method)
    if model.info.task != "classify":
        raise EdgecnnError(f"explain shows why a classifier picks a class; {model_path} is a {model.info.task} model")
    classes = len(model.info.labels)
    if options.target is not None and not 0 <= options.target < classes:
        raise EdgecnnError(f"--class {options.target} is not a class of this model; use 0..{classes - 1}")
    pixels = read_pixels(paths, model.info)
    targets = None if options.target is None else np.full(len(pixels), options.target)
    maps, probs, rows, tiles = [], [], [], []
    for i in tqdm(range(len(pixels)), desc=f"explain ({method.name})", unit="img", leave=False, disable=None):
        m, p = method.run(model, pixels[i : i + 1], None if targets is None else targets[i : i + 1], options)
        maps.append(m[0])
        probs.append(p[0])
    ensure_dir(out, "explain output")
    for path, image, heat, prob in zip(paths, pixels, maps, probs, strict=True):
        predicted = int(np.argmax(prob))
        explained = predicted if options.target is None else options.target
        tile = heatmap.caption(
            heatmap.overlay(image, heat),
            [
                f"predicted {_label(model.info, predicted)} ({100 * float(prob[predicted]):.0f}%)",
                f"explained {_label(model.info, explained)} ({method.name})",
            ],
        )
        png = write_bytes(out / f"{path.stem}_{method.name}.png", heatmap.encode_png(tile))
        tiles.append(tile)
        rows.append(
            Explained(
                image=str(path),
                predicted=predicted,
                predicted_label=_label(model.info, predicted),
                probability=round(float(prob[predicted]), 4),
                explained=explained,
                explained_label=_label(model.info, explained),
                png=str(png),
                map_shape=list(np.shape(heat)),
            )
        )
    grid = None
    if len(tiles) > 1:
        grid = str(write_bytes(out / f"grid_{method.name}.png", heatmap.encode_png(heatmap.grid(tiles))))
    layer = (options.layer or _default_layer(model)) if method.name == "gradcam" else None
    report = ExplainReport(str(model_path), method.name, layer, rows, grid, str(out / "explain.json"))
    write_text(report.json, json.dumps(report.as_dict(), indent=1))
    return report


def _default_layer(model: Loaded) -> str:
    from edgecnn.insight.layers import gradcam_layer  # lazy: only Grad-CAM (TensorFlow) gets here

    return gradcam_layer(model.keras).name


def format_explain(report: ExplainReport) -> str:
    layer = f" at layer {report.layer}" if report.layer else ""
    lines = [f"{report.method}{layer} of {report.model}:"]
    for row in report.images:
        lines.append(
            f"  {Path(row.image).name}: predicted {row.predicted_label} ({100 * row.probability:.0f}%), "
            f"explained {row.explained_label} -> {row.png}"
        )
    if report.grid:
        lines.append(f"  grid: {report.grid}")
    lines.append(f"  numbers: {report.json}")
    return "\n".join(lines)
