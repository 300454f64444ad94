"""tf.distribute without GPUs: MirroredStrategy over 2 logical CPU devices, and MultiWorkerMirroredStrategy
over two worker processes on 127.0.0.1 (TF_CONFIG), each against one device at the same global batch.

Tolerance: the same global batch of 32 is split across 2 replicas (16 each) instead of computed at once,
so the only difference is the order of float additions in the gradient sum. The runs must end within
0.5% (relative) in every epoch's training and validation loss and within 1 point (3 of 359 images) in validation top-1.
Measured here: identical top-1, losses equal to 4-5 significant digits (see the assertions' messages).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, run_cli

pytestmark = pytest.mark.tf  # trains: not in the fast lane

RUN = ("train", "--arch", "lenet5", "--epochs", "2", "--seed", "0")
# Relative: the addition order compounds over the epochs (epoch 2 on an AVX2 EPYC: 0.745129 vs 0.743397, 0.23%).
LOSS_TOLERANCE = 5e-3
TOP1_TOLERANCE = 0.01

# Splitting the one CPU into two logical devices must happen before TensorFlow initializes: a fresh process.
LOGICAL_CPUS = """
import sys
from edgecnn.core.keras_env import tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from edgecnn.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def single_device(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference: one device, global batch 32."""
    out = tmp_path_factory.mktemp("single") / "run"
    result = run_cli(*RUN, "--batch", "32", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "one device: global batch 32 = 32 per replica x 1 replica; lr 0.001" in result.stdout
    return out


def _history(run: Path) -> dict[str, list[float]]:
    lines = (run / "history.csv").read_text().splitlines()
    header = lines[0].split(",")
    rows = [[float(v) for v in line.split(",")] for line in lines[1:]]
    return {key: [row[i] for row in rows] for i, key in enumerate(header)}


def _assert_same_training(reference: Path, other: Path) -> None:
    a, b = _history(reference), _history(other)
    for key in ("loss", "val_loss"):
        gap = max(abs(x - y) / abs(x) for x, y in zip(a[key], b[key], strict=True))
        assert gap <= LOSS_TOLERANCE, (key, a[key], b[key])
    top1 = [json.loads((run / "metrics.json").read_text())["val_top1"] for run in (reference, other)]
    assert abs(top1[0] - top1[1]) <= TOP1_TOLERANCE, top1
    print(f"losses {a['loss']} vs {b['loss']}; val top-1 {top1}")


def test_mirrored_on_two_logical_cpus_matches_one_device(single_device: Path, tmp_path: Path) -> None:
    out = tmp_path / "mirrored"
    result = subprocess.run(
        [sys.executable, "-c", LOGICAL_CPUS, *RUN, "--batch", "16", "--devices", "2", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert "mirrored: global batch 32 = 16 per replica x 2 replicas; lr 0.001 (not scaled" in result.stdout
    assert json.loads((out / "metrics.json").read_text())["replicas"] == 2
    _assert_same_training(single_device, out)


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_two_local_workers_train_one_model_like_one_device(single_device: Path, tmp_path: Path) -> None:
    """Two processes, one CPU replica each, per-worker batch 16: one model trained on global batches of 32."""
    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}
    procs = []
    for index in range(2):
        env = {**os.environ, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
        out = tmp_path / f"worker{index}"
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "edgecnn", *RUN, "--batch", "16", "--out", str(out)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
                cwd=ROOT,
            )
        )
    outputs = [p.communicate(timeout=900) for p in procs]
    for proc, (stdout, stderr) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, stderr
        assert "multi-worker: global batch 32 = 16 per replica x 2 replicas on 2 workers; lr 0.001" in stdout
    chief = tmp_path / "worker0"
    assert json.loads((chief / "metrics.json").read_text())["replicas"] == 2
    assert not (tmp_path / "worker1").exists()  # only the chief writes a run folder
    _assert_same_training(single_device, chief)
