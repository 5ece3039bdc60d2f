"""Which way to spread a sweep: executors compared side by side, and population throughput against its size.

    python benchmarks/strategies.py [--preset quick|tiny] [--out benchmarks/results] [--device cpu|cuda]

Part 1 (CPU): the width sweep of a preset run with each executor (auto, inprocess,
processes with 2 and with 1 worker, population) into fresh stores, one after
another in this process. Reports wall times, processes(2) / processes(1), and
auto against the best forced executor.

Part 2: throughput of a population of MNIST-1D MLPs (width --width, default 128)
against its size M, as member-steps per second, for population vs a loop of
single runs on the chosen device (on CUDA, also the achieved FLOP/s of the
population's achieved FLOP/s as a fraction of the device's measured matmul peak, one thread on a CPU as the
sweep workers use). Writes JSON and a PNG to --out.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
from matplotlib.figure import Figure

from biaslab import data as datasets
from biaslab import models
from biaslab.experiments import CATALOG
from biaslab.runtime import generator
from biaslab.spec import DataSpec, ModelSpec, TrainSpec
from biaslab.store import Store
from biaslab.sweep import run_sweep
from biaslab.train import fit
from biaslab.train.population import fit_population
from hardware import matmul_peak, mlp_training_flops

EXECUTORS = (("auto", None), ("inprocess", None), ("processes", 2), ("processes", 1), ("population", None))


def time_executors(preset: str) -> dict[str, float]:
    sweep = CATALOG.get("width-sweep").sweep(preset)
    seconds = {}
    for executor, workers in EXECUTORS:
        name = executor if workers is None else f"{executor}x{workers}"
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            outcome = run_sweep(sweep, Store(tmp), preset, executor=executor, workers=workers)
            seconds[name] = time.perf_counter() - started
        print(f"{name:<14} {seconds[name]:8.1f} s  ({outcome.executor})", flush=True)
    return seconds


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def population_throughput(device: torch.device, width: int, sizes: list[int], steps: int, peak_gflops: float) -> list[dict]:
    """Member-steps per second, population vs loop, for each population size, and the FLOP rate against the peak."""
    spec = TrainSpec(optimizer="sgd", lr=0.05, momentum=0.9, batch_size=100, max_steps=steps, eval_every=steps)
    data = datasets.load(DataSpec(name="mnist1d", standardize=False), device)
    rows = []
    for members in sizes:
        nets = [models.build(ModelSpec(width=width), data.in_shape, 10, generator(m, "init"), device) for m in range(members)]
        loop_nets = [copy.deepcopy(n) for n in nets]
        _sync(device)
        started = time.perf_counter()
        fit_population(nets, [data] * members, [spec] * members, [generator(m, "batches") for m in range(members)])
        _sync(device)
        population = time.perf_counter() - started
        loop_members = min(members, 8)  # a loop costs the same per member: time a few, scale up
        started = time.perf_counter()
        for m in range(loop_members):
            fit(loop_nets[m], data, spec, generator(m, "batches"))
        _sync(device)
        loop = (time.perf_counter() - started) * members / loop_members
        flops = members * mlp_training_flops(40, width, 10, steps, 100, evaluations=2, eval_examples=5000)["train"]
        rows.append({"members": members, "population_s": population, "loop_s": loop, "speedup": loop / population,
                     "tflops_population": flops / population / 1e12, "fraction_of_peak_population": flops / population / 1e9 / peak_gflops,
                     "fraction_of_peak_loop": flops / loop / 1e9 / peak_gflops})  # fmt: skip
        print(f"M={members:<4} population {population:7.2f} s  loop {loop:7.2f} s  speedup {loop / population:5.2f}x  "
              f"{flops / 1e9:8.1f} GFLOP: population {rows[-1]['fraction_of_peak_population']:6.1%}, loop {rows[-1]['fraction_of_peak_loop']:6.1%} of peak", flush=True)
    return rows


def figure(executors: dict[str, float], throughput: list[dict], device: str) -> Figure:
    fig = Figure(figsize=(10, 3.8), layout="constrained")
    left, right = fig.subplots(1, 2)
    if executors:
        left.bar(list(executors), list(executors.values()), color="C0")
        left.set(ylabel="wall time (s)", title="width sweep by executor (CPU)")
        left.tick_params(axis="x", rotation=30)
    sizes = [r["members"] for r in throughput]
    right.plot(sizes, [r["members"] * r.get("steps", 1) / r["population_s"] for r in throughput], marker="o", label="population")
    right.plot(sizes, [r["members"] * r.get("steps", 1) / r["loop_s"] for r in throughput], marker="o", label="loop")
    right.set(xscale="log", yscale="log", xlabel="members M", ylabel="runs per second (per step budget)", title=f"population throughput ({device})")
    right.legend()
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="quick", choices=["tiny", "quick"])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--sizes", default="1,2,4,8,16,32,64")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--skip-executors", action="store_true")
    args = parser.parse_args()
    device = torch.device(args.device)
    executors = {} if args.skip_executors or device.type != "cpu" else time_executors(args.preset)
    if device.type == "cpu":
        torch.set_num_threads(1)  # as sweep workers do
    peak = matmul_peak(device=args.device)
    print(f"{device} peak (fp32 2048^3 matmul, {torch.get_num_threads()} thread(s)): {peak:.1f} GFLOP/s; training FLOPs = 6 x weights x batch per step")
    throughput = population_throughput(device, args.width, [int(s) for s in args.sizes.split(",")], args.steps, peak)
    result = {
        "peak_gflops": peak,
        "machine": {"device": str(device), "name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(), "torch": torch.__version__},
        "executors_s": executors,
        "throughput": throughput,
    }
    if executors:
        forced = {k: v for k, v in executors.items() if k != "auto"}
        best = min(forced, key=forced.get)
        result["auto_over_best_forced"] = executors["auto"] / forced[best]
        result["best_forced"] = best
        result["processes2_speedup_over_1"] = executors["processesx1"] / executors["processesx2"]
        print(f"auto / best forced ({best}): {result['auto_over_best_forced']:.3f}; processes 2 vs 1: {result['processes2_speedup_over_1']:.2f}x")
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"strategies_{device.type}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2))
    figure(executors, throughput, str(device)).savefig(stem.with_suffix(".png"), dpi=110)
    print(f"wrote {stem}.json and {stem}.png")


if __name__ == "__main__":
    main()
