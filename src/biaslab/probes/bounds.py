"""A menu of generalization bounds for a classifier trained on m examples (x, y).

Each bound returns a `Bound`: its value (a bound on the 0-1 test error of the stated
classifier, holding with the stated probability over the draw of the training set), its
ingredients as named floats, its assumptions in words, `vacuous` (True when the value is
at least 1, i.e. says nothing; None when the number is a relative measure up to unknown
constants) and `above_chance` (True when it is at least 1 - 1/K, the error of guessing among
K classes: a kl-inverse bound never exceeds 1, so this flag is what tells a useless one).
`Bound.as_metrics()` gives `dict[str, float]` for a report card or a History row.

1. `pac_bayes_bound` -- Dziugaite & Roy 2017 (UAI), "Computing nonvacuous generalization
   bounds for deep (stochastic) neural networks ...". Posterior Q = N(mu, diag(s)) around the
   trained weights, prior P = N(w0, lambda I) centred at the initialization w0. The
   Langford-Seeger PAC-Bayes bound (their Theorem 2.1), with a union bound over the prior
   variance grid lambda = c exp(-j / b), j = 1, 2, ... paid with prior weight 6 / (pi^2 j^2):

       kl(e_hat(Q) || e(Q)) <= B_RE = (KL(Q || P) + 2 ln j + ln(pi^2 m / (6 delta))) / (m - 1),

   (2 ln j = 2 ln(b ln(c / lambda)), their eq. for B_RE). mu, log s and log lambda are
   optimized by RMSprop on their surrogate objective e_surr(Q) + sqrt(B_RE / 2) with the
   0-1 error replaced by cross-entropy / ln 2 (an upper bound on the 0-1 error; D&R used the
   logistic loss / ln 2 for their binary task), one posterior sample and one minibatch per
   step. lambda is then rounded to its grid point. e_hat(Q) is estimated by n Monte-Carlo
   draws of the weights, each scored on the whole training set, with the sample-convergence
   bound of Langford & Caruana 2002: e_hat(Q) <= kl^-1(e_mc, ln(2 / delta') / n). Final:

       e(Q) <= kl^-1( kl^-1(e_mc, ln(2 / delta') / n), B_RE ),  with probability >= 1 - delta - delta'.

   Defaults follow the paper where it says: delta = 0.025, delta' = 0.01, c = 0.1, b = 100.
   Deviations (stated in `assumptions`): multiclass cross-entropy surrogate; RMSprop at lr 1e-2
   for 2000 steps by default (the paper: lr 1e-3 for hundreds of epochs; at 1e-3 a few thousand
   steps barely move log s); the initial posterior std is |w| * `init_std_ratio` (0.1, floor
   1e-6) and the initial lambda is the KL-optimal one for it (capped at the grid's j = 1); the
   MC sample count is a parameter (the paper: 150,000). `form="maurer"` swaps in Maurer's 2004 complexity
   (KL + 2 ln j + ln(pi^2 / 6) + ln(2 sqrt(m) / delta)) / m, valid for m >= 8.
   The bound is on the *stochastic* classifier Q, not on the trained network itself.

2. `compression_bound` -- Occam / countable-hypothesis bound as used by Lotfi et al. 2022 and
   Wilson 2025. All parameters are quantized to L levels (one codebook: uniform levels or 1-D
   k-means). The prior of a quantized network is 2^-bits with bits its description length:
   the level counts (log2 C(n + L - 1, L - 1)), the symbol sequence given the counts
   (log2 n! / prod n_i!, the length an adaptive arithmetic coder achieves to within 2 bits),
   the codebook (L values at 32 or 16 bits), floating buffers at 32 bits each, and log2 of the
   number of quantization configurations tried. These prior weights sum to at most 1 (Kraft).
   With the Chernoff bound for each hypothesis and a union bound weighted by the prior:

       e(h_q) <= kl^-1(e_hat(h_q), (bits ln 2 + ln(1 / delta)) / m)   with probability >= 1 - delta.

   The bound is on the quantized network h_q (its training error is measured and reported);
   the caller's module is not changed (the quantized weights go through functional_call).

3. `spectral_bound` -- Bartlett, Foster & Telgarsky 2017 (NeurIPS), spectral complexity
   R_A = (prod_i ||A_i||_2) (sum_i (||A_i^T - M_i^T||_{2,1} / ||A_i||_2)^(2/3))^(3/2), with
   ||B||_{2,1} the sum of the l2 norms of B's columns (for B = A^T: of A's rows), M_i = 0 or
   the initialization, ReLU (1-Lipschitz, sigma(0) = 0). The bound, in the form of their
   Theorem 3.4 / Lemma A.8 at a fixed margin gamma, with W the largest layer width and
   ||X||_2 = sqrt(sum_i ||x_i||^2):

       e <= R_hat_gamma + 8 / m + 72 ||X||_2 ln(2W) ln(m) R_A / (gamma m) + 3 sqrt(ln(2 / delta) / (2 m)).

   R_hat_gamma is the fraction of training margins <= gamma, gamma the `margin_quantile`
   quantile of the margins. The constants are as we read the paper; the version uniform over
   gamma and the norm bounds adds logarithmic union-bound terms that are left out, so this is a
   *lower estimate* of the rigorous bound: `vacuous=True` is conclusive, `False` is not.
   Biases are not covered by the theorem and are left out (fold them into the weights with a
   constant input coordinate for a rigorous statement).

   `spectral_margin_distribution` gives Bartlett et al.'s normalized margins
   (f(x)_y - max_{j != y} f(x)_j) / (R_A ||X||_2 / m) (their Figure 2) as quantiles.

4. `path_norm_bound` -- a relative measure after Neyshabur, Tomioka & Srebro 2015
   (COLT, "Norm-based capacity control"): R_hat_gamma + phi_2 max_i ||x_i||_2 / (gamma sqrt(m)),
   phi_2 the l2 path norm (`core.path_norm`). Their Rademacher bound for the path-norm ball has
   this shape up to constants that grow exponentially with depth; all constants are set to 1
   here, so it is a relative measure (`vacuous` is None), for ranking models, not a guarantee.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from biaslab.probes.core import Metrics, linear_chain, margins, measuring, path_norm, weight_matrices

# ---------------------------------------------------------------- the binary kl and its inverse


def kl_bernoulli(q: float, p: float) -> float:
    """kl(q || p) = q ln(q/p) + (1-q) ln((1-q)/(1-p)) for Bernoulli means, with 0 ln 0 = 0."""
    if not (0.0 <= q <= 1.0 and 0.0 <= p <= 1.0):
        raise ValueError(f"kl_bernoulli: q and p must lie in [0, 1], got q={q}, p={p}")
    total = 0.0
    if q > 0.0:
        total += math.inf if p == 0.0 else q * math.log(q / p)
    if q < 1.0:
        total += math.inf if p == 1.0 else (1.0 - q) * math.log((1.0 - q) / (1.0 - p))
    return total


def kl_inverse_upper(q: float, c: float, iterations: int = 200) -> float:
    """kl^-1(q, c) = sup {p in [q, 1] : kl(q || p) <= c}, by bisection (kl(q||.) increases on [q, 1]).

    Returns the upper end of the final bracket, so the result never understates the sup. For
    tiny c the rounding error of kl near p = q (about 1e-17) limits p to about 1e-9 absolute.
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"kl_inverse_upper: q must lie in [0, 1], got {q}")
    if c < 0 or math.isnan(c):
        raise ValueError(f"kl_inverse_upper: c must be >= 0, got {c}")
    if q >= 1.0 or kl_bernoulli(q, 1.0) <= c:
        return 1.0
    if c == 0.0:
        return q
    low, high = q, 1.0
    for _ in range(iterations):
        middle = 0.5 * (low + high)
        if middle in (low, high):
            break
        if kl_bernoulli(q, middle) > c:
            high = middle
        else:
            low = middle
    return high


# ---------------------------------------------------------------- the result type


@dataclass(frozen=True)
class Bound:
    """A bound on the 0-1 test error with its ingredients and assumptions."""

    name: str
    value: float
    ingredients: dict[str, float] = field(default_factory=dict)
    assumptions: str = ""
    constant_explicit: bool = True  # False: a relative measure up to constants; `vacuous` is None
    chance_error: float = float("nan")  # 1 - 1/K for K classes: the error of guessing

    @property
    def vacuous(self) -> bool | None:
        """True when the bound is at least 1 (it says nothing about a classifier); None for relative measures."""
        if not self.constant_explicit or math.isnan(self.value):
            return None
        return self.value >= 1.0

    @property
    def above_chance(self) -> bool | None:
        """True when the bound is no better than guessing (>= 1 - 1/K): useless though below 1."""
        if not self.constant_explicit or math.isnan(self.value) or math.isnan(self.chance_error):
            return None
        return self.value >= self.chance_error

    def as_metrics(self) -> Metrics:
        """{name}, {name}_vacuous and {name}_above_chance (1.0, 0.0 or nan) and {name}.{ingredient}."""
        flags = {"vacuous": self.vacuous, "above_chance": self.above_chance}
        metrics: Metrics = {self.name: self.value}
        metrics |= {f"{self.name}_{key}": float("nan") if flag is None else float(flag) for key, flag in flags.items()}
        return metrics | {f"{self.name}.{key}": float(value) for key, value in self.ingredients.items()}


def bound_metrics(bounds: Iterable[Bound]) -> Metrics:
    """The named floats of several bounds, merged."""
    merged: Metrics = {}
    for bound in bounds:
        merged |= bound.as_metrics()
    return merged


# ---------------------------------------------------------------- helpers on functional parameters


def _parameters(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def _error_of(model: nn.Module, params: Mapping[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    """0-1 training error of the model with `params` swapped in (no sync; call inside `measuring`)."""
    wrong = torch.zeros((), dtype=torch.float64, device=x.device)
    for start in range(0, x.shape[0], batch_size):
        out = functional_call(model, dict(params), (x[start : start + batch_size],))
        wrong = wrong + (out.argmax(dim=1) != y[start : start + batch_size]).sum()
    return wrong / x.shape[0]


def _chance_error(model: nn.Module, x: torch.Tensor) -> float:
    """1 - 1/K, K the number of model outputs (classes)."""
    with measuring(model):
        return 1.0 - 1.0 / model(x[:1]).shape[1]


@dataclass
class _Mode:
    """Eval mode for the duration, the caller's mode restored after (gradients stay enabled)."""

    model: nn.Module
    was_training: bool = False

    def __enter__(self) -> nn.Module:
        self.was_training = self.model.training
        self.model.eval()
        return self.model

    def __exit__(self, *exc) -> None:
        self.model.train(self.was_training)


# ---------------------------------------------------------------- (a) PAC-Bayes, Dziugaite & Roy 2017

PacBayesForm = Literal["langford_seeger", "maurer"]


def gaussian_kl(mean: Mapping[str, torch.Tensor], log_std: Mapping[str, torch.Tensor], prior_mean: Mapping[str, torch.Tensor], log_prior_var: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, diag(exp(2 log_std))) || N(prior_mean, lambda I)), lambda = exp(log_prior_var)."""
    total = torch.zeros((), dtype=torch.float64, device=log_prior_var.device)
    d = 0
    for name in mean:
        var = (2.0 * log_std[name]).exp().double()
        sq = (mean[name] - prior_mean[name]).double().square()
        total = total + ((var + sq) / log_prior_var.exp().double()).sum() - (2.0 * log_std[name]).double().sum()
        d += mean[name].numel()
    return 0.5 * (total + d * log_prior_var.double() - d)


def pac_bayes_complexity(kl: float, j: int, m: int, delta: float, form: PacBayesForm = "langford_seeger") -> float:
    """The right side c of kl(e_hat || e) <= c, including the union bound over the prior grid index j >= 1."""
    union = 2.0 * math.log(j) + math.log(math.pi**2 / 6.0)
    if form == "langford_seeger":
        return (kl + union + math.log(m / delta)) / (m - 1)
    if form == "maurer":
        return (kl + union + math.log(2.0 * math.sqrt(m) / delta)) / m
    raise ValueError(f"form: unknown PAC-Bayes form {form!r}; allowed: langford_seeger, maurer")


def pac_bayes_bound(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    init: Mapping[str, torch.Tensor],
    generator: torch.Generator,
    *,
    steps: int = 2000,
    lr: float = 1e-2,
    batch_size: int = 100,
    optimize_mean: bool = True,
    mc_samples: int = 1000,
    delta: float = 0.025,
    delta_mc: float = 0.01,
    prior_c: float = 0.1,
    prior_b: float = 100.0,
    init_std_ratio: float = 0.1,
    form: PacBayesForm = "langford_seeger",
) -> Bound:
    """Dziugaite & Roy 2017's PAC-Bayes bound for the Gaussian posterior around the trained weights.

    `x`, `y` are the whole training set (m = len(x)); `init` maps every parameter name to its
    value at initialization (the prior's centre; `core.snapshot` before training). Deterministic
    for a fixed `generator` state. The module is not changed: sampled weights go through
    `torch.func.functional_call`; mode is eval while it runs and restored after.
    """
    if form not in ("langford_seeger", "maurer"):
        raise ValueError(f"form: unknown PAC-Bayes form {form!r}; allowed: langford_seeger, maurer")
    m = x.shape[0]
    trained = _parameters(model)
    missing = [name for name in trained if name not in init or init[name].shape != trained[name].shape]
    if missing:
        raise ValueError(f"init: no initial value of the right shape for parameters {missing}")
    prior_mean = {name: init[name].detach().to(trained[name]) for name in trained}
    mean = {name: w.clone().requires_grad_(optimize_mean) for name, w in trained.items()}
    log_std = {name: (w.abs() * init_std_ratio).clamp_min(1e-6).log().requires_grad_(True) for name, w in trained.items()}
    d = sum(w.numel() for w in trained.values())
    with torch.no_grad():  # the KL-optimal prior variance for the initial posterior
        spread = sum(((2 * log_std[n]).exp() + (trained[n] - prior_mean[n]).square()).sum() for n in trained) / d
    log_c = math.log(prior_c)
    log_lambda = torch.tensor(min(math.log(spread.item()), log_c - 1.0 / prior_b), dtype=torch.float64, requires_grad=True)
    variables = [*log_std.values(), log_lambda] + (list(mean.values()) if optimize_mean else [])
    optimizer = torch.optim.RMSprop(variables, lr=lr)
    confidence_term = math.log(math.pi**2 * m / (6.0 * delta))
    device = generator.device
    surrogate = float("nan")
    with _Mode(model):
        for step in range(steps):
            index = torch.randperm(m, generator=generator, device=device)[:batch_size].to(x.device)
            sampled = {n: mean[n] + log_std[n].exp() * _normal_like(mean[n], generator) for n in mean}
            loss = F.cross_entropy(functional_call(model, sampled, (x[index],)), y[index]) / math.log(2.0)
            clamped = log_lambda.clamp(max=log_c - 1.0 / prior_b)  # grid index j >= 1
            j = prior_b * (log_c - clamped)
            b_re = (gaussian_kl(mean, log_std, prior_mean, clamped) + 2.0 * j.log() + confidence_term) / (m - 1)
            objective = loss + (b_re / 2.0).sqrt()
            optimizer.zero_grad(set_to_none=True)
            objective.backward()
            optimizer.step()
            if step == steps - 1:
                surrogate = objective.item()
        with torch.no_grad():
            j_final = max(1, round(prior_b * (log_c - log_lambda.item())))
            log_prior_var = torch.tensor(log_c - j_final / prior_b, dtype=torch.float64)
            final_mean = {n: v.detach() for n, v in mean.items()}
            final_log_std = {n: v.detach() for n, v in log_std.items()}
            kl = gaussian_kl(final_mean, final_log_std, prior_mean, log_prior_var).item()
            errors = torch.stack([
                _error_of(model, {n: final_mean[n] + final_log_std[n].exp() * _normal_like(final_mean[n], generator) for n in final_mean}, x, y)
                for _ in range(mc_samples)
            ])
            mean_error = _error_of(model, final_mean, x, y).item()
    stats = torch.stack([errors.mean(), errors.std() / math.sqrt(mc_samples) if mc_samples > 1 else errors.new_tensor(float("nan"))]).tolist()
    e_mc, e_mc_stderr = stats
    e_mc_upper = kl_inverse_upper(e_mc, math.log(2.0 / delta_mc) / mc_samples)
    complexity = pac_bayes_complexity(kl, j_final, m, delta, form)
    value = kl_inverse_upper(e_mc_upper, complexity)
    stds = torch.cat([v.exp().flatten() for v in final_log_std.values()])
    distance_init = math.sqrt(sum((final_mean[n] - prior_mean[n]).double().square().sum().item() for n in trained))
    ingredients = {
        "kl": kl,
        "prior_variance": math.exp(log_prior_var.item()),
        "prior_grid_index": float(j_final),
        "complexity": complexity,
        "mc_error": e_mc,
        "mc_error_stderr": e_mc_stderr,
        "mc_error_upper": e_mc_upper,
        "mc_samples": float(mc_samples),
        "posterior_mean_error": mean_error,
        "posterior_std_median": stds.median().item(),
        "posterior_std_mean": stds.mean().item(),
        "posterior_mean_dist_init": distance_init,
        "surrogate_objective": surrogate,
        "steps": float(steps),
        "parameters": float(d),
        "m": float(m),
        "delta": delta,
        "delta_mc": delta_mc,
        "confidence": 1.0 - delta - delta_mc,
    }
    assumptions = (
        f"Bounds the 0-1 error of the stochastic classifier Q = N(mu, diag(s)) (a fresh weight draw per input), "
        f"not of the trained network; holds with probability >= {1 - delta - delta_mc:.3f} over the i.i.d. training sample. "
        f"Prior N(w0, lambda I) centred at the given initialization (chosen before seeing the data); lambda = "
        f"{prior_c} exp(-j/{prior_b:g}) with j = {j_final} paid for by a union bound (weight 6/(pi^2 j^2)). "
        f"Form: {'Langford-Seeger (KL + 2 ln j + ln(pi^2 m/(6 delta)))/(m-1), as Dziugaite & Roy 2017' if form == 'langford_seeger' else 'Maurer (KL + 2 ln j + ln(pi^2/6) + ln(2 sqrt(m)/delta))/m'}. "
        f"Training error of Q estimated from {mc_samples} weight draws, each on all m = {m} examples, with the "
        f"Langford-Caruana sample bound kl^-1(e_mc, ln(2/delta')/n). Deviations from the paper: multiclass "
        f"cross-entropy/ln 2 surrogate, RMSprop for {steps} steps, initial std = |w| * {init_std_ratio:g}, "
        f"{mc_samples} MC draws (paper: 150,000)."
    )
    return Bound("pac_bayes", value, ingredients, assumptions, chance_error=_chance_error(model, x))


def _normal_like(t: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Standard normal noise of t's shape drawn from `generator` (on its device), moved to t's device and dtype."""
    return torch.randn(t.shape, generator=generator, device=generator.device, dtype=torch.float64 if t.dtype == torch.float64 else torch.float32).to(t)


# ---------------------------------------------------------------- (b) compression / Occam bound

Quantizer = Literal["kmeans", "uniform"]
CODEBOOK_DTYPES = {32: torch.float32, 16: torch.float16}


def kmeans_levels(values: torch.Tensor, levels: int, iterations: int = 100) -> torch.Tensor:
    """1-D k-means (Lloyd) centroids of `values`, started at evenly spaced quantiles; sorted, (levels,)."""
    values = values.detach().double()
    probabilities = (torch.arange(levels, dtype=torch.float64) + 0.5) / levels
    centroids = torch.quantile(values, probabilities.to(values.device)) if values.numel() <= 16_000_000 else values.sort().values[(probabilities * (values.numel() - 1)).long()]
    for _ in range(iterations):
        symbols = assign_levels(values, centroids)
        counts = torch.bincount(symbols, minlength=levels)
        sums = torch.zeros(levels, dtype=torch.float64, device=values.device).index_add_(0, symbols, values)
        updated = torch.where(counts > 0, sums / counts.clamp_min(1), centroids).sort().values
        if torch.equal(updated, centroids):
            break
        centroids = updated
    return centroids


def assign_levels(values: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Index of the nearest level (sorted codebook) for each value, (n,) int64."""
    midpoints = (codebook[1:] + codebook[:-1]) / 2
    return torch.bucketize(values.to(codebook.dtype), midpoints)


def quantize(values: torch.Tensor, levels: int, method: Quantizer = "kmeans", codebook_bits: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """(codebook (levels,) exactly representable at `codebook_bits`, symbols (n,)) for a flat tensor of values."""
    if levels < 1:
        raise ValueError(f"levels: must be at least 1, got {levels}")
    if codebook_bits not in CODEBOOK_DTYPES:
        raise ValueError(f"codebook_bits: {codebook_bits} not supported; allowed: {', '.join(map(str, CODEBOOK_DTYPES))}")
    flat = values.detach().flatten().double()
    if method == "kmeans":
        codebook = kmeans_levels(flat, levels)
    elif method == "uniform":
        codebook = torch.linspace(flat.min().item(), flat.max().item(), levels, dtype=torch.float64, device=flat.device)
    else:
        raise ValueError(f"method: unknown quantizer {method!r}; allowed: kmeans, uniform")
    codebook = codebook.to(CODEBOOK_DTYPES[codebook_bits]).double().sort().values  # the values a decoder would read
    return codebook, assign_levels(flat, codebook)


def _log2_factorial(n: float) -> float:
    return math.lgamma(n + 1.0) / math.log(2.0)


def description_length(symbols: torch.Tensor, levels: int, codebook_bits: int = 32, configurations: int = 1, extra_bits: float = 0.0) -> dict[str, float]:
    """Bits to describe a quantized network: counts, symbols given counts, codebook, configuration choice.

    counts: log2 C(n + L - 1, L - 1) (which composition of n into L level counts);
    symbols: log2(n! / prod_i n_i!) (which sequence with those counts; an adaptive arithmetic
    coder achieves counts + symbols to within 2 bits); codebook: L * codebook_bits;
    choice: log2(configurations) for the quantization settings tried; plus `extra_bits`.
    Also reports n * H(empirical level distribution), the static entropy code length (not a prefix code by itself).
    """
    n = symbols.numel()
    counts = torch.bincount(symbols.flatten(), minlength=levels).tolist()
    bits_counts = _log2_factorial(n + levels - 1) - _log2_factorial(levels - 1) - _log2_factorial(n)
    bits_symbols = _log2_factorial(n) - sum(_log2_factorial(c) for c in counts)
    bits_codebook = float(levels * codebook_bits)
    bits_choice = math.log2(configurations)
    entropy = -sum(c * math.log2(c / n) for c in counts if c > 0)
    total = bits_counts + bits_symbols + bits_codebook + bits_choice + extra_bits
    return {
        "bits": total,
        "bits_counts": bits_counts,
        "bits_symbols": bits_symbols,
        "bits_codebook": bits_codebook,
        "bits_choice": bits_choice,
        "bits_extra": extra_bits,
        "bits_entropy": entropy,
        "bits_per_parameter": total / n if n else float("nan"),
    }


def occam_bound(train_error: float, bits: float, m: int, delta: float) -> tuple[float, float]:
    """(kl^-1(e_hat, c), c) with c = (bits ln 2 + ln(1/delta)) / m: the countable-hypothesis bound."""
    complexity = (bits * math.log(2.0) + math.log(1.0 / delta)) / m
    return kl_inverse_upper(train_error, complexity), complexity


def compression_bound(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    levels: int = 16,
    method: Quantizer = "kmeans",
    codebook_bits: int = 32,
    configurations: int = 1,
    delta: float = 0.05,
) -> Bound:
    """Quantize every parameter to `levels` shared levels, code it, apply the Occam bound (module unchanged).

    `configurations` is how many quantization settings (levels, method) the caller tried on this
    data before reporting this one: log2 of it is added to the code length.
    """
    m = x.shape[0]
    params = _parameters(model)
    flat = torch.cat([p.flatten() for p in params.values()])
    codebook, symbols = quantize(flat, levels, method, codebook_bits)
    quantized_flat = codebook[symbols]
    quantized, offset = {}, 0
    for name, p in params.items():
        quantized[name] = quantized_flat[offset : offset + p.numel()].view_as(p).to(p.dtype)
        offset += p.numel()
    buffer_values = sum(b.numel() for b in model.buffers() if b.is_floating_point())
    code = description_length(symbols, levels, codebook_bits, configurations, extra_bits=32.0 * buffer_values)
    with measuring(model):
        error_q = _error_of(model, quantized, x, y).item()
        error = _error_of(model, params, x, y).item()
    value, complexity = occam_bound(error_q, code["bits"], m, delta)
    ingredients = {
        "train_error_quantized": error_q,
        "train_error": error,
        "complexity": complexity,
        "levels": float(levels),
        "levels_used": float(torch.unique(symbols).numel()),
        "parameters": float(flat.numel()),
        "quantization_rms": (quantized_flat - flat.double()).square().mean().sqrt().item(),
        "m": float(m),
        "delta": delta,
    } | code
    assumptions = (
        f"Bounds the 0-1 error of the quantized network ({levels} {method} levels shared by all {flat.numel()} parameters, "
        f"codebook at {codebook_bits} bits), not of the original one (its training error is reported beside it); holds "
        f"with probability >= {1 - delta:g}. Countable-hypothesis (Occam) bound kl^-1(e_hat, (bits ln 2 + ln(1/delta))/m) "
        f"with prior 2^-bits: the architecture, parameter order and quantizer are fixed before seeing the data, and the "
        f"{configurations} quantization setting(s) tried are paid for with log2({configurations}) bits. Floating buffers "
        f"({buffer_values} values) are charged 32 bits each. No subspace training or fine-tuning (Lotfi et al. 2022 "
        f"train in a random subspace and fine-tune the quantized levels, which is what makes their bounds tight)."
    )
    return Bound("compression", value, ingredients, assumptions, chance_error=_chance_error(model, x))


# ---------------------------------------------------------------- (c) norm and margin bounds

BFT_CONSTANTS = {"per_m": 8.0, "complexity": 72.0, "confidence": 3.0}  # Bartlett et al. 2017, Thm 3.4 / Lemma A.8


def _chain_weights(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """(name, weight (out, in)) of the model's Linear chain, or of every weight matrix when it is not a chain."""
    layers = linear_chain(model)
    if layers is None:
        return weight_matrices(model)
    names = {id(p): name for name, p in model.named_parameters()}
    return [(names[id(layer.weight)], layer.weight.detach()) for layer in layers]


def spectral_complexity(model: nn.Module, reference: Mapping[str, torch.Tensor] | None = None) -> Metrics:
    """Bartlett et al.'s R_A with M_i = reference (e.g. the init) or 0, and its two factors.

    R_A = spectral_product * spectral_sum_term, spectral_product = prod_i ||A_i||_2,
    spectral_sum_term = (sum_i (||A_i^T - M_i^T||_{2,1} / ||A_i||_2)^(2/3))^(3/2).
    """
    with torch.no_grad():
        product, total = 1.0, 0.0
        for name, w in _chain_weights(model):
            w = w.double().flatten(1)
            spectral = torch.linalg.matrix_norm(w, ord=2).item()
            diff = w - reference[name].detach().double().flatten(1) if reference is not None else w
            two_one = diff.norm(dim=1).sum().item()  # ||(A - M)^T||_{2,1}: l2 norms of the columns of A^T = rows of A
            product *= spectral
            total += (two_one / spectral) ** (2.0 / 3.0)
    sum_term = total**1.5
    return {"spectral_complexity": product * sum_term, "spectral_product": product, "spectral_sum_term": sum_term}


def spectral_normalized_margins(model: nn.Module, x: torch.Tensor, y: torch.Tensor, reference: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
    """Margins divided by R_A ||X||_2 / m (Bartlett et al. 2017, Fig. 2), (m,)."""
    complexity = spectral_complexity(model, reference)["spectral_complexity"]
    data_norm = x.detach().flatten(1).double().norm().item()
    return margins(model, x, y).double() / (complexity * data_norm / x.shape[0])


def spectral_margin_distribution(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    reference: Mapping[str, torch.Tensor] | None = None,
    quantiles: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9),
) -> Metrics:
    """Quantiles (margin_spectral_q10, ...), mean and fraction <= 0 of the Bartlett-normalized margins."""
    scaled = spectral_normalized_margins(model, x, y, reference)
    values = torch.quantile(scaled, torch.tensor(quantiles, dtype=scaled.dtype, device=scaled.device)).tolist()
    metrics = {f"margin_spectral_q{round(100 * q):02d}": v for q, v in zip(quantiles, values)}
    return metrics | {"margin_spectral_mean": scaled.mean().item(), "margin_spectral_negative": (scaled <= 0).double().mean().item()}


def _margin_at_quantile(model: nn.Module, x: torch.Tensor, y: torch.Tensor, quantile: float) -> tuple[float, float]:
    """(gamma, R_hat_gamma): the `quantile` quantile of the margins and the fraction of margins <= gamma."""
    values = margins(model, x, y).double()
    gamma = torch.quantile(values, quantile).item()
    return gamma, (values <= gamma).double().mean().item()


def spectral_bound(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    reference: Mapping[str, torch.Tensor] | None = None,
    margin_quantile: float = 0.1,
    delta: float = 0.05,
) -> Bound:
    """Bartlett, Foster & Telgarsky 2017's spectrally-normalized margin bound at gamma = a margin quantile."""
    m = x.shape[0]
    chain = linear_chain(model) is not None
    sc = spectral_complexity(model, reference)
    widths = [dim for _, w in _chain_weights(model) for dim in w.flatten(1).shape]
    width = max(widths) if widths else 1
    data_norm = x.detach().flatten(1).double().norm().item()
    gamma, margin_error = _margin_at_quantile(model, x, y, margin_quantile)
    c = BFT_CONSTANTS
    if gamma > 0:
        complexity_term = c["complexity"] * data_norm * math.log(2 * width) * math.log(m) * sc["spectral_complexity"] / (gamma * m)
    else:
        complexity_term = math.inf
    confidence_term = c["confidence"] * math.sqrt(math.log(2.0 / delta) / (2.0 * m))
    value = margin_error + c["per_m"] / m + complexity_term + confidence_term if chain else float("nan")
    ingredients = sc | {
        "gamma": gamma,
        "margin_error": margin_error,
        "complexity_term": complexity_term,
        "confidence_term": confidence_term,
        "data_norm": data_norm,
        "width": float(width),
        "m": float(m),
        "delta": delta,
    }
    assumptions = (
        f"Bartlett, Foster & Telgarsky 2017 (Thm 3.4 / Lemma A.8 form, constants {c['per_m']:g}/m, {c['complexity']:g}, "
        f"{c['confidence']:g} as we read them) at a fixed gamma = the {margin_quantile:g} quantile of the training margins; "
        f"the rigorous version uniform over gamma and the layer norms adds logarithmic terms left out here, so this is a "
        f"lower estimate of it: vacuous=True is conclusive, False is not. Reference matrices M_i = "
        f"{'the given reference (init)' if reference is not None else '0'}. Assumes a chain of Linear layers with "
        f"1-Lipschitz activations fixing 0 (ReLU); biases are left out of R_A."
        + ("" if chain else " This model is not a chain of Linear layers: the value is nan (R_A is still reported, conv kernels flattened).")
    )
    return Bound("spectral", value, ingredients, assumptions, chance_error=_chance_error(model, x))


def path_norm_bound(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, margin_quantile: float = 0.1) -> Bound:
    """R_hat_gamma + phi_2 max_i ||x_i|| / (gamma sqrt(m)): a relative measure after Neyshabur et al. 2015."""
    m = x.shape[0]
    phi = path_norm(model).get("path_norm", float("nan"))
    radius = x.detach().flatten(1).double().norm(dim=1).max().item()
    gamma, margin_error = _margin_at_quantile(model, x, y, margin_quantile)
    term = phi * radius / (gamma * math.sqrt(m)) if gamma > 0 else math.inf
    ingredients = {"path_norm": phi, "input_radius": radius, "gamma": gamma, "margin_error": margin_error, "complexity_term": term, "m": float(m)}
    assumptions = (
        "Relative measure, not a guarantee: the shape of the Rademacher bound of Neyshabur, Tomioka & Srebro 2015 for "
        "networks with l2 path norm <= phi (phi * max ||x|| / sqrt(m)), divided by the margin gamma (the "
        f"{margin_quantile:g} quantile of training margins), with every constant (including a factor exponential in "
        "depth) set to 1. Use it to rank models; vacuous is not defined. Path norm of a Linear chain, biases left out."
    )
    return Bound("path_norm", margin_error + term, ingredients, assumptions, constant_explicit=False)
