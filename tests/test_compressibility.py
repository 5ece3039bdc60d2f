"""Pruning masks, rewinding, quantization levels, and the two landscape/compressibility claims on made-up records."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from biaslab.experiments import CATALOG
from biaslab.experiments.compressibility import ROUND_RATE, ROUNDS, TARGET_SPARSITY, compressibility_claim, make_permanent, rewind
from biaslab.experiments.loss_landscape import landscape_claim
from biaslab.probes import compression
from biaslab.spec import ModelSpec, RunSpec, TrainSpec
from biaslab.store import RunRecord


def _weights(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"a.weight": torch.randn(10, 7, generator=g), "b.weight": torch.randn(3, 10, generator=g)}


@pytest.mark.parametrize("scope", ["global", "layer"])
@pytest.mark.parametrize("sparsity", [0.0, 0.3, 0.5, 0.9, 0.99, 1.0])
def test_magnitude_masks_have_the_asked_sparsity_and_keep_the_largest(scope, sparsity):
    weights = _weights()
    masks = compression.magnitude_masks(weights, sparsity, scope)
    total = sum(w.numel() for w in weights.values())
    if scope == "global":
        assert sum(int(m.sum()) for m in masks.values()) == total - round(sparsity * total)
        kept = torch.cat([w[m].abs() for w, m in zip(weights.values(), masks.values())])
        dropped = torch.cat([w[~m].abs() for w, m in zip(weights.values(), masks.values())])
        if kept.numel() and dropped.numel():
            assert kept.min() >= dropped.max()
    else:
        for name, w in weights.items():
            assert int(masks[name].sum()) == w.numel() - round(sparsity * w.numel())
            if 0 < masks[name].sum() < w.numel():
                assert w[masks[name]].abs().min() >= w[~masks[name]].abs().max()


def test_iterative_pruning_prunes_only_among_kept_weights_and_reaches_the_target():
    weights = _weights()
    masks = None
    for _ in range(ROUNDS):
        previous = masks
        masks = compression.magnitude_masks(weights, ROUND_RATE, "layer", among=masks)
        if previous is not None:
            assert all(not (masks[n] & ~previous[n]).any() for n in masks)  # nothing revived
    assert compression.sparsity_of(masks) == pytest.approx(TARGET_SPARSITY, abs=0.03)  # rounding per layer and round


def test_random_masks_match_counts_per_layer_and_differ_from_magnitude():
    weights = _weights()
    masks = compression.magnitude_masks(weights, 0.8, "layer")
    random = compression.random_masks(masks, torch.Generator().manual_seed(1))
    assert {n: int(m.sum()) for n, m in random.items()} == {n: int(m.sum()) for n, m in masks.items()}
    assert any(not torch.equal(random[n], masks[n]) for n in masks)


def test_rewinding_restores_init_on_kept_weights_and_training_keeps_pruned_weights_zero():
    model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3))
    init = {n: p.detach().clone() for n, p in model.named_parameters()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)  # "trained" weights, different from init
    weights = {n: p.detach() for n, p in model.named_parameters() if p.ndim >= 2}
    masks = compression.magnitude_masks(weights, 0.6, "layer")
    rewind(model, init, masks)
    for name in masks:
        module = model[int(name.split(".")[0])]
        assert torch.equal(module.weight[masks[name]], init[name][masks[name]])
        assert torch.count_nonzero(module.weight[~masks[name]]) == 0
    assert torch.equal(model[0].bias, init["0.bias"])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = torch.randn(20, 5), torch.randint(0, 3, (20,))
    for _ in range(5):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    make_permanent(model, masks)
    assert all(torch.count_nonzero(model[int(n.split(".")[0])].weight[~masks[n]]) == 0 for n in masks)
    assert set(dict(model.named_parameters())) == set(init)  # hooks removed, plain parameters again


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 8])
def test_quantization_to_k_bits_has_at_most_2_to_the_k_levels_and_small_error(bits):
    w = torch.randn(40, 30, generator=torch.Generator().manual_seed(bits))
    q = compression.quantize_uniform(w, bits)
    assert torch.unique(q).numel() <= 2**bits
    step = (w.max() - w.min()) / (2**bits - 1)
    assert (q - w).abs().max() <= step / 2 + 1e-6  # nearest of evenly spaced levels
    assert q.shape == w.shape and q.dtype == w.dtype
    with pytest.raises(ValueError, match="bits"):
        compression.quantize_uniform(w, 0)


def test_sizes_count_bits_by_hand():
    masks = {"w": torch.tensor([True, False, False, True])}
    assert compression.sparse_bits(masks, other_values=1) == pytest.approx(math.log2(6) + 2 * 32 + 32)
    params = {"w": torch.zeros(4, 2), "b": torch.zeros(4)}
    assert compression.quantized_bits(params, 3, ["w"]) == 8 * 3 + 64 + 4 * 32


def test_bad_sparsity_and_scope_are_clear_errors():
    with pytest.raises(ValueError, match="sparsity"):
        compression.magnitude_masks(_weights(), 1.5)
    with pytest.raises(ValueError, match="scope.*global, layer"):
        compression.magnitude_masks(_weights(), 0.5, "row")


# ---------------------------------------------------------------- claims on made-up records


def _compress_record(width: int, seed: int, margin: float, removable: float) -> RunRecord:
    spec = RunSpec(experiment="compressibility", seed=seed, model=ModelSpec(width=width))
    final = {"ticket_margin": margin, "ticket_sparsity": 0.9, "ticket_test_error": 0.4, "random_mask_test_error": 0.4 + margin,
             "max_sparsity_global": removable, "max_sparsity_layer": removable, "min_bits": 4.0, "test_error": 0.35}  # fmt: skip
    return RunRecord(spec=spec.model_dump(mode="json"), spec_id=spec.spec_id, status="ok", final=final)


def test_compressibility_claim_passes_and_fails_on_made_up_records():
    good = [_compress_record(w, s, 0.05 + 0.01 * s, r) for w, r in ((16, 0.3), (64, 0.5), (256, 0.7)) for s in (0, 1)]
    verdict = compressibility_claim(good)
    assert verdict.passed and verdict.numbers["spearman_width_vs_removable"] == pytest.approx(1.0)
    small_margin = [_compress_record(w, s, 0.01, r) for w, r in ((16, 0.3), (64, 0.5), (256, 0.7)) for s in (0, 1)]
    verdict = compressibility_claim(small_margin)  # tickets beat random masks by 1 point (0.01), not the 2 needed
    assert not verdict.passed and verdict.numbers["ticket_claim_passed"] == 0.0 and verdict.numbers["ticket_margin_mean"] == pytest.approx(0.01)
    assert "exceeds random masks' by 1.00 points on average" in verdict.reason and "PASS needs >= 2" in verdict.reason
    shrinking = [_compress_record(w, s, 0.05, r) for w, r in ((16, 0.7), (64, 0.5), (256, 0.3)) for s in (0, 1)]
    verdict = compressibility_claim(shrinking)
    assert not verdict.passed and verdict.numbers["ticket_claim_passed"] == 1.0 and verdict.numbers["width_claim_passed"] == 0.0
    empty = compressibility_claim([])
    assert not empty.passed and empty.reason == "no finished runs to judge"


def _landscape_record(width: int, batch: int, seed: int, curvature: float, monotone: bool) -> RunRecord:
    spec = RunSpec(experiment="loss-landscape", seed=seed, model=ModelSpec(width=width), train=TrainSpec(batch_size=batch))
    final = {"slice_curvature": curvature, "line_monotone": float(monotone), "line_largest_bump": 0.0 if monotone else 0.1,
             "line_loss_init": 2.3, "hessian_top": 1.0, "train_error": 0.0, "test_error": 0.3}  # fmt: skip
    return RunRecord(spec=spec.model_dump(mode="json"), spec_id=spec.spec_id, status="ok", final=final)


def test_landscape_claim_passes_and_fails_on_made_up_records():
    good = [_landscape_record(w, b, s, c + 0.1 * s, True) for w, c in ((32, 5.0), (512, 2.0)) for b in (32, 512) for s in (0, 1, 2)]
    verdict = landscape_claim(good)
    assert verdict.passed and verdict.numbers["fraction_monotone"] == 1.0
    one_bump = good[:-1] + [_landscape_record(512, 512, 2, 2.2, False)]
    verdict = landscape_claim(one_bump)
    assert not verdict.passed and verdict.numbers["fraction_monotone"] == pytest.approx(11 / 12)
    overlapping = [_landscape_record(w, 32, s, c + s, True) for w, c in ((32, 3.0), (512, 2.0)) for s in (0, 1, 2)]  # wide max 4 > narrow min 3
    verdict = landscape_claim(overlapping)
    assert not verdict.passed and verdict.numbers["curvature_claim_passed"] == 0.0 and verdict.numbers["line_claim_passed"] == 1.0


def test_both_experiments_are_registered():
    assert {"loss-landscape", "compressibility"} <= set(CATALOG.names())
