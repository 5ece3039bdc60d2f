"""Which margin does an optimizer maximize? The one of its own geometry (Gunasekar, Lee, Soudry & Srebro 2018).

On linearly separable data the exponential loss has no minimizer, and the direction an optimizer drifts to is
decided by its geometry. Gunasekar et al. (ICML 2018, "Characterizing implicit bias in terms of optimization
geometry", Theorem 5) prove that steepest descent w.r.t. a norm ||.|| with small steps converges in direction to the
max-margin separator of that same norm, argmin ||w|| subject to y_i <w, x_i> >= 1. So:

- gradient descent (L2)               -> the hard-margin SVM;
- sign descent (L-infinity)           -> the L-infinity max-margin (a dense, sign-like vector);
- coordinate descent (L1), the greedy
  coordinate of largest |gradient|    -> the L1 max-margin (sparse: boosting's margin, Rosset, Zhu & Hastie 2004);
- full-batch Adam with epsilon -> 0   -> the L-infinity max-margin (Zhang, Zou & Cao 2024, NeurIPS), as sign descent.

Update rules (`steepest_step`; u = -grad L(w) / L(w) = sum_i p_i y_i x_i with p = softmax(-y_i <w, x_i>), computed
stably however small the loss): steepest descent takes the step argmin_v <grad L, v> + ||v||^2 / 2, whose length is
the dual norm of the gradient: GD w += eta u; sign descent w += eta ||u||_1 sign(u); coordinate descent
w_j += eta ||u||_inf sign(u_j) for the first j of largest |u_j|. Steps (problem.decay, problem.normalize): eta_t =
train.lr (t + 2)^-1/2 / (B^2 L(w_t)) with B the largest dual norm of a point (L2 for GD, L1 for sign descent,
L-infinity for coordinate descent; Gunasekar et al.'s step unit 1 / B^2) and L the mean exponential loss: the
loss-normalized, 1/sqrt(t)-decaying step of normalized GD (Nacson et al. 2019, AISTATS), train.lr = 4. Why not
Theorem 5's own steps: they are bounded by a constant, so once the loss is small they are constant steps under which
the direction moves like 1/ln t (as in max-margin); and a normalized step that does not decay leaves sign descent
at a floor that grows with the step (measured on the dense teacher: 5.97 degrees from the L-infinity reference
after 2e6 steps at train.lr 1, margin 0.99968 of the maximum; 1.9 degrees at 0.2, 9.3 at 5 after 2e5 steps).
Adam is torch's (bias-corrected moments, betas train.betas) with step train.lr (t + 2)^-1/2 (Zhang et al.'s
decaying step t^-a, a in (0, 1]; here a = problem.decay = 0.5, train.lr = 1) and epsilon problem.adam_eps = 0 (the
limit they analyse); its moments are kept in units of L(w_t), which is exact and never underflows. The papers'
exact step constants are not reproduced (unverified here); the rules above are stated as run.

Setup: mean exponential loss, no bias, w0 = 0, float64, full batch, written out in numpy (a 50-dimensional linear
model: framework overhead would be the whole cost). Data (problem.kind margin_geometry): n = 20 points x ~ N(0,
I_50), labelled by the sign of x_1 (sparse_teacher: a 1-sparse teacher) or of <s, x> with s a random sign vector
(dense_teacher). With n < d the three references lie far apart: on the presets' draw (seed 0) the angles L1-L2,
L2-Linf, L1-Linf are 50.7, 40.1, 72.5 degrees (sparse teacher) and 47.5, 37.3, 62.3 (dense teacher); every run
records them (final ref_angle_*). The references are cvxpy solutions (convex.l1_max_margin, hard_margin_svm,
linf_max_margin).

Reduced from the papers: one draw of each setting at `quick` (three at `paper`), 2e5 steps of steepest descent and
1e6 of Adam at `quick` (1e6 and 1e7 at `paper`). Adam uses betas (0.9, 0.99): with the default beta2 = 0.999 its
second moment remembers gradients that the falling loss made far larger, its steps stall, and after 1e6 steps
(train.lr 1, a = 0.5) it was still 23 and 26 degrees from the L-infinity reference on the two settings (with 0.99:
1.1 and 1.4), nearer L2 than L-infinity on the dense teacher at 3e5 steps; --set train.betas=[0.9,0.999] with more
steps shows the slow approach.

Figure: the angle (degrees, log scale) between the iterate and each of the three references against steps (log
scale), one panel per optimizer; solid lines the sparse teacher, dashed the dense one.

Claim (the papers'): for every run, the angle to the optimizer's own reference (L2 for GD, L-infinity for sign
descent and Adam, L1 for coordinate descent) falls over the last decade of steps (the angle at the last step is
below the angle at the evaluation nearest a tenth of it) and ends below the angle to each of the other two
references. Direction convergence is a limit, so no threshold on the angle's size is claimed; the notes give the
final angles and each run's margin in its own norm over the maximum. At `tiny` (2000 steps) Adam on the dense
teacher is still nearer the L2 reference than the L-infinity one, and the verdict FAILs on that run alone; `quick`
shows the claim for every run.

Seeds: `problem.seed` draws the points and the teacher (the presets leave it unset: the run's `seed` draws them).
Nothing else is random (w0 = 0, full-batch steps).
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure

from biaslab.claims import Checks, Verdict, last_decade
from biaslab.convex import hard_margin_svm, l1_max_margin, linf_max_margin
from biaslab.data.problems import margin_geometry
from biaslab.experiments.base import CATALOG, Experiment, Result
from biaslab.plot import figure_legend, new_figure, plain_log_ticks
from biaslab.spec import MarginGeometry, RunSpec, Sweep, TrainSpec
from biaslab.store import RunRecord
from biaslab.train import Fit, evaluation_steps

NAME = "optimizer-geometry"
FINDING = (
    "Each optimizer's direction converges to the max-margin separator of its own norm (GD: L2, sign descent and Adam: "
    "L-infinity, coordinate descent: L1): the angle to it falls over the last decade of steps and ends below the angles to the other references."
)
NORMS = ("l1", "l2", "linf")
OWN_NORM = {"gd": "l2", "sign_descent": "linf", "coordinate_descent": "l1", "adam": "linf"}  # the max-margin it reaches
OPTIMIZERS = tuple(OWN_NORM)
NORM_ORD = {"l1": 1, "l2": 2, "linf": np.inf}
DUAL_ORD = {"gd": 2, "sign_descent": 1, "coordinate_descent": np.inf}  # B = max_i ||x_i||_* in these norms
NORM_LABELS = {"l1": "L1", "l2": "L2", "linf": "L-inf"}
TITLES = {"gd": "GD (L2)", "sign_descent": "sign descent (L-inf)", "coordinate_descent": "coordinate descent (L1)", "adam": "Adam (L-inf)"}
COMMON_READS = (
    "problem.labels", "problem.n", "problem.d", "problem.seed", "problem.decay", "dtype",
    "train.optimizer", "train.lr", "train.batch_size", "train.max_steps", "train.eval_every", "train.eval_spacing", "train.eval_points",
)  # fmt: skip
ADAM_READS = ("problem.adam_eps", "train.betas")
STEEPEST_READS = ("problem.normalize",)


def _train(optimizer: str, steps: int, lr: float, **extra) -> dict:
    return TrainSpec(optimizer=optimizer, lr=lr, batch_size=None, max_steps=steps, eval_spacing="log", eval_points=40, **extra).model_dump(mode="json")


def _sweep(steps: int, adam_steps: int, seeds=(0,)) -> Sweep:
    base = RunSpec(experiment=NAME, problem=MarginGeometry(), dtype="float64")
    settings = tuple(MarginGeometry(labels=labels).model_dump(mode="json") for labels in ("sparse_teacher", "dense_teacher"))
    trains = (
        _train("gd", steps, 4.0), _train("sign_descent", steps, 4.0), _train("coordinate_descent", steps, 4.0),
        _train("adam", adam_steps, 1.0, betas=(0.9, 0.99)),
    )  # fmt: skip
    return Sweep(base=base, grid={"problem": settings, "train": trains, "seed": tuple(seeds)})


def tiny() -> Sweep:
    return _sweep(2_000, 2_000)


def quick() -> Sweep:
    return _sweep(200_000, 1_000_000)


def paper() -> Sweep:
    return _sweep(1_000_000, 10_000_000, seeds=(0, 1, 2))


def angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    """The angle between two nonzero vectors in degrees, accurate near 0 (2 atan2(|a^ - b^|, |a^ + b^|))."""
    a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
    return math.degrees(2.0 * math.atan2(float(np.linalg.norm(a - b)), float(np.linalg.norm(a + b))))


def steepest_step(u: np.ndarray, optimizer: str) -> np.ndarray:
    """argmax_v <u, v> - ||v||^2 / 2 in the optimizer's norm (u the negative gradient): a step of length ||u||_*.

    gd (L2): u; sign_descent (L-infinity): ||u||_1 sign(u); coordinate_descent (L1): ||u||_inf sign(u_j) e_j for the
    first j of largest |u_j|."""
    if optimizer == "gd":
        return u
    if optimizer == "sign_descent":
        return np.abs(u).sum() * np.sign(u)
    step = np.zeros_like(u)
    j = int(np.argmax(np.abs(u)))
    step[j] = u[j]  # = ||u||_inf sign(u_j)
    return step


def dual_radius(Z: np.ndarray, optimizer: str) -> float:
    """B = max_i ||z_i||_* in the dual of the optimizer's norm (Gunasekar et al.'s step scale 1 / B^2)."""
    return float(np.linalg.norm(Z, ord=DUAL_ORD[optimizer], axis=1).max())


def log_loss_and_direction(Z: np.ndarray, w: np.ndarray) -> tuple[float, np.ndarray]:
    """(log L(w), -grad L(w) / L(w)) for the mean exponential loss L(w) = mean_i exp(-z_i.w), z_i = y_i x_i; stable
    however small L is: -grad L / L = Z^T softmax(-Z w)."""
    s = -(Z @ w)
    top = s.max()
    e = np.exp(s - top)
    total = e.sum()
    return float(top + math.log(total / len(Z))), Z.T @ (e / total)


def trajectory(Z: np.ndarray, train: TrainSpec, problem: MarginGeometry, on_eval) -> tuple[Fit, np.ndarray]:
    """Minimize the mean exponential loss over w from w = 0 with train.optimizer, writing a row (step, log_loss and
    on_eval(w)) at `evaluation_steps(train)`. -> (the Fit, the last iterate)."""
    w = np.zeros(Z.shape[1])
    result = Fit()

    def evaluate(step: int) -> bool:
        log_loss = log_loss_and_direction(Z, w)[0]
        result.history.append({"step": float(step), "log_loss": log_loss} | on_eval(w))
        return math.isfinite(log_loss) and bool(np.isfinite(w).all())

    evaluate(0)
    pending = evaluation_steps(train)
    adam = train.optimizer == "adam"
    if adam:
        beta1, beta2 = train.betas
        m, v, unit = np.zeros_like(w), np.zeros_like(w), 0.0  # moments of the gradient in units of exp(unit) = L(w_t)
    else:
        scale = train.lr / dual_radius(Z, train.optimizer) ** 2
    for step in range(1, train.max_steps + 1):
        log_loss, u = log_loss_and_direction(Z, w)  # gradient = -exp(log_loss) u
        decayed = (step + 2.0) ** -problem.decay  # the schedule's factor at this step
        if adam:
            rescale = math.exp(unit - log_loss)  # L(w_{t-1}) / L(w_t): the moments in the new unit
            m, v, unit = m * rescale, v * rescale**2, log_loss
            m = beta1 * m - (1 - beta1) * u
            v = beta2 * v + (1 - beta2) * u * u
            denominator = np.sqrt(v / (1 - beta2**step))
            if problem.adam_eps > 0:
                with np.errstate(over="ignore"):
                    denominator = denominator + problem.adam_eps * math.exp(min(-unit, 709.0))  # eps in the unit
            ratio = np.divide(m / (1 - beta1**step), denominator, out=np.zeros_like(w), where=denominator > 0)  # 0/0: no step
            w = w - train.lr * decayed * ratio
        else:  # the step times the gradient's size L(w_t), unless normalized away
            w = w + scale * decayed * (1.0 if problem.normalize else math.exp(log_loss)) * steepest_step(u, train.optimizer)
        result.steps = step
        if step == pending[0]:
            pending.pop(0)
            if not evaluate(step):
                result.status, result.stopped = "diverged", "diverged"
                break
    return result, w


def references(X: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """The L1, L2 and L-infinity max-margin separators through the origin (margin 1), by cvxpy."""
    return {"l1": l1_max_margin(X, y), "l2": hard_margin_svm(X, y), "linf": linf_max_margin(X, y)}


def run(spec: RunSpec) -> Result:
    data = margin_geometry(spec.problem, spec.seed)
    Z = data.X * data.y[:, None]
    refs = references(data.X, data.y)
    own = OWN_NORM[spec.train.optimizer]
    best_margin = 1.0 / float(np.linalg.norm(refs[own], ord=NORM_ORD[own]))  # the max margin in the own norm

    def on_eval(w: np.ndarray) -> dict[str, float]:
        if not np.any(w):
            return {"norm": 0.0}
        row = {"norm": float(np.linalg.norm(w))} | {f"angle_{norm}": angle_deg(w, refs[norm]) for norm in NORMS}
        return row | {"margin_ratio": float((Z @ w).min() / np.linalg.norm(w, ord=NORM_ORD[own])) / best_margin}

    fit, _ = trajectory(Z, spec.train, spec.problem, on_eval)
    separation = {f"ref_angle_{a}_{b}": angle_deg(refs[a], refs[b]) for a, b in (("l1", "l2"), ("l2", "linf"), ("l1", "linf"))}
    return Result.of(fit, separation | {"l1_ref_nonzeros": float((np.abs(refs["l1"]) > 1e-6 * np.abs(refs["l1"]).max()).sum())})


def _key(record: RunRecord, several_seeds: bool) -> str:
    spec = record.run_spec
    return f"{spec.problem.labels}_{spec.train.optimizer}" + (f"_seed{spec.seed}" if several_seeds else "")


class OptimizerGeometry(Experiment):
    """On separable data steepest descent w.r.t. a norm converges in direction to that norm's max-margin separator:
    GD to the hard-margin SVM, sign descent to the L-infinity, coordinate descent (boosting) to the sparse L1 one,
    and full-batch Adam, sign-like, to the L-infinity one. Angles to all three references on data where they lie
    37-73 degrees apart."""

    title = "Each optimizer converges to the max-margin direction of its own norm: GD L2, sign descent and Adam L-inf, coordinate descent L1"
    axes_note = 'it compares optimizers itself (GD, sign descent, coordinate descent, Adam) on a linear model'
    reference = "Gunasekar, Lee, Soudry & Srebro 2018, Characterizing Implicit Bias in Terms of Optimization Geometry (ICML); Zhang, Zou & Cao 2024 (NeurIPS)"
    reads = COMMON_READS + STEEPEST_READS

    def reads_of(self, spec: RunSpec) -> tuple[str, ...]:
        """Adam reads its epsilon and betas, the steepest descents whether the step is normalized; an optimizer this
        experiment does not run is given every field, so that `refuse` names train.optimizer itself."""
        if spec.train.optimizer not in OPTIMIZERS:
            return COMMON_READS + ADAM_READS + STEEPEST_READS
        return COMMON_READS + (ADAM_READS if spec.train.optimizer == "adam" else STEEPEST_READS)
    allows = {"device": ("cpu",), "dtype": ("float64",), "problem.kind": ("margin_geometry",), "train.optimizer": OPTIMIZERS, "train.batch_size": (None,)}

    def working_memory(self, spec: RunSpec) -> int:
        """A few (n x d) float64 arrays and three small convex programs: 50 MB covers cvxpy's canonicalization."""
        return 50_000_000 + 64 * spec.problem.n * spec.problem.d

    def figures(self, records: list[RunRecord]) -> dict[str, Figure]:
        fig, axes = new_figure(ncols=len(OPTIMIZERS), width=3.8)
        panels = dict(zip(OPTIMIZERS, axes))
        colors = {"l1": "C0", "l2": "C1", "linf": "C2"}
        dashes = {"sparse_teacher": "-", "dense_teacher": "--"}
        for record in (r for r in records if r.status == "ok"):
            spec = record.run_spec
            ax = panels[spec.train.optimizer]
            steps = np.array(record.curves["step"], dtype=float)
            for norm in NORMS:
                values = np.array(record.curves.get(f"angle_{norm}", [math.nan] * len(steps)), dtype=float)
                ax.plot(steps[1:], values[1:], color=colors[norm], linestyle=dashes[spec.problem.labels], linewidth=1.2,
                        label=f"to the {NORM_LABELS[norm]} max-margin, {spec.problem.labels.replace('_', ' ')}")  # fmt: skip
        for optimizer, ax in panels.items():
            ax.set(xscale="log", yscale="log", xlabel="steps", ylabel="angle (degrees)", title=TITLES[optimizer])
            plain_log_ticks(ax, "y")
        figure_legend(fig, ncols=3)  # the same lines in every panel; inside the first, the legend covered them
        return {"angles": fig}

    def claim(self, records: list[RunRecord]) -> Verdict:
        done = [r for r in records if r.status == "ok" and "angle_l2" in r.curves]
        checks, numbers, notes = Checks(), {}, []
        if not done:
            checks.fail("no finished runs")
        several_seeds = len({r.run_spec.seed for r in done}) > 1
        for record in done:
            key, own = _key(record, several_seeds), OWN_NORM[record.run_spec.train.optimizer]
            t_end, end, t_before, before = last_decade(record.curves["step"], record.curves[f"angle_{own}"])
            others = {norm: float(record.curves[f"angle_{norm}"][-1]) for norm in NORMS if norm != own}
            numbers |= {f"{key}_angle_own_end": end, f"{key}_angle_own_decade_before": before}
            numbers |= {f"{key}_angle_{norm}_end": value for norm, value in others.items()}
            checks.check(end < before, f"{key}: angle to the {own} max-margin {end:.3g} deg at t={t_end:.0f} vs {before:.3g} at t={t_before:.0f}")
            nearest = min(others, key=others.get)
            checks.check(end < others[nearest], f"{key}: ends {end:.3g} deg from its own ({own}) reference, {others[nearest]:.3g} from the nearest other ({nearest})")
            notes.append(f"{key}: final angles (deg) L1 {record.curves['angle_l1'][-1]:.3g}, L2 {record.curves['angle_l2'][-1]:.3g}, "
                         f"Linf {record.curves['angle_linf'][-1]:.3g}; margin / max margin in {own}: {record.curves['margin_ratio'][-1]:.4f}")  # fmt: skip
        for labels in sorted({r.run_spec.problem.labels for r in done}):
            first = next(r for r in done if r.run_spec.problem.labels == labels)
            separation = {k: first.final[k] for k in first.final if k.startswith("ref_angle_")}
            numbers |= {f"{labels}_{k}": v for k, v in separation.items()}
            notes.append(f"{labels}: references apart by " + ", ".join(f"{k.removeprefix('ref_angle_')} {v:.1f} deg" for k, v in separation.items()))
        return checks.verdict(FINDING, numbers, notes)


CATALOG.add(NAME, OptimizerGeometry())
