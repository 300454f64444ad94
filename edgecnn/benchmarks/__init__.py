"""Measure deployed models: latency, memory and accuracy. Light: no TensorFlow is imported here."""
