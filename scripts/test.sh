#!/usr/bin/env bash
# The test command: install what is needed, then run the whole suite (slow tests included).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Headless Chromium renders report.html in the browser tests (Debian's package, when missing).
bash scripts/install_chromium.sh
# The real vLLM, in its own environment, for the vllm-marked tests.
FTRISK_VLLM_PYTHON="${FTRISK_VLLM_PYTHON:-$(bash scripts/setup_vllm.sh)}"
export FTRISK_VLLM_PYTHON
. .venv/bin/activate
ruff check src tests benchmarks
python -m pytest -q -m "not gpu" "$@"
