"""The catalog of phenomena. Importing this package registers every experiment in `CATALOG`."""

from __future__ import annotations

from biaslab.experiments.base import CATALOG, Experiment
from biaslab.experiments.supervised import run_supervised
from biaslab.experiments import width_sweep  # noqa: F401  (registers itself)
from biaslab.spec import RunSpec
from biaslab.store import RunRecord


def run_spec(spec: RunSpec) -> RunRecord:
    """Run one spec with its experiment's runner ('custom' specs use the standard supervised run)."""
    if spec.experiment == "custom":
        return run_supervised(spec)
    return CATALOG.get(spec.experiment).run(spec)


__all__ = ["CATALOG", "Experiment", "run_spec", "run_supervised"]
