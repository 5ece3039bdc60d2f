"""CONTRIBUTING.md's example experiment registers, runs its tiny preset through the framework and passes its claim."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "step_size_experiment.py"

SCRIPT = f"""
import runpy, tempfile
runpy.run_path({str(EXAMPLE)!r}, run_name="example")
from biaslab.experiments import CATALOG
from biaslab.store import Store
from biaslab.sweep import run_sweep
experiment = CATALOG.get("example-step-size")
for spec in experiment.sweep("tiny").expand():
    experiment.check(spec)
records = run_sweep(experiment.sweep("tiny"), Store(tempfile.mkdtemp()), "tiny", executor="inprocess").records
print(len(records), sorted({{r.status for r in records}}), experiment.verdict(records).label, sorted(experiment.figures(records)),
      all(r.env.get("seed") == 0 for r in records))
"""


@pytest.mark.slow
def test_the_example_experiment_runs_in_a_fresh_process():
    """A fresh process, so the example's registration does not leak into the catalog other tests see."""
    assert len(EXAMPLE.read_text().splitlines()) <= 80
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split("\n")[-2] == "4 ['ok'] PASS ['distance'] True"
