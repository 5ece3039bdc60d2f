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
- Token models read pairs of token ids (a, b) in Z_p (the `modular` dataset);
  the vocabulary is the output classes (n_out = p), since operands and results
  are both residues mod p. `token_mlp`: one shared Embedding(p, embed_dim),
  the two embeddings concatenated, then the MLP above (Liu et al. 2022's
  grokking MLP). `transformer`: Nanda et al. 2023's model, the sequence
  "a b =" (the "=" token is id p), learned positional embeddings, `depth`
  blocks of causal multi-head attention (no biases) and a ReLU MLP of `width`
  units, residual connections, no LayerNorm, logits read at the "=" position.
  Embeddings are drawn N(0, 1/embed_dim) (Nanda's init), times init_scale.
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

    def __init__(
        self, in_features: int, width: int, depth: int, n_out: int, activation: str, bias: bool, dropout: float = 0.0,
        readout_bias: bool = True,
    ) -> None:  # fmt: skip
        super().__init__()
        sizes = [in_features] + [width] * depth + [n_out]
        biases = [bias] * depth + [bias and readout_bias]
        self.layers = nn.ModuleList(
            nn.utils.skip_init(nn.Linear, fan_in, fan_out, bias=b) for fan_in, fan_out, b in zip(sizes[:-1], sizes[1:], biases)
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
        self, in_shape: tuple[int, ...], width: int, depth: int, n_out: int, activation: str, bias: bool, kernel_size: int,
        dropout: float = 0.0, readout_bias: bool = True,
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
        self.dropout = SeededDropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (batch, C, *spatial) -> (batch, n_out)
        for conv in self.convs:
            x = self.dropout(self.activation(conv(x)))
        return self.readout(x.flatten(1))


class TokenMLP(nn.Module):
    """Embed both operands with one table, concatenate, then an MLP: (batch, 2) ids -> (batch, n_out)."""

    def __init__(self, vocab: int, embed_dim: int, width: int, depth: int, n_out: int, activation: str, bias: bool) -> None:
        super().__init__()
        self.embed = nn.utils.skip_init(nn.Embedding, vocab, embed_dim)
        self.mlp = MLP(2 * embed_dim, width, depth, n_out, activation, bias)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:  # (batch, 2) int64 -> (batch, n_out)
        return self.mlp(self.embed(tokens).flatten(1))  # (batch, 2 * embed_dim) into the MLP


class CausalSelfAttention(nn.Module):
    """Multi-head attention where each position sees itself and earlier ones; no biases (Nanda et al. 2023)."""

    def __init__(self, d_model: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.utils.skip_init(nn.Linear, d_model, 3 * d_model, bias=False)
        self.out = nn.utils.skip_init(nn.Linear, d_model, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (batch, seq, d_model) -> same
        batch, seq, d_model = x.shape
        q, k, v = (t.view(batch, seq, self.heads, -1).transpose(1, 2) for t in self.qkv(x).split(d_model, dim=-1))  # (batch, heads, seq, d_head)
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])  # (batch, heads, seq, seq)
        future = torch.ones(seq, seq, dtype=torch.bool, device=x.device).triu(1)
        attention = scores.masked_fill(future, float("-inf")).softmax(dim=-1)
        return self.out((attention @ v).transpose(1, 2).reshape(batch, seq, d_model))


class Block(nn.Module):
    """x + attention(x), then + MLP; no LayerNorm."""

    def __init__(self, d_model: int, heads: int, d_mlp: int, activation: str, bias: bool) -> None:
        super().__init__()
        self.attention = CausalSelfAttention(d_model, heads)
        self.mlp_in = nn.utils.skip_init(nn.Linear, d_model, d_mlp, bias=bias)
        self.mlp_out = nn.utils.skip_init(nn.Linear, d_mlp, d_model, bias=bias)
        self.activation = ACTIVATIONS[activation]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (batch, seq, d_model) -> same
        x = x + self.attention(x)
        return x + self.mlp_out(self.activation(self.mlp_in(x)))


class Transformer(nn.Module):
    """Nanda et al. 2023's grokking transformer on "a b =": (batch, 2) ids -> (batch, n_out) logits at "="."""

    def __init__(self, vocab: int, d_model: int, heads: int, d_mlp: int, depth: int, n_out: int, activation: str, bias: bool) -> None:
        super().__init__()
        self.equals = vocab  # the id of "=", after the operands' ids
        self.embed = nn.utils.skip_init(nn.Embedding, vocab + 1, d_model)
        self.position = nn.utils.skip_init(nn.Embedding, 3, d_model)
        self.blocks = nn.ModuleList(Block(d_model, heads, d_mlp, activation, bias) for _ in range(depth))
        self.unembed = nn.utils.skip_init(nn.Linear, d_model, n_out, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:  # (batch, 2) int64 -> (batch, n_out)
        equals = torch.full_like(tokens[:, :1], self.equals)
        sequence = torch.cat([tokens, equals], dim=1)  # (batch, 3): a b =
        x = self.embed(sequence) + self.position.weight  # (batch, 3, d_model)
        for block in self.blocks:
            x = block(x)
        return self.unembed(x[:, -1])


def token_embedding(model: nn.Module) -> torch.Tensor:
    """The (vocab, embed_dim) table of a token model's operand embeddings ("=" left out), detached."""
    if isinstance(model, TokenMLP):
        return model.embed.weight.detach()
    if isinstance(model, Transformer):
        return model.embed.weight.detach()[: model.equals]
    raise ValueError(f"token_embedding: {type(model).__name__} has no token embedding; use model.kind token_mlp or transformer")


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
    """Initialize every Embedding and Linear/Conv layer in registration order, then scale weights by init_scale.

    Embeddings are drawn N(0, 1/embedding_dim) (Nanda et al. 2023). The last
    Linear/Conv layer registered is the read-out: it takes `spec.readout_gain`
    (when set) instead of `spec.gain`.
    """
    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))]
    readout = layers[-1] if layers else None
    for module in model.modules():
        if isinstance(module, nn.Embedding):
            module.weight.normal_(0.0, spec.init_scale / math.sqrt(module.embedding_dim), generator=g)
        elif isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            gain = spec.readout_gain if module is readout and spec.readout_gain is not None else spec.gain
            _init_weight(module.weight, spec.init, spec.activation, g, gain)
            module.weight.mul_(spec.init_scale)
            if module.bias is not None:
                _init_bias(module.bias, module.weight[0].numel(), spec.init, g)
    return model


Builder = Callable[[ModelSpec, tuple[int, ...], int], nn.Module]
ARCHITECTURES: Registry[Builder] = Registry("model kind")
ARCHITECTURES.add("mlp", lambda s, in_shape, n_out: MLP(math.prod(in_shape), s.width, s.depth, n_out, s.activation, s.bias, s.dropout, s.readout_bias))
ARCHITECTURES.add("cnn", lambda s, in_shape, n_out: CNN(in_shape, s.width, s.depth, n_out, s.activation, s.bias, s.kernel_size, s.dropout, s.readout_bias))


def _token_pairs(in_shape: tuple[int, ...]) -> None:
    if tuple(in_shape) != (2,):
        raise ValueError(f"model.kind: token models read pairs of token ids shaped (2,), got inputs shaped {in_shape}")


ARCHITECTURES.add("token_mlp", lambda s, in_shape, n_out: _token_pairs(in_shape) or TokenMLP(n_out, s.embed_dim, s.width, s.depth, n_out, s.activation, s.bias))
ARCHITECTURES.add("transformer", lambda s, in_shape, n_out: _token_pairs(in_shape) or Transformer(n_out, s.embed_dim, s.heads, s.width, s.depth, n_out, s.activation, s.bias))


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
