"""biaslab: make the implicit regularization of deep learning measurable.

The public API is small: `catalog()`, `run(name, preset, overrides, store, trackers)` (an experiment's sweep,
verdict and figures), `track(trackers, store)` (a store's runs sent to TensorBoard, W&B or MLflow),
`probe(model, train, test)` (the report card of your own model on your own data), the specs and `Store`.
Everything else is importable from its module but not promised to stay.
"""

from __future__ import annotations

from importlib import metadata

from biaslab.spec import DataSpec, ModelSpec, RunSpec, SpecError, Sweep, TrainSpec
from biaslab.store import RunRecord, Store

try:
    __version__ = metadata.version("biaslab")
except metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = ["Card", "ExperimentResult", "catalog", "run", "DataSpec", "ModelSpec", "RunSpec", "RunRecord", "SpecError", "Store", "Sweep", "TrainSpec", "__version__", "probe", "track"]


def __getattr__(name: str):
    """The entry points that import torch load on first use, keeping `import biaslab` light."""
    if name in ("probe", "Card"):
        from biaslab import card

        return getattr(card, name)
    if name in ("run", "catalog", "ExperimentResult", "track"):
        from biaslab import api

        return getattr(api, name)
    raise AttributeError(f"module 'biaslab' has no attribute {name!r}")
