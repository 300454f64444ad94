"""Keras -> TFLite (float32, float16, dynamic-range, full-integer int8) with metadata and a report."""
