"""The pipeline stages, one module per command: each takes a typed options object, looks the task up and
composes the building blocks below it (data, archs, convert, training, runtime, benchmarks).

Nothing is imported here: ``evaluate`` (of a .tflite), ``benchmark``, ``demo`` and ``check`` (of a
.tflite) run on the light install, the others import TensorFlow.
"""
