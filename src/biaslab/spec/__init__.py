"""Typed, frozen, validated run specifications.

A `RunSpec` says everything that decides a run's numbers: data, model, training,
probes and seed. It is a frozen pydantic model with ``extra="forbid"``, so an
unknown key or a wrong type is an error that names the field. Its `spec_id` is
the SHA-256 of its canonical JSON, which is how the store recognises a run it
has already done. A `Sweep` is a base spec plus a grid over dotted paths.

This package never imports torch: specs are plain data. One concept per module:

    rules      SpecError, the frozen base of every section, read-only-when rule tables
    data       DataSpec (the `data` section) and the dataset groups
    model      ModelSpec (the `model` section)
    train      TrainSpec (the `train` section)
    problems   the `problem` kinds and their union, Problem
    estimator  EstimatorSpec (the `estimator` section) and each kind's precision
    run        RunSpec, its cross-section checks, canonical_json and spec_id
    overrides  dotted paths and `--set` values: check_path, parse_override, with_values, describe_error
    grids      Sweep: grids, unions of grids (`also`) and overrides applied to them

Every name is importable from `biaslab.spec` itself, as before the package was split.
"""

from biaslab.spec.data import (
    DATASET_FIELDS,
    REGRESSION_DATASETS,
    SPATIAL_DATASETS,
    DatasetName,
    DataSpec,
    InputCorruption,
    ModularOperation,
    is_prime,
)
from biaslab.spec.estimator import ESTIMATOR_DTYPES, EstimatorKind, EstimatorSpec
from biaslab.spec.grids import Sweep
from biaslab.spec.model import TOKEN_MODELS, ModelSpec
from biaslab.spec.overrides import (
    NAMES_ITS_FIELD,
    NOT_SETTABLE,
    check_path,
    describe_error,
    parse_override,
    parse_value,
    settable_fields,
    with_values,
)
from biaslab.spec.overrides import _models_in  # noqa: F401  private, but tests/test_fuzz.py imports it from here
from biaslab.spec.problems import (
    CONNECTION_PATHS,
    BackwardError,
    BenignRegression,
    ConnectionPath,
    ConnectionPaths,
    GaussianFeatures,
    ImplicitRegularizer,
    LazyScaling,
    LeastSquares,
    MarginGeometry,
    MatrixCompletion,
    OrthogonalInputs,
    Polynomial,
    PowerLawFeatures,
    Problem,
    Separable,
    SparseRegression,
    Tabular,
)
from biaslab.spec.rules import ReadRule, SpecError
from biaslab.spec.run import PROBE_OPTIONS, UNHASHED_FIELDS, ProbeName, ProbeOptions, RunSpec, canonical_json
from biaslab.spec.train import FULL_BATCH_OPTIMIZERS, SGD_FAMILY, STEEPEST_DESCENT, TrainSpec

__all__ = [
    "BackwardError", "BenignRegression", "CONNECTION_PATHS", "ConnectionPath", "ConnectionPaths", "DATASET_FIELDS",
    "DataSpec", "DatasetName", "ESTIMATOR_DTYPES", "EstimatorKind", "EstimatorSpec", "GaussianFeatures",
    "ImplicitRegularizer", "InputCorruption", "LazyScaling", "LeastSquares", "MarginGeometry", "MatrixCompletion", "ModelSpec",
    "ModularOperation", "NAMES_ITS_FIELD", "NOT_SETTABLE", "OrthogonalInputs", "Polynomial", "PowerLawFeatures",
    "PROBE_OPTIONS", "ProbeName", "ProbeOptions", "Problem", "REGRESSION_DATASETS", "ReadRule", "RunSpec", "SGD_FAMILY", "SPATIAL_DATASETS", "STEEPEST_DESCENT", "FULL_BATCH_OPTIMIZERS",
    "Separable", "SparseRegression", "SpecError", "Sweep", "TOKEN_MODELS", "Tabular", "TrainSpec", "UNHASHED_FIELDS",
    "canonical_json", "check_path", "describe_error", "is_prime", "parse_override", "parse_value", "settable_fields",
    "with_values",
]  # fmt: skip
