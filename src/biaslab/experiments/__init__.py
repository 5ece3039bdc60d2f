"""The catalog of phenomena. Importing this package imports each of its modules, and each registers its
experiment in `CATALOG`: a new experiment is one new file here and nothing else."""

from __future__ import annotations

import importlib
import pkgutil

from biaslab.experiments.base import CATALOG, Experiment, Result, execute
from biaslab.experiments.supervised import run_supervised, run_supervised_population
from biaslab.spec import RunSpec
from biaslab.store import RunRecord
from biaslab.train.population import poolable

HELPER_MODULES = ("base", "estimator_runs", "memory", "supervised", "work")  # the framework, memory and work estimates and the shared runners: no experiment of their own


def _register_all() -> None:
    """Import every experiment module of this package (in name order); importing one registers its experiment."""
    for module in pkgutil.iter_modules(__path__):
        if module.name not in HELPER_MODULES:
            importlib.import_module(f"{__name__}.{module.name}")


_register_all()


def run_spec(spec: RunSpec) -> RunRecord:
    """Run one spec with its experiment's runner ('custom' specs use the standard supervised run)."""
    if spec.experiment == "custom":
        return execute(run_supervised, spec)
    return CATALOG.get(spec.experiment).run(spec)


def trains_populations(experiment: str) -> bool:
    """Whether an experiment's runs may be trained together as a population."""
    return experiment == "custom" or (experiment in CATALOG and CATALOG.get(experiment).trains_populations)


def can_pool(spec: RunSpec) -> bool:
    """Whether a spec may join a population: its experiment trains the standard supervised run, and the run is
    `train.population.poolable` (no dropout, batch augmentation, l1 penalty or sharpness-aware steps)."""
    return trains_populations(spec.experiment) and poolable(spec)


def run_population(specs: list[RunSpec]) -> list[RunRecord]:
    """Run specs that share an architecture as one population (one spec: a plain run)."""
    if len(specs) == 1:
        return [run_spec(specs[0])]
    if not all(can_pool(s) for s in specs):
        raise ValueError("run_population: these experiments' runs cannot share a population")
    return run_supervised_population(specs)


__all__ = ["CATALOG", "Experiment", "Result", "can_pool", "execute", "run_population", "run_spec", "run_supervised", "trains_populations"]
