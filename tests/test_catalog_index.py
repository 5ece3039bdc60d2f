"""The static catalog index (what `biaslab list` prints without importing the experiments) matches the live catalog."""

from __future__ import annotations

import subprocess
import sys

from biaslab.catalog import INDEX
from biaslab.experiments import CATALOG


def test_the_index_lists_every_experiment_with_its_title_reference_and_presets():
    assert list(INDEX) == list(CATALOG), "update src/biaslab/catalog.py: the catalog's names or order changed"
    for name in CATALOG:
        experiment = CATALOG.get(name)
        assert INDEX[name] == (experiment.title, experiment.reference, tuple(experiment.presets)), name


def test_listing_the_catalog_imports_neither_torch_nor_any_experiment():
    code = "import sys; from biaslab.cli import main; main(['list']); print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('biaslab.experiments')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"
