"""How far a trained `nn.Module` compresses: magnitude pruning masks, uniform quantization, and their sizes in bits.

Pure functions on dicts of tensors (name -> weight); the model is evaluated with
the compressed values swapped in through `torch.func.functional_call`
(`landscape.loss_and_error`), so it is never changed.

- `prunable`: the weights pruning acts on: parameters with two or more
  dimensions (Linear and convolution weights); biases are kept, as in Han et
  al. 2015 and Frankle & Carbin 2019.
- `magnitude_masks`: keep the largest |w|, either over all prunable weights at
  once (`scope="global"`) or within each tensor (`scope="layer"`), so that
  exactly round(sparsity x n) weights are removed (ties broken by position).
  `among` restricts the choice to weights still kept: iterative pruning.
- `random_masks`: masks with the same number of kept weights per tensor as
  given masks, positions drawn from a generator (the lottery-ticket control).
- `quantize_uniform`: each tensor mapped to the nearest of 2^bits evenly
  spaced levels between its min and max (`bounds.quantize(..., "uniform")`),
  so at most 2^bits distinct values per tensor.
- `sparse_bits`, `quantized_bits`: the sizes of those codes: kept values at
  32 bits plus log2 C(n, kept) bits for which positions are kept; k bits per
  weight plus two 32-bit floats (min, max) per tensor. Biases at 32 bits.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Literal

import torch
from torch import nn

from biaslab.probes.bounds import quantize

Scope = Literal["global", "layer"]
Masks = dict[str, torch.Tensor]


def prunable(model: nn.Module) -> list[str]:
    """Names of the parameters with two or more dimensions: what pruning and quantization act on."""
    return [name for name, p in model.named_parameters() if p.ndim >= 2]


def _keep_largest(scores: torch.Tensor, keep: int) -> torch.Tensor:
    """Boolean mask of the `keep` largest entries of a flat score vector (stable: earlier index wins ties)."""
    mask = torch.zeros(scores.numel(), dtype=torch.bool, device=scores.device)
    if keep > 0:
        order = torch.sort(scores, descending=True, stable=True).indices
        mask[order[:keep]] = True
    return mask


def magnitude_masks(weights: Mapping[str, torch.Tensor], sparsity: float, scope: Scope = "global", among: Mapping[str, torch.Tensor] | None = None) -> Masks:
    """Masks keeping the largest-magnitude weights; `sparsity` is the fraction removed (of all weights, or of those
    kept in `among` for iterative pruning)."""
    if not 0.0 <= sparsity <= 1.0:
        raise ValueError(f"sparsity: must lie in [0, 1], got {sparsity}")
    if scope not in ("global", "layer"):
        raise ValueError(f"scope: {scope!r}; allowed: global, layer")
    alive = {n: (among[n].bool() if among is not None else torch.ones_like(w, dtype=torch.bool)) for n, w in weights.items()}
    scores = {n: torch.where(alive[n], w.detach().abs().double(), torch.full_like(w, -1.0, dtype=torch.float64)) for n, w in weights.items()}
    if scope == "layer":
        masks = {}
        for n, s in scores.items():
            kept_before = int(alive[n].sum())
            masks[n] = _keep_largest(s.flatten(), kept_before - round(sparsity * kept_before)).view_as(s)
        return masks
    flat = torch.cat([s.flatten() for s in scores.values()])
    kept_before = int(sum(int(a.sum()) for a in alive.values()))
    mask = _keep_largest(flat, kept_before - round(sparsity * kept_before))
    masks, start = {}, 0
    for n, s in scores.items():
        masks[n] = mask[start : start + s.numel()].view_as(s)
        start += s.numel()
    return masks


def random_masks(like: Mapping[str, torch.Tensor], generator: torch.Generator) -> Masks:
    """Random masks with as many kept entries per tensor as `like` (drawn on the CPU from `generator`)."""
    masks = {}
    for n, m in like.items():
        keep = int(m.sum())
        order = torch.randperm(m.numel(), generator=generator)[:keep].to(m.device)
        mask = torch.zeros(m.numel(), dtype=torch.bool, device=m.device)
        mask[order] = True
        masks[n] = mask.view_as(m)
    return masks


def sparsity_of(masks: Mapping[str, torch.Tensor]) -> float:
    """Fraction of masked-out entries over all masks."""
    total = sum(m.numel() for m in masks.values())
    return 1.0 - sum(int(m.sum()) for m in masks.values()) / total if total else 0.0


def apply_masks(params: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Parameters with masked-out entries set to 0 (tensors without a mask unchanged)."""
    return {n: p * masks[n].to(p.dtype) if n in masks else p for n, p in params.items()}


def quantize_uniform(tensor: torch.Tensor, bits: int) -> torch.Tensor:
    """The tensor with every entry at the nearest of 2^bits evenly spaced levels in [min, max]."""
    if bits < 1:
        raise ValueError(f"bits: must be at least 1, got {bits}")
    codebook, symbols = quantize(tensor.detach().flatten(), 2**bits, "uniform")
    return codebook[symbols].view_as(tensor).to(tensor.dtype)


def quantized_params(params: Mapping[str, torch.Tensor], bits: int, names: list[str]) -> dict[str, torch.Tensor]:
    """Parameters with the tensors in `names` quantized to `bits` bits each (others, e.g. biases, unchanged)."""
    return {n: quantize_uniform(p, bits) if n in names else p for n, p in params.items()}


def _log2_binomial(n: int, k: int) -> float:
    return (math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)) / math.log(2.0)


def sparse_bits(masks: Mapping[str, torch.Tensor], other_values: int, value_bits: int = 32) -> float:
    """Bits of a pruned network: per tensor log2 C(n, kept) for the positions plus kept x value_bits; other values
    (biases) at value_bits."""
    bits = 0.0
    for m in masks.values():
        kept = int(m.sum())
        bits += _log2_binomial(m.numel(), kept) + kept * value_bits
    return bits + other_values * value_bits


def quantized_bits(params: Mapping[str, torch.Tensor], bits: int, names: list[str], value_bits: int = 32) -> float:
    """Bits of a uniformly quantized network: `bits` per quantized weight plus min and max per tensor; others at value_bits."""
    total = 0.0
    for n, p in params.items():
        total += p.numel() * bits + 2 * value_bits if n in names else p.numel() * value_bits
    return total
