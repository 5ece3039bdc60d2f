"""Fourier progress measure of a token embedding over Z_p (Nanda et al. 2023).

A network that has learned modular arithmetic by the "clock" algorithm embeds
token a through cos(2 pi f a / p) and sin(2 pi f a / p) for a few key
frequencies f, so its embedding matrix is sparse in the Fourier basis of Z_p;
at initialization the energy is spread over all frequencies.

Definition (`fourier_concentration`): for an embedding W of shape (p, d), one
row per residue a = 0..p-1, take the DFT along the token axis,
F[k, j] = sum_a W[a, j] exp(-2 pi i k a / p), and its power per frequency
P_k = sum_j |F[k, j]|^2. W is real, so P_k = P_{p-k}: frequencies k and p - k
are one real frequency f, with energy E_0 = P_0 and E_f = P_f + P_{p-f} for
f = 1..(p-1)/2 (p odd). By Parseval, sum_f E_f = p ||W||_F^2. The measure is
the fraction of the energy in the `top_k` frequencies with the most energy,
sum of the top_k largest E_f / sum_f E_f, in [top_k / n_freq ... 1] roughly for
a random W (n_freq = (p + 1) / 2) and 1 for an embedding built from top_k
frequencies only. It takes the matrix, not a model: callers pick the table.
"""

from __future__ import annotations

import torch

from biaslab.probes.core import Metrics


def frequency_energy(embedding: torch.Tensor) -> torch.Tensor:
    """Energy per real frequency f = 0..(p-1)//2 of a (p, d) embedding, conjugate frequencies k, p-k summed."""
    p = embedding.shape[0]
    power = torch.fft.fft(embedding.detach().double(), dim=0).abs().square().sum(dim=1)  # (p,) P_k
    n_freq = p // 2 + 1
    energy = power[:n_freq].clone()  # E_f = P_f + P_{p-f} for 0 < f < p/2; P_0 alone; (even p) P_{p/2} alone
    mirrored = torch.arange(1, (p + 1) // 2)
    energy[mirrored] += power[p - mirrored]
    return energy  # (n_freq,)


def fourier_concentration(embedding: torch.Tensor, top_k: int = 5) -> Metrics:
    """{'fourier_top{top_k}': fraction of the embedding's energy in its top_k frequencies of Z_p} (see the module doc)."""
    energy = frequency_energy(embedding)
    if not 1 <= top_k <= energy.numel():
        raise ValueError(f"top_k must be between 1 and {energy.numel()} (the frequencies of Z_{embedding.shape[0]}), got {top_k}")
    total = energy.sum()
    fraction = energy.topk(top_k).values.sum() / total if total > 0 else torch.tensor(float("nan"))
    return {f"fourier_top{top_k}": float(fraction)}
