"""Transfer learning: weights from a file (pretrained run) and from keras.applications' cache, offline."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edgecnn.core.config import TrainConfig
from edgecnn.core.errors import EdgecnnError

pytestmark = pytest.mark.tf  # trains: not in the fast lane


def write_digit_folder(root: Path, digits: range, per_class: int) -> Path:
    """Real digits (scikit-learn) as 32x32 PNGs in one subfolder per class."""
    from edgecnn.data.digits import load_digits

    data = load_digits(32)
    for d in digits:
        (root / str(d)).mkdir(parents=True)
        for i, image in enumerate(data.x[data.y == d][:per_class]):
            cv2.imwrite(str(root / str(d) / f"{i}.png"), image)
    return root


def test_pretrained_backbone_beats_scratch(tmp_path: Path) -> None:
    """Pretrain LeNet-5 on digits 0-4, then learn 5-9 from 5 images per class. The same recipe (head on
    a frozen backbone, then fine-tuning from c3 at a tenth of the lr) with the same epochs and seed is
    run twice: from the pretrained weights and from scratch. The pretrained one must win clearly."""
    from edgecnn.pipelines.train import train

    pretrain = write_digit_folder(tmp_path / "a", range(0, 5), 150)
    small = write_digit_folder(tmp_path / "b", range(5, 10), 25)
    base = train(
        TrainConfig(arch="lenet5", data=str(pretrain), channels=1, epochs=8, out=str(tmp_path / "pre")), verbose=0
    )
    recipe = dict(
        arch="lenet5",
        data=str(small),
        channels=1,
        epochs=3,
        lr=1e-3,
        val_fraction=0.8,
        seed=0,
        freeze_backbone=True,
        fine_tune_at="c3",
        fine_tune_epochs=2,
    )
    transfer = train(TrainConfig(**recipe, weights=str(base.model_path), out=str(tmp_path / "transfer")), verbose=0)
    scratch = train(TrainConfig(**recipe, out=str(tmp_path / "scratch")), verbose=0)
    assert transfer.metrics["epochs"] == scratch.metrics["epochs"] == 5
    margin = transfer.metrics["val_top1"] - scratch.metrics["val_top1"]
    print(f"transfer {transfer.metrics['val_top1']:.3f} vs scratch {scratch.metrics['val_top1']:.3f}")
    assert margin >= 0.15 - 1e-9, (transfer.metrics["val_top1"], scratch.metrics["val_top1"])


def test_imagenet_weights_come_from_keras_cache(tmp_path: Path, monkeypatch) -> None:
    """--weights imagenet goes through keras.applications' own loader; the cached file is made here."""
    from edgecnn.archs import create
    from edgecnn.core.keras_env import keras
    from edgecnn.trainer.transfer import load_backbone

    monkeypatch.setenv("HOME", str(tmp_path))
    reference = keras.applications.MobileNetV2(weights=None, include_top=False, alpha=0.35, input_shape=(96, 96, 3))
    cache = tmp_path / ".keras" / "models"
    cache.mkdir(parents=True)
    reference.save_weights(cache / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_96_no_top.h5")
    model = create("mobilenet_v2_035", 5, 96, 3)
    result = load_backbone(model, "mobilenet_v2_035", "imagenet")
    assert result.skipped == ["predictions"]
    np.testing.assert_array_equal(
        model.get_layer("block_16_project").get_weights()[0], reference.get_layer("block_16_project").get_weights()[0]
    )


def test_imagenet_needs_three_channels_and_known_arch() -> None:
    from edgecnn.archs import create
    from edgecnn.trainer.transfer import load_backbone

    with pytest.raises(EdgecnnError, match="ImageNet weights need 3-channel input, the model has 1; add --channels 3"):
        load_backbone(create("mobilenet_v2_035", 5, 96, 1), "mobilenet_v2_035", "imagenet")
    with pytest.raises(EdgecnnError, match="no ImageNet weights for lenet5"):
        load_backbone(create("lenet5", 5, 32, 1), "lenet5", "imagenet")
