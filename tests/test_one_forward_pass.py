"""One forward pass per evaluation: the error, loss and margin probes share the model's outputs on each data set,
and the numbers are those of separate passes."""

from __future__ import annotations

from collections import Counter

import torch

import biaslab
from biaslab import probes
from biaslab.experiments.supervised import probe_hook, setup
from biaslab.runtime import generator
from biaslab.spec import DataSpec, ModelSpec, RunSpec, TrainSpec
from biaslab.train import fit

SPEC = RunSpec(
    data=DataSpec(name="teacher", dim=6, n_train=64, n_test=48), model=ModelSpec(width=16, depth=1),
    train=TrainSpec(lr=0.1, batch_size=16, max_steps=40, eval_every=10), probes=["norms", "path_norm", "margin"],
)  # fmt: skip


def count_passes(model: torch.nn.Module) -> Counter:
    """Forward calls by the number of examples they were given (every batch has 16; the sets have 64 and 48)."""
    passes: Counter = Counter()
    model.register_forward_hook(lambda module, inputs, output: passes.update([inputs[0].shape[0]]))
    return passes


def test_each_evaluation_runs_the_model_once_over_each_set_and_the_margins_equal_a_fresh_pass():
    data, model = setup(SPEC)
    passes = count_passes(model)
    result = fit(model, data, SPEC.train, generator(SPEC.seed, "batches"), probe_hook(SPEC, model, data))
    evaluations = len(result.history)
    assert evaluations == 5 and passes[64] == evaluations and passes[48] == evaluations  # no second pass for margins
    final = probes.normalized_margin(model, data.x_train, data.y_train)  # a pass of its own, outside any evaluation
    assert passes[64] == evaluations + 1
    assert {k: result.final[k] for k in final} == final  # bitwise: the shared outputs are the same outputs


def test_a_weight_changed_inside_the_block_means_a_new_pass():
    data, model = setup(SPEC)
    passes = count_passes(model)
    with probes.one_forward_pass():
        before = probes.margins(model, data.x_train, data.y_train)
        assert torch.equal(probes.margins(model, data.x_train, data.y_train), before) and passes[64] == 1
        with torch.no_grad():
            next(model.parameters()).mul_(2.0)
        after = probes.margins(model, data.x_train, data.y_train)
    assert passes[64] == 2 and not torch.equal(after, before)
    assert torch.equal(after, probes.margins(model, data.x_train, data.y_train))  # outside the block: no sharing


def test_the_cards_fit_margins_and_calibration_sections_share_one_pass_per_set():
    data, model = setup(SPEC)
    passes = count_passes(model)
    split = (data.x_train, data.y_train), (data.x_test, data.y_test)
    card = biaslab.probe(model, train=split[0], test=split[1], sections=["fit", "margins", "calibration"])
    assert {"fit", "margins", "calibration"} <= set(card.sections)
    assert passes[64] == 1 and passes[48] == 1, passes
