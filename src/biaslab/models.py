"""Architectures and initializations: `build(spec, in_shape, n_out, generator) -> nn.Module`.

Modules are created without PyTorch's own initialization (`skip_init`) and then
initialized from the generator alone, so a model is a deterministic function of
its spec and seed and the caller's global RNG is never touched.

- MLP: flatten -> `depth` x (Linear(width) -> activation) -> Linear(n_out).
- CNN (1-D or 2-D by the input's rank): Conv(kernel_size, stride 2) then
  (depth - 1) x Conv(3, stride 2), each "same"-padded and followed by the
  activation, then Linear(n_out). With width 25, depth 3 and kernel 5 on
  MNIST-1D this is Greydanus & Kobak's CNN (40 -> 20 -> 10 -> 5, 125 -> 10).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from biaslab.registry import Registry
from biaslab.spec import ModelSpec

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}
GAINS = {"relu": math.sqrt(2.0), "tanh": 5.0 / 3.0, "gelu": math.sqrt(2.0)}


class MLP(nn.Module):
    """A fully connected network; `layers` are the Linear maps in the order they apply."""

    def __init__(
        self, in_features: int, width: int, depth: int, n_out: int, activation: str, bias: bool, readout_bias: bool = True
    ) -> None:
        super().__init__()
        sizes = [in_features] + [width] * depth + [n_out]
        biases = [bias] * depth + [bias and readout_bias]
        self.layers = nn.ModuleList(
            nn.utils.skip_init(nn.Linear, fan_in, fan_out, bias=b) for fan_in, fan_out, b in zip(sizes[:-1], sizes[1:], biases)
        )
        self.activation = ACTIVATIONS[activation]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (batch, *in_shape) -> (batch, n_out)
        x = x.flatten(1)
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):  # no slicing: a ModuleList slice builds a new ModuleList each call
            x = layer(x) if i == last else self.activation(layer(x))
        return x


class CNN(nn.Module):
    """Strided convolutions then one linear read-out; 1-D for (C, L) inputs, 2-D for (C, H, W)."""

    def __init__(
        self, in_shape: tuple[int, ...], width: int, depth: int, n_out: int, activation: str, bias: bool, kernel_size: int,
        readout_bias: bool = True,
    ) -> None:  # fmt: skip
        super().__init__()
        if len(in_shape) not in (2, 3):
            raise ValueError(f"model.kind: cnn needs inputs shaped (channels, length) or (channels, height, width), got {in_shape}")
        conv = nn.Conv1d if len(in_shape) == 2 else nn.Conv2d
        kernels = [kernel_size] + [3] * (depth - 1)
        channels = [in_shape[0]] + [width] * depth
        self.convs = nn.ModuleList(
            nn.utils.skip_init(conv, c_in, c_out, k, stride=2, padding=k // 2, bias=bias)
            for c_in, c_out, k in zip(channels[:-1], channels[1:], kernels)
        )
        spatial = list(in_shape[1:])
        for k in kernels:
            spatial = [(s + 2 * (k // 2) - k) // 2 + 1 for s in spatial]
        self.readout = nn.utils.skip_init(nn.Linear, width * math.prod(spatial), n_out, bias=bias and readout_bias)
        self.activation = ACTIVATIONS[activation]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (batch, C, *spatial) -> (batch, n_out)
        for conv in self.convs:
            x = self.activation(conv(x))
        return self.readout(x.flatten(1))


def _init_weight(weight: torch.Tensor, scheme: str, activation: str, g: torch.Generator, gain: float | None = None) -> None:
    """Draw `weight` in place; `gain` replaces the activation's gain for kaiming and xavier."""
    fan_out, fan_in = weight.shape[0], weight[0].numel()
    gain = GAINS[activation] if gain is None else gain
    if scheme == "kaiming":  # He et al. 2015, normal, fan-in
        std = gain / math.sqrt(fan_in)
    elif scheme == "xavier":  # Glorot & Bengio 2010, normal
        std = gain * math.sqrt(2.0 / (fan_in + fan_out))
    elif scheme == "normal":  # N(0, 1/fan_in): the "standard" parameterization of the theory papers
        std = 1.0 / math.sqrt(fan_in)
    else:  # "torch": PyTorch's default, U(-1/sqrt(fan_in), 1/sqrt(fan_in))
        bound = 1.0 / math.sqrt(fan_in)
        weight.uniform_(-bound, bound, generator=g)
        return
    weight.normal_(0.0, std, generator=g)


def _init_bias(bias: torch.Tensor, fan_in: int, scheme: str, g: torch.Generator) -> None:
    if scheme == "torch":
        bound = 1.0 / math.sqrt(fan_in)
        bias.uniform_(-bound, bound, generator=g)
    else:
        bias.zero_()


@torch.no_grad()
def initialize(model: nn.Module, spec: ModelSpec, g: torch.Generator) -> nn.Module:
    """Initialize every Linear/Conv layer in registration order, then scale weights by init_scale.

    The last layer registered is the read-out: it takes `spec.readout_gain` (when set) instead of `spec.gain`.
    """
    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))]
    for index, module in enumerate(layers):
        readout = index == len(layers) - 1
        gain = spec.readout_gain if readout and spec.readout_gain is not None else spec.gain
        _init_weight(module.weight, spec.init, spec.activation, g, gain)
        module.weight.mul_(spec.init_scale)
        if module.bias is not None:
            _init_bias(module.bias, module.weight[0].numel(), spec.init, g)
    return model


Builder = Callable[[ModelSpec, tuple[int, ...], int], nn.Module]
ARCHITECTURES: Registry[Builder] = Registry("model kind")
ARCHITECTURES.add("mlp", lambda s, in_shape, n_out: MLP(math.prod(in_shape), s.width, s.depth, n_out, s.activation, s.bias, s.readout_bias))
ARCHITECTURES.add("cnn", lambda s, in_shape, n_out: CNN(in_shape, s.width, s.depth, n_out, s.activation, s.bias, s.kernel_size, s.readout_bias))


def build(
    spec: ModelSpec,
    in_shape: tuple[int, ...],
    n_out: int,
    g: torch.Generator,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> nn.Module:
    """The model a spec describes, initialized from `g` on the CPU (so CPU and GPU runs start alike), then moved."""
    model = ARCHITECTURES.get(spec.kind)(spec, in_shape, n_out).to(dtype=dtype)
    return initialize(model, spec, g).to(device)
