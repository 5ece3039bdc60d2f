"""Data augmentation of a training batch, as functions of tensors and a generator.

`random_crop` is the standard crop augmentation of CIFAR-10 training (Zhang et
al. 2017's Table 1 "random crop"; pad 4, crop 32 in the usual recipe): every
spatial axis is zero-padded by `padding` on both sides and cut back to its
original size at an offset drawn per example, uniformly in 0..2*padding. On
1-D inputs (MNIST-1D) it is a random shift with zero fill. Inputs keep their
shape; the draws come from the caller's generator, so a run is deterministic
in its seed. Zero is the padding value: after standardization that is the
training mean of each feature.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

AUGMENTATIONS = ("none", "random_crop")


def random_crop(x: torch.Tensor, padding: int, g: torch.Generator) -> torch.Tensor:
    """x (batch, channels, *spatial) -> same shape, each example shifted by its own offset per spatial axis."""
    if x.ndim < 3:
        raise ValueError(f"train.augment: random_crop needs inputs shaped (channels, length) or (channels, height, width), got {tuple(x.shape[1:])}")
    batch, spatial = x.shape[0], x.shape[2:]
    padded = F.pad(x, [padding] * (2 * len(spatial)))  # (batch, channels, *(s + 2 * padding))
    offsets = torch.randint(0, 2 * padding + 1, (batch, len(spatial)), generator=g).to(x.device)  # (batch, axes)
    out = padded
    for axis, size in enumerate(spatial):
        dim = 2 + axis
        index = offsets[:, axis, None] + torch.arange(size, device=x.device)  # (batch, size)
        view = [batch] + [1] * (out.ndim - 1)
        view[dim] = size
        target = list(out.shape)
        target[dim] = size
        out = out.gather(dim, index.view(view).expand(target))
    return out


def augment(x: torch.Tensor, kind: str, padding: int, g: torch.Generator) -> torch.Tensor:
    """Apply the augmentation `kind` names ('none' returns x itself)."""
    if kind == "none":
        return x
    if kind == "random_crop":
        return random_crop(x, padding, g)
    raise ValueError(f"train.augment: unknown augmentation {kind!r}; allowed: {', '.join(AUGMENTATIONS)}")
