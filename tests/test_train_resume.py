"""Kill-and-resume: a training process SIGKILLed mid-run resumes from its last checkpoint and ends exactly
where an uninterrupted run ends (deterministic ops, per-epoch seeded input, restored random generators),
and the run folder never holds a half-written file."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import yaml
from conftest import run_cli

# LeNet-5 with dropout, so the restored random generators matter, not only the weights and the optimizer.
ARGS = ("train", "--arch", "lenet5", "--epochs", "4", "--seed", "3", "--option", "dropout=0.3")


def _kill_after_first_checkpoint(out: Path) -> None:
    """Start the run and SIGKILL it the moment its first checkpoint appears: the event is the checkpoint's
    rename into place (temp file + rename), which ends epoch 1, so the kill lands after it, in epoch 2 (an
    epoch takes far longer than one poll). No sleep guesses how long anything takes."""
    proc = subprocess.Popen([sys.executable, "-m", "edgecnn", *ARGS, "--out", str(out)], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while not (out / "checkpoint.zip").exists():
        assert proc.poll() is None, "training ended before its first checkpoint"
        assert time.monotonic() < deadline, "no checkpoint after 600 s"
        time.sleep(0.01)  # the poll interval, not a wait for something to happen
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL


def _assert_complete_files_only(run: Path) -> None:
    """What a killed run leaves: its recorded config, a readable checkpoint, TensorBoard logs, and at most a
    temp file of the checkpoint being written (a dot-name, never read); no model or metrics yet."""
    names = {p.name for p in run.iterdir()}
    assert {"config.yaml", "checkpoint.zip", "tensorboard"} <= names, names
    assert not names & {"model.keras", "metrics.json", "history.csv"}, names
    leftovers = names - {"config.yaml", "checkpoint.zip", "tensorboard"}
    assert all(n.startswith(".checkpoint.zip.") and ".tmp" in n for n in leftovers), leftovers
    assert yaml.safe_load((run / "config.yaml").read_text())["epochs"] == 4
    with zipfile.ZipFile(run / "checkpoint.zip") as archive:
        assert archive.testzip() is None
        state = json.loads(archive.read("state.json"))
    assert 1 <= state["epoch"] < 4, state["epoch"]  # killed mid-run, after a complete checkpoint
    assert len(state["history"]["loss"]) == state["epoch"]


@pytest.mark.tf  # trains
def test_sigkilled_run_resumes_to_the_uninterrupted_result(tmp_path: Path) -> None:
    from edgecnn.cli import main

    full, killed = tmp_path / "full", tmp_path / "killed"
    assert main([*ARGS, "--out", str(full)]) == 0  # the uninterrupted run, in this process
    _kill_after_first_checkpoint(killed)
    _assert_complete_files_only(killed)

    resumed = run_cli("train", "--resume", str(killed))
    assert resumed.returncode == 0, resumed.stderr
    assert "epoch 4/4" in resumed.stdout and "epoch 1/4" not in resumed.stdout  # it continued, not restarted
    a = json.loads((full / "metrics.json").read_text())
    b = json.loads((killed / "metrics.json").read_text())
    for key in ("val_top1", "val_top5", "val_per_class", "epochs", "optimizer_steps"):
        assert a[key] == b[key], (key, a[key], b[key])
    columns = ("loss", "accuracy", "val_loss", "val_accuracy", "lr")
    rows = [_history(run, columns) for run in (full, killed)]
    assert rows[0] == rows[1]  # every epoch's metrics, to the 6 digits history.csv keeps
    assert not [p.name for p in killed.iterdir() if p.name.startswith(".")]  # the resume cleared the temp files


def test_resume_refuses_flags_and_folders_without_a_run(tmp_path: Path) -> None:
    result = run_cli("train", "--resume", str(tmp_path), "--lr", "0.1")
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == f"edgecnn train: error: --resume continues {tmp_path} as its config.yaml records it; drop --lr"
    )
    result = run_cli("train", "--resume", str(tmp_path))
    assert result.returncode == 2
    assert f"--resume {tmp_path}: not a run folder (no config.yaml)" in result.stderr


def _history(run: Path, columns: tuple[str, ...]) -> list[tuple[str, ...]]:
    lines = (run / "history.csv").read_text().splitlines()
    header = lines[0].split(",")
    return [tuple(row.split(",")[header.index(c)] for c in columns) for row in lines[1:]]
