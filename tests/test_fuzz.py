"""Fuzzing the model loaders (issue #11, "never die silently"): damaged .tflite files through
``edgecnn benchmark``, ``eval`` and ``check`` end in a one-line error or a normal run, never a traceback,
a death by a signal or a hang.

The fast version of ``benchmarks/fuzz_models.py`` (1,000 mutants, recorded in benchmarks/results/): 30
mutants of each kind, structure-aware and byte-level, seeded, all run in one child process that calls
``edgecnn.cli.main`` in a loop (restarted after a death, killed after a hang). About 30 s, most of it
TensorFlow converting the two LeNet-5 seed models.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import tf_fixture

ROOT = Path(__file__).resolve().parents[1]
MUTANTS_PER_KIND = 30
TIMEOUT = 60.0  # seconds a run may take before it counts as a hang (a run takes ~10 ms)


def load_fuzzer() -> Any:
    spec = importlib.util.spec_from_file_location("fuzz_models", ROOT / "benchmarks" / "fuzz_models.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["fuzz_models"] = module  # its dataclasses resolve their annotations through it
    spec.loader.exec_module(module)
    return module


fuzz = load_fuzzer()


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@tf_fixture(scope="module")
def mutants(work: Path) -> list[Any]:
    seeds = fuzz.build_seed_models(work / "seeds")
    return fuzz.make_mutants(seeds, MUTANTS_PER_KIND * len(fuzz.KINDS), work / "mutants", seed=0)


def test_mutants_never_crash_hang_or_print_a_traceback(work: Path, mutants: list[Any]) -> None:
    jobs = fuzz.jobs_for(mutants, fuzz.image_folder(work / "images"))
    results = fuzz.run_jobs(jobs, work / "child_stderr.log", TIMEOUT)
    notes = {m.path: m.note for m in mutants}
    failures = [
        f"{Path(r.job.mutant).name} ({notes[r.job.mutant]}), {r.job.command}: {r.outcome}: {r.message}"
        for r in fuzz.failures(results)
    ]
    assert failures == []
    table = fuzz.tally(results)
    for command in fuzz.COMMANDS:  # the mutants reach the interpreter (eval too) and some still run
        assert sum(table[kind][command]["clean error"] for kind in table) > 0, command
        assert sum(table[kind][command]["ran ok"] for kind in table) > 0, command
    caught = {kind: sum(cell["clean error"] for cell in table[kind].values()) for kind in fuzz.KINDS}
    assert all(caught.values()), caught  # every kind of damage is caught somewhere


def test_mutants_are_reproducible(work: Path, mutants: list[Any]) -> None:
    seeds = fuzz.build_seed_models(work / "seeds")  # cached by the first call
    again = fuzz.make_mutants(seeds, 2 * len(fuzz.KINDS), work / "again", seed=0)
    for first, second in zip(mutants, again, strict=False):
        assert (first.kind, first.note) == (second.kind, second.note)
        assert Path(first.path).read_bytes() == Path(second.path).read_bytes()
    other = fuzz.make_mutants(seeds, len(fuzz.KINDS), work / "other", seed=1)
    assert [m.note for m in other] != [m.note for m in again[: len(other)]]


def test_the_harness_sees_signals_hangs_and_tracebacks(tmp_path: Path) -> None:
    """The harness itself can fail a run: a child that segfaults or hangs is restarted and the next job runs;
    an exception escaping ``main`` and one Python prints from ``__del__`` are both tracebacks."""
    ok = ["benchmark", str(fuzz.SHIPPED / "doctor_int8.tflite"), "--runs", "1", "--warmup", "0", "--threads", "1"]
    plan = [
        ("segfault", "signal"),
        (None, "ran ok"),
        ("hang", "hang"),
        (None, "ran ok"),
        ("raise", "traceback"),
        ("del", "traceback"),
        (None, "ran ok"),
    ]
    jobs = [
        fuzz.Job(i, "self test", "benchmark", [fuzz.SELF_TEST, what] if what else ok)
        for i, (what, _) in enumerate(plan)
    ]
    results = fuzz.run_jobs(jobs, tmp_path / "log", timeout=5.0)
    assert [r.outcome for r in results] == [outcome for _, outcome in plan]
    assert [r.restarted for r in results] == [True, False, True, False, False, False, False]
    assert results[0].rc == -11 and results[4].message == "RuntimeError: escaped"
