"""Write the tiny models ``edgecnn doctor`` times: edgecnn/edgetpu/data/doctor_{int8,float}.tflite.

A 16x16x32 input through two 3x3 convolutions of 32 channels with ReLU: 4.7 M multiply-adds. The
int8 model is full-integer with int8 input and output (no uint8 conversions at the edges),
calibrated on 16 seeded random inputs (22 KB). The float model is the same network with the same
seeded weights stored as float16 (39 KB; the interpreter computes in float32). Doctor compares their
latency: with fast int8 kernels (XNNPACK) int8 is 2-3x faster than float at 32 channels; slower
int8 means the interpreter lacks them. Run from the repository root:

    .venv/bin/python scripts/make_doctor_model.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "edgecnn" / "edgetpu" / "data"
SHAPE = (16, 16, 32)


def build() -> object:
    from edgecnn.core.keras_env import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape=SHAPE, batch_size=1, name="x")
    x = inputs
    for i in range(2):
        x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name=f"conv{i}")(x)
    return keras.Model(inputs, x, name="doctor")


def main() -> None:
    from edgecnn.convert.tflite import to_tflite

    model = build()
    calib = np.random.default_rng(0).uniform(-1, 1, (16, *SHAPE)).astype(np.float32)
    OUT.mkdir(parents=True, exist_ok=True)
    for name, fmt, io in (("doctor_int8.tflite", "int8", "int8"), ("doctor_float.tflite", "float16", "float32")):
        blob = to_tflite(model, fmt, io, calib)
        (OUT / name).write_bytes(blob)
        print(f"wrote {OUT / name} ({len(blob)} bytes)")


if __name__ == "__main__":
    main()
