"""Populations: M models of one architecture trained as one batched computation.

`fit_population(models, datasets, specs, generators, on_evals)` is `fit` for
many members at once. Members may differ in initialization,
training labels (a label-noise draw), inputs, learning rate, momentum, weight
decay and Adam betas; everything that shapes the computation (optimizer kind,
batch size, loss, budget, evaluation cadence, schedule) must be equal.

Each member is the same run it would be alone: its own batch order from its
own generator, its own optimizer state, its own stopping (a member that stops
is frozen while the others go on), its own History. The update rules are
written out to match `torch.optim.SGD` / `Adam` / `AdamW` step for step, so a
population agrees with a loop of `fit` calls to rounding (tested in float64).

Two paths compute the members' gradients and outputs; `choose_path` picks one and says why:

- baddbmm, for plain `models.MLP`s (nn.Linear layers, ReLU, Tanh or GELU shared by all members, with or
  without biases, no dropout): each weight stacked as (members, in, out), the forward pass one
  `torch.baddbmm` per layer (each member's batch (members, batch, in); a shared full batch expanded, not
  copied), the loss the sum over members of each member's mean loss (so each member's gradient is its own).
  With cross-entropy on class labels the backward pass is written out by hand from the ATen backward
  operations autograd itself calls, so the gradients are autograd's bit for bit without its graph and engine
  (a step at H = 16, M = 6: 0.26 against 0.42 ms; at H = 128 0.72 against 0.91; at H = 1024 even);
  other losses take one `torch.autograd.grad` call.
- vmap, for every other architecture: `torch.func` (`stack_module_state`, `functional_call`,
  `vmap(grad(...))`).

Both feed the same optimizer (`_Optimizer`), batch order, masking of stopped members, evaluations and hooks.
The parameters live in one (members, P) buffer (`_Layout`), and so do the gradients and the optimizer's
state: an optimizer step is a handful of operations however many layers there are (at H = 16, M = 6 a whole
step took 0.58 ms against 0.72 with one set of operations per parameter tensor; numbers unchanged, bitwise).
baddbmm is chosen for every plain MLP because it won or tied everywhere measured. Member-steps per second,
MNIST-1D shapes (40 inputs, 10 classes, batch 100), SGD with momentum, float32, one CPU thread (medians of
3, `benchmarks/strategies.py --paths-only`, on a shared 2-core machine at load average 2.4-3.0; one-thread
matmul peak 150 GFLOP/s):

    H     M   vmap    baddbmm  ratio   (fraction of peak at 6 x weights x batch per step)
    16    4   2408    8224     3.4x    (0.8% -> 2.7%)
    16    16  6501    17484    2.7x
    16    64  12996   30710    2.4x    (4.3% -> 10.1%)
    128   4   1831    4213     2.3x
    128   16  4189    7522     1.8x
    128   64  5509    8968     1.6x    (14% -> 23%)
    1024  4   802     1198     1.5x
    1024  16  964     1041     1.1x    (1.1-1.2x over three runs)
    1024  64  883     990      1.1x    (0.8-1.1x over three runs: within this method's noise)

At H=1024 the run-differencing above is noisy under load; timing the step alone (gradients, optimizer,
batch gather; no evaluations) in alternating 1-s windows gave baddbmm the win in every window: 1310 vs
1090 member-steps/s at M=16 (1.2x), 1013 vs 943 at M=64 (1.07x); and 36600 vs 14700 at H=16, M=64.
With the hand-written backward pass (below), on a quiet machine: 24830 vs 4465 member-steps/s at H=16, M=6
(5.6x) and 9498 vs 3239 at H=128, M=6 (2.9x, 21% of the one-thread peak).

The gain at small widths is per-call overhead (vmap's batching rules, functional_call) and, about half of it
at M=64, the cross-entropy layout (`_summed_member_losses`; gradients at H=16, M=64: vmap 3.6 ms, baddbmm
with a (members x n, classes) loss 2.6 ms, with the (members, classes, n) one 1.15 ms); at H=1024 both are
bound by elementwise passes over (members, batch, H) activations (ReLU and its backward, the bias copy)
and the optimizer's passes over the weights, at ~20% of the peak. The path is chosen on the CPU measurements alone: it is not measured on
CUDA, where both paths run (and agree) but the choice is the same.

Not supported, with a clear error: modules with buffers (BatchNorm running
statistics), random layers (dropout; `vmap` also runs with randomness="error")
batch augmentation (`train.augment`) and the l1 penalty (`train.l1`). The
rule of which runs may share a population lives here alone: `poolable(spec)`
says whether a run may join one at all, MEMBER_FIELDS which spec fields its
members may differ in (the sweep groups by everything else), and
`fit_population` refuses what `poolable` excludes with the same reasons.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, stack_module_state, vmap

from biaslab.data import Dataset
from biaslab.models import MLP
from biaslab.spec import ModelSpec, RunSpec, TrainSpec
from biaslab.train import LOSSES, Fit, OnEval, Row, cross_entropy, evaluation_steps, lr_factor, report, stop_reason

SHARED_FIELDS = (
    "optimizer", "batch_size", "loss", "max_steps", "eval_every", "eval_spacing", "eval_points",
    "schedule", "lr_decay", "decay_every", "stop_zero_error_evals", "stop_loss", "nesterov",
)  # fmt: skip
MEMBER_FIELDS = (
    "seed", "data.label_noise", "data.seed", "data.inputs", "train.lr", "train.momentum", "train.weight_decay",
    "train.betas", "model.init_scale", "model.init",
)  # fmt: skip  # RunSpec paths members of one population may differ in; all other fields must be equal
Params = dict[str, torch.Tensor]  # name -> (members, *shape) as the modules hold it; a path may keep its own layout (_Path)


def refusal(train: TrainSpec, dropout: float) -> str | None:
    """Why a run with this training and model dropout cannot join a population; None when it can."""
    if dropout > 0.0:
        return "fit_population: dropout draws a random mask per member and step, which vmap refuses; run these models with fit"
    if train.augment != "none":
        return f"train.augment: populations train unaugmented batches only, got {train.augment!r}; run these with fit"
    if train.l1 > 0.0:
        return "train.l1: populations do not apply an l1 penalty; train these runs one by one with fit"
    if train.optimizer in ("sam", "asam"):
        return f"train.optimizer: populations do not take sharpness-aware steps ({train.optimizer}); train these runs with fit"
    return None


def poolable(spec: RunSpec) -> bool:
    """Whether a run may train in a population (with others that differ from it only in MEMBER_FIELDS)."""
    return refusal(spec.train, spec.model.dropout) is None


def _check_compatible(models: Sequence[nn.Module], datasets: Sequence[Dataset], specs: Sequence[TrainSpec]) -> None:
    if not (len(models) == len(datasets) == len(specs)) or not models:
        raise ValueError("fit_population: give one model, dataset and train spec per member (at least one)")
    for field in SHARED_FIELDS:
        values = {getattr(s, field) for s in specs}
        if len(values) > 1:
            raise ValueError(f"train.{field}: members of a population must share it; got {sorted(map(str, values))}")
    shapes = {tuple((n, tuple(p.shape)) for n, p in m.named_parameters()) for m in models}
    if len(shapes) > 1:
        raise ValueError("fit_population: members must have the same architecture (parameter names and shapes)")
    if any(True for m in models for _ in m.buffers()):
        raise ValueError("fit_population: modules with buffers (e.g. BatchNorm running statistics) are not supported; use fit")
    dropout = max((layer.p for m in models for layer in m.modules() if isinstance(layer, nn.Dropout)), default=0.0)
    for reason in (refusal(s, dropout) for s in specs):
        if reason is not None:
            raise ValueError(reason)
    sizes = {(d.x_train.shape, d.x_test.shape) for d in datasets}
    if len(sizes) > 1:
        raise ValueError("fit_population: members' datasets must have the same shapes")


def _per_member(values: Sequence[float], like: torch.Tensor) -> torch.Tensor:
    """(members, 1): one hyperparameter per member, broadcast along a member's row of the flat buffer."""
    return torch.tensor(values, dtype=like.dtype, device=like.device).unsqueeze(1)


class _Layout(NamedTuple):
    """Where each parameter lives in one (members, P) buffer, P the parameters of one member.

    A population's parameters, gradients and optimizer state are each one such tensor: an optimizer step is a
    handful of operations whatever the number of layers, and selecting the live members is one `index_select`.
    `views` gives the parameters back by name as (members, *shape) views of the buffer, no copy.
    """

    names: tuple[str, ...]
    shapes: tuple[torch.Size, ...]  # one member's shape of each parameter
    offsets: tuple[int, ...]  # where each starts in a member's row

    @classmethod
    def of(cls, params: Params) -> "_Layout":
        shapes = tuple(t.shape[1:] for t in params.values())
        offsets = tuple(itertools.accumulate((s.numel() for s in shapes[:-1]), initial=0))
        return cls(tuple(params), shapes, offsets)

    def flatten(self, params: Params) -> torch.Tensor:
        """name -> (members, *shape) -> (members, P), copied into one new tensor."""
        return torch.cat([params[name].reshape(params[name].shape[0], -1) for name in self.names], dim=1)

    def views(self, flat: torch.Tensor) -> Params:
        """(members, P) -> name -> (members, *shape), views of `flat`."""
        return {name: flat[:, at : at + shape.numel()].view(-1, *shape) for name, shape, at in zip(self.names, self.shapes, self.offsets)}


class _Optimizer:
    """SGD (with momentum, Nesterov, coupled weight decay), Adam and AdamW on a population's flat (members, P)
    parameters, each hyperparameter a (members, 1) tensor; the same arithmetic as torch.optim's single-tensor
    path, element by element (so the flat layout changes no number)."""

    def __init__(self, flat: torch.Tensor, specs: Sequence[TrainSpec]) -> None:
        self.kind = specs[0].optimizer
        self.nesterov = specs[0].nesterov
        self.lr = _per_member([s.lr for s in specs], flat)
        self.momentum = _per_member([s.momentum for s in specs], flat)
        self.weight_decay = _per_member([s.weight_decay for s in specs], flat)
        self.beta1 = _per_member([s.betas[0] for s in specs], flat)
        self.beta2 = _per_member([s.betas[1] for s in specs], flat)
        self.uses_momentum = any(s.momentum != 0 for s in specs)  # decided once: no host sync in the step
        self.uses_weight_decay = any(s.weight_decay != 0 for s in specs)  # as torch.optim: no g + 0 * p when none has it
        self.state: dict[str, torch.Tensor] = {}  # "buf" (SGD momentum), "m" and "v" (Adam): each (members, P)
        self.steps = 0

    def step(self, p: torch.Tensor, g: torch.Tensor, factor: float, active: torch.Tensor, all_active: bool = False) -> torch.Tensor:
        """One step of every member: p, g (members, P) -> the new (members, P); a member where `active` is False
        keeps its parameters (`all_active`: every one is, known without a host sync)."""
        self.steps += 1
        lr = self.lr * factor
        updated = self._sgd(p, g, lr) if self.kind in ("gd", "sgd") else self._adam(p, g, lr)
        return updated if all_active else torch.where(active.unsqueeze(1), updated, p)

    def _sgd(self, p: torch.Tensor, g: torch.Tensor, lr: torch.Tensor) -> torch.Tensor:
        if self.uses_weight_decay:
            g = g + self.weight_decay * p
        if self.uses_momentum:
            buf = g.clone() if "buf" not in self.state else self.momentum * self.state["buf"] + g
            self.state["buf"] = buf
            g = g + self.momentum * buf if self.nesterov else buf
        return p - lr * g

    def _adam(self, p: torch.Tensor, g: torch.Tensor, lr: torch.Tensor) -> torch.Tensor:
        wd, b1, b2 = self.weight_decay, self.beta1, self.beta2
        if self.kind == "adamw":
            p = p * (1 - lr * wd)
        else:
            g = g + wd * p
        m, v = (self.state[k] if k in self.state else torch.zeros_like(p) for k in ("m", "v"))
        self.state["m"] = m = m + (g - m) * (1 - b1)
        self.state["v"] = v = v * b2 + (1 - b2) * g * g
        correction1 = 1 - b1**self.steps
        correction2_sqrt = (1 - b2**self.steps).sqrt()
        denom = v.sqrt() / correction2_sqrt + 1e-8
        return p - (lr / correction1) * m / denom


def _batch_indices(n: int, batch_size: int | None, generators: Sequence[torch.Generator], device: torch.device):
    """Endless (members, batch) index tensors: each member's own permutation per epoch, as `fit` draws them."""
    while True:
        if batch_size is None or batch_size >= n:
            yield None
            continue
        orders = torch.stack([torch.randperm(n, generator=g) for g in generators]).to(device)
        for start in range(0, n, batch_size):
            yield orders[:, start : start + batch_size]


def _shared_or_stacked(tensors: Sequence[torch.Tensor]) -> tuple[torch.Tensor, int | None]:
    """One tensor and in_dims None when every member has the same values; else stacked, in_dims 0."""
    first = tensors[0]
    if all(t is first or torch.equal(t, first) for t in tensors[1:]):
        return first, None
    return torch.stack(list(tensors)), 0


class _Path(NamedTuple):
    """How a population computes: per-member gradients of the batch losses, and outputs for evaluation.

    x is (n, ...) shared by every member when x_dim is None, else (members, n, ...); y is (members, n).
    `grads` and `outputs` take the parameters in the path's own layout: `own(params)` converts the modules'
    layout (name -> (members, *shape)) to it once, `modules(params)` converts back (views, no copy).
    """

    grads: Callable[[Params, torch.Tensor, int | None, torch.Tensor], Params]  # (params, x, x_dim, y) -> name -> gradient
    outputs: Callable[[Params, torch.Tensor, int | None], torch.Tensor]  # (params, x, x_dim) -> (members, n, n_out)
    own: Callable[[Params], Params]
    modules: Callable[[Params], Params]


def _same(params: Params) -> Params:
    return params


def _vmap_path(model: nn.Module, loss_fn) -> _Path:
    """Any module without buffers or randomness: `vmap(grad(functional_call))` over the stacked parameters."""
    base = copy.deepcopy(model).to("meta")

    def member_loss(p: Params, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return loss_fn(functional_call(base, p, (x,)), y)

    def member_outputs(p: Params, x: torch.Tensor) -> torch.Tensor:
        return functional_call(base, p, (x,))

    grads = {d: vmap(grad(member_loss), in_dims=(0, d, 0), randomness="error") for d in (0, None)}
    outputs = {d: vmap(member_outputs, in_dims=(0, d), randomness="error") for d in (0, None)}
    return _Path(lambda p, x, x_dim, y: grads[x_dim](p, x, y), lambda p, x, x_dim: outputs[x_dim](p, x), _same, _same)


def _baddbmm_path(model: MLP, loss_fn, by_hand: bool = True) -> _Path:
    """A plain MLP (see `_plain_mlp`) as batched matrix products over stacked weights.

    Its layout stores layer i's weight f"layers.{i}.weight" as (members, in, out), the right operand of `bmm`
    as it is (in `_fit`, a view of the flat buffer; see `_Layout`); biases stay (members, out). The batch
    loss is the sum over members of each member's mean loss, so each member's gradient is its own.
    With cross-entropy on class labels the gradients are computed by hand (`grads_by_hand`), bitwise equal to
    autograd's; any other loss (and `by_hand=False`, the reference tests compare with) takes one
    `torch.autograd.grad` call.
    """
    layers = [(f"layers.{i}.weight", None if layer.bias is None else f"layers.{i}.bias") for i, layer in enumerate(model.layers)]
    weights = {weight for weight, _ in layers}
    activation = model.activation
    activation_backward, backward_reads_input = _activation_backward(activation)

    def inputs_of(p: Params, x: torch.Tensor, x_dim: int | None) -> torch.Tensor:
        stacked = p[layers[0][0]].shape[0]  # the members given: all, or the live ones (see _live_grads)
        return x.flatten(1).expand(stacked, -1, -1) if x_dim is None else x.flatten(2)  # (members, n, in)

    def layer(p: Params, i: int, h: torch.Tensor) -> torch.Tensor:  # p[weight]: (members, in, out); p[bias]: (members, out)
        weight, bias = layers[i]
        return torch.bmm(h, p[weight]) if bias is None else torch.baddbmm(p[bias].unsqueeze(1), h, p[weight])  # (members, n, out)

    def forward(p: Params, x: torch.Tensor, x_dim: int | None) -> torch.Tensor:
        h = inputs_of(p, x, x_dim)
        for i in range(len(layers)):
            h = layer(p, i, h)
            h = h if i == len(layers) - 1 else activation(h)
        return h

    def grads_by_autograd(p: Params, x: torch.Tensor, x_dim: int | None, y: torch.Tensor) -> Params:
        leaves = {name: t.detach().requires_grad_() for name, t in p.items()}
        loss = _summed_member_losses(forward(leaves, x, x_dim), y, loss_fn)
        return dict(zip(leaves, torch.autograd.grad(loss, list(leaves.values()))))

    def grads_by_hand(p: Params, x: torch.Tensor, x_dim: int | None, y: torch.Tensor) -> Params:
        """Cross-entropy on class labels: the forward pass keeping what the backward pass reads, then the
        backward pass written out with the ATen backward operations autograd calls for this graph, on the same
        operands, so the gradients are autograd's bit for bit (tested) without its graph and engine. At
        M = 6, batch 100: 2x faster than autograd at H = 8-16, 1.3-1.4x at H = 64-128."""
        h = inputs_of(p, x, x_dim)
        inputs, saved = [], []  # each layer's input (members, n, in); what each activation's backward reads
        for i in range(len(layers)):
            inputs.append(h)
            z = layer(p, i, h)
            if i < len(layers) - 1:
                h = activation(z)
                saved.append(z if backward_reads_input else h)
        g = _summed_cross_entropy_backward(z, y)  # (members, n, classes)
        grads: Params = {}
        for i in reversed(range(len(layers))):
            weight, bias = layers[i]
            grads[weight] = inputs[i].transpose(1, 2).bmm(g)  # (members, in, out)
            if bias is not None:
                grads[bias] = g.sum(1, keepdim=True).squeeze(1)  # (members, out), as autograd reduces a broadcast
            if i > 0:
                g = activation_backward(g.bmm(p[weight].transpose(1, 2)), saved[i - 1])  # (members, n, in)
        return grads

    def grads(p: Params, x: torch.Tensor, x_dim: int | None, y: torch.Tensor) -> Params:
        takes_hand = by_hand and loss_fn is cross_entropy and not y.is_floating_point() and y.numel() < 2**24  # see _summed_cross_entropy_backward
        return (grads_by_hand if takes_hand else grads_by_autograd)(p, x, x_dim, y)

    def own(p: Params) -> Params:  # (members, out, in) -> (members, in, out) views
        return {name: t.transpose(1, 2) if name in weights else t for name, t in p.items()}

    def modules(p: Params) -> Params:  # (members, in, out) -> (members, out, in) views
        return {name: t.transpose(1, 2) if name in weights else t for name, t in p.items()}

    return _Path(grads, forward, own, modules)


def _activation_backward(activation: nn.Module) -> tuple[Callable[[torch.Tensor, torch.Tensor], torch.Tensor], bool]:
    """(backward, reads_input): backward(gradient at the output, saved) -> gradient at the input, the ATen
    operation autograd calls for this module; `saved` is the activation's input when reads_input, else its output."""
    if type(activation) is nn.ReLU:
        return (lambda g, out: torch.ops.aten.threshold_backward(g, out, 0)), False
    if type(activation) is nn.Tanh:
        return torch.ops.aten.tanh_backward, False
    if type(activation) is nn.GELU:
        return (lambda g, z: torch.ops.aten.gelu_backward(g, z, approximate=activation.approximate)), True
    raise ValueError(f"no hand-written backward for {type(activation).__name__}")  # _plain_mlp admits only these


def _summed_cross_entropy_backward(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The gradient of `_summed_member_losses` with cross-entropy (members x the mean over all members' rows of
    log-softmax's negative log-likelihood) at the outputs: out (members, n, classes), y (members, n) class labels
    -> (members, n, classes). Autograd's own steps: the mean's backward with total weight members x n (exact in
    floating point below 2^24 rows: `grads` takes autograd above), then log-softmax's, then the transpose back."""
    members, n = y.shape
    log_probs = torch.log_softmax(out.transpose(1, 2), 1)  # (members, classes, n), as _summed_member_losses
    scale, total = (torch.tensor(float(v), dtype=out.dtype, device=out.device) for v in (members, members * n))
    g = torch.ops.aten.nll_loss2d_backward(scale, log_probs.unsqueeze(3), y.unsqueeze(2), None, 1, -100, total)  # (members, classes, n, 1)
    return torch.ops.aten._log_softmax_backward_data(g.view(log_probs.shape), log_probs, 1, log_probs.dtype).transpose(1, 2)


def _summed_member_losses(out: torch.Tensor, y: torch.Tensor, loss_fn) -> torch.Tensor:
    """The sum over members of each member's mean loss: out (members, n, n_out), y (members, n).

    Every LOSSES entry is a mean over examples, so members x the mean over all members' rows is that sum.
    Cross-entropy reads the classes as dimension 1 of (members, n_out, n): torch's CPU log-softmax over a
    last dimension of 10 is ~4x slower (fwd + bwd at 64 x 100 rows: 1.6 ms against 0.4 ms, one thread).
    """
    members = out.shape[0]
    if loss_fn is cross_entropy and not y.is_floating_point():  # class indices (members, n)
        return members * F.cross_entropy(out.transpose(1, 2), y)  # (members, n_out, n) against (members, n)
    return members * loss_fn(out.flatten(0, 1), y.flatten(0, 1))


def _plain_mlp(models: Sequence[nn.Module]) -> str | None:
    """Why these members are not plain `models.MLP`s the baddbmm path reproduces exactly; None when they are."""
    if not all(type(m) is MLP for m in models):
        return f"{type(models[0]).__name__} is not a models.MLP"
    if not all(isinstance(m.dropout, nn.Identity) and all(type(layer) is nn.Linear for layer in m.layers) for m in models):
        return "an MLP with dropout or layers other than nn.Linear"
    activations = {repr(m.activation) for m in models}
    if len(activations) > 1 or type(models[0].activation) not in (nn.ReLU, nn.Tanh, nn.GELU):
        return f"activations {sorted(activations)}: baddbmm takes one of ReLU, Tanh, GELU shared by all members"
    return None


def batched_matmul(model: ModelSpec) -> bool:
    """Whether runs of this model spec train on the baddbmm path (`choose_path` takes it for every MLP without
    dropout: every activation a ModelSpec names is one the path computes), known before any model is built."""
    return model.kind == "mlp" and model.dropout == 0.0


def choose_path(models: Sequence[nn.Module]) -> tuple[str, str]:
    """("baddbmm" or "vmap", why): the batched-matmul path for plain MLPs, vmap for everything else.

    Width and population size do not enter: on one CPU thread baddbmm was 1.6-3.4x faster at widths 16-128
    and 1.07-1.5x at 1024 (the module docstring's numbers), so it is taken wherever it reproduces the model exactly.
    """
    reason = _plain_mlp(models)
    if reason is not None:
        return "vmap", reason
    return "baddbmm", "a plain MLP: stacked weights and batched matrix products"


def fit_population(
    models: Sequence[nn.Module],
    datasets: Sequence[Dataset],
    specs: Sequence[TrainSpec],
    generators: Sequence[torch.Generator],
    on_evals: Sequence[OnEval | None] | None = None,
) -> list[Fit]:
    """Train every member in place as `fit` would, as one batched computation (`choose_path`); one Fit per member."""
    _check_compatible(models, datasets, specs)
    return _fit(models, datasets, specs, generators, on_evals, choose_path(models)[0])


def _fit(
    models: Sequence[nn.Module],
    datasets: Sequence[Dataset],
    specs: Sequence[TrainSpec],
    generators: Sequence[torch.Generator],
    on_evals: Sequence[OnEval | None] | None,
    path_name: str,
) -> list[Fit]:
    """`fit_population` on checked members with the path named ("baddbmm" only for plain MLPs, "vmap" for any)."""
    spec, members = specs[0], len(models)
    on_evals = list(on_evals or [None] * members)
    loss_fn = LOSSES[spec.loss]
    x_train, x_train_dim = _shared_or_stacked([d.x_train for d in datasets])  # (n, ...) or (members, n, ...)
    x_test, x_test_dim = _shared_or_stacked([d.x_test for d in datasets])
    y_train = torch.stack([d.y_train for d in datasets])  # (members, n)
    y_test = torch.stack([d.y_test for d in datasets])
    n = y_train.shape[1]
    path = _baddbmm_path(models[0], loss_fn) if path_name == "baddbmm" else _vmap_path(models[0], loss_fn)
    own = path.own({k: v.detach() for k, v in stack_module_state(list(models))[0].items()})  # the path's layout
    layout = _Layout.of(own)
    flat = layout.flatten(own)  # (members, P): every member's parameters in one row

    optimizer = _Optimizer(flat, specs)
    factor = lr_factor(spec)
    steps_per_epoch = 1 if spec.batch_size is None else math.ceil(n / spec.batch_size)
    results = [Fit() for _ in range(members)]
    active = [True] * members
    streaks = [0] * members

    def evaluate(step: int) -> None:
        with torch.no_grad():
            params = layout.views(flat)
            train, test = path.outputs(params, x_train, x_train_dim), path.outputs(params, x_test, x_test_dim)
            metrics = _errors_and_losses(train, y_train, loss_fn) + _errors_and_losses(test, y_test, loss_fn)
            values = torch.stack(metrics, dim=1).tolist()  # (members, 4): one host sync
        for m in (m for m in range(members) if active[m]):
            row: Row = {"step": float(step), "epoch": step / steps_per_epoch, "lr": specs[m].lr * factor(step)}
            row |= dict(zip(("train_error", "train_loss", "test_error", "test_loss"), values[m]))
            if math.isfinite(row["train_loss"]) and on_evals[m] is not None:
                _load(models[m], path.modules(layout.views(flat)), m)
                row |= on_evals[m](models[m], step)
            results[m].history.append(row)

    def update_stopping() -> None:
        for m in (m for m in range(members) if active[m]):
            row = results[m].history[-1]
            streaks[m] = streaks[m] + 1 if row["train_error"] == 0.0 else 0
            active[m] = not results[m].stop(stop_reason(row["train_loss"], streaks[m], spec))

    evaluate(0)
    pending = evaluation_steps(spec)
    batch_stream = _batch_indices(n, spec.batch_size, generators, y_train.device)
    mask = torch.ones(members, dtype=torch.bool, device=y_train.device)
    live = None  # (live members,) indices once some member has stopped: only those are computed; None while all train
    for step in range(1, spec.max_steps + 1):
        idx = next(batch_stream)  # (members, batch) or None for the full batch
        if idx is None:
            grads = _live_grads(path, layout, flat, live, x_train, x_train_dim, y_train)
        else:
            grads = _live_grads(path, layout, flat, live, _member_batches(x_train, x_train_dim, idx), 0, y_train.gather(1, idx))
        flat = optimizer.step(flat, grads, factor(step - 1), mask, all_active=live is None)
        for m in (m for m in range(members) if active[m]):
            results[m].steps = step
        if step != pending[0]:
            continue
        pending.pop(0)
        evaluate(step)
        report(step, spec.max_steps, sum(results[m].history[-1]["train_loss"] for m in range(members) if active[m]) / sum(active))
        update_stopping()
        if not any(active):
            break
        mask = torch.tensor(active, device=y_train.device)
        live = None if all(active) else mask.nonzero().squeeze(1)
    for m in range(members):
        _load(models[m], path.modules(layout.views(flat)), m)
    return results


def _member_batches(x: torch.Tensor, x_dim: int | None, idx: torch.Tensor) -> torch.Tensor:
    """Each member's batch: x (n, ...) shared (x_dim None) or (members, n, ...), idx (members, batch) ->
    (members, batch, ...). One `index_select` over flat row numbers: advanced indexing (`x[idx]`) costs several
    times more at these sizes (about 38 against 5 us at 6 x 100 rows of 40)."""
    members, batch = idx.shape
    if x_dim is None:
        rows = idx.flatten()
    else:
        rows = (idx + x.shape[1] * torch.arange(members, device=idx.device).unsqueeze(1)).flatten()  # member m's row i: m * n + i
        x = x.flatten(0, 1)
    return x.index_select(0, rows).view(members, batch, *x.shape[1:])


def _live_grads(
    path: _Path, layout: _Layout, flat: torch.Tensor, live: torch.Tensor | None, x: torch.Tensor, x_dim: int | None, y: torch.Tensor
) -> torch.Tensor:
    """Every member's gradient as (members, P), computed for the live members only (`live`: their indices;
    None: all of them).

    A stopped member's gradient is zero and the optimizer's mask leaves it alone, so a population whose members
    stop at different steps costs the member-steps of its live members, not of all until the last one stops.
    x is (n, ...) shared (x_dim None) or (members, n, ...); y is (members, n).
    """
    if live is None:
        return layout.flatten(path.grads(layout.views(flat), x, x_dim, y))
    x_live = x if x_dim is None else x.index_select(0, live)
    part = layout.flatten(path.grads(layout.views(flat.index_select(0, live)), x_live, x_dim, y.index_select(0, live)))
    return torch.zeros_like(flat).index_copy_(0, live, part)


def _errors_and_losses(out: torch.Tensor, y: torch.Tensor, loss_fn) -> list[torch.Tensor]:
    """out (members, n, classes), y (members, n) -> [error (members,), loss (members,)]."""
    error = (out.argmax(dim=2) != y).to(out.dtype).mean(dim=1)
    return [error, vmap(loss_fn)(out, y)]


def _load(model: nn.Module, params: Params, member: int) -> None:
    """Copy one member's parameters into its module (for probes and for the caller)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(params[name][member])
