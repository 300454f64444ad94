"""Light runtime: numpy, OpenCV and a LiteRT interpreter; never TensorFlow the framework."""

from edgecnn.runtime.interpreter import Backend, TFLiteModel, find_backend, load_model

__all__ = ["Backend", "TFLiteModel", "find_backend", "load_model"]
