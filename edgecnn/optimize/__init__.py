"""Model optimization steps: quantization-aware training, pruning, clustering, distillation."""
