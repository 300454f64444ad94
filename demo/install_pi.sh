#!/usr/bin/env bash
# Light install of edgecnn on a Raspberry Pi (or any Linux board): no TensorFlow.
#   bash demo/install_pi.sh [path-to-edgecnn-checkout]
# 64-bit OS (aarch64): every dependency is a wheel on PyPI; the interpreter is ai-edge-litert.
# 32-bit OS (armv7l): PyPI has no ai-edge-litert, numpy, OpenCV or PyYAML wheel for it. The interpreter is
# tflite-runtime 2.14 (a PyPI wheel, built for numpy 1, hence numpy<2); piwheels.org builds the others for
# the Pi (Raspberry Pi OS lists it in /etc/pip.conf; it is added here for other armv7l systems).
set -euo pipefail
src=${1:-$(cd "$(dirname "$0")/.." && pwd)}
venv=~/edgecnn-venv
if ! python3 -m venv "$venv"; then
  echo "install_pi.sh: python3 cannot create a venv; run: sudo apt install python3-venv python3-pip" >&2
  exit 2
fi
# --prefer-binary: an older wheel rather than a newer source package (a build on a Pi takes long or fails)
pip=("$venv/bin/pip" install --prefer-binary)
requirements=("$src")
if [ "$(uname -m)" = "armv7l" ]; then
  pip+=(--extra-index-url https://www.piwheels.org/simple)
  requirements=("numpy<2" tflite-runtime "$src")
fi
"${pip[@]}" --upgrade pip
"${pip[@]}" "${requirements[@]}"
"$venv/bin/edgecnn" --version
echo "activate with: source $venv/bin/activate"
