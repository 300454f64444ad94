"""Single-shot detection: anchors, training targets, losses, and export with the TFLite detection postprocess.

``anchors`` and ``targets`` are numpy only (the light runtime and the benchmarks may use them); ``loss``
and ``postprocess`` need TensorFlow and import it inside their functions.
"""
