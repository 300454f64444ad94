"""How long ``edgecnn doctor`` takes on the light install (TensorFlow blocked, as on a Pi): its own
``seconds`` field and the process's wall time, median of a few runs. Target: under 5 s, so a user runs it
without thinking twice. (tests/test_doctor.py checks what it reports; how fast is measured here.)

    .venv/bin/python benchmarks/doctor.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

from common import ROOT

# the doctor in a fresh interpreter where importing TensorFlow raises, as on a light install
LIGHT_DOCTOR = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('tensorflow', 'tf_keras', 'keras'): raise ImportError(name)
sys.meta_path.insert(0, Block())
from edgecnn.cli import main
sys.exit(main(['doctor', '--json']))
"""
TARGET_S = 5.0


def one_run() -> tuple[float, float]:
    """(the doctor's own seconds, the process's wall seconds)."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", LIGHT_DOCTOR], capture_output=True, text=True, timeout=120)
    wall = time.perf_counter() - start
    if done.returncode not in (0, 1):  # 1: a check failed on this machine, which is not the point here
        raise SystemExit(done.stderr)
    return json.loads(done.stdout)["seconds"], wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    runs = [one_run() for _ in range(args.runs)]
    own, wall = statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
    record = {
        "runs": args.runs,
        "doctor_seconds": [round(r[0], 3) for r in runs],
        "wall_seconds": [round(r[1], 3) for r in runs],
        "median_doctor_seconds": round(own, 3),
        "median_wall_seconds": round(wall, 3),
        "target_seconds": TARGET_S,
        "date": time.strftime("%Y-%m-%d"),
    }
    (ROOT / "benchmarks" / "results" / "doctor.json").write_text(json.dumps(record, indent=1) + "\n")
    verdict = "meets" if wall < TARGET_S else "MISSES"
    print(f"edgecnn doctor: median {own:.2f} s (its own count), {wall:.2f} s wall;"
          f" {verdict} the {TARGET_S:.0f} s target")


if __name__ == "__main__":
    main()
