#!/usr/bin/env bash
# The main job on built-in data: install, run the quick width sweep, write the report.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
biaslab run width-sweep --store biaslab-runs
