"""Corruptions of a dataset, as small composable functions of tensors.

Each takes tensors and a `torch.Generator` and returns new tensors; nothing is
changed in place. They follow Zhang et al. 2017's randomization tests:
label noise (a fraction of labels drawn uniformly at random, possibly equal to the
true one), one fixed pixel permutation, a new permutation per example, and
Gaussian inputs with the training set's per-feature mean and variance.
"""

from __future__ import annotations

import torch


def noisy_labels(y: torch.Tensor, fraction: float, n_classes: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Replace round(fraction * n) labels, chosen without replacement, by uniform random classes.

    Returns the new labels and the boolean mask of the examples that were redrawn.
    `fraction=1` gives fully random labels.
    """
    n = y.shape[0]
    chosen = torch.randperm(n, generator=g, device=y.device)[: round(fraction * n)]
    mask = torch.zeros(n, dtype=torch.bool, device=y.device)
    mask[chosen] = True
    y = y.clone()
    y[chosen] = torch.randint(0, n_classes, (chosen.numel(),), generator=g, device=y.device)
    return y, mask


def shuffled_pixels(x: torch.Tensor, permutation: torch.Tensor) -> torch.Tensor:
    """Apply one fixed permutation of the flattened input positions to every example."""
    flat = x.reshape(x.shape[0], -1)
    return flat[:, permutation].reshape(x.shape)


def pixel_permutation(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """One random permutation of the input positions of `x` (examples, ...)."""
    return torch.randperm(x[0].numel(), generator=g, device=x.device)


def random_pixels(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Permute the input positions of each example with its own random permutation."""
    flat = x.reshape(x.shape[0], -1)
    keys = torch.rand(flat.shape, generator=g, device=x.device)
    return flat.gather(1, keys.argsort(dim=1)).reshape(x.shape)


def gaussian_inputs(x: torch.Tensor, like: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Gaussian noise shaped like `x`, with `like`'s per-feature mean and standard deviation."""
    mean, std = like.mean(dim=0), like.std(dim=0)
    noise = torch.randn(x.shape, generator=g, device=x.device, dtype=x.dtype)
    return mean + std * noise
