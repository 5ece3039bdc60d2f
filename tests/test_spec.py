"""Tests for biaslab.spec: identity (spec_id), JSON round trips, sweeps, overrides and their errors.

Specs are plain data, so everything here is fast; the only subprocess checks that
spec_id does not depend on the interpreter that computed it.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import typing

import pytest
from pydantic import BaseModel, ValidationError

from biaslab.spec import (
    DataSpec,
    LeastSquares,
    Separable,
    ModelSpec,
    RunSpec,
    SpecError,
    Sweep,
    TrainSpec,
    UNHASHED_FIELDS,
    canonical_json,
    check_path,
    parse_override,
    parse_value,
    with_values,
)

BASE = RunSpec()

# One valid, non-default value for every leaf field of RunSpec. `extra` holds
# what must also change for the value to be valid (nesterov needs momentum).
ALTERNATIVES: dict[str, tuple[typing.Any, dict[str, typing.Any]]] = {
    "experiment": ("other", {}),
    "seed": (1, {}),
    "save_weights": (True, {}),
    "device": ("cuda", {}),
    "dtype": ("float64", {}),
    "probes": (["norms"], {}),
    "probe_options.n_eff_z": (0.1, {"probes": ["effective_dim"]}),
    "probe_options.n_eff_k": (20, {"probes": ["effective_dim"]}),
    "probe_options.n_eff_probes": (5, {"probes": ["effective_dim"]}),
    "probe_options.n_eff_steps": (40, {"probes": ["effective_dim"]}),
    "probe_options.n_eff_examples": (500, {"probes": ["effective_dim"]}),
    "problem": ({"kind": "separable"}, {}),
    "estimator": ({"kind": "random_features"}, {"dtype": "float64"}),
    "train.stop_loss": (1e-6, {}),
    "train.eval_spacing": ("log", {}),
    "train.eval_points": (10, {"train.eval_spacing": "log"}),
    "train.augment": ("random_crop", {}),
    "train.crop_padding": (2, {"train.augment": "random_crop"}),
    "model.dropout": (0.5, {}),
    "data.name": ("digits", {}),
    "data.n_train": (50, {}),
    "data.n_test": (60, {}),
    "data.label_noise": (0.25, {}),
    "data.inputs": ("gaussian", {}),
    "data.standardize": (False, {}),
    "data.seed": (1, {}),
    "data.root": ("/data", {"data.name": "mnist"}),
    "data.download": (True, {"data.name": "mnist"}),
    "data.dim": (21, {"data.name": "teacher"}),
    "data.n_classes": (3, {"data.name": "teacher"}),
    "data.teacher_width": (16, {"data.name": "teacher"}),
    "data.modulus": (59, {"data.name": "modular", "model.kind": "token_mlp"}),
    "data.operation": ("div", {"data.name": "modular", "model.kind": "token_mlp"}),
    "data.train_fraction": (0.3, {"data.name": "modular", "model.kind": "token_mlp"}),
    "data.degree": (3, {"data.name": "chebyshev", "train.loss": "mse"}),
    "model.kind": ("cnn", {}),
    "model.width": (101, {}),
    "model.depth": (2, {}),
    "model.activation": ("tanh", {}),
    "model.init": ("xavier", {}),
    "model.init_scale": (0.5, {}),
    "model.bias": (False, {}),
    "model.kernel_size": (3, {"model.kind": "cnn"}),
    "model.embed_dim": (64, {"data.name": "modular", "model.kind": "token_mlp"}),
    "model.heads": (8, {"data.name": "modular", "model.kind": "transformer"}),
    "model.gain": (1.9, {}),
    "model.readout_gain": (1.0, {}),
    "model.readout_bias": (False, {}),
    "train.optimizer": ("adam", {}),
    "train.lr": (0.1, {}),
    "train.momentum": (0.5, {}),
    "train.nesterov": (True, {"train.momentum": 0.5}),
    "train.weight_decay": (1e-4, {}),
    "train.betas": ([0.8, 0.99], {"train.optimizer": "adam"}),
    "train.batch_size": (None, {}),
    "train.loss": ("mse", {}),
    "train.schedule": ("cosine", {}),
    "train.lr_decay": (0.5, {"train.schedule": "step"}),
    "train.decay_every": (10, {"train.schedule": "step"}),
    "train.max_steps": (999, {}),
    "train.eval_every": (50, {}),
    "train.stop_zero_error_evals": (2, {}),
    "train.l1": (1e-4, {}),
    "train.batch_sizes": ([32, None], {}),
    "train.rho": (0.1, {"train.optimizer": "sam"}),
}


def leaf_paths(model: type[BaseModel] = RunSpec, prefix: str = "") -> list[str]:
    paths = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            paths += leaf_paths(annotation, f"{prefix}{name}.")
        else:
            paths.append(f"{prefix}{name}")
    return paths


def allowed_list(message: str) -> set[str]:
    """The names after 'allowed:' in an error message."""
    assert "allowed:" in message, message
    return {name.strip() for name in message.split("allowed:", 1)[1].split(",")}


def a_busy_spec() -> RunSpec:
    """A spec far from the defaults: None, tuples, strings, floats and bools all changed."""
    return RunSpec(
        experiment="width-sweep",
        data=DataSpec(name="teacher", n_train=123, n_test=None, label_noise=0.1, inputs="shuffled_pixels", standardize=False, seed=7, dim=9),
        model=ModelSpec(kind="mlp", width=17, depth=3, activation="gelu", init="normal", init_scale=0.3, bias=False),
        train=TrainSpec(optimizer="adamw", lr=3e-4, betas=(0.8, 0.95), weight_decay=0.01, batch_size=None, loss="mse", schedule="step"),
        probes=("norms", "margin"),
        seed=3,
        device="cuda:1",
        dtype="float64",
    )


# ----------------------------------------------------------------------------- identity and JSON


@pytest.mark.parametrize("spec", [BASE, a_busy_spec()], ids=["default", "busy"])
def test_json_round_trip_gives_an_equal_spec_with_the_same_id(spec: RunSpec) -> None:
    text = spec.model_dump_json()
    back = RunSpec.model_validate_json(text)
    assert back == spec
    assert back.spec_id == spec.spec_id
    assert back.model_dump_json() == text
    assert canonical_json(back) == canonical_json(spec)


def test_spec_id_is_16_hex_digits_of_the_sha256_of_canonical_json() -> None:
    spec = a_busy_spec()
    assert len(spec.spec_id) == 16
    int(spec.spec_id, 16)  # hex
    canonical = canonical_json(spec)
    assert " " not in canonical
    full = spec.model_dump(mode="json")
    for section, value in json.loads(canonical).items():  # a subset of the full dump: defaults are left out
        assert value == full[section] or all(full[section][k] == v for k, v in value.items())
    assert list(json.loads(canonical)) == sorted(json.loads(canonical))  # sorted keys


def test_spec_id_does_not_depend_on_key_order_or_construction_route() -> None:
    dumped = a_busy_spec().model_dump(mode="json")
    reversed_keys = {key: dumped[key] for key in reversed(list(dumped))}
    reversed_keys["train"] = {key: dumped["train"][key] for key in reversed(list(dumped["train"]))}
    assert RunSpec.model_validate(reversed_keys).spec_id == a_busy_spec().spec_id
    direct = RunSpec(train=TrainSpec(lr=0.1), model=ModelSpec(width=8))
    via_values = with_values(BASE, {"train.lr": "0.1", "model.width": "8"})
    assert direct == via_values and direct.spec_id == via_values.spec_id


def test_an_int_given_for_a_float_field_gives_the_same_spec_id() -> None:
    ids = {with_values(BASE, {"train.lr": value}).spec_id for value in (1, 1.0, "1", "1.0")}
    assert len(ids) == 1
    assert with_values(BASE, {"train.lr": 1}).train.lr == 1.0


def test_spec_id_is_the_same_in_another_process() -> None:
    specs = [BASE, a_busy_spec(), with_values(BASE, {"train.lr": 0.1, "data.label_noise": 0.15})]
    code = (
        "import json, sys\n"
        "from biaslab.spec import RunSpec\n"
        "print(json.dumps([RunSpec.model_validate_json(t).spec_id for t in json.loads(sys.argv[1])]))\n"
        "print(json.dumps(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))))\n"
    )
    argument = json.dumps([spec.model_dump_json() for spec in specs])
    for hash_seed in ("1", "12345"):  # string hashing differs between these interpreters
        env = os.environ | {"PYTHONHASHSEED": hash_seed}
        result = subprocess.run([sys.executable, "-c", code, argument], capture_output=True, text=True, env=env, timeout=60)
        assert result.returncode == 0, result.stderr
        ids_line, torch_line = result.stdout.strip().splitlines()
        assert json.loads(ids_line) == [spec.spec_id for spec in specs]
        assert json.loads(torch_line) == [], "biaslab.spec must not import torch"


def test_the_alternatives_table_covers_every_field() -> None:
    assert sorted(ALTERNATIVES) == sorted(leaf_paths())


@pytest.mark.parametrize("path", sorted(ALTERNATIVES))
def test_spec_id_changes_when_any_field_changes(path: str) -> None:
    """Every field that decides numbers changes the id; the unhashed ones (save_weights) leave it."""
    value, extra = ALTERNATIVES[path]
    before = with_values(BASE, extra)
    after = with_values(before, {path: value})
    assert after != before
    assert (after.spec_id == before.spec_id) == (path in UNHASHED_FIELDS)


def test_every_single_field_change_gives_a_distinct_id() -> None:
    ids = {BASE.spec_id}
    for path, (value, extra) in ALTERNATIVES.items():
        ids.add(with_values(BASE, extra | {path: value}).spec_id)
    assert len(ids) == len(ALTERNATIVES) - len(UNHASHED_FIELDS) + 1


# ----------------------------------------------------------------------------- sweeps


def test_expand_is_the_grid_product_with_the_last_axis_fastest() -> None:
    sweep = Sweep(base=BASE, grid={"seed": (0, 1), "model.width": (8, 16, 32), "train.lr": (0.1, 0.01)})
    specs = sweep.expand()
    assert len(specs) == 2 * 3 * 2
    got = [(s.seed, s.model.width, s.train.lr) for s in specs]
    assert got == [(seed, width, lr) for seed in (0, 1) for width in (8, 16, 32) for lr in (0.1, 0.01)]
    assert len({s.spec_id for s in specs}) == 12
    for spec in specs:  # the rest comes from the base
        assert spec.model_dump(exclude={"seed": True, "model": {"width"}, "train": {"lr"}}) == BASE.model_dump(
            exclude={"seed": True, "model": {"width"}, "train": {"lr"}}
        )


def test_expand_of_an_empty_grid_is_the_base() -> None:
    assert Sweep(base=a_busy_spec()).expand() == [a_busy_spec()]


def test_expand_keeps_identical_specs_deduplication_is_the_runners_job() -> None:
    specs = Sweep(base=BASE, grid={"seed": (0, 0, 1), "train.lr": (1, 1.0)}).expand()
    assert len(specs) == 6
    ids = [s.spec_id for s in specs]
    assert ids[0] == ids[1] == ids[2] == ids[3] and ids[4] == ids[5]
    assert len(set(ids)) == 2


def test_expand_validates_grid_values() -> None:
    sweep = Sweep(base=BASE, grid={"model.width": (8, -1)})
    with pytest.raises(SpecError, match=r"model\.width"):
        sweep.expand()


def test_a_grid_with_an_unknown_path_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"train\.lrr"):
        Sweep(base=BASE, grid={"train.lrr": (1,)})


def test_sweep_json_round_trip() -> None:
    sweep = Sweep(base=a_busy_spec(), grid={"seed": (0, 1), "model.width": (8, 16)})
    back = Sweep.model_validate_json(sweep.model_dump_json())
    assert back == sweep
    assert [s.spec_id for s in back.expand()] == [s.spec_id for s in sweep.expand()]


@pytest.fixture(scope="module")
def presets():
    from biaslab.experiments import CATALOG

    experiment = CATALOG.get("width-sweep")
    return {name: experiment.sweep(name) for name in ("tiny", "quick", "paper")}


def test_width_sweep_presets_expand_to_their_grid_products(presets) -> None:
    for sweep in presets.values():
        assert len(sweep.expand()) == math.prod(len(values) for values in sweep.grid.values())
    assert len(presets["tiny"].expand()) == 6
    assert len(presets["quick"].expand()) == 2 * 3 * 8
    assert len(presets["paper"].expand()) == 2 * 2 * 2 * 11
    tiny = presets["tiny"].expand()
    assert [(s.data.label_noise, s.model.width) for s in tiny] == [(n, w) for n in (0.0, 0.15) for w in (8, 64, 256)]
    assert all(s.experiment == "width-sweep" for s in tiny)


def test_unknown_preset_is_a_spec_error_listing_the_presets() -> None:
    from biaslab.experiments import CATALOG

    with pytest.raises(SpecError) as error:
        CATALOG.get("width-sweep").sweep("huge")
    assert "'huge'" in str(error.value)
    assert allowed_list(str(error.value)) == {"tiny", "quick", "paper"}


# ----------------------------------------------------------------------------- overrides


def test_with_values_coerces_strings_by_the_fields_type() -> None:
    spec = with_values(
        BASE,
        {"train.lr": "0.1", "train.max_steps": "200", "model.bias": "false", "train.optimizer": "adam", "data.label_noise": "0.5"},
    )
    assert spec.train.lr == 0.1 and isinstance(spec.train.lr, float)
    assert spec.train.max_steps == 200 and isinstance(spec.train.max_steps, int)
    assert spec.model.bias is False
    assert spec.train.optimizer == "adam"
    assert spec.data.label_noise == 0.5
    assert BASE.train.lr == 0.05  # the original is untouched


def test_with_values_can_replace_a_whole_sub_spec() -> None:
    spec = with_values(BASE, {"train": {"lr": 0.2}})
    assert spec.train == TrainSpec(lr=0.2)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("train.lr=0.05", ("train.lr", 0.05)),
        ("train.max_steps=10", ("train.max_steps", 10)),
        ("model.width=[8,16]", ("model.width", [8, 16])),
        ("train.batch_size=null", ("train.batch_size", None)),
        ("train.nesterov=true", ("train.nesterov", True)),
        ("train.optimizer=adam", ("train.optimizer", "adam")),
        (" train.lr = 0.1 ", ("train.lr", 0.1)),
        ("data.root=/a=b", ("data.root", "/a=b")),  # split at the first '='
        ('data.root="2024"', ("data.root", "2024")),  # a number-like string is quoted as JSON
    ],
)
def test_parse_override(text: str, expected: tuple) -> None:
    assert parse_override(text) == expected
    assert type(parse_override(text)[1]) is type(expected[1])


@pytest.mark.parametrize("text", ["trainlr", "=5", " =5", ""])
def test_malformed_override_is_a_spec_error(text: str) -> None:
    with pytest.raises(SpecError, match="KEY=VALUE"):
        parse_override(text)


def test_parse_value_falls_back_to_the_string() -> None:
    assert parse_value("sgd") == "sgd"
    assert parse_value("[1, 2]") == [1, 2]
    assert parse_value("abc") == "abc"


def test_override_with_a_json_list_replaces_a_grid_axis() -> None:
    sweep = Sweep(base=BASE, grid={"seed": (0, 1), "model.width": (8, 64, 256)})
    key, value = parse_override("model.width=[8,16]")
    changed = sweep.override({key: value})
    assert changed.grid == {"seed": (0, 1), "model.width": (8, 16)}
    assert [(s.seed, s.model.width) for s in changed.expand()] == [(0, 8), (0, 16), (1, 8), (1, 16)]
    assert sweep.grid["model.width"] == (8, 64, 256)  # the original sweep is untouched
    assert Sweep.override(sweep, {"model.width": [8, 16]}) == changed


def test_override_with_a_scalar_fixes_a_grid_axis_to_one_value() -> None:
    sweep = Sweep(base=BASE, grid={"seed": (0, 1), "model.width": (8, 64, 256)})
    changed = sweep.override({"model.width": 32})
    assert changed.grid["model.width"] == (32,)
    assert [s.model.width for s in changed.expand()] == [32, 32]


def test_override_off_the_grid_changes_the_base() -> None:
    sweep = Sweep(base=BASE, grid={"seed": (0, 1)})
    changed = sweep.override({"train.lr": "0.2", "train.batch_size": None})
    assert changed.grid == sweep.grid
    assert changed.base.train.lr == 0.2 and changed.base.train.batch_size is None
    assert all(s.train.lr == 0.2 for s in changed.expand())


def test_override_validates_every_combination_at_once() -> None:
    sweep = Sweep(base=BASE, grid={"model.width": (8, 16)})
    with pytest.raises(SpecError, match=r"model\.width"):
        sweep.override({"model.width": [8, -1]})


def test_override_of_a_preset_grid_axis(presets) -> None:
    tiny = presets["tiny"]
    changed = tiny.override({"model.width": [8, 16], "train.lr": 0.01})
    assert len(changed.expand()) == 2 * 1 * 2
    assert {s.train.lr for s in changed.expand()} == {0.01}


@pytest.mark.parametrize("apply", ["with_values", "override", "check_path"])
def test_unknown_field_names_the_path_and_lists_the_allowed_fields(apply: str) -> None:
    with pytest.raises(SpecError) as error:
        if apply == "with_values":
            with_values(BASE, {"train.lrr": 1})
        elif apply == "override":
            Sweep(base=BASE).override({"train.lrr": 1})
        else:
            check_path("train.lrr")
    message = str(error.value)
    assert "train.lrr" in message
    allowed = allowed_list(message)
    assert "lr" in allowed
    assert allowed == set(TrainSpec.model_fields)


def test_unknown_top_level_field_lists_the_top_level_fields() -> None:
    with pytest.raises(SpecError) as error:
        with_values(BASE, {"trian.lr": 1})
    assert "trian" in str(error.value)
    assert allowed_list(str(error.value)) == set(RunSpec.model_fields)


def test_unknown_key_inside_a_whole_sub_spec_lists_the_allowed_fields() -> None:
    with pytest.raises(SpecError) as error:
        with_values(BASE, {"train": {"lrr": 1}})
    assert "train.lrr" in str(error.value)
    assert allowed_list(str(error.value)) == set(TrainSpec.model_fields)


@pytest.mark.parametrize(
    "values, names",
    [
        ({"train.max_steps": "abc"}, ["train.max_steps", "abc"]),
        ({"train.max_steps": 1.5}, ["train.max_steps"]),
        ({"model.width": [8, 16]}, ["model.width"]),  # a list off the grid is not an axis
        ({"train.lr": -1}, ["train.lr", "-1"]),
        ({"train.lr": 0}, ["train.lr"]),
        ({"data.label_noise": 1.5}, ["data.label_noise", "1.5"]),
        ({"train.momentum": 1.0}, ["train.momentum"]),
        ({"seed": -1}, ["seed"]),
    ],
)
def test_wrong_type_or_out_of_range_names_the_field(values: dict, names: list[str]) -> None:
    with pytest.raises(SpecError) as error:
        with_values(BASE, values)
    for name in names:
        assert name in str(error.value)


def test_wrong_type_from_the_command_line() -> None:
    with pytest.raises(SpecError, match=r"train\.max_steps.*'abc'"):
        Sweep(base=BASE).override(dict([parse_override("train.max_steps=abc")]))


def test_literal_error_lists_the_choices() -> None:
    with pytest.raises(SpecError) as error:
        with_values(BASE, {"train.optimizer": "sgdd"})
    message = str(error.value)
    assert "train.optimizer" in message and "sgdd" in message
    for choice in ("'gd'", "'sgd'", "'adam'", "'adamw'"):
        assert choice in message


def test_gd_with_a_batch_size_is_an_error_and_without_one_is_fine() -> None:
    with pytest.raises(SpecError, match="batch_size"):
        with_values(BASE, {"train.optimizer": "gd"})
    assert with_values(BASE, {"train.optimizer": "gd", "train.batch_size": None}).train.optimizer == "gd"
    assert parse_override("train.batch_size=null")[1] is None


def test_nesterov_needs_momentum() -> None:
    with pytest.raises(SpecError, match="momentum"):
        with_values(BASE, {"train.nesterov": True})


@pytest.mark.parametrize("path, parent", [("train.lr.x", "train.lr"), ("seed.x", "seed"), ("probes.norms", "probes")])
def test_a_dotted_path_into_a_plain_field_is_a_spec_error(path: str, parent: str) -> None:
    with pytest.raises(SpecError) as error:
        check_path(path)
    assert parent in str(error.value) and "sub-fields" in str(error.value)
    with pytest.raises(SpecError):
        with_values(BASE, {path: 1})
    with pytest.raises(SpecError):
        Sweep(base=BASE, grid={"seed": (0, 1)}).override({path: 1})


def test_check_path_accepts_real_paths() -> None:
    for path in leaf_paths() + ["train", "data", "model"]:
        check_path(path)


# ----------------------------------------------------------------------------- frozen


def test_specs_are_frozen() -> None:
    spec = a_busy_spec()
    with pytest.raises(ValidationError):
        spec.seed = 5  # type: ignore[misc]
    with pytest.raises(ValidationError):
        spec.train.lr = 1.0  # type: ignore[misc]
    with pytest.raises(ValidationError):
        spec.data = DataSpec()  # type: ignore[misc]
    sweep = Sweep(base=spec)
    with pytest.raises(ValidationError):
        sweep.base = BASE  # type: ignore[misc]
    assert spec == a_busy_spec() and spec.spec_id == a_busy_spec().spec_id
    assert hash(spec) == hash(a_busy_spec())  # frozen specs are hashable


def test_unknown_constructor_keyword_is_rejected() -> None:
    with pytest.raises(ValidationError):
        TrainSpec(lrr=0.1)  # type: ignore[call-arg]


# ----------------------------------------------------------------------------- bugs


NON_FINITE = [
    ("train.lr", float("inf")),
    ("train.weight_decay", float("inf")),
    ("model.init_scale", float("inf")),
    ("train.betas", [float("nan"), 0.9]),
]


@pytest.mark.parametrize("path, value", NON_FINITE, ids=[p for p, _ in NON_FINITE])
def test_non_finite_floats_are_rejected(path: str, value) -> None:
    with pytest.raises(SpecError, match=path.replace(".", r"\.")):
        with_values(BASE, {path: value})


@pytest.mark.parametrize("path, value", NON_FINITE, ids=[p for p, _ in NON_FINITE])
def test_every_accepted_spec_survives_a_json_round_trip(path: str, value) -> None:
    try:
        spec = with_values(BASE, {path: value})
    except SpecError:
        return  # rejecting it is a fine fix too
    back = RunSpec.model_validate_json(spec.model_dump_json())
    assert back.spec_id == spec.spec_id


def test_an_empty_list_for_a_grid_axis_is_a_spec_error() -> None:
    sweep = Sweep(base=BASE, grid={"seed": (0, 1)})
    with pytest.raises(SpecError, match="seed"):
        sweep.override({"seed": []})


def test_spec_id_leaves_out_fields_at_their_defaults():
    """Adding a field with a default later must not change the ids of older specs."""
    assert canonical_json(RunSpec(seed=3)) == '{"model":{"kind":"mlp"},"seed":3}'
    explicit = RunSpec(seed=3, train=TrainSpec(lr=TrainSpec().lr))
    assert explicit.spec_id == RunSpec(seed=3).spec_id


def test_spec_id_keeps_discriminators_apart():
    assert RunSpec(problem=LeastSquares()).spec_id != RunSpec(problem=Separable()).spec_id
    assert RunSpec(problem=LeastSquares()).spec_id != RunSpec().spec_id
