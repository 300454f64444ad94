"""Datasets as uint8 pixels with a seeded (or the dataset's own) train/validation split.

``images`` reads files, ``files`` holds images that stay on disk (image folders, COCO, YOLO: listed with
a header check, decoded when read), ``base`` the containers and the splits, one module per source format
(``digits``, ``folder``, ``coco``, ``yolo``, ``masks``, ``shapes``), ``registry`` the one table of
built-in names and folder layouts with :func:`load_split` and :func:`model_split` on top, and ``stream``
the tf.data pipelines that train on files (TensorFlow imported there only).
"""

from edgecnn.data.base import DetectionData, ImageData, SegmentationData, Split
from edgecnn.data.registry import BUILTINS, builtins, default_data, load_data, load_split, model_split

__all__ = [
    "BUILTINS",
    "DetectionData",
    "ImageData",
    "SegmentationData",
    "Split",
    "builtins",
    "default_data",
    "load_data",
    "load_split",
    "model_split",
]
