"""Double descent across model classes: linear, random features, forests and networks on one protocol.

Every model class is a scikit-learn estimator (`biaslab.estimators`) swept along
its own complexity axis; test risk first falls, peaks where the model can just
interpolate the training set, and falls again past it (Belkin, Hsu, Ma & Mandal
2019). Wilson 2025 argues this is not special to networks; here the same sweep,
store and figures run over

(a) min-norm least squares on isotropic Gaussian data (Belkin, Hsu & Xu 2019's
    model: x ~ N(0, I_d), y = <x, beta> + sigma eps, the learner uses the first p
    coordinates). Exact finite-sample risk E[(y - x.w)^2], with s_in =
    ||beta_P||^2, s_out = ||beta_rest||^2 + sigma^2:
        p <= n - 2:  s_out (1 + p / (n - p - 1))
        p >= n + 2:  s_in (1 - n / p) + s_out (1 + n / (p - n - 1))
    (infinite for n - 1 <= p <= n + 1). At p = d this is Hastie et al. 2019's
    all-features risk, ||beta||^2 (1 - n/p) + sigma^2 n / (p - n - 1), plus sigma^2.
    Each run averages `problem.draws` training sets and reports the exact
    conditional risk ||w - beta_P||^2 + s_out per draw. Sample-wise double descent
    (vary n at fixed p) uses the same formula. The optimal ridge of this model is
    p s_out / s_in (the posterior mean under an isotropic prior; the risk of ridge
    depends on beta only through its norm), and it removes the peak (Nakkiran et
    al. 2020).
(b) random Fourier features with the min-norm fit on one-hot targets (Belkin et
    al. 2019, Fig. 2) on `digits` and `mnist1d`, N swept through n: test squared
    loss, zero-one error and the coefficient norm; ridge as a grid axis, the
    optimally tuned curve being the lower envelope over it (tuned on the test set,
    as the oracle in Nakkiran et al. 2020).
(c) random forests on Belkin et al.'s two-stage axis: one tree with max_leaf_nodes
    up to n (no bootstrap, so n leaves interpolate), then more trees of n leaves;
    complexity = leaves x trees. Curth, Jeffares & van der Schaar 2023 show the
    second "descent" comes from switching axes (averaging trees is a smoother, not
    a bigger model): read the second stage as a different knob, not more capacity.
(d) MLP width on MNIST-1D with 15% label noise (Nakkiran et al. 2019, model-wise),
    trained by biaslab's trainer through `NeuralNetClassifier`; its test-error
    curves over epochs give epoch-wise double descent.

Figures: test risk against complexity for each class (log axes), the
interpolation threshold (p = n, N = n, n leaves, the first width with zero
training error) marked, the min-max over seeds shaded, the formula overlaid in (a).

Claim check: the unregularized peak sits at the threshold (within [0.8, 1.25] x n)
in (a) and (b); in (a) the simulation matches the formula within 3 standard errors
wherever |p/n - 1| >= 0.25; in (b) the risk at the largest N is below the best
risk at N < n; the optimally ridged curves of (a) and (b) have no peak (never rise
above their running minimum by more than 2 SE and 5%). The verdict needs (a) and
every dataset of (b); forests, networks, sample-wise and epoch-wise curves are
reported as notes (a rise over epochs counts beyond twice the test set's binomial SE).

Reduced from the papers (`quick`): n = 40 Gaussian examples in d = 200, 100
training sets per run, 3 seeds; RFF on 500 digits and 500 MNIST-1D examples
(raw inputs, bandwidth at the median pairwise distance, N up to 8n, ridge grid
0, 0.01, 0.1, 1) instead of 10^4 MNIST with N up to 6n; forests on 1000 MNIST-1D
examples; MLPs (one hidden layer, Adam 1e-3, batch 100, 500 epochs) on 500
MNIST-1D examples with 15% label noise instead of Nakkiran et al.'s CNNs and
ResNets on CIFAR-10 for 4000 epochs; 2 seeds for the data-driven classes.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from biaslab.claims import Checks, Verdict, interpolation_width
from biaslab.estimators import MinNormRegressor
from biaslab.experiments.base import CATALOG, Experiment, Result, estimator_reads
from biaslab.experiments.estimator_runs import DIGITS_BANDWIDTH, MNIST1D_BANDWIDTH, run_classifier
from biaslab.plot import legend_once, mean_band, new_figure, plain_log_ticks
from biaslab.runtime import blas_threads_as_torch, numpy_generator
from biaslab.spec import DataSpec, EstimatorSpec, GaussianFeatures, ModelSpec, RunSpec, SpecError, Sweep, TrainSpec
from biaslab.store import RunRecord, finished_table

NAME = "double-descent"
FINDING = (
    "Unregularized test risk peaks at the interpolation threshold (p = n, N = n) and descends again past it; the "
    "Gaussian-model risk matches its exact formula; optimally tuned ridge removes the peak."
)
PEAK_BAND = (0.8, 1.25)  # the peak counts as "at the threshold" within this factor of it (grid points next to n)
AWAY = 0.25  # formula check where |size / threshold - 1| >= AWAY (the risk's variance blows up near it)
FORMULA_SE = 3.0  # simulation within this many standard errors of the formula, at every size checked
NO_PEAK_SE = 2.0  # a curve "rises" when it exceeds its running minimum by more than this many SE ...
NO_PEAK_REL = 0.05  # ... and by more than this fraction of it (the unridged peaks are orders of magnitude)


# ---------------------------------------------------------------- (a) the exact risk of the Gaussian model


def signal_split(problem: GaussianFeatures, p: int) -> tuple[float, float]:
    """(s_in, s_out): ||beta_P||^2 on the p coordinates used; ||beta_rest||^2 + sigma^2, the noise the learner sees."""
    s_in = problem.signal**2 * p / problem.d
    return s_in, problem.signal**2 - s_in + problem.noise**2


def gaussian_risk(n: int, p: int, s_in: float, s_out: float) -> float:
    """Exact E[(y - x.w)^2] of the min-norm least-squares fit on p isotropic Gaussian features (BHX 2019, Thm 1)."""
    if p <= n - 2:
        return s_out * (1.0 + p / (n - p - 1))
    if p >= n + 2:
        return s_in * (1.0 - n / p) + s_out * (1.0 + n / (p - n - 1))
    return math.inf


def optimal_ridge(p: int, s_in: float, s_out: float) -> float:
    """The risk-minimizing lambda for ||y - X w||^2 + lambda ||w||^2 with isotropic features: p s_out / s_in."""
    return p * s_out / s_in if s_in > 0 else math.inf


def run_gaussian(spec: RunSpec) -> Result:
    """Monte Carlo over `draws` training sets of the Gaussian model; exact conditional risk per draw."""
    problem, est = spec.problem, spec.estimator
    n, p, d = problem.n, est.n_features, problem.d
    s_in, s_out = signal_split(problem, p)
    ridge = optimal_ridge(p, s_in, s_out) if est.ridge_rule == "optimal" else est.ridge
    beta = np.full(d, problem.signal / math.sqrt(d))  # equal energy per coordinate
    rng = numpy_generator(spec.seed, "gaussian_features")
    risks, norms, train = [], [], []
    with blas_threads_as_torch():
        for _ in range(problem.draws):
            X = rng.standard_normal((n, d))  # (n, d)
            y = X @ beta + problem.noise * rng.standard_normal(n)
            fitted = MinNormRegressor(ridge).fit(X[:, :p], y)
            risks.append(float(np.sum((fitted.coef_ - beta[:p]) ** 2)) + s_out)
            norms.append(fitted.coef_norm_)
            train.append(float(np.mean((fitted.predict(X[:, :p]) - y) ** 2)))
    risks = np.array(risks)
    formula = gaussian_risk(n, p, s_in, s_out) if ridge == 0.0 else math.nan
    size, threshold = (p, n) if est.axis == "model_size" else (n, p)
    row = {
        "test_risk": float(risks.mean()),
        "test_risk_se": float(risks.std(ddof=1) / math.sqrt(len(risks))),
        "formula_risk": formula,
        "train_risk": float(np.mean(train)),
        "coef_norm": float(np.mean(norms)),
        "ridge": float(ridge),
        "complexity": float(size),
        "threshold": float(threshold),
    }
    return Result.estimate([row])


def run(spec: RunSpec) -> Result:
    """The runner: the Gaussian model when `problem` is set, else a classifier on `data`."""
    if spec.estimator is None:
        raise SpecError("estimator: double-descent runs need an estimator section (estimator.kind=...)")
    return run_gaussian(spec) if spec.problem is not None else run_classifier(spec)


# ---------------------------------------------------------------- presets


def _gaussian(problem: GaussianFeatures, sizes, seeds, axis: str = "model_size") -> Sweep:
    base = RunSpec(experiment=NAME, problem=problem, estimator=EstimatorSpec(kind="min_norm", n_features=sizes[0], axis=axis), dtype="float64")
    size_path = "estimator.n_features" if axis == "model_size" else "problem.n"
    return Sweep(base=base, grid={"estimator.ridge_rule": ("fixed", "optimal"), "seed": tuple(seeds), size_path: tuple(sizes)})


def _samplewise(problem: GaussianFeatures, p: int, ns, seeds) -> Sweep:
    sweep = _gaussian(problem, ns, seeds, axis="train_size")
    base = sweep.base.model_copy(update={"estimator": sweep.base.estimator.model_copy(update={"n_features": p})})
    return Sweep(base=base, grid=sweep.grid)


def _rff(data: DataSpec, bandwidth: float, sizes, ridges, seeds) -> Sweep:
    base = RunSpec(experiment=NAME, data=data, estimator=EstimatorSpec(kind="random_features", bandwidth=bandwidth), dtype="float64")
    return Sweep(base=base, grid={"estimator.ridge": tuple(ridges), "seed": tuple(seeds), "estimator.n_features": tuple(sizes)})


def _forest(data: DataSpec, leaves, trees, seeds) -> Sweep:
    """Belkin et al.'s two stages: (leaves, 1 tree) up to n leaves, then (n leaves, more trees)."""
    n = data.n_train
    stages = [{"kind": "random_forest", "max_leaf_nodes": L, "n_trees": 1} for L in leaves] + [
        {"kind": "random_forest", "max_leaf_nodes": n, "n_trees": T} for T in trees
    ]
    base = RunSpec(experiment=NAME, data=data, estimator=EstimatorSpec(kind="random_forest"))
    return Sweep(base=base, grid={"seed": tuple(seeds), "estimator": tuple(stages)})


def _network(data: DataSpec, train: TrainSpec, widths, seeds) -> Sweep:
    base = RunSpec(experiment=NAME, data=data, estimator=EstimatorSpec(kind="neural_net"), model=ModelSpec(kind="mlp", depth=1), train=train)
    return Sweep(base=base, grid={"seed": tuple(seeds), "model.width": tuple(widths)})


def _joined(first: Sweep, *rest: Sweep) -> Sweep:
    return first.model_copy(update={"also": tuple(rest)})


def _mnist1d(n_train: int, n_test: int, noise: float = 0.0) -> DataSpec:
    return DataSpec(name="mnist1d", n_train=n_train, n_test=n_test, standardize=False, label_noise=noise)


def _threshold_grid(n: int, low: int, high: int) -> tuple[int, ...]:
    """Sizes from low to high, log-spaced, dense next to n (0.8n, 0.9n, n, 1.1n, 1.25n)."""
    far = np.unique(np.round(np.geomspace(low, high, 10)).astype(int))
    near = [round(n * f) for f in (0.8, 0.9, 1.0, 1.1, 1.25)]
    return tuple(sorted(set(int(v) for v in far) | set(near)))


def tiny() -> Sweep:
    """Seconds: every model class at a handful of sizes, one seed."""
    gauss = GaussianFeatures(n=10, d=30, draws=20)
    train = TrainSpec(optimizer="adam", lr=1e-3, batch_size=50, max_steps=100, eval_every=20)
    return _joined(
        _gaussian(gauss, (2, 5, 10, 15, 30), (0,)),
        _samplewise(gauss, 10, (4, 10, 20), (0,)),
        _rff(DataSpec(name="digits", n_train=50, n_test=100, standardize=False), DIGITS_BANDWIDTH, (10, 50, 200), (0.0, 0.1), (0,)),
        _forest(_mnist1d(50, 50), (5, 50), (3,), (0,)),
        _network(_mnist1d(100, 100, 0.15), train, (4, 32), (0,)),
    )


def quick() -> Sweep:
    """All four classes, sample-wise (a), 2-3 seeds: a few minutes on 2 cores."""
    gauss = GaussianFeatures(n=40, d=200, draws=100)
    train = TrainSpec(optimizer="adam", lr=1e-3, batch_size=100, max_steps=2500, eval_every=25)  # 500 epochs of 5 steps
    ridges = (0.0, 1e-2, 1e-1, 1.0)
    return _joined(
        _gaussian(gauss, _threshold_grid(40, 2, 200), (0, 1, 2)),
        _samplewise(gauss, 40, _threshold_grid(40, 8, 200), (0, 1, 2)),
        _rff(DataSpec(name="digits", n_train=500, n_test=1000, standardize=False), DIGITS_BANDWIDTH, _threshold_grid(500, 50, 4000), ridges, (0, 1)),
        _rff(_mnist1d(500, 1000), MNIST1D_BANDWIDTH, _threshold_grid(500, 50, 4000), ridges, (0, 1)),
        _forest(_mnist1d(1000, 1000), (10, 30, 100, 300, 1000), (2, 5, 10, 20), (0, 1)),
        _network(_mnist1d(500, 1000, 0.15), train, (4, 8, 16, 32, 64, 128, 256), (0, 1)),
    )


def paper() -> Sweep:
    """Closer to the papers' sizes: n = 100 Gaussian examples, 1797 digits / 4000 MNIST-1D for RFF, 5 seeds; hours on a CPU."""
    gauss = GaussianFeatures(n=100, d=500, draws=1000)
    train = TrainSpec(optimizer="adam", lr=1e-4, batch_size=128, max_steps=4000 * 32, eval_every=32 * 20)  # ~4000 epochs
    ridges = (0.0, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)
    seeds = (0, 1, 2, 3, 4)
    return _joined(
        _gaussian(gauss, _threshold_grid(100, 2, 500), seeds),
        _samplewise(gauss, 100, _threshold_grid(100, 10, 500), seeds),
        _rff(DataSpec(name="digits", n_train=1000, n_test=797, standardize=False), DIGITS_BANDWIDTH, _threshold_grid(1000, 100, 20000), ridges, seeds),
        _rff(_mnist1d(4000, 1000), MNIST1D_BANDWIDTH, _threshold_grid(4000, 400, 40000), ridges, seeds),
        _forest(_mnist1d(4000, 1000), (10, 30, 100, 300, 1000, 4000), (2, 5, 10, 20, 50), seeds),
        _network(_mnist1d(4000, 1000, 0.15), train, (2, 4, 8, 16, 32, 64, 128, 256, 512, 1024), seeds),
    )


# ---------------------------------------------------------------- the experiment


class DoubleDescent(Experiment):
    """Test risk peaks where a model can just interpolate its training data and falls again as it grows, in min-norm
    least squares (matching the exact formula), random features, forests and networks alike. Optimally tuned ridge
    removes the peak, so the peak is a property of the unregularized interpolant, not of size."""

    title = "Double descent in linear models, random features, forests and networks"
    axes_note = 'its axis is the model class (least squares, random features, forests, an MLP width) through biaslab.estimators, not the optimizer'
    reference = (
        "Belkin, Hsu, Ma & Mandal 2019 (PNAS); Belkin, Hsu & Xu 2019 (SIAM J. Math. Data Sci.); Hastie et al. 2019; "
        "Nakkiran et al. 2019 (ICLR 2020); Curth et al. 2023 (NeurIPS)"
    )

    reads = estimator_reads

    def refuse(self, spec: RunSpec) -> None:
        if spec.estimator is None:
            raise SpecError("estimator: double-descent runs need an estimator section (estimator.kind=...)")
        if spec.problem is not None:
            if spec.problem.kind != "gaussian_features" or spec.estimator.kind != "min_norm":
                raise SpecError(f"problem.kind: {NAME} takes gaussian_features with estimator.kind='min_norm' only, got {spec.problem.kind!r}")
            if spec.estimator.n_features > spec.problem.d:
                raise SpecError(f"estimator.n_features: at most problem.d = {spec.problem.d}, got {spec.estimator.n_features}")
        elif spec.estimator.kind == "min_norm":
            raise SpecError("estimator.kind: min_norm runs on problem.kind=gaussian_features; on data use random_features")

    def figures(self, records: list[RunRecord]) -> dict[str, Figure]:
        table = finished_table(records)
        figures = {}
        if len(_part(table, "min_norm")):
            figures["linear"] = _linear_figure(table)
        if len(_part(table, "random_features")):
            figures["random-features"] = _random_features_figure(table)
        if len(_part(table, "random_forest")):
            figures["forests"] = _forests_figure(table)
        if len(_part(table, "neural_net")):
            figures["networks"] = _networks_figure(records, table)
        return figures

    def claim(self, records: list[RunRecord]) -> Verdict:
        table = finished_table(records)
        numbers: dict[str, float] = {}
        checks = Checks()
        _judge_linear(table, numbers, checks)
        _judge_random_features(table, numbers, checks)
        if not numbers:
            return Verdict(FINDING, False, {"runs": float(len(table))}, "no finished Gaussian-model or random-feature runs to judge")
        notes = _rff_notes(table, numbers) + _sample_notes(table, numbers) + _forest_notes(table) + _network_notes(records, table)
        return checks.verdict(FINDING, numbers, notes)


# ---------------------------------------------------------------- reading the records


def _part(table: pd.DataFrame, kind: str) -> pd.DataFrame:
    """The rows of one model class (estimator.kind); none when the table has no such runs."""
    return table[table["estimator.kind"] == kind] if len(table) and "estimator.kind" in table else table.iloc[0:0]


def _per_dataset(part: pd.DataFrame):
    """(dataset name, its rows) for each dataset of a part; nothing for an empty part (which may lack the column)."""
    return part.groupby("data.name") if len(part) else []


def curve(frame: pd.DataFrame, value: str = "test_risk", se: str | None = None) -> pd.DataFrame:
    """Mean over seeds per complexity, with the SE of that mean (from within-run SEs if given, else across seeds)."""
    groups = frame.groupby("complexity")
    out = pd.DataFrame({"mean": groups[value].mean(), "low": groups[value].min(), "high": groups[value].max(), "count": groups[value].count()})
    if se is not None:
        out["se"] = groups[se].apply(lambda s: math.sqrt(float(np.sum(np.square(s)))) / len(s))
    else:
        out["se"] = groups[value].std(ddof=1).fillna(0.0) / np.sqrt(out["count"])
    return out.sort_index()


def peak_at_threshold(c: pd.DataFrame, threshold: float) -> tuple[bool, float]:
    """Whether the curve's maximum lies within PEAK_BAND of the threshold; and where it is."""
    finite = c["mean"].replace(np.inf, np.nan).fillna(np.inf)
    where = float(finite.idxmax())
    return PEAK_BAND[0] * threshold <= where <= PEAK_BAND[1] * threshold, where


def largest_rise(c: pd.DataFrame) -> float:
    """How far (in SE of the difference) the curve climbs above its running minimum at worst, counting only
    rises of more than NO_PEAK_REL of that minimum: 0 for a non-increasing curve; <= NO_PEAK_SE means no peak.
    With no spread (one seed) a counted rise is infinite."""
    worst, best, best_se = 0.0, math.inf, 0.0
    for mean, se in zip(c["mean"], c["se"]):
        if mean > best * (1.0 + NO_PEAK_REL):
            scale = math.sqrt(se**2 + best_se**2)
            worst = max(worst, (mean - best) / scale if scale > 0 else math.inf)
        if mean < best:
            best, best_se = mean, se
    return worst


# ---------------------------------------------------------------- (a) the Gaussian model: figure, check, notes


def _gaussian_parts(table: pd.DataFrame, axis: str) -> pd.DataFrame:
    part = _part(table, "min_norm")
    return part[part["estimator.axis"] == axis] if len(part) else part


def _linear_figure(table: pd.DataFrame) -> Figure:
    fig, axes = new_figure(ncols=2)
    for ax, axis, label in zip(axes, ("model_size", "train_size"), ("features used p (n fixed)", "training examples n (p fixed)")):
        part = _gaussian_parts(table, axis)
        if not len(part):
            continue
        for rule, color, name in (("fixed", "C0", "min-norm"), ("optimal", "C2", "optimal ridge")):
            runs = part[part["estimator.ridge_rule"] == rule]
            if len(runs):
                mean = mean_band(ax, runs, "complexity", "test_risk", label=f"{name} (simulated)", color=color)
                ax.errorbar(mean.index, mean.values, yerr=curve(runs, se="test_risk_se")["se"], fmt="none", color=color)
        _formula_line(ax, part, axis)
        threshold = float(part["threshold"].iloc[0])
        ax.axvline(threshold, color="grey", linestyle="--", linewidth=1, label="interpolation threshold")
        ax.set(xscale="log", yscale="log", xlabel=label, ylabel="test risk E(y - x.w)^2", title=f"(a) Gaussian model, {axis.replace('_', ' ')}")
        plain_log_ticks(ax, "x")  # 2x10^0-style minor labels of a short log axis collide
        legend_once(ax)
    return fig


def _formula_line(ax, part: pd.DataFrame, axis: str) -> None:
    row = part.iloc[0]
    problem = GaussianFeatures(n=int(row["problem.n"]), d=int(row["problem.d"]), signal=row["problem.signal"], noise=row["problem.noise"], draws=2)
    sizes = np.unique(np.round(np.geomspace(part["complexity"].min(), part["complexity"].max(), 400)).astype(int))
    points = []
    for size in sizes:
        n, p = (problem.n, int(size)) if axis == "model_size" else (int(size), int(row["estimator.n_features"]))
        points.append(gaussian_risk(n, p, *signal_split(problem, p)))
    ax.plot(sizes, np.where(np.isfinite(points), points, np.nan), color="k", linewidth=1, label="exact formula (BHX 2019)")


def _judge_linear(table: pd.DataFrame, numbers: dict[str, float], checks: Checks) -> None:
    part = _gaussian_parts(table, "model_size")
    if not len(part):
        checks.fail("no model-wise Gaussian-model runs")
        return
    plain = curve(part[part["estimator.ridge_rule"] == "fixed"], se="test_risk_se")
    threshold = float(part["threshold"].iloc[0])
    at, where = peak_at_threshold(plain, threshold)
    misfit, checked = formula_misfit(part)
    numbers |= {"linear_peak_at": where, "linear_threshold": threshold, "linear_formula_max_z": misfit, "linear_sizes_checked": float(checked)}
    checks.check(at, f"(a) min-norm risk peaks at p={where:g} (threshold n={threshold:g})")
    ok = checked > 0 and misfit <= FORMULA_SE
    checks.check(ok, f"(a) simulation vs formula: worst {misfit:.2f} SE over {checked} sizes away from p=n (<= {FORMULA_SE:g})")
    ridged = part[part["estimator.ridge_rule"] == "optimal"]
    if len(ridged):
        rise = largest_rise(curve(ridged, se="test_risk_se"))
        numbers["linear_ridged_rise_se"] = rise
        checks.check(rise <= NO_PEAK_SE, f"(a) optimal-ridge curve rises at most {rise:.2f} SE above its running minimum (<= {NO_PEAK_SE:g}, rises under {NO_PEAK_REL:.0%} not counted)")


def formula_misfit(frame: pd.DataFrame) -> tuple[float, int]:
    """Largest |simulated - formula| / SE over sizes away from the threshold; how many sizes were checked."""
    unridged = frame[frame["estimator.ridge_rule"] == "fixed"]
    unridged = unridged[unridged["ridge"] == 0.0]
    worst, checked = 0.0, 0
    for size, rows in unridged.groupby("complexity"):
        threshold = float(rows["threshold"].iloc[0])
        if abs(size / threshold - 1.0) < AWAY:
            continue
        mean = rows["test_risk"].mean()
        se = math.sqrt(float(np.sum(np.square(rows["test_risk_se"])))) / len(rows)
        worst, checked = max(worst, abs(mean - rows["formula_risk"].iloc[0]) / se), checked + 1
    return worst, checked


def _sample_notes(table: pd.DataFrame, numbers: dict[str, float]) -> tuple[str, ...]:
    part = _gaussian_parts(table, "train_size")
    plain = part[part["estimator.ridge_rule"] == "fixed"] if len(part) else part
    if not len(plain):
        return ()
    c = curve(plain, se="test_risk_se")
    p = float(plain["threshold"].iloc[0])
    near = c[(c.index >= PEAK_BAND[0] * p) & (c.index <= PEAK_BAND[1] * p)]["mean"]
    fewer = c[c.index < PEAK_BAND[0] * p]["mean"]
    if not len(near) or not len(fewer):
        return ()
    numbers |= {"samplewise_risk_near_threshold": float(near.max()), "samplewise_best_fewer": float(fewer.min())}
    hurts = near.max() > fewer.min()
    return (
        f"sample-wise (a), p={p:g}: risk near n=p {near.max():.3g} vs {fewer.min():.3g} with fewer examples: "
        + ("more data hurts near the threshold" if hurts else "more data does not hurt here"),
    )


# ---------------------------------------------------------------- (b) random features: figure, check, notes


def largest_and_best_under(c: pd.DataFrame, threshold: float) -> tuple[float, float]:
    """A curve's mean at its largest size, and its best mean below the threshold (NaN when it has none there)."""
    under = c[c.index < threshold]["mean"]
    return float(c["mean"].iloc[-1]), float(under.min()) if len(under) else math.nan


def ridge_envelope(frame: pd.DataFrame) -> pd.DataFrame:
    """Per complexity, the ridge whose seed-mean test risk is lowest (oracle tuning), as a curve."""
    rows = []
    for size, at in frame.groupby("complexity"):
        by_ridge = {r: curve(part).iloc[0] for r, part in at.groupby("estimator.ridge")}
        ridge = min(by_ridge, key=lambda r: by_ridge[r]["mean"])
        rows.append({"complexity": size, "ridge": ridge} | dict(by_ridge[ridge]))
    return pd.DataFrame(rows).set_index("complexity").sort_index() if rows else pd.DataFrame(columns=["mean", "se"])


def _random_features_figure(table: pd.DataFrame) -> Figure:
    part = _part(table, "random_features")
    names = sorted(part["data.name"].unique()) if len(part) else []
    fig, axes = new_figure(ncols=3, nrows=max(len(names), 1), width=3.8)
    for row, name in enumerate(names):
        frame = part[part["data.name"] == name]
        unridged = frame[frame["estimator.ridge"] == 0.0]
        envelope = ridge_envelope(frame)
        for col, (value, label) in enumerate((("test_risk", "test squared loss"), ("test_error", "test zero-one error"), ("coef_norm", "coefficient norm ||W||_F"))):
            ax = axes[3 * row + col]
            if len(unridged):
                mean_band(ax, unridged, "complexity", value, label="min-norm", color="C0")
            if value == "test_risk" and len(envelope):
                ax.plot(envelope.index, envelope["mean"], marker="s", markersize=3, color="C2", label="best ridge (oracle)")
            ax.axvline(float(frame["threshold"].iloc[0]), color="grey", linestyle="--", linewidth=1, label="N = n")
            ax.set(xscale="log", xlabel="random features N", ylabel=label, title=f"(b) {name}: {label.split(' ||')[0]}")
            if value != "test_error" and ax.has_data() and (frame[value] > 0).all():
                ax.set_yscale("log")
            plain_log_ticks(ax, "x")
            legend_once(ax)
    return fig


def _judge_random_features(table: pd.DataFrame, numbers: dict[str, float], checks: Checks) -> None:
    part = _part(table, "random_features")
    if not len(part):
        checks.fail("no random-feature runs")
    for name, frame in _per_dataset(part):
        unridged = frame[frame["estimator.ridge"] == 0.0]
        if not len(unridged):
            checks.fail(f"(b) {name}: no min-norm (ridge 0) random-feature runs to judge")
            continue
        c = curve(unridged)
        threshold = float(frame["threshold"].iloc[0])
        at, where = peak_at_threshold(c, threshold)
        largest, best_under = largest_and_best_under(c, threshold)
        numbers |= {f"{name}_rff_peak_at": where, f"{name}_rff_threshold": threshold, f"{name}_rff_risk_largest": largest, f"{name}_rff_best_under": best_under}
        numbers[f"{name}_rff_peak_risk"] = float(c["mean"].max())
        checks.check(at, f"(b) {name}: min-norm RFF risk peaks at N={where:g} (n={threshold:g})")
        below = largest < best_under
        checks.check(below, f"(b) {name}: risk {largest:.3f} at N={c.index[-1]:g} vs best under-parameterized {best_under:.3f}")
        if frame["estimator.ridge"].nunique() > 1:
            rise = largest_rise(ridge_envelope(frame))
            numbers[f"{name}_rff_ridged_rise_se"] = rise
            checks.check(rise <= NO_PEAK_SE, f"(b) {name}: best-ridge curve rises at most {rise:.2f} SE (<= {NO_PEAK_SE:g}, rises under {NO_PEAK_REL:.0%} not counted)")


def _rff_notes(table: pd.DataFrame, numbers: dict[str, float]) -> tuple[str, ...]:
    """Zero-one error beside the squared loss the verdict uses, and where the oracle ridge sits in its grid."""
    part = _part(table, "random_features")
    notes = []
    for name, frame in _per_dataset(part):
        unridged = frame[frame["estimator.ridge"] == 0.0]
        if not len(unridged):
            continue
        errors = curve(unridged, "test_error")
        threshold = float(frame["threshold"].iloc[0])
        largest, best_under = largest_and_best_under(errors, threshold)
        numbers |= {f"{name}_rff_error_largest": largest, f"{name}_rff_error_best_under": best_under}
        grid = sorted(frame["estimator.ridge"].unique())
        chosen = sorted(set(ridge_envelope(frame)["ridge"])) if len(grid) > 1 else []
        edge = " (the largest in the grid: a larger ridge may do better)" if chosen and chosen[-1] == grid[-1] else ""
        notes.append(
            f"(b) {name}: zero-one error {largest:.3f} at the largest N vs {best_under:.3f} best under-parameterized; "
            f"oracle ridges chosen {', '.join(f'{r:g}' for r in chosen) or 'none'}{edge}"
        )
    return tuple(notes)


# ---------------------------------------------------------------- (c) forests: figure and notes


def _forests_figure(table: pd.DataFrame) -> Figure:
    part = _part(table, "random_forest")
    fig, axes = new_figure(ncols=2)
    for ax, (value, label) in zip(axes, (("test_risk", "test squared loss"), ("test_error", "zero-one error"))):
        for name, frame in part.groupby("data.name"):
            mean_band(ax, frame, "complexity", value, label=f"test, {name}")
            t = curve(frame, value.replace("test", "train"))
            ax.plot(t.index, t["mean"], linestyle=":", label=f"train, {name}")
            ax.axvline(float(frame["threshold"].iloc[0]), color="grey", linestyle="--", linewidth=1, label="n leaves, 1 tree | more trees")
        ax.set(xscale="log", xlabel="max leaves x trees", ylabel=label, title="(c) random forest, two-stage axis")
        legend_once(ax)
    return fig


def _forest_notes(table: pd.DataFrame) -> tuple[str, ...]:
    part = _part(table, "random_forest")
    notes = []
    for name, frame in _per_dataset(part):
        c = curve(frame)
        threshold = float(frame["threshold"].iloc[0])
        first = c[c.index <= threshold]["mean"]
        second = c[c.index > threshold]["mean"]
        at_n = float(first.iloc[-1]) if len(first) else math.nan
        notes.append(
            f"(c) forest on {name}: test squared loss {first.min():.3f} best over leaves, {at_n:.3f} at n leaves (1 tree), "
            f"{second.min() if len(second) else math.nan:.3f} best with more trees; train loss at n leaves "
            f"{float(curve(frame, 'train_risk')['mean'].get(threshold, math.nan)):.3g}. The second stage averages trees "
            "(Curth et al. 2023): a smoother, not more capacity"
        )
    return tuple(notes)


# ---------------------------------------------------------------- (d) networks: figure and notes


def _network_runs(records: list[RunRecord]) -> list[RunRecord]:
    """The finished runs of part (d), whose curves are the test error over training."""
    return [r for r in records if r.status == "ok" and r.run_spec.estimator is not None and r.run_spec.estimator.kind == "neural_net"]


def _networks_figure(records: list[RunRecord], table: pd.DataFrame) -> Figure:
    part = _part(table, "neural_net")
    fig, (ax_width, ax_epoch) = new_figure(ncols=2)
    for value, label in (("train_error", "train"), ("test_error", "test")):
        mean_band(ax_width, part, "complexity", value, label=label)
    width = interpolation_width(part)
    if width is not None:
        ax_width.axvline(width, color="grey", linestyle="--", linewidth=1, label=f"zero train error (H={width:g})")
    ax_width.set(xscale="log", xlabel="hidden units H", ylabel="zero-one error", title="(d) MLP width, 15% label noise")
    plain_log_ticks(ax_width, "x")
    legend_once(ax_width)
    nets = _network_runs(records)
    first_seed = min((r.run_spec.seed for r in nets), default=0)
    widths = sorted({r.run_spec.model.width for r in nets})
    for i, w in enumerate(widths):
        for r in (r for r in nets if r.run_spec.model.width == w and r.run_spec.seed == first_seed):
            ax_epoch.plot(np.maximum(r.curves["epoch"], 1e-1), r.curves["test_error"], color=f"C{i % 10}", label=f"H={w}")
    ax_epoch.set(xscale="log", xlabel="epoch", ylabel="test error", title="epoch-wise: test error over training")
    legend_once(ax_epoch, ncol=2)
    return fig


def _network_notes(records: list[RunRecord], table: pd.DataFrame) -> tuple[str, ...]:
    part = _part(table, "neural_net")
    if not len(part):
        return ()
    c = curve(part, "test_error")
    width = interpolation_width(part)
    notes = []
    if width is None:
        notes.append(f"(d) MLP: no width reached zero training error; test error {c['mean'].min():.3f}..{c['mean'].max():.3f}")
    else:
        near = c[(c.index >= width / 2) & (c.index <= width * 2)]["mean"]
        before, after = c[c.index < width / 2]["mean"], c[c.index > width * 2]["mean"]
        notes.append(
            f"(d) MLP: first width with zero train error H={width:g}; test error near it {near.max():.3f}, best narrower "
            f"{before.min() if len(before) else math.nan:.3f}, best wider {after.min() if len(after) else math.nan:.3f}"
        )
    nets = _network_runs(records)
    widest = max(r.run_spec.model.width for r in nets)
    curves = [np.array(r.curves["test_error"]) for r in nets if r.run_spec.model.width == widest]
    length = min(len(x) for x in curves)
    mean = np.mean([x[:length] for x in curves], axis=0)  # (evaluations,) over seeds
    n_test = int(part["data.n_test"].iloc[0]) if "data.n_test" in part and part["data.n_test"].notna().all() else 1000
    notes.append(f"(d) epoch-wise, H={widest} (mean of {len(curves)} seeds): " + epochwise_shape(mean, n_test))  # seeds share the test set: its noise stays
    return tuple(notes)


def epochwise_shape(test_error: np.ndarray, n_test: int) -> str:
    """Describe a test-error curve over training: first minimum, the peak after it, the end. A rise counts only
    beyond twice the binomial standard error of a test error measured on n_test examples."""
    first = int(np.argmin(test_error[: max(2, len(test_error) // 2)]))
    peak = first + int(np.argmax(test_error[first:]))
    low, high, end = float(test_error[first]), float(test_error[peak]), float(test_error[-1])
    noise = 2.0 * math.sqrt(max(low * (1.0 - low), 1e-12) / n_test)
    second = high - low > noise and high - end > noise
    shape = "falls, rises, falls again" if second else f"no second descent beyond test-set noise ({noise:.3f})"
    return f"test error {test_error[0]:.3f} -> {low:.3f} (eval {first}) -> {high:.3f} (eval {peak}) -> {end:.3f} at the end: {shape}"


CATALOG.add(NAME, DoubleDescent())
