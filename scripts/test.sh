#!/usr/bin/env bash
# The test command: install what is needed, then run the whole suite (slow tests included).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Headless Chromium renders report.html in the browser tests (Debian's package, when missing).
bash scripts/install_chromium.sh
. .venv/bin/activate
ruff check src tests benchmarks
python -m pytest -q "$@"
