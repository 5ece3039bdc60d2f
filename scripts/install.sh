#!/usr/bin/env bash
# Install biaslab with its test tools. torch is pinned here (a CPU build) so that pip does not pull a multi-GB
# CUDA build; the package itself accepts a range (see pyproject.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet "torch==2.13.0"
python3 -m pip install --quiet -e ".[test,ray]"
