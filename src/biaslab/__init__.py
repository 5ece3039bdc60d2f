"""biaslab: make the implicit regularization of deep learning measurable.

The public API is small: specs, the catalog, a sweep runner, the store and the report.
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

__all__ = ["DataSpec", "ModelSpec", "RunSpec", "RunRecord", "SpecError", "Store", "Sweep", "TrainSpec", "__version__"]
