"""Benchmark: peak memory of matrix-factorization's `paper` preset per run, estimated before and measured after.

    python benchmarks/memory.py [--steps 300 3000] [--sweep-steps 300] [--out benchmarks/results]

Goal (issue 16): a run of the `paper` preset takes under 2 GB. Every case runs in
a fresh process, one after another (never two at once), and its peak resident
memory (getrusage's maxrss, imports included) is set beside the estimate the
sweep used to admit it (`biaslab.experiments.memory.job_peak_memory`):
  (a) the preset's largest spec (n = 100, rank 5, 2000 observations, depth 4,
      float64, init 1e-4) with its min-nuclear-norm reference (SCS at this size),
      at two step budgets: memory must not grow with the steps (the History is a
      few dozen rows; the factors are the same n x n matrices at every step), so
      a reduced budget measures the full one;
  (b) the paper preset through `run_sweep` with the processes executor: depths 2,
      3 and 4 at two seeds (two problem draws, two references) in 2 worker
      processes, 3 runs each; each worker's high-water mark (VmHWM, sampled by
      the sweeping process) shows that nothing accumulates from run to run;
  (c) the small specs `tests/test_memory.py` checks, for the estimate's other terms
      (convex solver, data, population, Hessian probes), and one where Lanczos's
      iteration cap makes the estimate an upper bound.
Peaks are VmHWM (Linux), a process's own high-water mark since exec; a child's
getrusage maxrss would start from its parent's resident set at fork. Memory is
measured on a shared machine without harm; times are printed only so
a reader knows how long the benchmark takes, never as speed. Writes memory.json
and memory.png to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
sys.path.insert(0, str(SRC))

GOAL = 2e9  # bytes per run (issue 16)
SWEEP_CHILD = """
import json, multiprocessing, resource, sys, tempfile, threading
from biaslab.experiments.matrix_factorization import paper
from biaslab.store import Store
from biaslab.sweep import run_sweep

def high_water(pid="self"):
    # VmHWM: a process's own peak resident set since exec (ru_maxrss would start from its parent's at fork)
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))

peaks, done = {}, threading.Event()
def watch():  # the pool's worker processes, sampled until the sweep ends (a high-water mark misses nothing before the sample)
    while not done.wait(0.1):
        for child in multiprocessing.active_children():
            try:
                peaks[child.pid] = max(peaks.get(child.pid, 0), high_water(child.pid))
            except (OSError, StopIteration):
                pass  # it just exited
threading.Thread(target=watch, daemon=True).start()
settings = json.load(sys.stdin)
sweep = paper().override(settings["overrides"])
with tempfile.TemporaryDirectory() as store:
    outcome = run_sweep(sweep, Store(store), executor="processes", workers=settings["workers"])
done.set()
reaped = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # the largest reaped child, floored at this process's size at fork
print(json.dumps({"worker_peaks": sorted(peaks.values()), "reaped_children_maxrss": reaped, "sweep_process_peak": high_water(),
                  "statuses": [r.status for r in outcome.records], "executor": outcome.executor,
                  "errors": [(r.error or "").strip().splitlines()[-1] for r in outcome.records if r.error]}))
"""

def machine() -> dict:
    import torch

    total = None
    try:
        total = next(int(line.split()[1]) * 1024 for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal:"))
    except (OSError, StopIteration, ValueError):
        pass
    return {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__, "memory_total": total}


def largest_paper_spec(steps: int):
    """The paper preset's largest run (n = 100, depth 4; at the smallest init) with `steps` as its step budget."""
    from biaslab.experiments.matrix_factorization import paper

    specs = paper().expand()
    spec = max(specs, key=lambda s: (s.problem.n, s.model.depth, -s.model.init_scale, -s.seed))
    return spec.model_copy(update={"train": spec.train.model_copy(update={"max_steps": steps})})


def one_run(label: str, job: list) -> dict:
    """Measure one job in a fresh process; its estimate beside it."""
    from biaslab.experiments.memory import job_peak_memory, measure_peak

    estimate = job_peak_memory(job)
    started = time.perf_counter()
    measured = measure_peak(job, timeout=1800)
    return {
        "case": label,
        "estimate": estimate,
        "peak": measured.peak,
        "baseline": measured.baseline,
        "statuses": measured.statuses,
        "errors": measured.errors,
        "wall_s_not_speed": round(time.perf_counter() - started, 1),
    }


def through_run_sweep(steps: int, workers: int) -> dict:
    """The paper preset (depths 2-4, seeds 0-1, init 1e-4, `steps` steps) through run_sweep's process pool."""
    from biaslab.experiments.matrix_factorization import paper
    from biaslab.experiments.memory import job_peak_memory

    overrides = {"model.depth": [2, 3, 4], "model.init_scale": 1e-4, "seed": [0, 1], "train.max_steps": steps}
    specs = paper().override(overrides).expand()
    env = os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))}
    started = time.perf_counter()
    child = subprocess.run([sys.executable, "-c", SWEEP_CHILD], input=json.dumps({"overrides": overrides, "workers": workers}),
                           capture_output=True, text=True, env=env, timeout=3600)  # fmt: skip
    if child.returncode != 0:
        raise RuntimeError(f"the sweep process failed: {(child.stderr.strip().splitlines() or ['?'])[-1]}")
    result = json.loads(child.stdout.strip().splitlines()[-1])
    return {
        "case": f"(b) run_sweep, {len(specs)} paper runs ({steps} steps) in {workers} workers: worker peak",
        "estimate": max(job_peak_memory([s]) for s in specs),
        "peak": max(result["worker_peaks"] + [result["reaped_children_maxrss"]]),
        "worker_peaks": result["worker_peaks"],
        "reaped_children_maxrss": result["reaped_children_maxrss"],
        "sweep_process_peak": result["sweep_process_peak"],
        "statuses": result["statuses"],
        "errors": result["errors"],
        "executor": result["executor"],
        "wall_s_not_speed": round(time.perf_counter() - started, 1),
    }


def small_cases() -> list[tuple[str, list]]:
    """The specs tests/test_memory.py measures (a 30x30 Clarabel completion, an MLP on 40k examples, a population of 8,
    Hessian probes on 20k examples), and Hessian probes on a wide MLP, where Lanczos's cap makes the estimate a bound."""
    from biaslab.experiments import CATALOG
    from biaslab.experiments.matrix_factorization import tiny
    from biaslab.spec import DataSpec, MatrixCompletion, ModelSpec, RunSpec, TrainSpec

    clarabel = tiny().base.model_copy(update={"problem": MatrixCompletion(n=30, rank=2, observed=270), "train": TrainSpec(optimizer="gd", lr=0.5, batch_size=None, max_steps=50)})
    teacher = RunSpec(data=DataSpec(name="teacher", dim=400, n_train=30000, n_test=10000), model=ModelSpec(width=512, depth=2), train=TrainSpec(batch_size=1000, max_steps=20, eval_every=10))
    population = [RunSpec(data=DataSpec(name="teacher", dim=100, n_train=20000, n_test=2000), model=ModelSpec(width=256, depth=2),
                          train=TrainSpec(batch_size=500, max_steps=20, eval_every=10), seed=s) for s in range(8)]  # fmt: skip
    measures = CATALOG.get("generalization-measures").sweep("quick").expand()[0]
    hessian = [measures.model_copy(update={"data": DataSpec(name="mnist1d", n_train=n, n_test=1000, standardize=False), "model": ModelSpec(width=width, depth=2),
                                           "train": measures.train.model_copy(update={"max_steps": 20, "eval_every": 10})}) for n, width in ((20000, 256), (2000, 1024))]  # fmt: skip
    return [("(c) matrix-factorization 30x30, Clarabel reference", [clarabel]), ("(c) MLP 400-512-512-10 on 40k teacher examples", [teacher]),
            ("(c) population of 8 MLPs on 22k teacher examples", population),
            ("(c) generalization-measures, Hessian on 20k examples (256 x 2)", hessian[:1]),
            ("(c) generalization-measures, Hessian of a 1.1M-parameter MLP (1024 x 2)", hessian[1:])]  # fmt: skip


def figure(cases: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # a script, not the library: no display here
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 0.55 * len(cases) + 1.5))
    rows = range(len(cases))
    ax.barh([r + 0.2 for r in rows], [c["estimate"] / 1e9 for c in cases], height=0.4, color="C0", label="estimated before the run")
    ax.barh([r - 0.2 for r in rows], [c["peak"] / 1e9 for c in cases], height=0.4, color="C1", label="measured peak RSS")
    ax.axvline(GOAL / 1e9, color="k", linestyle="--", linewidth=1, label="goal: 2 GB per paper run")
    ax.set_yticks(list(rows), [c["case"] for c in cases], fontsize=7)
    ax.invert_yaxis()
    ax.set(xlabel="GB (imports included: about 0.43 GB)", title="peak memory per run: estimate vs measured")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs=2, default=(300, 3000), metavar=("FEW", "MANY"), help="the two step budgets of (a)")
    parser.add_argument("--sweep-steps", type=int, default=300, help="steps per run in (b)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes in (b)")
    parser.add_argument("--skip-small", action="store_true", help="leave out (c)")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    cases = []
    for steps in args.steps:
        spec = largest_paper_spec(steps)
        cases.append(one_run(f"(a) paper n={spec.problem.n} depth {spec.model.depth}, {steps} steps, one run", [spec]))
        print(f"{cases[-1]['case']}: estimate {cases[-1]['estimate'] / 1e9:.2f} GB, measured {cases[-1]['peak'] / 1e9:.2f} GB", flush=True)
    cases.append(through_run_sweep(args.sweep_steps, args.workers))
    print(f"{cases[-1]['case']}: estimate {cases[-1]['estimate'] / 1e9:.2f} GB, measured {cases[-1]['peak'] / 1e9:.2f} GB", flush=True)
    for label, job in [] if args.skip_small else small_cases():
        cases.append(one_run(label, job))
        print(f"{label}: estimate {cases[-1]['estimate'] / 1e9:.2f} GB, measured {cases[-1]['peak'] / 1e9:.2f} GB", flush=True)

    few, many = cases[0]["peak"], cases[1]["peak"]
    paper_peaks = [c["peak"] for c in cases[:3]]
    result = {
        "benchmark": "memory: matrix-factorization paper preset, estimate vs measured peak RSS",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "cases": cases,
        "verdict": {
            "paper_peak_max": max(paper_peaks),
            "under_2GB": max(paper_peaks) < GOAL,
            "growth_from_steps_bytes": many - few,
            "steps_change_memory_by_under_5_percent": abs(many - few) < 0.05 * few,
            "all_ok": all(set(c["statuses"]) == {"ok"} for c in cases),
            "estimate_over_measured": {c["case"]: round(c["estimate"] / c["peak"], 3) for c in cases},
        },
    }
    json_path, png_path = args.out / "memory.json", args.out / "memory.png"
    json_path.write_text(json.dumps(result, indent=1))
    figure(cases, png_path)
    print(f"\n{'case':<78} {'estimate':>9} {'measured':>9} {'est/meas':>8}")
    for c in cases:
        print(f"{c['case']:<78} {c['estimate'] / 1e9:>7.2f}GB {c['peak'] / 1e9:>7.2f}GB {c['estimate'] / c['peak']:>8.2f}")
    verdict = result["verdict"]
    print(f"\npaper preset: at most {verdict['paper_peak_max'] / 1e9:.2f} GB per run (goal < 2 GB: {'met' if verdict['under_2GB'] else 'NOT met'}); "
          f"{args.steps[1]} steps vs {args.steps[0]}: {(many - few) / 1e6:+.0f} MB; all runs ok: {verdict['all_ok']}")  # fmt: skip
    print(f"wrote {json_path} and {png_path}")
    return result


if __name__ == "__main__":
    main()
