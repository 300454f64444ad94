"""Datasets as uint8 pixel arrays with a seeded, stratified train/validation split.

Built-in datasets are looked up by name in :data:`BUILTIN`; any other ``--data`` value is a folder.
"""

from edgecnn.data.base import ImageData, Split, load_classification, stratified_split

__all__ = ["ImageData", "Split", "load_classification", "stratified_split"]
