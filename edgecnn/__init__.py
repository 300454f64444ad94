"""edgecnn: train a CNN, optimize it, convert it to TFLite/Edge TPU, benchmark and demo it on the edge.

Importing the package is light: TensorFlow is imported only by the training, optimization and
conversion modules (through :mod:`edgecnn.core.keras_env`), never by the runtime, benchmark or demo.
"""

__version__ = "0.1.0"
