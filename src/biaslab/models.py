"""Architectures and initializations: `build(spec, in_shape, n_out, generator) -> nn.Module`.

Modules are created without PyTorch's own initialization (`skip_init`) and then
initialized from the generator alone, so a model is a deterministic function of
its spec and seed and the caller's global RNG is never touched.

- MLP: flatten -> `depth` x (Linear(width) -> activation) -> Linear(n_out).
- CNN (1-D or 2-D by the input's rank): Conv(kernel_size, stride 2) then
  (depth - 1) x Conv(3, stride 2), each "same"-padded and followed by the
  activation, then Linear(n_out). With width 25, depth 3 and kernel 5 on
  MNIST-1D this is Greydanus & Kobak's CNN (40 -> 20 -> 10 -> 5, 125 -> 10).
- Dropout (`model.dropout` > 0): after every hidden activation, in training mode
  only (inverted dropout, Srivastava et al. 2014). Its masks come from a
  generator of its own, seeded from the init generator after the weights are
  drawn, so a run with dropout is deterministic in its seed and a run without
  it draws exactly what it did before.
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


class SeededDropout(nn.Dropout):
    """Inverted dropout whose masks are drawn from its own `torch.Generator`, never the global RNG.

    Identity in eval mode and for p = 0. `generator` is set by `build` (None until
    then: a training-mode forward pass without it is an error, not a silent global draw).
    """

    def __init__(self, p: float) -> None:
        super().__init__(p)
        self.generator: torch.Generator | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if self.generator is None:
            raise RuntimeError("SeededDropout: no generator set; build the model with models.build")
        keep = torch.rand(x.shape, generator=self.generator, device=self.generator.device) >= self.p
        return x * keep.to(device=x.device, dtype=x.dtype) / (1.0 - self.p)


class MLP(nn.Module):
    """A fully connected network; `layers` are the Linear maps in the order they apply."""

    def __init__(self, in_features: int, width: int, depth: int, n_out: int, activation: str, bias: bool, dropout: float = 0.0) -> None:
        super().__init__()
        sizes = [in_features] + [width] * depth + [n_out]
        self.layers = nn.ModuleList(
            nn.utils.skip_init(nn.Linear, fan_in, fan_out, bias=bias) for fan_in, fan_out in zip(sizes[:-1], sizes[1:])
        )
        self.activation = ACTIVATIONS[activation]()
        self.dropout = SeededDropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (batch, *in_shape) -> (batch, n_out)
        x = x.flatten(1)
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):  # no slicing: a ModuleList slice builds a new ModuleList each call
            x = layer(x) if i == last else self.dropout(self.activation(layer(x)))
        return x


class CNN(nn.Module):
    """Strided convolutions then one linear read-out; 1-D for (C, L) inputs, 2-D for (C, H, W)."""

    def __init__(
        self, in_shape: tuple[int, ...], width: int, depth: int, n_out: int, activation: str, bias: bool, kernel_size: int, dropout: float = 0.0
    ) -> None:
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
        self.readout = nn.utils.skip_init(nn.Linear, width * math.prod(spatial), n_out, bias=bias)
        self.activation = ACTIVATIONS[activation]()
        self.dropout = SeededDropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (batch, C, *spatial) -> (batch, n_out)
        for conv in self.convs:
            x = self.dropout(self.activation(conv(x)))
        return self.readout(x.flatten(1))


def _init_weight(weight: torch.Tensor, scheme: str, activation: str, g: torch.Generator) -> None:
    fan_out, fan_in = weight.shape[0], weight[0].numel()
    if scheme == "kaiming":  # He et al. 2015, normal, fan-in
        std = GAINS[activation] / math.sqrt(fan_in)
    elif scheme == "xavier":  # Glorot & Bengio 2010, normal
        std = GAINS[activation] * math.sqrt(2.0 / (fan_in + fan_out))
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
    """Initialize every Linear/Conv layer in registration order, then scale weights by init_scale."""
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            _init_weight(module.weight, spec.init, spec.activation, g)
            module.weight.mul_(spec.init_scale)
            if module.bias is not None:
                _init_bias(module.bias, module.weight[0].numel(), spec.init, g)
    return model


Builder = Callable[[ModelSpec, tuple[int, ...], int], nn.Module]
ARCHITECTURES: Registry[Builder] = Registry("model kind")
ARCHITECTURES.add("mlp", lambda s, in_shape, n_out: MLP(math.prod(in_shape), s.width, s.depth, n_out, s.activation, s.bias, s.dropout))
ARCHITECTURES.add("cnn", lambda s, in_shape, n_out: CNN(in_shape, s.width, s.depth, n_out, s.activation, s.bias, s.kernel_size, s.dropout))


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
    model = initialize(model, spec, g).to(device)
    seed_dropout(model, g, device)
    return model


def seed_dropout(model: nn.Module, g: torch.Generator, device: torch.device | str = "cpu") -> None:
    """Give every SeededDropout a generator on `device`, seeded by one draw from `g` (only if there is one)."""
    layers = [m for m in model.modules() if isinstance(m, SeededDropout)]
    if not layers:
        return  # no draw: models without dropout consume exactly the init stream
    seed = int(torch.randint(0, 2**62, (1,), generator=g))
    for i, layer in enumerate(layers):
        layer.generator = torch.Generator(device=device).manual_seed(seed + i)
