"""random-labels: the claim on made-up records, the dropout and random-crop options, and the MLP's permutation equivariance."""

from __future__ import annotations

import copy
import itertools

import pytest
import torch

from biaslab import data as datasets
from biaslab import models
from biaslab.data.augment import augment, random_crop
from biaslab.experiments import CATALOG, can_pool, run_spec
from biaslab.experiments.random_labels import condition, regularizers
from biaslab.runtime import generator
from biaslab.spec import DataSpec, ModelSpec, RunSpec, SpecError, Sweep, TrainSpec, with_values
from biaslab.store import RunRecord
from biaslab.sweep import group_populations
from biaslab.train import fit
from biaslab.train.population import fit_population

claim = CATALOG.get("random-labels").claim
CONDITIONS = [(p, "none") for p in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)] + [(0.0, k) for k in ("shuffled_pixels", "random_pixels", "gaussian")]


# ----------------------------------------------------------------------------- the claim on made-up records


def _record(dataset: str, kind: str, noise: float, inputs: str, seed: int, steps: float, train_error: float, test_error: float, **extra) -> RunRecord:
    spec = with_values(
        RunSpec(experiment="random-labels"),
        {"data.name": dataset, "data.label_noise": noise, "data.inputs": inputs, "model.kind": kind, "seed": seed} | extra,
    )
    final = {"steps": steps, "train_error": train_error, "test_error": test_error}
    curves = {"step": [0.0, steps], "train_loss": [2.3, 0.01]}
    return RunRecord(spec=spec.model_dump(mode="json"), spec_id=spec.spec_id, status="ok", final=final, curves=curves)


def _good_test_error(noise: float, inputs: str) -> float:
    if inputs in ("gaussian", "random_pixels"):
        return 0.9
    return 0.1 + 0.8 * noise


def _records(steps=None, train_error=None, test_error=None, mlp_shuffle=0.0, cnn_shuffle=0.25) -> list[RunRecord]:
    """Both datasets, every condition, 2 seeds (MLP); a third MLP seed and a CNN with 3 seeds on true and shuffled MNIST-1D."""
    steps = steps or (lambda noise, inputs: 1000 + 3000 * noise)
    train_error = train_error or (lambda noise, inputs: 0.0)
    test_error = test_error or _good_test_error
    shift = {"shuffled_pixels": mlp_shuffle}
    records = []
    for dataset, (noise, inputs), seed in itertools.product(("digits", "mnist1d"), CONDITIONS, (0, 1)):
        error = test_error(noise, inputs) + shift.get(inputs, 0.0) + 0.002 * seed
        records.append(_record(dataset, "mlp", noise, inputs, seed, steps(noise, inputs) + 10 * seed, train_error(noise, inputs), error))
    for inputs in ("none", "shuffled_pixels"):
        records.append(_record("mnist1d", "mlp", 0.0, inputs, 2, steps(0.0, inputs), 0.0, test_error(0.0, inputs) + shift.get(inputs, 0.0) + 0.001))
        for seed in (0, 1, 2):
            records.append(_record("mnist1d", "cnn", 0.0, inputs, seed, 2000, 0.0, 0.1 + (cnn_shuffle if inputs != "none" else 0.0) + 0.004 * seed))
    return records


def test_claim_passes_on_records_that_show_every_part():
    verdict = claim(_records())
    assert verdict.passed, verdict.reason
    assert verdict.numbers["digits.slowdown"] == pytest.approx(4005 / 1005)
    assert verdict.numbers["mnist1d.spearman_fraction_test_error"] == 1.0
    assert verdict.numbers["mnist1d.cnn.shuffle_cost"] == pytest.approx(0.25)


def test_claim_fails_when_a_condition_is_not_fit():
    verdict = claim(_records(train_error=lambda noise, inputs: 0.05 if inputs == "gaussian" else 0.0))
    assert not verdict.passed and "not fit to zero training error" in verdict.reason and "gaussian" in verdict.reason
    assert verdict.numbers["digits.conditions_fit"] == 8.0


def test_claim_fails_when_random_labels_are_not_slower():
    verdict = claim(_records(steps=lambda noise, inputs: 1000 + 500 * noise))  # 1.5x: a slowdown, but not "several times"
    assert not verdict.passed and "need >= 2x" in verdict.reason
    assert verdict.numbers["mnist1d.slowdown"] == pytest.approx(1505 / 1000)  # median of true labels over seeds 0, 1, 2: 1000


def test_claim_fails_when_test_error_does_not_rise_with_corruption():
    verdict = claim(_records(test_error=lambda noise, inputs: 0.9 if inputs == "gaussian" else 0.5 - 0.3 * noise + (0.4 if noise == 1 else 0)))
    assert not verdict.passed and "does not rise" in verdict.reason


def test_claim_fails_when_random_inputs_are_not_near_chance():
    verdict = claim(_records(test_error=lambda noise, inputs: 0.7 if inputs == "gaussian" else _good_test_error(noise, inputs)))
    assert not verdict.passed and "gaussian 0.701 is not within 0.05" in verdict.reason


def test_random_pixels_are_reported_but_not_judged():
    verdict = claim(_records(test_error=lambda noise, inputs: 0.6 if inputs == "random_pixels" else _good_test_error(noise, inputs)))
    assert verdict.passed and verdict.numbers["digits.test_error_random_pixels"] == pytest.approx(0.601)
    assert any("random pixels test error 0.601" in note for note in verdict.notes)


def test_claim_fails_when_shuffling_changes_the_mlp_or_spares_the_cnn():
    mlp = claim(_records(mlp_shuffle=0.1))
    assert not mlp.passed and "changed the MLP" in mlp.reason
    cnn = claim(_records(cnn_shuffle=0.0))
    assert not cnn.passed and "cost the CNN" in cnn.reason


def test_claim_fails_without_runs():
    empty = claim([])
    assert not empty.passed and empty.reason == "no finished unregularized MLP runs to judge"


def test_condition_and_regularizer_names():
    spec = RunSpec(experiment="random-labels")
    assert condition(spec) == "true labels" and regularizers(spec) == "none"
    assert condition(with_values(spec, {"data.label_noise": 0.4})) == "corrupt 0.4"
    assert condition(with_values(spec, {"data.label_noise": 1.0})) == "random labels"
    assert condition(with_values(spec, {"data.inputs": "shuffled_pixels"})) == "shuffled pixels"
    regularized = with_values(spec, {"train.weight_decay": 5e-4, "train.augment": "random_crop", "model.dropout": 0.5})
    assert regularizers(regularized) == "wd+dropout+crop"


# ----------------------------------------------------------------------------- spec fields


@pytest.mark.parametrize(
    "path, value, words",
    [
        ("model.dropout", 1.0, ["model.dropout", "less than 1"]),
        ("model.dropout", -0.1, ["model.dropout", "greater than or equal to 0"]),
        ("train.augment", "flip", ["train.augment", "'none'", "'random_crop'"]),
        ("train.crop_padding", 0, ["train.crop_padding", "greater than or equal to 1"]),
    ],
)
def test_bad_dropout_and_augment_values_name_the_field_and_what_is_allowed(path, value, words):
    with pytest.raises(SpecError) as error:
        with_values(RunSpec(), {path: value})
    assert all(word in str(error.value) for word in words), str(error.value)


def test_defaults_leave_old_specs_valid():
    spec = RunSpec.model_validate({"model": {"width": 8}, "train": {"lr": 0.1}})
    assert spec.model.dropout == 0.0 and spec.train.augment == "none"


# ----------------------------------------------------------------------------- random crop


def _brute_force_offsets(x: torch.Tensor, out: torch.Tensor, padding: int) -> list[tuple[int, ...]]:
    """For each example, the offsets (one per spatial axis) at which `out` is a window of the zero-padded `x`."""
    padded = torch.nn.functional.pad(x, [padding] * (2 * (x.ndim - 2)))
    found = []
    for i in range(x.shape[0]):
        matches = []
        for offset in itertools.product(range(2 * padding + 1), repeat=x.ndim - 2):
            window = padded[i][(slice(None),) + tuple(slice(o, o + s) for o, s in zip(offset, x.shape[2:]))]
            if torch.equal(window, out[i]):
                matches.append(offset)
        found.append(matches)
    return found


@pytest.mark.parametrize("shape", [(16, 1, 12), (16, 3, 6, 5)], ids=["1-D", "2-D"])
def test_random_crop_keeps_shapes_is_a_window_of_the_padded_input_and_is_deterministic(shape):
    x = torch.rand(shape, generator=torch.Generator().manual_seed(0)) + 1.0  # no zeros: windows are unambiguous
    out = random_crop(x, 2, generator(0, "batches"))
    assert out.shape == x.shape
    offsets = _brute_force_offsets(x, out, 2)
    assert all(len(m) == 1 for m in offsets)  # every example is exactly one window
    assert len({m[0] for m in offsets}) > 1  # and examples get their own offsets
    assert torch.equal(out, random_crop(x, 2, generator(0, "batches")))
    assert not torch.equal(out, random_crop(x, 2, generator(1, "batches")))


def test_augment_none_is_the_identity_and_flat_inputs_are_a_clear_error():
    x = torch.rand(4, 1, 8)
    assert augment(x, "none", 2, generator(0, "batches")) is x
    with pytest.raises(ValueError, match="train.augment"):
        random_crop(torch.rand(4, 8), 2, generator(0, "batches"))


def test_a_run_with_random_crops_is_deterministic_and_differs_from_one_without():
    spec = RunSpec(
        data=DataSpec(name="digits", n_train=100, n_test=50),
        model=ModelSpec(kind="cnn", width=8, depth=2, kernel_size=3),
        train=TrainSpec(batch_size=25, max_steps=20, eval_every=10, augment="random_crop", crop_padding=1),
    )
    first, second = run_spec(spec), run_spec(spec)
    assert first.status == "ok" and first.curves == second.curves
    plain = run_spec(with_values(spec, {"train.augment": "none", "train.crop_padding": 4}))
    assert plain.curves["train_loss"] != first.curves["train_loss"]


# ----------------------------------------------------------------------------- dropout


def _pair(dropout: float):
    spec = ModelSpec(kind="mlp", width=32, depth=2, dropout=dropout)
    return models.build(spec, (1, 10), 3, generator(0, "init"), dtype=torch.float64)


def test_dropout_is_off_in_eval_and_leaves_the_init_unchanged():
    with_dropout, without = _pair(0.5), _pair(0.0)
    for p, q in zip(with_dropout.parameters(), without.parameters()):
        assert torch.equal(p, q)  # the dropout seed is drawn after the weights
    x = torch.randn(20, 1, 10, dtype=torch.float64)
    with_dropout.eval()
    assert torch.equal(with_dropout(x), without(x))
    with_dropout.train()
    assert not torch.allclose(with_dropout(x), without(x))


def test_dropout_masks_are_deterministic_in_the_seed_and_never_use_the_global_rng():
    x = torch.randn(20, 1, 10, dtype=torch.float64)
    state = torch.random.get_rng_state()
    first, second = _pair(0.5).train(), _pair(0.5).train()
    assert torch.equal(first(x), second(x))
    assert torch.equal(torch.random.get_rng_state(), state)
    kept = (first.layers[0](x.flatten(1)).relu() != 0).sum()  # units that were active before dropout
    assert kept > 0


def test_dropout_scales_kept_units_by_one_over_keep_probability():
    layer = models.SeededDropout(0.25)
    layer.generator = torch.Generator().manual_seed(0)
    out = layer(torch.ones(10_000, dtype=torch.float64))
    kept = out[out != 0]
    assert torch.allclose(kept, torch.full_like(kept, 1 / 0.75))
    assert abs(kept.numel() / 10_000 - 0.75) < 0.02


def test_populations_refuse_dropout_and_augmentation_and_the_sweep_runs_them_alone():
    data = datasets.load(DataSpec(name="teacher", n_train=60, n_test=20, dim=6, n_classes=3), dtype=torch.float64)
    train = TrainSpec(batch_size=20, max_steps=4, eval_every=2)
    nets = [models.build(ModelSpec(width=8, dropout=0.5), data.in_shape, 3, generator(m, "init"), dtype=torch.float64) for m in range(2)]
    with pytest.raises(ValueError, match="dropout"):
        fit_population(nets, [data, data], [train, train], [generator(m, "batches") for m in range(2)])
    cropped = train.model_copy(update={"augment": "random_crop"})
    plain_nets = [models.build(ModelSpec(width=8), data.in_shape, 3, generator(m, "init"), dtype=torch.float64) for m in range(2)]
    with pytest.raises(ValueError, match="train.augment"):
        fit_population(plain_nets, [data, data], [cropped, cropped], [generator(m, "batches") for m in range(2)])
    base = RunSpec(experiment="random-labels", model=ModelSpec(width=8))
    specs = [with_values(base, {"seed": s} | extra) for s in (0, 1) for extra in ({}, {"model.dropout": 0.5}, {"train.augment": "random_crop"})]
    assert [can_pool(s) for s in specs[:3]] == [True, False, False]
    jobs = group_populations(specs, lambda s: True)
    assert sorted(len(job) for job in jobs) == [1, 1, 1, 1, 2]  # the two plain seeds together, the rest alone


# ----------------------------------------------------------------------------- why shuffled pixels cannot matter to an MLP


def test_an_mlp_on_shuffled_inputs_with_permuted_first_layer_trains_exactly_as_on_the_originals():
    """Permutation equivariance, checked exactly: the same trajectory to float64 rounding."""
    data = datasets.load(DataSpec(name="digits", n_train=120, n_test=60), dtype=torch.float64)
    permutation = torch.randperm(64, generator=torch.Generator().manual_seed(3))
    shuffle = lambda x: x.flatten(1)[:, permutation].reshape(x.shape)  # noqa: E731
    shuffled = datasets.Dataset(shuffle(data.x_train), data.y_train, shuffle(data.x_test), data.y_test, data.n_classes, data.noisy, "digits")
    original = models.build(ModelSpec(width=32), data.in_shape, 10, generator(0, "init"), dtype=torch.float64)
    permuted = copy.deepcopy(original)
    with torch.no_grad():
        permuted.layers[0].weight.copy_(original.layers[0].weight[:, permutation])  # W' x[P] = W x
    train = TrainSpec(lr=0.05, momentum=0.9, batch_size=30, max_steps=60, eval_every=20)
    a = fit(original, data, train, generator(0, "batches"))
    b = fit(permuted, shuffled, train, generator(0, "batches"))
    for r, s in zip(a.history, b.history):
        assert r == pytest.approx(s, rel=1e-10, abs=1e-12)
    torch.testing.assert_close(permuted.layers[1].weight, original.layers[1].weight, rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------- Sweep.also


def test_sweep_also_is_a_union_of_grids_and_overrides_reach_every_part():
    base = RunSpec(experiment="random-labels")
    sweep = Sweep(base=base, grid={"seed": (0, 1)}, also=(Sweep(base=base, grid={"model.kind": ("mlp", "cnn")}),))
    assert [(s.seed, s.model.kind) for s in sweep.expand()] == [(0, "mlp"), (1, "mlp"), (0, "mlp"), (0, "cnn")]
    again = Sweep.model_validate_json(sweep.model_dump_json())
    assert again == sweep
    changed = sweep.override({"train.lr": 0.2, "seed": [5, 6]})
    assert {s.train.lr for s in changed.expand()} == {0.2}
    assert [(s.seed, s.model.kind) for s in changed.expand()] == [(5, "mlp"), (6, "mlp"), (5, "mlp"), (6, "mlp"), (5, "cnn"), (6, "cnn")]  # a new axis varies fastest
    with pytest.raises(ValueError, match="also"):
        Sweep(base=base, also=(Sweep(base=RunSpec(experiment="other")),))


@pytest.mark.parametrize("preset", ["tiny", "quick", "paper"])
def test_presets_list_every_run_once_and_cover_every_condition(preset):
    specs = CATALOG.get("random-labels").sweep(preset).expand()
    assert len({s.spec_id for s in specs}) == len(specs)
    mlp_plain = [s for s in specs if s.model.kind == "mlp" and s.model.dropout == 0 and s.train.weight_decay == 0]
    for dataset in {s.data.name for s in specs if s.data.inputs == "gaussian"}:
        names = {condition(spec) for spec in mlp_plain if spec.data.name == dataset}
        assert len(names) == 9, names  # 6 corruption fractions and 3 input randomizations
