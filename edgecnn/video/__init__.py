"""The camera demo: threaded capture -> inference -> overlay, headless or windowed. No TensorFlow."""
