"""See inside a model: why it predicts what it does, how fragile it is, and where int8 loses accuracy.

- :mod:`~edgecnn.insight.attacks`: FGSM and PGD adversarial examples (white box, on a Keras model).
- :mod:`~edgecnn.insight.gradcam`, :mod:`~edgecnn.insight.saliency`: gradient heatmaps of a Keras model.
- :mod:`~edgecnn.insight.occlusion`: gradient-free heatmaps of any predict function, so of an int8
  .tflite too; numpy only (the light install runs it on the Pi).
- :mod:`~edgecnn.insight.heatmap`: overlays and grids as images (numpy + OpenCV, light).
- :mod:`~edgecnn.insight.visualize`: first-layer filters and feature maps.
- :mod:`~edgecnn.insight.quant_debug`: per-layer float-vs-int8 error, named by Keras layer.
- :mod:`~edgecnn.insight.profile`: per-layer shapes, parameters, MACs, receptive field and memory.

This file imports nothing, so the light modules stay importable without TensorFlow.
"""
