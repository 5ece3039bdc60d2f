"""Gradient flows and their discretizations, on a flat parameter vector (backward error analysis).

Barrett & Dherin (2021) show that gradient descent with step h, theta <- theta - h grad L,
follows to second order in h the gradient flow of the *modified loss*
L~ = L + (h/4) ||grad L||^2, whose gradient is grad L + (h/2) H grad L. Smith et al.
(2021) extend this to SGD: averaged over the order of m minibatches within an epoch,
the iterate follows the flow of L + (h/4m) sum_k ||grad L_k||^2 (L = mean_k L_k).

Everything here is a pure function of tensors: a loss is a callable `theta -> scalar`
on a 1-D parameter vector (or a batch of them, `(..., P)`, when the loss sums over the
batch: the gradient of a sum of independent terms is the per-term gradient). The
integrator is classical fourth-order Runge-Kutta with a fixed step, so its error
(O(dt^4) globally) is far below the O(h^2) distances the experiment measures when
dt is a fraction of h; run it in float64.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

Loss = Callable[[torch.Tensor], torch.Tensor]  # theta (P,) or (..., P) -> scalar
Field = Callable[[torch.Tensor], torch.Tensor]  # theta -> the gradient the flow descends, same shape


def gradient(loss: Loss) -> Field:
    """theta -> grad L(theta) (detached)."""

    def field(theta: torch.Tensor) -> torch.Tensor:
        theta = theta.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(loss(theta), theta)
        return grad

    return field


def modified_gradient(loss: Loss, h: float) -> Field:
    """theta -> grad of L + (h/4) ||grad L||^2 = grad L + (h/2) H grad L (Barrett & Dherin 2021), by double backward."""

    def field(theta: torch.Tensor) -> torch.Tensor:
        theta = theta.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(loss(theta), theta, create_graph=True)
        (hessian_grad,) = torch.autograd.grad(grad, theta, grad_outputs=grad.detach())  # H g
        return (grad + 0.5 * h * hessian_grad).detach()

    return field


def sgd_modified_gradient(batch_losses: Sequence[Loss], h: float) -> Field:
    """theta -> grad of L_SGD = L + (h / 4m) sum_k ||grad L_k||^2 with L = (1/m) sum_k L_k (Smith et al. 2021).

    Equivalently L + (h/4) ||grad L||^2 + (h / 4m) sum_k ||grad L_k - grad L||^2: the full-batch
    modified loss plus the variance of the minibatch gradients.
    """
    m = len(batch_losses)

    def field(theta: torch.Tensor) -> torch.Tensor:
        theta = theta.detach().requires_grad_(True)
        grads = [torch.autograd.grad(loss(theta), theta, create_graph=True)[0] for loss in batch_losses]
        penalty = sum(g.square().sum() for g in grads) * h / (4 * m)
        (penalty_grad,) = torch.autograd.grad(penalty, theta)
        return (sum(g.detach() for g in grads) / m + penalty_grad).detach()

    return field


def rk4(field: Field, theta0: torch.Tensor, time: float, steps: int) -> torch.Tensor:
    """Integrate d theta / dt = -field(theta) from theta0 over `time` with `steps` classical Runge-Kutta steps."""
    dt = time / steps
    theta = theta0.detach().clone()
    for _ in range(steps):
        k1 = -field(theta)
        k2 = -field(theta + 0.5 * dt * k1)
        k3 = -field(theta + 0.5 * dt * k2)
        k4 = -field(theta + dt * k3)
        theta = theta + dt / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
    return theta


def gradient_descent(field: Field, theta0: torch.Tensor, h: float, steps: int) -> torch.Tensor:
    """`steps` iterations of theta <- theta - h field(theta) (the explicit Euler discretization of the flow)."""
    theta = theta0.detach().clone()
    for _ in range(steps):
        theta = theta - h * field(theta)
    return theta


def shuffled_sgd_mean(
    batch_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], theta0: torch.Tensor, h: float, epochs: int, m: int, paths: int, g: torch.Generator
) -> torch.Tensor:
    """The mean over `paths` runs of SGD that visits m fixed minibatches in a fresh random order each epoch.

    `batch_loss(thetas (paths, P), batch (paths,) int) -> scalar` must return the sum over paths of
    each path's loss on its own minibatch, so one backward pass gives every path's gradient. Returns (P,).
    """
    thetas = theta0.detach().expand(paths, -1).clone()  # (paths, P)
    for _ in range(epochs):
        orders = torch.argsort(torch.rand(paths, m, generator=g), dim=1)  # (paths, m): a random permutation per path
        for position in range(m):
            thetas = thetas - h * gradient(lambda t: batch_loss(t, orders[:, position]))(thetas)
    return thetas.mean(dim=0)
