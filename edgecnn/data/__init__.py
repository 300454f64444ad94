"""Datasets as uint8 pixel arrays with a seeded train/validation split.

``images`` reads files, ``base`` holds the containers and the splits, one module per source format
(``digits``, ``folder``, ``coco``, ``yolo``, ``masks``, ``shapes``), and ``registry`` is the one table
of built-in names and folder layouts with :func:`load_split` and :func:`model_split` on top.
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
