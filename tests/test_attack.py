"""Adversarial attacks (edgecnn.insight.attacks) and ``edgecnn eval --attack`` on the seeded LeNet-5 digits run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgecnn.cli import main

pytestmark = pytest.mark.tf  # attacks a Keras model: not in the fast lane


@pytest.fixture(scope="module")
def lenet(digits_run: Path):
    from edgecnn.data import load_split
    from edgecnn.trainer.load import load_keras

    model, _ = load_keras(digits_run / "model.keras")
    val = load_split("digits", "classify", 32, None, 0, 0.2).val
    return model, val.x[:200].astype(np.float32), val.y[:200]


def top1(model, x, y) -> float:
    return float((model.predict(np.asarray(x), verbose=0).argmax(-1) == y).mean())


def test_attacks_stay_in_the_ball_and_fool_the_model(lenet) -> None:
    from edgecnn.core.keras_env import tf
    from edgecnn.insight.attacks import ATTACKS

    model, x, y = lenet
    clean = top1(model, x, y)
    assert clean >= 0.9
    scores = {}
    for name, attack in ATTACKS.items():
        tf.random.set_seed(0)
        adv = attack(model, x, y, 0.1, 5).numpy()
        assert adv.dtype == np.float32 and adv.shape == x.shape
        assert adv.min() >= 0.0 and adv.max() <= 255.0
        assert np.abs(adv - x).max() <= 0.1 * 255 + 1e-3
        scores[name] = top1(model, adv, y)
    assert scores["fgsm"] < clean - 0.3  # measured: 0.98 -> ~0.3 at eps 0.1
    assert scores["pgd"] <= scores["fgsm"] + 0.02  # iterating finds at least as strong examples
    # a smaller budget fools it less
    assert top1(model, ATTACKS["fgsm"](model, x, y, 0.02, 1).numpy(), y) > scores["fgsm"]


def test_attacks_run_inside_tf_function_as_eagerly(lenet) -> None:
    from edgecnn.core.keras_env import tf
    from edgecnn.insight.attacks import fgsm

    model, x, y = lenet
    graph = tf.function(lambda a, b: fgsm(model, a, b, 0.1, 1))
    traced = graph(tf.constant(x[:32]), tf.constant(y[:32])).numpy()
    np.testing.assert_allclose(traced, fgsm(model, x[:32], y[:32], 0.1, 1))


def test_loss_reads_the_logits_under_the_softmax(lenet) -> None:
    """A saturated softmax has no gradient; the attacks take the logits underneath it."""
    from edgecnn.core.keras_env import tf
    from edgecnn.insight.attacks import class_logits

    model, x, _ = lenet
    logits = class_logits(model, tf.constant(x[:8])).numpy()
    np.testing.assert_allclose(tf.nn.softmax(logits).numpy(), model.predict(x[:8], verbose=0), atol=1e-5)
    assert np.abs(logits).max() > 1.0  # scores, not probabilities


def test_cli_choices_are_the_attack_table() -> None:
    from edgecnn.insight.attacks import ATTACKS
    from edgecnn.pipelines.robustness import ATTACK_NAMES

    assert tuple(ATTACKS) == ATTACK_NAMES  # the CLI reads ATTACK_NAMES without importing TensorFlow


def test_attack_refuses_a_bad_budget(lenet) -> None:
    from edgecnn.core.errors import EdgecnnError
    from edgecnn.insight.attacks import get_attack, pgd

    model, x, y = lenet
    with pytest.raises(EdgecnnError, match=r"--eps 1.5 is outside 0..1"):
        pgd(model, x[:2], y[:2], 1.5, 3)
    with pytest.raises(EdgecnnError, match="--steps 0 must be at least 1"):
        pgd(model, x[:2], y[:2], 0.1, 0)
    with pytest.raises(EdgecnnError, match="unknown attack 'cw'; choose one of: fgsm, pgd"):
        get_attack("cw")


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    assert main([*args, "--json"]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_eval_attack_on_keras_and_transferred_to_int8(digits_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keras_path, int8 = str(digits_run / "model.keras"), str(digits_run / "model_int8.tflite")
    k = run_json(capsys, "eval", keras_path, "--attack", "fgsm", "--eps", "0.1")["robustness"]
    assert k["attack"] == "fgsm" and k["eps"] == 0.1 and k["max_pixel_change"] == 25 and not k["transferred"]
    assert k["images"] == 359 and k["clean_top1"] >= 0.9 and k["adversarial_top1"] < k["clean_top1"] - 0.3
    q = run_json(capsys, "eval", int8, "--attack", "fgsm", "--eps", "0.1")["robustness"]
    assert q["transferred"] and q["crafted_on"] == keras_path
    assert q["keras_adversarial_top1"] == k["adversarial_top1"]  # the same crafted images
    assert abs(q["clean_top1"] - k["clean_top1"]) <= 0.02 and q["adversarial_top1"] < q["clean_top1"] - 0.3
    # --eps: a smaller budget changes fewer levels and fools less
    small = run_json(capsys, "eval", keras_path, "--attack", "fgsm", "--eps", "0.02")["robustness"]
    assert small["max_pixel_change"] == 5 and small["adversarial_top1"] > k["adversarial_top1"]
    # --attack pgd --steps: more steps, at least as strong; the text shows both numbers side by side
    one = run_json(capsys, "eval", keras_path, "--attack", "pgd", "--eps", "0.05", "--steps", "1")["robustness"]
    many = run_json(capsys, "eval", keras_path, "--attack", "pgd", "--eps", "0.05", "--steps", "8")["robustness"]
    assert (one["steps"], many["steps"]) == (1, 8) and many["adversarial_top1"] < one["adversarial_top1"]
    assert main(["eval", int8, "--attack", "pgd", "--eps", "0.05", "--steps", "2"]) == 0
    text = capsys.readouterr().out
    assert "PGD eps=0.05 (12 pixel levels, 2 steps), crafted on" in text
    assert "top-1 clean" in text and "adversarial" in text and "source Keras model: clean" in text


def test_eval_attack_errors(digits_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    alone = tmp_path / "model_int8.tflite"
    shutil.copy(digits_run / "model_int8.tflite", alone)
    assert main(["eval", str(alone), "--attack", "fgsm"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"edgecnn eval: error: no source Keras model for {alone}") and "\n" not in err
    assert main(["eval", str(digits_run / "model.keras"), "--attack", "fgsm", "--steps", "3"]) == 2
    assert "--steps sets PGD's iterations" in capsys.readouterr().err
    assert main(["eval", str(digits_run / "model.keras"), "--eps", "0.1"]) == 2
    assert "add --attack fgsm or --attack pgd" in capsys.readouterr().err
