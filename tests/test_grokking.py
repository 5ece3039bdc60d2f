"""Grokking: the Fourier progress measure on embeddings with a known spectrum, the l1 penalty's gradient
against hand updates, the claim checks and phase classification on made-up curves that pass and fail."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from biaslab import data as datasets
from biaslab import models, probes
from biaslab.experiments.grokking import first_step, grokking_verdict, half_rise_step, summarize
from biaslab.experiments.grokking_phase_diagram import classify, phase_verdict
from biaslab.runtime import generator
from biaslab.spec import DataSpec, ModelSpec, RunSpec, TrainSpec, with_values
from biaslab.store import RunRecord
from biaslab.train import fit, minimize
from biaslab.train.population import fit_population

P = 31


# ----------------------------------------------------------------------------- Fourier measure


def wave(frequency: int, p: int = P, phase: float = 0.0) -> torch.Tensor:
    return torch.cos(2 * math.pi * frequency * torch.arange(p, dtype=torch.float64) / p + phase)


def test_an_embedding_of_two_frequencies_has_all_its_energy_in_its_top_two():
    # column energies: amplitude 2 at f=3 (energy 4 * p^2/2) and amplitude 1 at f=7 (p^2/2), two columns at f=7
    embedding = torch.stack([2 * wave(3), wave(7, phase=0.4), wave(7, phase=1.3)], dim=1)  # (p, 3)
    energy = probes.frequency_energy(embedding)
    assert energy.shape == ((P + 1) // 2,)
    expected = torch.zeros_like(energy)
    expected[3], expected[7] = 4 * P**2 / 2, 2 * P**2 / 2
    assert torch.allclose(energy, expected, atol=1e-8)
    assert probes.fourier_concentration(embedding, 1)["fourier_top1"] == pytest.approx(4 / 6)
    assert probes.fourier_concentration(embedding, 2)["fourier_top2"] == pytest.approx(1.0)


def test_the_constant_embedding_is_frequency_zero_and_energy_obeys_parseval():
    constant = torch.full((P, 4), 0.5, dtype=torch.float64)
    energy = probes.frequency_energy(constant)
    assert energy[0] == pytest.approx(P**2 * 0.25 * 4) and energy[1:].abs().max() < 1e-9
    random = torch.randn(P, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert probes.frequency_energy(random).sum().item() == pytest.approx(P * random.square().sum().item())


def test_a_random_embedding_spreads_its_energy_and_the_probe_leaves_it_alone():
    random = torch.randn(P, 64, generator=torch.Generator().manual_seed(1))
    before = random.clone()
    share = probes.fourier_concentration(random, 5)["fourier_top5"]
    assert 5 / 16 * 0.9 < share < 0.5  # 16 frequencies of Z_31: near 5/16, a little above (the top ones)
    assert torch.equal(random, before)


def test_top_k_out_of_range_is_an_error():
    with pytest.raises(ValueError, match="top_k must be between 1 and 16"):
        probes.fourier_concentration(torch.randn(P, 4), 17)


# ----------------------------------------------------------------------------- l1 penalty


def test_l1_adds_lambda_times_sign_to_the_gradient_of_a_gd_step():
    w0 = torch.tensor([1.5, -0.5, 2.0, -3.0], dtype=torch.float64)
    target = torch.tensor([1.0, 1.0, -1.0, 0.0], dtype=torch.float64)
    lr, lam = 0.1, 0.3
    w = w0.clone().requires_grad_(True)
    minimize([w], lambda: 0.5 * (w - target).square().sum(), TrainSpec(optimizer="gd", batch_size=None, lr=lr, l1=lam, max_steps=1))
    expected = w0 - lr * ((w0 - target) + lam * torch.sign(w0))  # by hand
    assert torch.allclose(w.detach(), expected)


def test_l1_in_fit_shifts_every_parameter_by_lr_lambda_sign():
    data = datasets.load(DataSpec(name="modular", modulus=7), dtype=torch.float64)
    spec = ModelSpec(kind="token_mlp", embed_dim=4, width=8)
    lr, lam = 0.05, 0.2

    def one_step(l1: float) -> list[torch.Tensor]:
        model = models.build(spec, data.in_shape, data.n_classes, generator(0, "init"), dtype=torch.float64)
        fit(model, data, TrainSpec(optimizer="gd", batch_size=None, lr=lr, l1=l1, max_steps=1), generator(0, "batches"))
        return [p.detach() for p in model.parameters()]

    start = [p.detach() for p in models.build(spec, data.in_shape, data.n_classes, generator(0, "init"), dtype=torch.float64).parameters()]
    for plain, penalized, p0 in zip(one_step(0.0), one_step(lam), start):
        assert torch.allclose(plain - penalized, lr * lam * torch.sign(p0))


def test_populations_refuse_l1_instead_of_ignoring_it():
    data = datasets.load(DataSpec(name="modular", modulus=7))
    spec = ModelSpec(kind="token_mlp", embed_dim=4, width=8)
    models_ = [models.build(spec, data.in_shape, data.n_classes, generator(s, "init")) for s in (0, 1)]
    train = TrainSpec(optimizer="adamw", batch_size=None, l1=1e-3, max_steps=2)
    with pytest.raises(ValueError, match="train.l1"):
        fit_population(models_, [data, data], [train, train], [generator(s, "batches") for s in (0, 1)], [None, None])


def test_l1_must_not_be_negative():
    with pytest.raises(Exception, match=r"train\.l1"):
        with_values(RunSpec(), {"train.l1": -1.0})


# ----------------------------------------------------------------------------- curve summaries and the claims

STEPS = [float(s) for s in np.unique(np.round(np.logspace(0, 4, 60)))]


def ramp(center: float, low: float = 0.0, high: float = 1.0) -> list[float]:
    """A sigmoid in log-steps from `low` to `high`, half-way at `center`."""
    return [low + (high - low) / (1 + math.exp(-20 * (math.log10(s) - math.log10(center)))) for s in STEPS]


def record(
    weight_decay: float, train_at: float, test_at: float | None, fourier_at: float, norm_end: float, init_scale: float = 1.0, l1: float = 0.0, seed: int = 0
) -> RunRecord:
    spec = RunSpec(experiment="grokking", data=DataSpec(name="modular", modulus=P), model=ModelSpec(kind="token_mlp", init_scale=init_scale))
    spec = with_values(spec, {"train.weight_decay": weight_decay, "train.l1": l1, "seed": seed})
    norm = [20 + 30 * min(1.0, s / 300) - (30 + 20 - norm_end) * max(0.0, min(1.0, (s - 300) / 9000)) for s in STEPS]
    curves = {
        "step": STEPS,
        "train_error": [1 - a for a in ramp(train_at, 1 / P)],
        "test_error": [1 - a for a in (ramp(test_at, 1 / P) if test_at else [0.02] * len(STEPS))],
        "norm_frobenius": norm,
        "fourier_top5": ramp(fourier_at, 0.3, 0.9),
    }
    return RunRecord(spec=spec.model_dump(mode="json"), spec_id=spec.spec_id, status="ok", curves=curves)


def test_first_step_and_half_rise():
    assert first_step([1, 2, 5, 10], [0.1, 0.5, 0.995, 1.0]) == 5.0
    assert math.isnan(first_step([1, 2], [0.1, 0.2]))
    assert half_rise_step([1, 2, 5, 10], [0.2, 0.3, 0.7, 1.0]) == 5.0  # half-way from 0.2 to 1.0 is 0.6
    assert math.isnan(half_rise_step([1, 2], [0.5, 0.5]))


def test_summary_reads_the_delay_and_the_norm_peak():
    s = summarize(record(1.0, 100, 3000, 800, norm_end=25).curves)
    assert 100 < s["train_99_step"] < 200 and 3000 < s["test_99_step"] < 6000
    assert s["delay_factor"] == pytest.approx(s["test_99_step"] / s["train_99_step"])
    assert s["norm_peak"] == pytest.approx(50.0, abs=1.0) and s["norm_final"] == pytest.approx(25.0, abs=0.5)


GOOD = [record(1.0, 100, 3000, 800, 25), record(0.0, 100, None, 500, 60)]


def test_the_claim_passes_on_grokking_curves():
    verdict = grokking_verdict(GOOD)
    assert verdict.passed, verdict.reason
    assert verdict.numbers["delay_factor_min"] >= 10 and verdict.numbers["no_wd_max_test_accuracy"] <= 0.1


@pytest.mark.parametrize(
    "bad, parts",
    [
        ([record(1.0, 100, 500, 200, 25), GOOD[1]], ("delay",)),  # test follows train only ~4x later
        ([record(1.0, 100, None, 800, 25), GOOD[1]], ("delay", "Fourier")),  # never generalizes: no test rise to precede
        ([record(1.0, 100, 3000, 800, 48), GOOD[1]], ("weight norm",)),  # the norm hardly falls from its peak
        ([GOOD[0], record(0.0, 100, 5000, 800, 60)], ("without wd",)),  # generalizes without weight decay
        ([record(1.0, 100, 3000, 6000, 25), GOOD[1]], ("Fourier",)),  # the progress measure rises after test accuracy
    ],
)
def test_the_claim_fails_when_one_part_fails(bad, parts):
    verdict = grokking_verdict(bad)
    assert not verdict.passed
    failing = [chunk for chunk in verdict.reason.split(";") if "FAILS" in chunk]
    assert len(failing) == len(parts) and all(part in chunk for part, chunk in zip(parts, failing)), verdict.reason


def test_every_seed_must_show_it():
    short_delay = record(1.0, 100, 500, 200, 25, seed=1)
    verdict = grokking_verdict(GOOD + [short_delay])
    assert not verdict.passed and verdict.numbers["seeds"] == 2.0 and verdict.numbers["delay_factor_min"] < 10


def test_the_claim_needs_both_controls_and_ignores_other_conditions():
    alone = grokking_verdict([GOOD[0]])
    assert not alone.passed and alone.reason == "need finished standard-init runs with weight decay 1 and 0"
    extra = record(0.1, 100, None, 500, 90, init_scale=4.0)  # Omnigrok's cell: reported, not judged
    verdict = grokking_verdict(GOOD + [extra])
    assert verdict.passed and any("init x4" in note for note in verdict.notes)


# ----------------------------------------------------------------------------- phases


def test_phase_classification():
    assert classify(math.nan, math.nan) == "no learning"
    assert classify(math.nan, 50.0) == "no learning"
    assert classify(100.0, math.nan) == "memorization"
    assert classify(100.0, 1000.0) == "grokking"  # exactly 10x later
    assert classify(100.0, 999.0) == "comprehension"


def phase_record(fraction: float, weight_decay: float, test_at: float | None) -> RunRecord:
    base = record(weight_decay, 100, test_at, 500, 25)
    spec = with_values(RunSpec.model_validate(base.spec), {"data.train_fraction": fraction})
    return RunRecord(spec=spec.model_dump(mode="json"), spec_id=spec.spec_id, status="ok", curves=base.curves)


def test_phase_claim_passes_with_a_critical_fraction_and_falling_steps():
    records = [phase_record(f, d, t) for d in (0.0, 1.0) for f, t in ((0.2, None), (0.4, 4000), (0.6, 1500), (0.8, 600))]
    verdict = phase_verdict(records)
    assert verdict.passed, verdict.reason
    assert verdict.numbers["smallest_generalizing_fraction"] == 0.4 and verdict.numbers["spearman_wd1"] == -1.0


def test_phase_claim_fails_when_the_smallest_fraction_generalizes_or_steps_rise():
    everything = [phase_record(f, 1.0, t) for f, t in ((0.2, 5000), (0.4, 3000), (0.6, 1500))]
    verdict = phase_verdict(everything)
    assert not verdict.passed and verdict.numbers["smallest_generalizing_fraction"] == verdict.numbers["smallest_fraction"] == 0.2
    assert "smallest fraction 0.2: some cell generalizes; first generalizing fraction 0.2 [FAILS]" in verdict.reason
    rising = [phase_record(f, 1.0, t) for f, t in ((0.2, None), (0.4, 600), (0.6, 1500), (0.8, 4000))]
    verdict = phase_verdict(rising)
    assert not verdict.passed and verdict.numbers["spearman_wd1"] == 1.0
