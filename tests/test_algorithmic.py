"""The modular-arithmetic dataset and the token models: tables checked against Python's own arithmetic,
division through Fermat's inverse, deterministic splits, and the bad-input errors."""

from __future__ import annotations

import pytest
import torch

from biaslab import data as datasets
from biaslab import models
from biaslab.data.sources import modular_table
from biaslab.runtime import generator
from biaslab.spec import DataSpec, ModelSpec, RunSpec, SpecError, with_values

P = 13


def _inverse_by_search(b: int, p: int) -> int:
    """b^-1 mod p by trying every residue (independent of the Fermat power the source uses)."""
    return next(x for x in range(1, p) if (b * x) % p == 1)


@pytest.mark.parametrize(
    "operation, expected",
    [
        ("add", lambda a, b: (a + b) % P),
        ("sub", lambda a, b: (a - b) % P),
        ("mul", lambda a, b: (a * b) % P),
        ("div", lambda a, b: (a * _inverse_by_search(b, P)) % P),
    ],
)
def test_every_equation_of_the_table_is_right(operation, expected):
    pairs, results = modular_table(P, operation)
    assert len(results) == (P * (P - 1) if operation == "div" else P * P)
    assert len({tuple(pair) for pair in pairs.tolist()}) == len(results)  # each pair once
    for (a, b), c in zip(pairs.tolist(), results.tolist()):
        assert c == expected(a, b)


def test_division_leaves_out_zero_and_inverts_multiplication():
    pairs, results = modular_table(P, "div")
    assert (pairs[:, 1] != 0).all()
    assert ((results * pairs[:, 1]) % P == pairs[:, 0]).all()  # c * b = a


def test_split_is_a_partition_of_the_table_with_the_stated_fraction():
    spec = DataSpec(name="modular", modulus=P, operation="add", train_fraction=0.3)
    data = datasets.load(spec)
    assert data.x_train.dtype == torch.int64 and data.in_shape == (2,) and data.n_classes == P
    assert data.x_train.shape[0] == round(0.3 * P * P) and data.x_train.shape[0] + data.x_test.shape[0] == P * P
    together = {tuple(p) for p in torch.cat([data.x_train, data.x_test]).tolist()}
    assert len(together) == P * P  # disjoint and complete
    assert ((data.x_train[:, 0] + data.x_train[:, 1]) % P == data.y_train).all()


def test_split_is_deterministic_in_the_data_seed():
    spec = DataSpec(name="modular", modulus=P, train_fraction=0.5)
    first, again = datasets.load(spec), datasets.load(spec)
    assert torch.equal(first.x_train, again.x_train) and torch.equal(first.y_test, again.y_test)
    other = datasets.load(spec.model_copy(update={"seed": 1}))
    assert not torch.equal(first.x_train, other.x_train)


def test_default_fraction_is_a_half_and_labels_are_never_standardized():
    data = datasets.load(DataSpec(name="modular", modulus=P), dtype=torch.float64)
    assert data.x_train.shape[0] == round(0.5 * P * P) and data.x_train.dtype == torch.int64


@pytest.mark.parametrize("modulus", [9, 15, 100])
def test_a_composite_modulus_is_a_spec_error_naming_the_field(modulus):
    with pytest.raises(SpecError, match=r"data\.modulus.*prime"):
        with_values(RunSpec(), {"data.modulus": modulus})


def test_an_unknown_operation_lists_the_allowed_ones():
    with pytest.raises(SpecError, match=r"data\.operation.*'add'.*'sub'.*'mul'.*'div'"):
        with_values(RunSpec(), {"data.operation": "pow"})


def test_sizes_and_fractions_do_not_mix():
    modular = {"data.name": "modular", "model.kind": "token_mlp"}
    with pytest.raises(SpecError, match=r"data\.n_train.*train_fraction"):
        with_values(RunSpec(), modular | {"data.n_train": 100})
    with pytest.raises(SpecError, match=r"data\.train_fraction.*mnist1d"):
        with_values(RunSpec(), {"data.train_fraction": 0.5})
    with pytest.raises(SpecError, match=r"data\.train_fraction"):
        with_values(RunSpec(), modular | {"data.train_fraction": 1.0})


def test_token_data_needs_a_token_model_and_back():
    with pytest.raises(SpecError, match=r"model\.kind.*token_mlp or transformer"):
        with_values(RunSpec(), {"data.name": "modular"})
    with pytest.raises(SpecError, match=r"model\.kind"):
        with_values(RunSpec(), {"model.kind": "transformer"})
    with pytest.raises(SpecError, match=r"probes: 'fourier'.*token_mlp or transformer"):
        with_values(RunSpec(), {"probes": ["fourier"]})
    with pytest.raises(SpecError, match=r"model\.heads must divide"):
        with_values(RunSpec(), {"data.name": "modular", "model.kind": "transformer", "model.embed_dim": 10, "model.heads": 4})


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["token_mlp", "transformer"])
def test_token_models_are_deterministic_and_map_pairs_to_p_logits(kind):
    spec = ModelSpec(kind=kind, embed_dim=8, width=16, init="normal", **({"heads": 2} if kind == "transformer" else {}))
    build = lambda: models.build(spec, (2,), P, generator(0, "init"))  # noqa: E731
    first, again = build(), build()
    tokens = torch.tensor([[0, 1], [P - 1, 5]])
    assert first(tokens).shape == (2, P)
    assert torch.equal(first(tokens), again(tokens))
    assert models.token_embedding(first).shape == (P, 8)
    with pytest.raises(ValueError, match="pairs of token ids"):
        models.build(spec, (3,), P, generator(0, "init"))


def test_transformer_is_causal_so_the_first_operand_position_ignores_the_second():
    model = models.build(ModelSpec(kind="transformer", embed_dim=8, heads=2, width=16), (2,), P, generator(0, "init"))
    seen = {}
    model.blocks[0].attention.register_forward_hook(lambda module, inputs, output: seen.setdefault("out", output))
    model(torch.tensor([[3, 4]]))
    first = seen.pop("out")[0, 0]
    model(torch.tensor([[3, 9]]))
    assert torch.allclose(seen["out"][0, 0], first)  # position 0 does not see position 1


def test_embedding_init_is_normal_with_std_one_over_sqrt_dim_times_scale():
    spec = ModelSpec(kind="token_mlp", embed_dim=64, width=16, init_scale=3.0)
    model = models.build(spec, (2,), 101, generator(0, "init"))
    std = models.token_embedding(model).std().item()
    assert abs(std - 3.0 / 8.0) < 0.03
