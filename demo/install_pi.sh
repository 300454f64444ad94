#!/usr/bin/env bash
# Light install of edgecnn on a Raspberry Pi (or any Linux board): no TensorFlow.
#   bash demo/install_pi.sh [path-to-edgecnn-checkout]
set -euo pipefail
src=${1:-$(cd "$(dirname "$0")/.." && pwd)}
python3 -m venv ~/edgecnn-venv
pip=~/edgecnn-venv/bin/pip
$pip install --upgrade pip
if [ "$(uname -m)" = "armv7l" ]; then
  # No ai-edge-litert wheel for 32-bit ARM: tflite-runtime needs numpy<2.
  $pip install "numpy<2" tflite-runtime
fi
$pip install "$src"
~/edgecnn-venv/bin/edgecnn --version
echo "activate with: source ~/edgecnn-venv/bin/activate"
