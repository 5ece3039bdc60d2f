#!/usr/bin/env bash
# The test command: install, check the layer contract, run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
lint-imports
python3 -m pytest tests
