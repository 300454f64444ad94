"""The training step and the training-at-scale flags, in this process: gradient accumulation equals one big
batch, global-norm clipping bounds the update, adversarial examples replace half of each batch, the
warmup schedule, the learning-rate scaling rules, and each ``edgecnn train`` flag's effect on a short
LeNet-5 run on digits (``edgecnn.cli.main``, TensorFlow imported once)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from edgecnn.cli import main
from edgecnn.core.config import LR_SCALING_RULES, TrainConfig
from edgecnn.core.errors import EdgecnnError
from edgecnn.core.graph import output_chain, training_copy
from edgecnn.core.keras_env import keras, policy, tf
from edgecnn.trainer.distribute import LR_SCALING, Placement
from edgecnn.trainer.fit import learning_rate
from edgecnn.trainer.precision import compute_dtypes
from edgecnn.trainer.step import trainer

pytestmark = pytest.mark.tf  # builds Keras models at import: not in the fast lane

RNG = np.random.default_rng(0)
X = RNG.uniform(0, 255, (24, 8, 8, 1)).astype(np.float32)
Y = RNG.integers(0, 3, 24)


def small_model() -> keras.Model:
    """No BatchNorm: accumulation is exact only without it (BatchNorm normalizes each micro-batch alone)."""
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(4, 3, activation="relu")(x)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="predictions")(x))


@pytest.fixture(scope="module")
def initial() -> list[np.ndarray]:
    keras.utils.set_random_seed(0)
    return small_model().get_weights()


def one_update(initial: list[np.ndarray], batch: int, x: np.ndarray = X, clip: float | None = None, **step: object):
    """Weights after ``fit`` over ``x`` in batches of ``batch`` with SGD(0.1) through a TrainStep."""
    model = small_model()
    model.set_weights(initial)
    wrapped = trainer(model, **step)
    wrapped.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
    if clip is not None:
        wrapped.optimizer.global_clipnorm = clip  # as edgecnn train sets --clip-norm after the task's compile
    wrapped.fit(tf.data.Dataset.from_tensor_slices((x, Y)).batch(batch), epochs=1, verbose=0)
    return model.get_weights()


def plain_update(initial: list[np.ndarray], x: np.ndarray) -> list[np.ndarray]:
    """Keras' own train_step on one batch of all of ``x``: the reference."""
    model = small_model()
    model.set_weights(initial)
    model.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
    model.fit(x, Y, batch_size=len(x), epochs=1, verbose=0, shuffle=False)
    return model.get_weights()


def assert_weights_close(a: list[np.ndarray], b: list[np.ndarray], atol: float = 1e-6) -> None:
    for u, v in zip(a, b, strict=True):
        np.testing.assert_allclose(u, v, atol=atol, rtol=0)


@pytest.mark.parametrize("micro", [6, 7])  # 4 micro-batches of 6; 7+7+7+3 (a short last one)
def test_accumulated_micro_batches_update_like_one_big_batch(initial: list[np.ndarray], micro: int) -> None:
    reference = plain_update(initial, X)
    assert max(np.abs(r - w).max() for r, w in zip(reference, initial, strict=True)) > 1e-3  # it did move
    assert_weights_close(one_update(initial, 24, micro_batch=micro), reference)
    assert_weights_close(one_update(initial, 24), reference)  # no accumulation: Keras' step


def test_clip_norm_bounds_the_global_update(initial: list[np.ndarray]) -> None:
    unclipped = one_update(initial, 24)
    clipped = one_update(initial, 24, clip=1e-3)
    norm = lambda ws: np.sqrt(sum(((w - w0) ** 2).sum() for w, w0 in zip(ws, initial, strict=True)))  # noqa: E731
    assert norm(unclipped) > 0.01
    np.testing.assert_allclose(norm(clipped), 0.1 * 1e-3, rtol=1e-4)  # lr x clip norm


def fgsm(model: object, x: tf.Tensor, y: tf.Tensor, eps: float, steps: int) -> tf.Tensor:
    """The attacks' interface (edgecnn.insight.attacks): one signed-gradient step of eps x 255 pixels."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = keras.losses.sparse_categorical_crossentropy(y, model(x, training=False))
    return tf.clip_by_value(x + eps * 255.0 * tf.sign(tape.gradient(loss, x)), 0.0, 255.0)


def test_adversarial_step_trains_on_attacked_first_half(initial: list[np.ndarray]) -> None:
    attacked = fgsm(_with_weights(initial), tf.constant(X[:12]), tf.constant(Y[:12]), 0.1, 1).numpy()
    mixed = np.concatenate([attacked, X[12:]])
    assert np.abs(attacked - X[:12]).max() == pytest.approx(25.5, abs=1e-3)
    updated = one_update(initial, 24, attack=fgsm, eps=0.1)
    assert_weights_close(updated, plain_update(initial, mixed), atol=1e-5)
    clean = plain_update(initial, X)
    assert max(np.abs(u - c).max() for u, c in zip(updated, clean, strict=True)) > 1e-4


def test_the_insight_attacks_fit_the_adversarial_step(initial: list[np.ndarray]) -> None:
    from edgecnn.insight.attacks import ATTACKS

    assert {"fgsm", "pgd"} <= set(ATTACKS)
    for name in ("fgsm", "pgd"):
        weights = one_update(initial, 24, attack=ATTACKS[name], eps=0.1, attack_steps=3)
        assert all(np.isfinite(w).all() for w in weights), name


def _with_weights(weights: list[np.ndarray]) -> keras.Model:
    model = small_model()
    model.set_weights(weights)
    return model


def test_warmup_then_cosine_schedule() -> None:
    schedule = learning_rate(1e-3, 100, warmup_steps=10)
    values = [float(schedule(step)) for step in (0, 5, 10, 55, 100)]
    np.testing.assert_allclose(values, [1e-4, 5.5e-4, 1e-3, 5e-4, 0.0], atol=1e-9)
    assert learning_rate(schedule, 100) is schedule  # a schedule passes through the tasks' compile
    assert float(learning_rate(1e-3, 100)(50)) == pytest.approx(5e-4)  # no warmup: cosine as before


def test_lr_scaling_rules_and_the_printed_line() -> None:
    assert tuple(LR_SCALING) == LR_SCALING_RULES
    mirrored = Placement(None, "mirrored", 4, 1, True)
    assert mirrored.global_batch(32, 2) == 256
    assert mirrored.lr_factor("linear", 2) == 8 and mirrored.lr_factor("sqrt", 1) == 2
    assert mirrored.describe(32, 2, 1e-3, "linear") == (
        "mirrored: global batch 256 = 32 per replica x 4 replicas x 2 accumulated micro-batches; "
        "lr 0.008 = 0.001 x 8 (linear scaling rule, k = 8)"
    )
    assert Placement(None, "one device", 1, 1, True).describe(32, 1, 1e-3, "none") == (
        "one device: global batch 32 = 32 per replica x 1 replica; lr 0.001"
    )


def test_mixed_precision_copy_keeps_the_output_chain_in_float32() -> None:
    keras.utils.set_random_seed(0)
    model = small_model()
    assert output_chain(model) == {"predictions"}
    copy = training_copy(model, "mixed_float16")
    dtypes = compute_dtypes(copy)
    assert dtypes["predictions"] == "float32" and dtypes[copy.layers[2].name] == "float16"
    assert_weights_close(copy.get_weights(), model.get_weights(), atol=0)
    assert copy(X[:2]).dtype == tf.float32
    assert set(compute_dtypes(model).values()) == {"float32"}  # the original (saved) model is untouched
    assert keras.mixed_precision.global_policy().name == "float32"


def test_mixed_float16_step_scales_the_loss_and_accumulates(initial: list[np.ndarray]) -> None:
    """Under mixed_float16 the compiled optimizer is a LossScaleOptimizer; the accumulating step scales each
    micro-batch's loss, unscales its gradients, and updates as float32 would, to float16 precision."""
    model = small_model()
    model.set_weights(initial)
    copy = training_copy(model, "mixed_float16")
    with policy("mixed_float16"):
        wrapped = trainer(copy, micro_batch=6)
    wrapped.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
    assert isinstance(wrapped.optimizer, keras.mixed_precision.LossScaleOptimizer)
    wrapped.fit(tf.data.Dataset.from_tensor_slices((X, Y)).batch(24), epochs=1, verbose=0)
    assert int(wrapped.optimizer.iterations.numpy()) == 1
    assert_weights_close(copy.get_weights(), plain_update(initial, X), atol=2e-3)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (TrainConfig(precision="float16"), "--precision 'float16' is unknown; use one of: float32, mixed_float16"),
        (TrainConfig(clip_norm=0.0), "--clip-norm must be a finite positive number, got 0.0"),
        (TrainConfig(accumulate=0), "accumulate must be 1 or more, got 0"),
        (TrainConfig(lr_scaling="cubic"), "--lr-scaling 'cubic' is unknown; use one of: none, linear, sqrt"),
        (TrainConfig(adversarial_eps=2.0), r"--eps must be in \(0, 1\]"),
        (TrainConfig(warmup_epochs=-1.0), "warmup_epochs must be 0 or more"),
    ],
)
def test_bad_scale_settings_are_one_line_errors(config: TrainConfig, message: str) -> None:
    with pytest.raises(EdgecnnError, match=message):
        config.validate()


# -- the flags, through the command ------------------------------------------------------------------
def train_cli(tmp_path: Path, name: str, capsys: pytest.CaptureFixture, *flags: str) -> tuple[dict, str, Path]:
    out = tmp_path / name
    assert main(["train", "--arch", "lenet5", "--seed", "0", "--out", str(out), *flags]) == 0
    return json.loads((out / "metrics.json").read_text()), capsys.readouterr().out, out


def test_accumulate_and_lr_scaling_flags(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """--batch 16 --accumulate 2: 45 updates of 32 images per epoch (not 90 of 16); --lr-scaling linear
    doubles the peak rate, so half-way through the cosine (end of epoch 1 of 2) lr is ~0.001, not ~0.0005."""
    metrics, out, run = train_cli(
        tmp_path, "acc", capsys, "--epochs", "2", "--batch", "16", "--accumulate", "2", "--lr-scaling", "linear"
    )
    assert "global batch 32 = 16 per replica x 1 replica x 2 accumulated micro-batches; lr 0.002 = 0.001 x 2" in out
    assert metrics["optimizer_steps"] == 2 * 45 and metrics["global_batch"] == 32
    lr = [float(row.split(",")[-1]) for row in (run / "history.csv").read_text().splitlines()[1:]]
    assert lr[0] == pytest.approx(0.002 * 0.5 * (1 + np.cos(np.pi * 44 / 90)), rel=1e-4)  # the 45th update's
    assert metrics["val_top1"] > 0.85
    # observability: throughput and memory in metrics.json, a line per epoch, TensorBoard scalars
    assert metrics["images_per_sec"] > 0 and metrics["peak_rss_mib"] > 100
    assert "epoch 2/2  loss " in out and " images/s " in out
    assert scalar_tags(run / "tensorboard" / "train") >= {
        "epoch_loss",
        "epoch_accuracy",
        "epoch_lr",
        "epoch_images_per_sec",
    }
    assert scalar_tags(run / "tensorboard" / "validation") >= {"epoch_loss", "epoch_accuracy"}


def scalar_tags(folder: Path) -> set[str]:
    """The scalar names in a TensorBoard log folder."""
    tags = set()
    for events in folder.glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(events)):
            tags |= {value.tag for value in event.summary.value}
    return tags


def test_clip_norm_flag(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A global norm of 1e-9 leaves Adam's steps ~1e-8 (its epsilon dominates): one epoch learns nothing,
    where the same epoch unclipped reaches ~85% (the accumulate test above)."""
    metrics, out, run = train_cli(tmp_path, "clip", capsys, "--epochs", "1", "--clip-norm", "1e-9")
    assert "gradients clipped to global norm 1e-09" in out
    assert yaml.safe_load((run / "config.yaml").read_text())["clip_norm"] == 1e-9
    assert metrics["val_top1"] < 0.3


def test_adversarial_and_eps_flags(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """FGSM at eps 0.2 on half of every batch: the training accuracy (half of it on attacked images) falls
    well below the validation accuracy (clean images)."""
    metrics, out, run = train_cli(tmp_path, "adv", capsys, "--epochs", "2", "--adversarial", "fgsm", "--eps", "0.2")
    assert "fgsm adversarial examples (eps 0.2) for half of each batch" in out
    recorded = yaml.safe_load((run / "config.yaml").read_text())
    assert (recorded["adversarial"], recorded["adversarial_eps"]) == ("fgsm", 0.2)
    header, *rows = (run / "history.csv").read_text().splitlines()
    last = dict(zip(header.split(","), map(float, rows[-1].split(",")), strict=True))
    assert last["accuracy"] < last["val_accuracy"] - 0.1, last
    assert metrics["val_top1"] > 0.7


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--adversarial", "cw"), "--adversarial 'cw' is unknown; use one of: fgsm, pgd"),
        (("--devices", "3"), "--devices 3: only 1 visible (CPU:0); use --devices 1 or all"),
        (("--devices", "two"), "--devices must be a whole number or 'all', got 'two'"),
        (("--arch", "ssdlite_mobilenet_v2_035", "--adversarial", "fgsm"), "--adversarial needs a classification"),
    ],
)
def test_bad_flags_are_one_line_errors_and_write_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture, flags: tuple[str, ...], message: str
) -> None:
    assert main(["train", *flags, "--out", str(tmp_path / "r")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
