"""Video blocks, no TensorFlow: frame sources (cameras, files, image folders), overlays drawn on frames,
the live MJPEG view for headless boards, and the frame-buffer memory setting. The demo loop that runs
them with a model is :mod:`edgecnn.pipelines.demo`."""
