"""What the machine can do, and how much work a benchmark asked of it: the yardstick every benchmark prints.

`matmul_peak` times a large fp32 matrix product (the densest work there is) with a given number of torch
threads: a practical peak, not the vendor's. `mlp_training_flops` counts the FLOPs of training and evaluating
a one-hidden-layer MLP the usual way (a multiply-add is 2 FLOPs; a training step on a batch of B examples
costs 6 x parameters x B: forward 2, backward 4; an evaluation pass costs 2 x parameters per example).
Bias adds and activations are left out (they are O(width), not O(width x inputs)).
"""

from __future__ import annotations

import time

import torch


def matmul_peak(threads: int | None = None, n: int = 2048, device: str = "cpu", repeats: int = 6) -> float:
    """GFLOP/s of an n^3 fp32 matmul with `threads` torch threads (default: the current setting), best of `repeats`."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
        best = float("inf")
        for _ in range(repeats):
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            started = time.perf_counter()
            a @ b
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - started)
    finally:
        torch.set_num_threads(previous)
    return 2 * n**3 / best / 1e9


def mlp_parameters(inputs: int, width: int, outputs: int) -> int:
    """Weights and biases of inputs -> width -> outputs."""
    return inputs * width + width + width * outputs + outputs


def mlp_training_flops(inputs: int, width: int, outputs: int, steps: int, batch: int, evaluations: int, eval_examples: int) -> dict[str, float]:
    """FLOPs of `steps` SGD steps at `batch` and `evaluations` forward passes over `eval_examples` examples."""
    weights = inputs * width + width * outputs  # the multiply-adds per example
    return {"train": 6.0 * weights * batch * steps, "eval": 2.0 * weights * eval_examples * evaluations}
