"""Training: tf_keras fit loop, distribution strategy, the run folder it writes."""
