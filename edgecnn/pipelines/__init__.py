"""The pipeline stages, one module per command (``demo`` is a package: the command and its threaded loop):
each takes a typed options object, looks the task up and composes the building blocks below it (data,
archs, convert, trainer, runtime, benchmarks, video).

Nothing is imported here: ``evaluate`` (of a .tflite), ``benchmark``, ``demo``, ``doctor`` and ``check``
(of a .tflite) run on the light install, the others import TensorFlow.
"""
