"""One changed value for every settable field of a run spec: what the field contract test sets, one at a time.

The value is derived from the field's type and bounds (a bool flipped, another
choice of a Literal, a number moved inside its range, a null given a value), so
a field added to the spec is covered without editing this file. Fields that a
test on this machine cannot change meaningfully are left out and say why.
"""

from __future__ import annotations

import typing
from typing import Any, Literal

from pydantic import BaseModel

from biaslab.spec import RunSpec

# not changed by the contract test, and why
NOT_VARIED = {
    "experiment": "names the catalog entry; not settable with --set",
    "device": "needs an accelerator this machine may lack; a CPU/GPU switch changes no result's meaning",
    "probes": "covered by test_probes_and_save_weights_are_honoured_or_refused",
    "save_weights": "covered by test_probes_and_save_weights_are_honoured_or_refused",
    "data.root": "a directory of standard files; only mnist and cifar10 read it (tested in test_data_files)",
    "data.download": "needs a network",
}

# a value for a field that is null in the spec (None means "the default rule"); by name, since types say too little
FOR_NULL = {
    "data.n_train": 64,
    "data.n_test": 64,
    "data.train_fraction": 0.3,
    "model.gain": 1.0,
    "model.readout_gain": 0.5,
    "train.batch_size": 8,
    "train.stop_zero_error_evals": 1,
    "train.stop_loss": 0.5,
    "estimator.max_leaf_nodes": 4,
    "problem.seed": 12345,
    "probe_options.n_eff_examples": 64,  # fewer than any tiny training set: a subset
    "problem.lr_unit": "absolute",  # not a seed the presets use: a draw of its own
}


# fields whose generic change would say nothing: a stopping rule that never fires, an optimizer identical on full batch
CHOSEN = {
    "train.stop_loss": lambda value: 1e3,  # any loss here is below it: the run stops at its first evaluation
    "train.optimizer": lambda value: "sgd" if value in ("adam", "adamw") else "adam",  # gd = full-batch sgd; adam = adamw at no decay
    "problem.n_points": lambda value: value + 2,  # even: half of each class
}


def field_changes(spec: RunSpec) -> list[tuple[str, Any]]:
    """(dotted path, a different valid-looking value) for every leaf field of `spec` and its set sections,
    plus each unset optional section (problem, estimator) set to its defaults."""
    changes: list[tuple[str, Any]] = []

    def walk(model: BaseModel, prefix: str) -> None:
        for name, field in type(model).model_fields.items():
            path, value = f"{prefix}{name}", getattr(model, name)
            if path in NOT_VARIED or name == "kind" and prefix.startswith("problem"):
                continue
            if isinstance(value, BaseModel):
                walk(value, f"{path}.")
            elif value is None and path in ("problem", "estimator"):
                changes.append((path, {"kind": "least_squares"} if path == "problem" else {"kind": "min_norm"}))
            else:
                changes.append((path, changed(path, field.annotation, field.metadata, value)))

    walk(spec, "")
    return changes


def changed(path: str, annotation: Any, metadata: list, value: Any) -> Any:
    """A value of the field's type, inside its bounds, different from `value`."""
    if path in CHOSEN:
        return CHOSEN[path](value)
    if value is None:
        return FOR_NULL[path]
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is Literal:
        return next(option for option in args[1:] + args[:1] if option != value)
    literal = next((a for a in args if typing.get_origin(a) is Literal), None)
    if literal is not None and isinstance(value, str):
        return next(option for option in typing.get_args(literal) if option != value)
    if isinstance(value, bool):
        return not value
    if isinstance(value, tuple):
        return _changed_tuple(path, value)
    if isinstance(value, int):  # halved, so that a budget, a batch or a period visibly changes a tiny run
        return next(c for c in (value // 2, value + 1, value - 1) if c != value and _inside(c, metadata))
    if isinstance(value, float):
        for candidate in (value / 2, value * 1.5, value + 0.1, value - 0.05):
            if candidate != value and _inside(candidate, metadata):
                return candidate
    raise AssertionError(f"{path}: no rule to change a {type(value).__name__} {value!r}; add one to field_variants.py")


def _changed_tuple(path: str, value: tuple) -> list:
    if path == "train.betas":
        return [0.8, 0.99]
    if path == "train.batch_sizes":
        return [4, None] if value != (4, None) else [8, None]
    raise AssertionError(f"{path}: no rule to change a list; add one to field_variants.py")


def _inside(number: float, metadata: list) -> bool:
    """Whether `number` satisfies the field's gt/ge/lt/le bounds."""
    for item in metadata:
        for attribute, ok in (("gt", lambda b: number > b), ("ge", lambda b: number >= b), ("lt", lambda b: number < b), ("le", lambda b: number <= b)):
            bound = getattr(item, attribute, None)
            if bound is not None and not ok(bound):
                return False
    return True
