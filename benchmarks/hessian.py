"""biaslab's Lanczos against PyHessian's power iteration for the top Hessian eigenvalue, side by side in one process.

    pip install pyhessian --no-deps   # the benchmark's only extra; it is not a biaslab dependency
    python benchmarks/hessian.py [--width 370] [--steps 2000] [--every 50] [--out benchmarks/results]

Model and data: a depth-2 ReLU MLP (40 -> W -> W -> 10; W = 370 gives 156k
parameters) on all 4000 MNIST-1D training examples, cross-entropy, float32,
the full training set as one batch for both tools.

(a) Cold top eigenvalue. The reference is biaslab's Lanczos in float64 run to
a residual of 1e-9 * lambda. Each method runs at a ladder of its own tolerance
(PyHessian: relative change between power iterations; biaslab: residual bound);
the time reported for a method is that of the loosest tolerance whose answer is
within 1e-4 of the reference (checked after the fact, so neither gets credit for
luck it could not know about: the time of the residual-guaranteed setting,
tol = 1e-4, is reported too). Each timing is the median of --repeats runs with
different random start vectors.

(b) Tracking. The model is trained with SGD (lr 0.05, momentum 0.9, batch 100)
for --steps steps; every --every steps the top eigenvalue is measured by
biaslab warm-started from the last eigenvector and by PyHessian started cold,
each at its tolerance found in (a), back to back, and every fourth
check also by the tight reference. Reports the total probe time of each and the
largest relative error against the reference over the checked points.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
from matplotlib.figure import Figure
from torch import nn

from biaslab import data as datasets
from biaslab.probes import curvature
from biaslab.spec import DataSpec

TARGET = 1e-4  # relative error both methods must reach


def build(width: int, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(40, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 10))


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, on_check, every: int) -> None:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    g = torch.Generator().manual_seed(0)
    order = torch.randperm(x.shape[0], generator=g)
    for step in range(steps + 1):
        if step % every == 0:
            on_check(step)
        if step == steps:
            break
        start = (step * 100) % x.shape[0]
        if start == 0:
            order = torch.randperm(x.shape[0], generator=g)
        index = order[start : start + 100]
        optimizer.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x[index]), y[index]).backward()
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def reference(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Top eigenvalue in float64 to a residual of 1e-9 of itself."""
    twin = build(model[0].out_features).double()
    twin.load_state_dict({k: v.double() for k, v in model.state_dict().items()})
    eigen = curvature.top_eigenvalues(twin, nn.functional.cross_entropy, [(x.double(), y)], tol=1e-9, max_iter=400,
                                      generator=torch.Generator().manual_seed(123))  # fmt: skip
    assert eigen.converged, "reference Lanczos did not converge"
    return eigen.values[0]


def ours(model, x, y, tol: float, seed: int, start=None) -> tuple[float, float, torch.Tensor, int]:
    began = time.perf_counter()
    eigen = curvature.top_eigenvalues(model, nn.functional.cross_entropy, [(x, y)], tol=tol, max_iter=300, start=start,
                                      generator=torch.Generator().manual_seed(seed))  # fmt: skip
    return eigen.values[0], time.perf_counter() - began, eigen.vectors[0], eigen.iterations


def pyhessian_top(model, x, y, tol: float, seed: int) -> tuple[float, float]:
    from pyhessian import hessian

    torch.manual_seed(seed)  # PyHessian draws its start vector from the global RNG
    began = time.perf_counter()
    values, _ = hessian(model, nn.CrossEntropyLoss(), data=(x, y), cuda=False).eigenvalues(maxIter=1000, tol=tol, top_n=1)
    seconds = time.perf_counter() - began
    model.zero_grad(set_to_none=True)  # PyHessian leaves create_graph gradients in .grad
    return values[0], seconds


def cold(model, x, y, truth: float, repeats: int) -> dict:
    """Per method and tolerance: median seconds and worst relative error over repeats."""
    ladders = {"biaslab": (1e-2, 1e-3, 1e-4), "pyhessian": (1e-3, 1e-4, 1e-5, 1e-6, 1e-7)}
    table: dict[str, dict[str, dict[str, float]]] = {}
    for method, tols in ladders.items():
        table[method] = {}
        for tol in tols:
            runs = [ours(model, x, y, tol, seed)[:2] if method == "biaslab" else pyhessian_top(model, x, y, tol, seed) for seed in range(repeats)]
            table[method][f"{tol:g}"] = {
                "seconds": statistics.median(s for _, s in runs),
                "rel_error": max(abs(v - truth) / truth for v, _ in runs),
            }
    return table


def cheapest(rows: dict[str, dict[str, float]]) -> tuple[str, dict[str, float]]:
    """The loosest tolerance whose worst error met TARGET (ladders run loose to tight)."""
    for tol, row in rows.items():
        if row["rel_error"] <= TARGET:
            return tol, row
    raise RuntimeError(f"no tolerance reached {TARGET}: {rows}")


def tracking(width: int, x, y, steps: int, every: int, our_tol: float, pyhessian_tol: float) -> dict:
    model = build(width)
    log = {"step": [], "biaslab_seconds": [], "pyhessian_seconds": [], "biaslab": [], "pyhessian": [], "iterations": [], "reference": []}
    state = {"vector": None}

    def check(step: int) -> None:
        value, seconds, vector, iterations = ours(model, x, y, our_tol, step, state["vector"])
        state["vector"] = vector
        theirs, their_seconds = pyhessian_top(model, x, y, pyhessian_tol, step)
        truth = reference(model, x, y) if (step // every) % 4 == 0 else float("nan")
        for key, item in zip(log, (step, seconds, their_seconds, value, theirs, iterations, truth)):
            log[key].append(item)
        print(f"  step {step:5d}: lambda {value:9.4f} ({iterations:3d} products, {seconds:.3f} s)  pyhessian {theirs:9.4f} ({their_seconds:.3f} s)")

    train(model, x, y, steps, check, every)
    checked = [i for i, r in enumerate(log["reference"]) if r == r]
    worst = {m: max(abs(log[m][i] - log["reference"][i]) / log["reference"][i] for i in checked) for m in ("biaslab", "pyhessian")}
    return log | {"total_biaslab_seconds": sum(log["biaslab_seconds"]), "total_pyhessian_seconds": sum(log["pyhessian_seconds"]), "worst_rel_error": worst}


def figure(log: dict) -> Figure:
    fig = Figure(figsize=(10, 3.6))
    left, right = fig.subplots(1, 2)
    left.plot(log["step"], log["biaslab"], label="biaslab Lanczos (warm)")
    left.plot(log["step"], log["pyhessian"], "--", label="PyHessian power iteration (cold)")
    left.set(xlabel="SGD step", ylabel="top Hessian eigenvalue", title="Sharpness during training")
    left.legend(fontsize=8)
    right.plot(log["step"], log["biaslab_seconds"], label="biaslab")
    right.plot(log["step"], log["pyhessian_seconds"], label="PyHessian")
    right.set(xlabel="SGD step", ylabel="seconds per check", yscale="log", title="Probe time per check")
    right.legend(fontsize=8)
    fig.tight_layout()
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=370)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    data = datasets.load(DataSpec(name="mnist1d", n_train=4000, n_test=1000, standardize=False))
    x, y = data.x_train.flatten(1), data.y_train  # (4000, 40)
    model = build(args.width)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"MLP 40-{args.width}-{args.width}-10: {n_params} parameters, {x.shape[0]} examples, {torch.get_num_threads()} threads")
    train(model, x, y, 500, lambda step: None, 10**9)  # a trained point, not the init
    truth = reference(model, x, y)
    print(f"(a) reference top eigenvalue after 500 SGD steps: {truth:.8f}")
    table = cold(model, x, y, truth, args.repeats)
    (our_tol, our_row), (their_tol, their_row) = cheapest(table["biaslab"]), cheapest(table["pyhessian"])
    guaranteed = table["biaslab"][f"{TARGET:g}"]
    print(f"    biaslab   tol {our_tol}: {our_row['seconds']:.3f} s (error {our_row['rel_error']:.1e}); guaranteed tol 1e-4: {guaranteed['seconds']:.3f} s")
    print(f"    PyHessian tol {their_tol}: {their_row['seconds']:.3f} s (error {their_row['rel_error']:.1e})")
    print(f"    ratio PyHessian / biaslab: {their_row['seconds'] / our_row['seconds']:.2f}x (guaranteed setting: {their_row['seconds'] / guaranteed['seconds']:.2f}x)")
    print(f"(b) tracking every {args.every} steps over {args.steps}")
    log = tracking(args.width, x, y, args.steps, args.every, float(our_tol), float(their_tol))
    ratio = log["total_pyhessian_seconds"] / log["total_biaslab_seconds"]
    print(f"    total probe time: biaslab {log['total_biaslab_seconds']:.2f} s, PyHessian {log['total_pyhessian_seconds']:.2f} s -> {ratio:.2f}x;"
          f" worst relative errors {log['worst_rel_error']}")  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"hessian-{platform.node()}"
    result = {"n_params": n_params, "threads": torch.get_num_threads(), "cold": table, "reference": truth, "cold_ratio": their_row["seconds"] / our_row["seconds"],
              "cold_ratio_guaranteed": their_row["seconds"] / guaranteed["seconds"], "tracking": log, "tracking_ratio": ratio}  # fmt: skip
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2))
    figure(log).savefig(stem.with_suffix(".png"), dpi=110)
    print(f"wrote {stem}.json and {stem}.png")


if __name__ == "__main__":
    main()
