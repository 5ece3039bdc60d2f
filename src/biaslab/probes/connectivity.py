"""Paths between two solutions: barriers, trained Bezier curves, and permutation alignment by weight matching.

- `barrier(values)`: max_t v(t) - (v(0) + v(1)) / 2 along a sampled path (t = 0 and t = 1 its ends).
- `bezier`: the quadratic Bezier curve phi_theta(t) = (1-t)^2 w_a + 2 t (1-t) theta + t^2 w_b (Garipov et al. 2018,
  "Loss Surfaces, Mode Connectivity, and Fast Ensembling of DNNs"); `train_bend` fits its bend point theta by SGD on
  E_{t ~ U[0,1]} L(phi_theta(t)), one t drawn per minibatch, starting from the midpoint (w_a + w_b) / 2;
  `bezier_path` evaluates loss and error along the curve.
- `permutation_graph(model)`: which axes of which tensors a permutation of hidden units (MLP) or channels (CNN)
  acts on. Supported: biaslab's MLP (`layers`, a ModuleList of Linear maps with elementwise activations between)
  and CNN (`convs`, a ModuleList of Conv1d/Conv2d, then a Linear `readout` of the flattened channels). Anything
  else, and any model with batch normalization, is refused with a ValueError saying so.
- `weight_matching` (Ainsworth, Hayase & Srinivasa 2023, "Git Re-Basin", Alg. 1): for each hidden layer in turn
  (in a random order, repeated until no permutation changes), the Hungarian assignment
  (`scipy.optimize.linear_sum_assignment`, maximizing) on the sum of the similarities of the layer's incoming
  weights (and bias) and outgoing weights between model A and model B, the neighbouring layers' permutations
  held fixed. `permute` applies permutations to B's parameters; the permuted network computes the same function.

Linear paths and every evaluation reuse `probes.landscape` (`line`, `loss_and_error`: functional_call on
perturbed copies of the parameters, eval mode, no_grad); the module's own parameters are never changed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn
from torch.func import functional_call

from biaslab.probes.core import LossFn
from biaslab.probes.landscape import Params, Slice, loss_and_error, refuse_batch_norm

SUPPORTED = (
    "biaslab's MLP (model.kind mlp: a `layers` ModuleList of Linear maps) and CNN (model.kind cnn: a `convs` ModuleList "
    "of Conv1d/Conv2d then a Linear `readout`), without batch normalization"
)


# ---------------------------------------------------------------- barriers


def barrier(values: Sequence[float]) -> float:
    """max_t v(t) - (v(0) + v(1)) / 2 over a path sampled from t = 0 to t = 1 (0 or less: no barrier)."""
    v = np.asarray(values, dtype=float)
    if v.size < 2:
        raise ValueError(f"values: a path needs at least its two ends, got {v.size} value(s)")
    return float(np.max(v) - 0.5 * (v[0] + v[-1]))


# ---------------------------------------------------------------- Bezier curves


def bezier_point(start: Mapping[str, torch.Tensor], bend: Mapping[str, torch.Tensor], end: Mapping[str, torch.Tensor], t: float) -> Params:
    """(1-t)^2 start + 2 t (1-t) bend + t^2 end (differentiable in `bend`)."""
    a, b, c = (1.0 - t) ** 2, 2.0 * t * (1.0 - t), t**2
    return {name: a * start[name] + b * bend[name] + c * end[name] for name in start}


def bezier_path(
    model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor, start: Mapping[str, torch.Tensor],
    bend: Mapping[str, torch.Tensor], end: Mapping[str, torch.Tensor], ts: Sequence[float], batch_size: int = 4096,
) -> Slice:  # fmt: skip
    """Loss and error at each t of the quadratic Bezier curve from `start` (t=0) through `bend`'s pull to `end` (t=1)."""
    values = [loss_and_error(model, loss_fn, x, y, bezier_point(start, bend, end, float(t)), batch_size) for t in ts]
    return Slice(np.asarray(ts, dtype=float), None, np.array([v[0] for v in values]), np.array([v[1] for v in values]))


@dataclass(frozen=True)
class BendTraining:
    """How the bend point was fitted: SGD steps taken and the curve loss at the last draws."""

    steps: int
    final_loss: float  # mean minibatch loss at random t over the last epoch


def train_bend(
    model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor, start: Mapping[str, torch.Tensor],
    end: Mapping[str, torch.Tensor], generator: torch.Generator, epochs: int, batch_size: int, lr: float, momentum: float = 0.9,
) -> tuple[Params, BendTraining]:  # fmt: skip
    """Garipov et al.'s curve fitting: SGD on L(phi_theta(t)), t ~ U[0,1] and a minibatch drawn per step, theta from the midpoint.

    Minibatches are slices of a fresh permutation per epoch, and t a uniform draw, all from `generator` (on the CPU).
    The module's parameters are left untouched: the curve's points are swapped in with functional_call.
    """
    bend = {name: (0.5 * (start[name] + end[name])).detach().clone().requires_grad_(True) for name in start}
    optimizer = torch.optim.SGD(list(bend.values()), lr=lr, momentum=momentum)
    n = x.shape[0]
    was_training = model.training
    model.eval()  # no dropout while fitting the curve; the models here have no other train-mode behaviour
    steps, last_epoch = 0, []
    try:
        for _ in range(epochs):
            order = torch.randperm(n, generator=generator).to(x.device)
            last_epoch = []
            for first in range(0, n, batch_size):
                idx = order[first : first + batch_size]
                t = float(torch.rand((), generator=generator))
                loss = loss_fn(functional_call(model, bezier_point(start, bend, end, t), (x[idx],)), y[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                steps += 1
                last_epoch.append(loss.detach())
    finally:
        model.train(was_training)
    final = float(torch.stack(last_epoch).mean()) if last_epoch else float("nan")
    return {name: t.detach() for name, t in bend.items()}, BendTraining(steps, final)


# ---------------------------------------------------------------- permutations


@dataclass(frozen=True)
class PermutedTensor:
    """One weight (and its bias) and the groups of hidden units its output and input axes belong to (None: not permuted)."""

    weight: str
    bias: str | None
    out_group: int | None
    in_group: int | None


@dataclass(frozen=True)
class PermutationGraph:
    """The tensors a permutation acts on, and the size of each group of hidden units (a hidden layer's units or channels)."""

    tensors: tuple[PermutedTensor, ...]
    sizes: tuple[int, ...]


def permutation_graph(model: nn.Module) -> PermutationGraph:
    """The permutation structure of a biaslab MLP or CNN; ValueError for any other architecture or for batch norm."""
    refuse_batch_norm(model, "permutation alignment and interpolation", f"supported: {SUPPORTED}")
    chain = _layer_chain(model)
    if chain is None:
        raise ValueError(f"model: weight matching follows the layer graph of {SUPPORTED}; got {type(model).__name__}")
    names, modules = zip(*chain)
    covered = {f"{n}.{p}" for n, m in chain for p, _ in m.named_parameters()}
    if covered != {name for name, _ in model.named_parameters()}:
        raise ValueError(f"model: {type(model).__name__} has parameters outside its layer chain; supported: {SUPPORTED}")
    last = len(modules) - 1
    tensors = tuple(
        PermutedTensor(f"{name}.weight", f"{name}.bias" if module.bias is not None else None, i if i < last else None, i - 1 if i > 0 else None)
        for i, (name, module) in enumerate(chain)
    )
    sizes = tuple(module.weight.shape[0] for module in modules[:-1])
    return PermutationGraph(tensors, sizes)


def _layer_chain(model: nn.Module) -> list[tuple[str, nn.Module]] | None:
    """[(name, module)] in the order they apply, for the two supported layouts; None otherwise."""
    if type(model).__name__ == "MLP" and isinstance(getattr(model, "layers", None), nn.ModuleList):
        layers = list(model.layers)
        if len(layers) >= 2 and all(type(m) is nn.Linear for m in layers):
            return [(f"layers.{i}", m) for i, m in enumerate(layers)]
    if type(model).__name__ == "CNN" and isinstance(getattr(model, "convs", None), nn.ModuleList) and type(getattr(model, "readout", None)) is nn.Linear:
        convs = list(model.convs)
        if convs and all(type(m) in (nn.Conv1d, nn.Conv2d) for m in convs):
            return [(f"convs.{i}", m) for i, m in enumerate(convs)] + [("readout", model.readout)]
    return None


def _grouped(weight: torch.Tensor, in_size: int) -> torch.Tensor:
    """(out, in_size, rest) view of a Linear (out, in) or conv (out, in, *kernel) weight, or of a read-out of flattened channels."""
    return weight.reshape(weight.shape[0], in_size, -1)


def permute(params: Mapping[str, torch.Tensor], perms: Sequence[torch.Tensor], graph: PermutationGraph) -> Params:
    """Parameters with hidden unit i of group g taken from unit perms[g][i]: the same function, units reordered."""
    out = dict(params)
    for t in graph.tensors:
        w = params[t.weight]
        if t.out_group is not None:
            w = w[perms[t.out_group]]
            if t.bias is not None:
                out[t.bias] = params[t.bias][perms[t.out_group]]
        if t.in_group is not None:
            w = _grouped(w, graph.sizes[t.in_group])[:, perms[t.in_group]].reshape(w.shape)
        out[t.weight] = w
    return out


@dataclass(frozen=True)
class Matching:
    """Weight matching's result: permutations per group, B's permuted parameters, and passes over the layers."""

    perms: tuple[torch.Tensor, ...]
    aligned: Params
    passes: int


def _similarity(graph: PermutationGraph, group: int, a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor], perms: list[torch.Tensor]) -> torch.Tensor:
    """(size, size) sum over tensors touching `group` of <A's unit i, B's unit j>, the other groups of B already permuted."""
    size = graph.sizes[group]
    cost = torch.zeros(size, size, dtype=torch.float64)
    for t in graph.tensors:
        wa, wb = a[t.weight].detach().double().cpu(), b[t.weight].detach().double().cpu()
        if t.out_group == group:  # incoming weights of the group's units (B's input axis in its current order)
            wb = wb if t.in_group is None else _grouped(wb, graph.sizes[t.in_group])[:, perms[t.in_group]].reshape(wb.shape)
            cost += wa.flatten(1) @ wb.flatten(1).T
            if t.bias is not None:
                cost += torch.outer(a[t.bias].detach().double().cpu(), b[t.bias].detach().double().cpu())
        if t.in_group == group:  # outgoing weights: the next layer's columns (B's output axis in its current order)
            wb = wb if t.out_group is None else wb[perms[t.out_group]]
            cost += torch.einsum("oir,ojr->ij", _grouped(wa, size), _grouped(wb, size))
    return cost


def weight_matching(
    model: nn.Module, params_a: Mapping[str, torch.Tensor], params_b: Mapping[str, torch.Tensor], generator: torch.Generator, max_passes: int = 100
) -> Matching:
    """Ainsworth et al.'s weight matching: permutations of B's hidden units that maximize sum_l <W_l^A, P_l W_l^B P_{l-1}^T>.

    Coordinate ascent: each pass visits the groups in a random order (from `generator`) and solves the group's
    linear assignment with the others fixed; it stops after a pass that changes no permutation (or `max_passes`).
    """
    graph = permutation_graph(model)
    perms = [torch.arange(size) for size in graph.sizes]
    passes = 0
    for passes in range(1, max_passes + 1):
        changed = False
        for group in torch.randperm(len(graph.sizes), generator=generator).tolist():
            cost = _similarity(graph, group, params_a, params_b, perms)
            _, columns = linear_sum_assignment(cost.numpy(), maximize=True)
            new = torch.as_tensor(columns, dtype=torch.long)
            gain = float(cost[torch.arange(len(new)), new].sum() - cost[torch.arange(len(new)), perms[group]].sum())
            if not torch.equal(new, perms[group]) and gain > 1e-12 * max(1.0, float(cost.abs().max())):
                perms[group], changed = new, True
        if not changed:
            break
    device_perms = [p.to(next(iter(params_b.values())).device) for p in perms]
    return Matching(tuple(device_perms), permute(params_b, device_perms, graph), passes)
