"""A whole run, `RunSpec`, and its identity: `spec_id` is the SHA-256 of its canonical JSON.

Contract: a `RunSpec` says everything that decides a run's numbers (data, model, training, problem, estimator,
probes, seed, device, dtype); the checks here are those that span sections (token data needs a token model, crops
need positions, an estimator computes in its own precision, regression needs squared loss). `canonical_json`
leaves out every field at its default, so adding a field with a default that keeps the old behaviour keeps every
older spec_id; `UNHASHED_FIELDS` decide no number and are left out of the hash.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from biaslab.spec.data import REGRESSION_DATASETS, SPATIAL_DATASETS, DataSpec
from biaslab.spec.estimator import ESTIMATOR_DTYPES, EstimatorSpec
from biaslab.spec.model import TOKEN_MODELS, ModelSpec
from biaslab.spec.problems import Problem
from biaslab.spec.rules import _Frozen
from biaslab.spec.train import STEEPEST_DESCENT, TrainSpec

ProbeName = Literal["norms", "margin", "path_norm", "fourier", "effective_dim"]  # fourier: token models only (the embedding's spectrum over Z_p)


class ProbeOptions(_Frozen):
    """Settings of the probes that have any; each is read only when `probes` names its probe.

    effective_dim: N_eff(H, z) = sum_i lambda_i / (lambda_i + z) over the eigenvalues of the Hessian of the mean
    training loss (Maddox, Benton & Wilson 2020), the top n_eff_k by Lanczos plus stochastic Lanczos quadrature
    (n_eff_probes vectors x n_eff_steps steps) for the rest, on n_eff_examples training examples.
    """

    n_eff_z: float = Field(1.0, gt=0.0)  # z, the prior precision an eigenvalue is compared with (nats / weight^2)
    n_eff_k: int = Field(10, ge=1)  # top Hessian eigenvalues found exactly by Lanczos
    n_eff_probes: int = Field(3, ge=2)  # Rademacher vectors of the tail's quadrature (>= 2 for a standard error)
    n_eff_steps: int = Field(20, ge=1)  # Lanczos steps per quadrature vector
    n_eff_examples: int | None = Field(None, gt=0)  # a random subset of the training set (drawn from seed); None: all


PROBE_OPTIONS = {"effective_dim": ("n_eff_z", "n_eff_k", "n_eff_probes", "n_eff_steps", "n_eff_examples")}  # probe -> its settings


class RunSpec(_Frozen):
    """One run: everything that decides its numbers."""

    experiment: str = "custom"
    data: DataSpec = DataSpec()
    model: ModelSpec = ModelSpec()
    train: TrainSpec = TrainSpec()
    problem: Problem | None = None  # a solvable problem (experiments with exact references); None: data + model
    estimator: EstimatorSpec | None = None  # a model class fitted through biaslab.estimators; None: model + train
    probes: tuple[ProbeName, ...] = ()  # measured at every evaluation, beside errors and losses
    probe_options: ProbeOptions = ProbeOptions()  # settings of the probes named in `probes` (effective_dim)
    seed: int = Field(0, ge=0)  # model init and batch order
    save_weights: bool = False  # keep the trained weights in the store (safetensors), for `biaslab probe`
    device: str = "cpu"  # where the run trains: cpu, cuda, cuda:1, mps
    dtype: Literal["float32", "float64"] = "float32"

    @model_validator(mode="after")
    def _tokens_need_token_models(self) -> "RunSpec":
        if self.problem is None and (self.data.name == "modular") != (self.model.kind in TOKEN_MODELS):
            raise ValueError(
                f"model.kind: the modular dataset's inputs are token ids, read by {' or '.join(TOKEN_MODELS)} only; "
                f"got data.name={self.data.name!r} with model.kind={self.model.kind!r}"
            )
        if "fourier" in self.probes and self.model.kind not in TOKEN_MODELS:
            raise ValueError(f"probes: 'fourier' measures a token embedding; it needs model.kind {' or '.join(TOKEN_MODELS)}, got {self.model.kind!r}")
        return self

    @model_validator(mode="after")
    def _probe_options_need_their_probe(self) -> "RunSpec":
        for probe, names in PROBE_OPTIONS.items():
            for name in names:
                field = ProbeOptions.model_fields[name]
                if getattr(self.probe_options, name) != field.default and probe not in self.probes:
                    raise ValueError(f"probe_options.{name}: read only when probes holds {probe!r}, got probes {list(self.probes)}; leave it at its default {field.default!r}")
        return self

    @model_validator(mode="after")
    def _steepest_descent_needs_a_linear_model(self) -> "RunSpec":
        if self.train.optimizer in STEEPEST_DESCENT and getattr(self.problem, "kind", None) != "margin_geometry":
            raise ValueError(
                f"train.optimizer: {self.train.optimizer!r} steps a linear model on problem.kind 'margin_geometry' only "
                f"(optimizer-geometry); got problem.kind {getattr(self.problem, 'kind', None)!r}"
            )
        return self

    @model_validator(mode="after")
    def _crops_and_convolutions_need_positions(self) -> "RunSpec":
        if self.problem is not None or self.data.name in SPATIAL_DATASETS:
            return self
        if self.train.augment == "random_crop":
            raise ValueError(f"train.augment: random_crop shifts inputs along their positions; {self.data.name} has none (allowed with data.name {', '.join(SPATIAL_DATASETS)})")
        if self.model.kind == "cnn":
            raise ValueError(f"model.kind: a cnn convolves along the inputs' positions; {self.data.name} has none (allowed with data.name {', '.join(SPATIAL_DATASETS)})")
        return self

    @model_validator(mode="before")
    @classmethod
    def _estimator_precision_by_default(cls, data: Any) -> Any:
        """A spec that does not say its dtype gets the precision its estimator computes in, so it says the truth."""
        if isinstance(data, dict) and "dtype" not in data and data.get("estimator") is not None:
            estimator = data["estimator"]
            kind = estimator.get("kind", "min_norm") if isinstance(estimator, dict) else getattr(estimator, "kind", None)
            if kind in ESTIMATOR_DTYPES:
                data = data | {"dtype": ESTIMATOR_DTYPES[kind]}
        return data

    @model_validator(mode="after")
    def _estimators_compute_in_their_own_precision(self) -> "RunSpec":
        fixed = ESTIMATOR_DTYPES.get(self.estimator.kind) if self.estimator is not None else None
        if fixed is not None and self.dtype != fixed:
            raise ValueError(f"dtype: estimator.kind {self.estimator.kind!r} computes in {fixed} (scikit-learn / numpy), whatever the spec says; allowed: {fixed!r}")
        return self

    @model_validator(mode="after")
    def _regression_needs_squared_loss(self) -> "RunSpec":
        if self.data.name in REGRESSION_DATASETS and self.train.loss != "mse":
            raise ValueError(f"train.loss: {self.data.name} has real-valued targets; allowed: 'mse' (got {self.train.loss!r})")
        if self.data.name in REGRESSION_DATASETS and self.problem is None and self.train.stop_zero_error_evals is not None:
            raise ValueError(f"train.stop_zero_error_evals: {self.data.name} has real-valued targets and no 0-1 error to reach; leave it null")
        return self

    @property
    def spec_id(self) -> str:
        """SHA-256 (first 16 hex digits) of the canonical JSON of the fields that decide numbers; identical specs share an id.

        The UNHASHED_FIELDS decide no number, so they are left out: asking for weights does not rerun a finished
        run, and specs without them keep the ids they always had (a default is left out of the canonical JSON anyway).
        """
        hashed = self.model_copy(update={name: RunSpec.model_fields[name].default for name in UNHASHED_FIELDS})
        return hashlib.sha256(canonical_json(hashed).encode()).hexdigest()[:16]


UNHASHED_FIELDS = ("save_weights",)  # RunSpec fields that decide no number: not part of the spec_id


def canonical_json(spec: BaseModel) -> str:
    """Sorted keys, no whitespace, fields at their defaults left out: the same spec always gives the same string.

    Leaving defaults out is what keeps ids stable when a field is added later
    with a default that reproduces the old behaviour: old specs keep their ids
    and stores written before the addition still resume. A discriminator (`kind`)
    is always kept, so two problem kinds with default settings stay apart.
    """
    return json.dumps(_non_default(spec), sort_keys=True, separators=(",", ":"))


def _non_default(model: BaseModel) -> dict:
    """The model's JSON dump without fields equal to their defaults (recursively; `kind` kept)."""
    dumped = model.model_dump(mode="json")
    kept = {}
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            nested = _non_default(value)
            if nested or value != field.default:
                kept[name] = nested
        elif name == "kind" or field.is_required() or value != field.default:
            kept[name] = dumped[name]
    return kept
