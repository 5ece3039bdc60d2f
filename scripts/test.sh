#!/usr/bin/env bash
# The test command: install, check the layer contract, run the whole suite, then the whole field contract.
# Both run in BIASLAB_TEST_WORKERS pytest-xdist workers (default 2, one per core here; 1 runs them serially), one
# torch thread each (tests/conftest.py). For development: `python3 -m pytest -m "not slow"` (under a minute).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
lint-imports
workers="${BIASLAB_TEST_WORKERS:-2}"
python3 -m pytest tests -n "$workers" --dist loadfile
# the whole field contract (every field of every experiment changed in a tiny run: about 3 minutes serially on a quiet 2-core machine)
python3 -m pytest -m contract tests/test_field_contract.py -n "$workers" --dist load
