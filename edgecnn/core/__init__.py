"""The bottom layer: errors, file writing, quiet native logs, run configs, the model record, the Keras
environment, Keras model files and graph rewriting. Imports nothing else from edgecnn."""
