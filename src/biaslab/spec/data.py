"""The `data` section of a run: which dataset, how much of it, and which corruptions to apply.

Contract: `DataSpec` holds every field a dataset loader (`biaslab.data.load`) reads. The fields of one dataset
(teacher's `dim`, modular's `modulus`, chebyshev's `degree`, ...) are refused away from their defaults under another
dataset, by the rule table `DATASET_FIELDS`. The dataset groups (`REGRESSION_DATASETS`, `SPATIAL_DATASETS`) are what
the run-level checks in `biaslab.spec.run` and the loaders agree on.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from biaslab.spec.rules import ReadRule, _Frozen, read_only_when_validator

DatasetName = Literal["mnist1d", "digits", "teacher", "mnist", "cifar10", "modular", "chebyshev"]
REGRESSION_DATASETS = ("chebyshev",)  # real-valued targets: squared loss only, no 0-1 error
InputCorruption = Literal["none", "shuffled_pixels", "random_pixels", "gaussian"]
ModularOperation = Literal["add", "sub", "mul", "div"]


def is_prime(n: int) -> bool:
    """Trial division; moduli here are small (at most a few thousand)."""
    return n >= 2 and all(n % k for k in range(2, int(n**0.5) + 1))


DATASET_FIELDS: tuple[ReadRule, ...] = (  # fields that one dataset reads: (field, the deciding field, values under which it is read)
    *((name, "name", ("teacher",)) for name in ("dim", "n_classes", "teacher_width")),
    ("modulus", "name", ("modular",)), ("operation", "name", ("modular",)),
    ("degree", "name", ("chebyshev",)),
    ("root", "name", ("mnist", "cifar10")), ("download", "name", ("mnist", "cifar10")),
    ("standardize", "name", ("mnist1d", "digits", "teacher", "mnist", "cifar10", "chebyshev")),  # not token ids
    ("seed", "name", ("mnist1d", "digits", "teacher", "mnist", "cifar10", "modular")),  # chebyshev: a fixed grid
    ("inputs", "name", ("mnist1d", "digits", "teacher", "mnist", "cifar10")),  # not token ids, not a 1-D grid
)
SPATIAL_DATASETS = ("mnist1d", "digits", "mnist", "cifar10")  # inputs shaped (channels, *positions): crops apply


class DataSpec(_Frozen):
    """Which data, how much of it, and which corruptions to apply (in the order: labels, then inputs)."""

    name: DatasetName = "mnist1d"
    n_train: int | None = Field(None, gt=0)  # None: the dataset's standard training size
    n_test: int | None = Field(None, gt=0)  # None: the dataset's standard test size
    label_noise: float = Field(0.0, ge=0.0, le=1.0)  # fraction of training labels replaced by uniform random ones
    inputs: InputCorruption = "none"  # what to do to the training and test inputs
    standardize: bool = True  # per-feature standardization with training statistics
    seed: int = Field(0, ge=0)  # data draw: split, generator, corruption; separate from the model seed
    root: str | None = None  # directory with the standard files (mnist, cifar10)
    download: bool = False  # fetch missing files (mnist, cifar10); needs a network
    # teacher: Gaussian inputs labelled by a random one-hidden-layer network
    dim: int = Field(20, gt=0)  # teacher input dimension
    n_classes: int = Field(10, ge=2)  # teacher classes
    teacher_width: int = Field(32, gt=0)
    # modular: every pair (a, b) of Z_p x Z_p (b != 0 for div) labelled c = a op b mod p, split by train_fraction
    modulus: int = Field(97, ge=3, le=10007)  # p, a prime (so that every b != 0 has an inverse)
    operation: ModularOperation = "add"  # add: a+b, sub: a-b, mul: a*b, div: a*b^(p-2) (b's modular inverse)
    train_fraction: float | None = Field(None, gt=0.0, lt=1.0)  # modular only: share of all pairs trained on; None: 0.5

    @field_validator("modulus")
    @classmethod
    def _modulus_is_prime(cls, value: int) -> int:
        if not is_prime(value):
            raise ValueError(f"the modulus must be a prime (Z_p a field, so division is defined), got {value}")
        return value

    @model_validator(mode="after")
    def _split_fields_match_the_dataset(self) -> "DataSpec":
        if self.name == "modular":
            if self.n_train is not None or self.n_test is not None:
                raise ValueError("data.n_train / data.n_test: the modular dataset splits its whole table by data.train_fraction; leave them unset")
            if self.inputs != "none":
                raise ValueError(f"data.inputs: the modular dataset's inputs are token ids; only 'none' is allowed, got {self.inputs!r}")
        elif self.train_fraction is not None:
            raise ValueError(f"data.train_fraction: only the modular dataset splits by fraction; {self.name} uses data.n_train / data.n_test")
        return self

    # chebyshev: x evenly spaced on [-1, 1], y = T_degree(x) (Cohen et al. 2021's chebyshev-5-20 regression)
    degree: int = Field(5, ge=0)  # degree of the Chebyshev polynomial of the first kind

    READ_ONLY_WHEN = DATASET_FIELDS

    _dataset_fields_match_the_dataset = read_only_when_validator("data")

    @model_validator(mode="after")
    def _regression_has_no_labels(self) -> "DataSpec":
        if self.name in REGRESSION_DATASETS and self.label_noise > 0:
            raise ValueError(f"data.label_noise: {self.name} is a regression dataset with no labels to corrupt; set it to 0")
        return self

