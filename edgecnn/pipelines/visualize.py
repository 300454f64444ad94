"""``edgecnn visualize``: a convolution's filters and any layer's feature maps for an image, as PNG grids.

Without flags it draws the first convolution's filters (they look at pixels, so they read as images).
``--filters LAYER`` draws another convolution's; ``--maps LAYER --image IMG`` draws the layer's output
channels for that image. ``visualize.json`` records the layers, shapes and value ranges.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgecnn.core.errors import EdgecnnError
from edgecnn.core.fileio import check_output_dir, ensure_dir, write_bytes, write_text
from edgecnn.insight.heatmap import encode_png
from edgecnn.insight.layers import find_layer, first_conv
from edgecnn.insight.visualize import MAX_MAPS, filter_grid, maps_grid
from edgecnn.pipelines.convert import info_from_model
from edgecnn.pipelines.explain import read_pixels
from edgecnn.pipelines.options import VisualizeOptions
from edgecnn.trainer.load import load_keras


@dataclass
class VisualizeReport:
    model: str
    written: list[dict[str, Any]] = field(default_factory=list)
    json: str = ""


def visualize(model_path: str | os.PathLike, options: VisualizeOptions) -> VisualizeReport:
    if Path(model_path).suffix == ".tflite":
        raise EdgecnnError(f"visualize reads Keras layers; give the Keras model (model.keras), not {model_path}")
    if options.maps and not options.image:
        raise EdgecnnError("--maps needs --image IMG: the feature maps are those of one input image")
    if options.image and not options.maps:
        raise EdgecnnError("--image is the input for --maps LAYER; add --maps with a layer name")
    out = check_output_dir(options.out, "visualize output")
    model, info = load_keras(model_path)
    info = info or info_from_model(model)
    pixels = read_pixels([Path(options.image)], info)[0] if options.image else None
    report = VisualizeReport(str(model_path))
    jobs = []
    if options.filters or not options.maps:
        layer = find_layer(model, options.filters) if options.filters else first_conv(model)
        image, shape = filter_grid(layer)
        jobs.append((f"filters_{layer.name}.png", image, {"kind": "filters", "layer": layer.name, "kernel": shape}))
    if options.maps:
        layer = find_layer(model, options.maps)
        image, maps = maps_grid(model, layer, pixels)
        jobs.append(
            (
                f"maps_{layer.name}.png",
                image,
                {
                    "kind": "maps",
                    "layer": layer.name,
                    "image": options.image,
                    "shape": list(maps.shape),
                    "channels_drawn": min(MAX_MAPS, maps.shape[-1]),
                    "min": round(float(maps.min()), 5),
                    "max": round(float(maps.max()), 5),
                },
            )
        )
    ensure_dir(out, "visualize output")
    for name, image, record in jobs:
        record["png"] = str(write_bytes(out / name, encode_png(image)))
        report.written.append(record)
    report.json = str(out / "visualize.json")
    write_text(report.json, json.dumps(asdict(report), indent=1))
    return report


def format_visualize(report: VisualizeReport) -> str:
    lines = [f"visualized {report.model}:"]
    for r in report.written:
        if r["kind"] == "filters":
            lines.append(f"  filters of {r['layer']} (kernel {tuple(r['kernel'])}) -> {r['png']}")
        else:
            lines.append(
                f"  feature maps of {r['layer']} {tuple(r['shape'])} for {r['image']} "
                f"({r['channels_drawn']} channels drawn, values {r['min']:g}..{r['max']:g}) -> {r['png']}"
            )
    lines.append(f"  numbers: {report.json}")
    return "\n".join(lines)
