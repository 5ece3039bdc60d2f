"""The `model` section of a run: the architecture and its initialization.

Contract: `ModelSpec` holds every field `biaslab.models.build` reads. A field of one architecture (the CNN's
`kernel_size`, the token models' `embed_dim`, the transformer's `heads`) is refused away from its default under
another `kind`, by the section's rule table. `TOKEN_MODELS` names the models whose inputs are token ids.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from biaslab.spec.rules import _Frozen, read_only_when_validator

TOKEN_MODELS = ("token_mlp", "transformer")  # models whose inputs are token ids (the modular dataset)


class ModelSpec(_Frozen):
    """Architecture and initialization."""

    kind: Literal["mlp", "cnn", "token_mlp", "transformer"] = "mlp"
    width: int = Field(100, gt=0)  # hidden units per layer (MLP, token_mlp), channels (CNN), or d_mlp (transformer)
    depth: int = Field(1, ge=1)  # hidden layers (MLP, token_mlp), conv layers (CNN) or blocks (transformer)
    activation: Literal["relu", "tanh", "gelu"] = "relu"
    init: Literal["kaiming", "xavier", "normal", "torch"] = "kaiming"
    init_scale: float = Field(1.0, gt=0.0)  # multiplies every initial weight
    bias: bool = True
    kernel_size: int = Field(5, ge=1)  # CNN first-layer kernel; later layers use 3
    dropout: float = Field(0.0, ge=0.0, lt=1.0)  # drop probability after each hidden activation (training only); > 0 runs alone, not in a population
    embed_dim: int = Field(128, gt=0)  # token models: embedding size per token (d_model of the transformer)
    heads: int = Field(4, gt=0)  # transformer: attention heads, each of size embed_dim / heads

    @model_validator(mode="after")
    def _heads_divide_embed_dim(self) -> "ModelSpec":
        if self.kind == "transformer" and self.embed_dim % self.heads:
            raise ValueError(f"model.heads must divide model.embed_dim, got embed_dim={self.embed_dim}, heads={self.heads}")
        return self

    gain: float | None = Field(None, gt=0.0)  # kaiming/xavier gain of the hidden layers; None: the activation's (sqrt 2, 5/3)
    readout_gain: float | None = Field(None, gt=0.0)  # kaiming/xavier gain of the output layer; None: as the hidden layers
    readout_bias: bool = True  # a bias on the output layer (when `bias`); Cohen et al.'s regression net has none

    READ_ONLY_WHEN = (
        ("kernel_size", "kind", ("cnn",)), ("embed_dim", "kind", TOKEN_MODELS), ("heads", "kind", ("transformer",)),
        ("dropout", "kind", ("mlp", "cnn")), ("readout_bias", "kind", ("mlp", "cnn")),
    )  # fmt: skip

    _architecture_fields_match_the_kind = read_only_when_validator("model")

    @model_validator(mode="after")
    def _gains_need_a_scaled_init(self) -> "ModelSpec":
        if (self.gain is not None or self.readout_gain is not None) and self.init not in ("kaiming", "xavier"):
            raise ValueError(f"model.gain and model.readout_gain apply to init 'kaiming' or 'xavier' only, got init {self.init!r}")
        return self
