#!/usr/bin/env bash
# The test command: install, check the layer contract, run the whole suite, then the whole field contract.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
lint-imports
python3 -m pytest tests
# the whole field contract (every field of every experiment changed in a tiny run: about 3 minutes on a quiet 2-core machine)
python3 -m pytest -m contract tests/test_field_contract.py
