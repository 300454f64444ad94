"""Run edgecnn's .tflite models in MediaPipe Tasks and print what MediaPipe reads and finds, as JSON.

Runs in a Python with ``mediapipe`` installed and nothing of edgecnn (mediapipe 1.2 cannot share a venv with
edgecnn's train extra: it pins absl-py~=2.3 against tensorflow-model-optimization's absl-py~=1.2 and brings
opencv-contrib-python over opencv-python-headless). ``tests/test_tflite_metadata.py`` calls it as::

    $MEDIAPIPE_PYTHON tests/mediapipe_tasks.py TASK MODEL.tflite IMAGES.npy

TASK is classify, detect or segment; IMAGES.npy holds (N, H, W, C) uint8 images at the model's input size
(C = 1 for a gray model, else 3, RGB). Prints one JSON object: ``results`` (per image: the categories with
index, score and name; the detections with pixel box, index, score and name; or the category mask) and
``metadata`` (the model's ``TFLITE_METADATA`` as MediaPipe's displayer reads it, and the packed files), or
``error`` with MediaPipe's message when a task refuses the model.
"""

from __future__ import annotations

import json
import sys
import types
from typing import Any

import numpy as np


def _displayer_module() -> Any:
    """MediaPipe's metadata displayer. Its module imports ``_pywrap_metadata_version`` (used only by the
    populator, not by the displayer), which the 1.2 wheel no longer ships: a stand-in lets it import."""
    for name in ("mediapipe.tasks.cc", "mediapipe.tasks.cc.metadata", "mediapipe.tasks.cc.metadata.python"):
        sys.modules.setdefault(name, types.ModuleType(name))
    stub = types.ModuleType("mediapipe.tasks.cc.metadata.python._pywrap_metadata_version")
    stub.GetMinimumMetadataParserVersion = lambda buffer: None  # never called by the displayer
    sys.modules.setdefault(stub.__name__, stub)
    from mediapipe.tasks.python.metadata import metadata

    return metadata


def read_metadata(model: bytes) -> dict[str, Any]:
    metadata = _displayer_module()
    displayer = metadata.MetadataDisplayer.with_model_buffer(model)
    return {
        "json": json.loads(displayer.get_metadata_json()),
        "files": displayer.get_packed_associated_file_list(),
        "labels": displayer.get_associated_file_buffer("labels.txt").decode().split("\n"),
    }


def reference_metadata(task: str, model: bytes, labels: list[str]) -> dict[str, Any]:
    """What MediaPipe's own metadata writer writes for the same model (its flatbuffer, without the files
    packed after it), read back by the same displayer."""
    import zipfile
    from io import BytesIO

    _displayer_module()  # its stand-in first: the writers import the same module
    from mediapipe.tasks.python.metadata.metadata_writers import (
        image_classifier,
        image_segmenter,
        metadata_writer,
        object_detector,
    )

    flatbuffer = bytearray(model[: zipfile.ZipFile(BytesIO(model)).infolist()[0].header_offset])
    names = metadata_writer.Labels().add(labels)
    writers = {
        "classify": lambda: image_classifier.MetadataWriter.create(flatbuffer, [0.0], [1.0], names),
        "detect": lambda: object_detector.MetadataWriter.create_for_models_with_nms(flatbuffer, [0.0], [1.0], names),
        "segment": lambda: image_segmenter.MetadataWriter.create(
            flatbuffer, [0.0], [1.0], names, image_segmenter.Activation.SOFTMAX
        ),
    }
    written, _ = writers[task]().populate()
    return read_metadata(bytes(written))


def _image(mp: Any, pixels: np.ndarray) -> Any:
    if pixels.shape[-1] == 1:
        return mp.Image(image_format=mp.ImageFormat.GRAY8, data=np.ascontiguousarray(pixels[..., 0]))
    return mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(pixels))


def classify(mp: Any, vision: Any, options: Any, images: np.ndarray) -> list[Any]:
    opts = vision.ImageClassifierOptions(base_options=options, max_results=-1, score_threshold=0.0)
    with vision.ImageClassifier.create_from_options(opts) as task:
        out = []
        for pixels in images:
            head = task.classify(_image(mp, pixels)).classifications[0]
            out.append([[c.index, float(c.score), c.category_name] for c in head.categories])
        return out


def detect(mp: Any, vision: Any, options: Any, images: np.ndarray) -> list[Any]:
    opts = vision.ObjectDetectorOptions(base_options=options, max_results=-1, score_threshold=0.0)
    with vision.ObjectDetector.create_from_options(opts) as task:
        out = []
        for pixels in images:
            found = []
            for d in task.detect(_image(mp, pixels)).detections:
                b, c = d.bounding_box, d.categories[0]
                box = [b.origin_x, b.origin_y, b.origin_x + b.width, b.origin_y + b.height]
                found.append([box, c.index, float(c.score), c.category_name])
            out.append(found)
        return out


def segment(mp: Any, vision: Any, options: Any, images: np.ndarray) -> list[Any]:
    opts = vision.ImageSegmenterOptions(base_options=options, output_category_mask=True, output_confidence_masks=False)
    with vision.ImageSegmenter.create_from_options(opts) as task:
        return [task.segment(_image(mp, pixels)).category_mask.numpy_view().tolist() for pixels in images]


TASKS = {"classify": classify, "detect": detect, "segment": segment}


def main(task: str, model: str, images_npy: str) -> dict[str, Any]:
    import mediapipe as mp
    from mediapipe.tasks import python as mp_python
    from mediapipe.tasks.python import vision

    blob = open(model, "rb").read()
    ours = read_metadata(blob)
    report: dict[str, Any] = {
        "mediapipe": mp.__version__,
        "metadata": ours,
        "reference": reference_metadata(task, blob, ours["labels"]),
    }
    options = mp_python.BaseOptions(model_asset_path=model)
    try:
        report["results"] = TASKS[task](mp, vision, options, np.load(images_npy))
    except (RuntimeError, ValueError) as exc:  # MediaPipe refusing the model: what the test reports
        report["error"] = str(exc).strip().splitlines()[0]
    return report


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:4])))
