"""Datasets: digits, image folders (with unreadable files), the seeded stratified split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgecnn.core.errors import EdgecnnError
from edgecnn.data import load_split
from edgecnn.data.base import stratified_split


def test_digits_upscaled_gray_and_rgb() -> None:
    split = load_split("digits", "classify", 32)
    assert split.train.x.shape == (1438, 32, 32, 1) and split.val.x.shape == (359, 32, 32, 1)
    assert split.train.x.dtype == np.uint8 and split.train.x.max() == 255 and split.train.x.min() == 0
    assert split.train.pixel_format == "gray" and split.train.labels == [str(d) for d in range(10)]
    rgb = load_split("digits", "classify", 24, channels=3)
    assert rgb.val.x.shape == (359, 24, 24, 3) and rgb.val.pixel_format == "rgb"


def test_split_is_seeded_stratified_and_disjoint() -> None:
    y = np.repeat(np.arange(4), [10, 20, 30, 40])
    train, val = stratified_split(y, 0.2, seed=3)
    assert set(train).isdisjoint(val) and len(train) + len(val) == 100
    assert np.bincount(y[val]).tolist() == [2, 4, 6, 8]
    again = stratified_split(y, 0.2, seed=3)
    assert train.tolist() == again[0].tolist()
    assert val.tolist() != stratified_split(y, 0.2, seed=4)[1].tolist()


def test_image_folder_reports_unreadable_files(image_folder: Path, capsys) -> None:
    split = load_split(str(image_folder), "classify", 48, seed=0, val_fraction=0.25)
    assert split.train.labels == ["astronaut", "coffee"]
    assert len(split.train) + len(split.val) == 12
    assert split.train.x.shape[1:] == (48, 48, 3) and split.train.pixel_format == "rgb"
    assert split.train.skipped == [f"skipped unreadable image: {image_folder / 'coffee' / 'broken.jpg'}"]
    assert capsys.readouterr().err == ""  # reported by the caller once the data is known to be usable


def test_image_folder_colours_are_rgb(image_folder: Path) -> None:
    """The astronaut photo is dominated by its white/red suit vs the brown coffee: check channel order."""
    split = load_split(str(image_folder), "classify", 32, seed=0, val_fraction=0.25)
    coffee = np.concatenate([split.train.x[split.train.y == 1], split.val.x[split.val.y == 1]])
    r, b = coffee[..., 0].mean(), coffee[..., 2].mean()
    assert r > b  # coffee is brown: more red than blue once loaded as RGB


def test_unknown_dataset_name() -> None:
    with pytest.raises(EdgecnnError, match=r"dataset not found: 'digitz'; use a built-in name \(digits\)"):
        load_split("digitz", "classify", 32)


def test_bad_val_fraction() -> None:
    with pytest.raises(EdgecnnError, match="--val-fraction must be between 0 and 1, got 1.5"):
        load_split("digits", "classify", 32, val_fraction=1.5)
