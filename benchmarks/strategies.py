"""Which way to spread a sweep: executors compared side by side, and population throughput against its size.

    python benchmarks/strategies.py [--preset quick|tiny] [--out benchmarks/results] [--device cpu|cuda]
    python benchmarks/strategies.py --paths-only [--path-sizes 4,16,64] [--path-widths 16,128,1024]

Part 1 (CPU): the width sweep of a preset run with each executor (auto, inprocess,
processes with 2 and with 1 worker, population) into fresh stores, one after
another in this process. Reports wall times, processes(2) / processes(1), and
auto against the best forced executor.

Part 2: throughput of a population of MNIST-1D MLPs (width --width, default 128)
against its size M, as member-steps per second, for population vs a loop of
single runs on the chosen device (on CUDA, also the achieved FLOP/s of the
population's achieved FLOP/s as a fraction of the device's measured matmul peak, one thread on a CPU as the
sweep workers use). Writes JSON and a PNG to --out.

Part 3: the population's two paths side by side (`train.population`: vmap over `functional_call`, and
batched matrix products on stacked weights for plain MLPs) for each size M and width H of MNIST-1D MLPs
(40 inputs, 10 classes, batch 100, SGD with momentum, float32): member-steps per second of the training
steps alone (two runs of different lengths, differenced, so setup and the evaluations cancel), the FLOP rate
(6 x weights x batch per member-step) and its fraction of the matmul peak. Median of --repeats (the two
paths measured in turn within each repeat), with the spread (min-max). `--paths-only` runs part 3 alone.
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
from biaslab.train.population import _fit, fit_population
from hardware import matmul_peak, mlp_parameters, mlp_training_flops

PATHS = ("vmap", "baddbmm")  # train.population's two ways to compute a population
EXECUTORS = (("auto", None), ("inprocess", None), ("processes", 2), ("processes", 1), ("population", None))


def executor_name(executor: str, workers: int | None) -> str:
    return executor if workers is None else f"{executor}x{workers}"


def time_executors(preset: str, names: list[str] | None = None) -> dict[str, list[float]]:
    """Wall seconds of the preset's width sweep with each executor (`names`: EXECUTORS' names in the order to run
    them, repeats allowed, so that two executors can alternate), a list per executor."""
    sweep = CATALOG.get("width-sweep").sweep(preset)
    seconds: dict[str, list[float]] = {}
    chosen = [(e, w) for name in names for e, w in EXECUTORS if executor_name(e, w) == name] if names else list(EXECUTORS)
    for executor, workers in chosen:
        name = executor_name(executor, workers)
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            outcome = run_sweep(sweep, Store(tmp), preset, executor=executor, workers=workers)
            seconds.setdefault(name, []).append(time.perf_counter() - started)
        print(f"{name:<14} {seconds[name][-1]:8.1f} s  ({outcome.executor})", flush=True)
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


def _path_seconds(path: str, nets: list, data, steps: int) -> float:
    """Wall seconds of one population run of `steps` SGD steps (evaluations at 0 and at the end only)."""
    spec = TrainSpec(optimizer="sgd", lr=0.05, momentum=0.9, batch_size=100, max_steps=steps, eval_every=steps)
    members = len(nets)
    nets = [copy.deepcopy(n) for n in nets]
    started = time.perf_counter()
    _fit(nets, [data] * members, [spec] * members, [generator(m, "batches") for m in range(members)], None, path)
    _sync(data.x_train.device)
    return time.perf_counter() - started


def _member_steps_per_second(path: str, nets: list, data, extra: int, base: int = 10) -> float:
    """Member-steps/s of the steps alone: a run of base + extra steps minus one of base steps."""
    short = _path_seconds(path, nets, data, base)
    long = _path_seconds(path, nets, data, base + extra)
    return len(nets) * extra / max(long - short, 1e-9)


def _extra_steps(path: str, nets: list, data, seconds: float, base: int = 10) -> int:
    """Warm the path up; the number of steps that fill ~`seconds` (over-estimated per step: the run holds two evaluations)."""
    return max(20, round(seconds / (_path_seconds(path, nets, data, base) / base)))


def path_throughput(device: torch.device, widths: list[int], sizes: list[int], repeats: int, peak_gflops: float, seconds: float = 3.0) -> list[dict]:
    """For each width and size: member-steps/s of the vmap and baddbmm paths (median and spread of `repeats`)."""
    data = datasets.load(DataSpec(name="mnist1d", standardize=False), device)
    rows = []
    for width in widths:
        for members in sizes:
            nets = [models.build(ModelSpec(width=width), data.in_shape, 10, generator(m, "init"), device) for m in range(members)]
            flops = 6.0 * mlp_parameters(40, width, 10) * 100  # per member-step
            row: dict = {"width": width, "members": members, "flops_per_member_step": flops}
            extra = {path: _extra_steps(path, nets, data, seconds) for path in PATHS}
            measured = [{path: _member_steps_per_second(path, nets, data, extra[path]) for path in PATHS} for _ in range(repeats)]  # interleaved
            for path in PATHS:
                rates = sorted(m[path] for m in measured)
                median = rates[len(rates) // 2]
                row[path] = {"member_steps_per_s": median, "min": rates[0], "max": rates[-1],
                             "fraction_of_peak": median * flops / 1e9 / peak_gflops}  # fmt: skip
            row["speedup"] = row["baddbmm"]["member_steps_per_s"] / row["vmap"]["member_steps_per_s"]
            rows.append(row)
            v, b = row["vmap"], row["baddbmm"]
            print(f"H={width:<5} M={members:<3} vmap {v['member_steps_per_s']:9.0f} ({v['min']:.0f}-{v['max']:.0f}) {v['fraction_of_peak']:6.1%}   "
                  f"baddbmm {b['member_steps_per_s']:9.0f} ({b['min']:.0f}-{b['max']:.0f}) {b['fraction_of_peak']:6.1%}   "
                  f"baddbmm/vmap {row['speedup']:5.2f}x", flush=True)  # fmt: skip
    return rows


def figure(executors: dict[str, list[float]], throughput: list[dict], device: str) -> Figure:
    fig = Figure(figsize=(10, 3.8), layout="constrained")
    left, right = fig.subplots(1, 2)
    if executors:
        left.bar(list(executors), [min(walls) for walls in executors.values()], color="C0")
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
    parser.add_argument("--executors", default="", help="part 1 with these alone, in this order (e.g. processesx2,processesx1,processesx2)")
    parser.add_argument("--paths-only", action="store_true", help="run part 3 (vmap vs baddbmm) alone")
    parser.add_argument("--path-sizes", default="4,16,64")
    parser.add_argument("--path-widths", default="16,128,1024")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--path-seconds", type=float, default=3.0, help="seconds of steps each part-3 run adds over its short twin")
    args = parser.parse_args()
    known = [executor_name(e, w) for e, w in EXECUTORS]
    if unknown := [n for n in args.executors.split(",") if n and n not in known]:
        parser.error(f"--executors: {', '.join(unknown)} is not one of {', '.join(known)}")
    device = torch.device(args.device)
    executors = {} if args.skip_executors or args.paths_only or device.type != "cpu" else time_executors(args.preset, [n for n in args.executors.split(",") if n])
    if device.type == "cpu":
        torch.set_num_threads(1)  # as sweep workers do
    peak = matmul_peak(device=args.device)
    print(f"{device} peak (fp32 2048^3 matmul, {torch.get_num_threads()} thread(s)): {peak:.1f} GFLOP/s; training FLOPs = 6 x weights x batch per step")
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else []
    print(f"load average at start: {' '.join(load)}")
    throughput = [] if args.paths_only else population_throughput(device, args.width, [int(s) for s in args.sizes.split(",")], args.steps, peak)
    paths = path_throughput(device, [int(w) for w in args.path_widths.split(",")], [int(s) for s in args.path_sizes.split(",")], args.repeats, peak, args.path_seconds)
    result = {
        "peak_gflops": peak,
        "load_average": load,
        "machine": {"device": str(device), "name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(), "torch": torch.__version__},
        "executors_s": executors,
        "throughput": throughput,
        "paths": paths,
    }
    fastest = {name: min(walls) for name, walls in executors.items()}
    forced = {k: v for k, v in fastest.items() if k != "auto"}
    if "auto" in fastest and forced:
        best = min(forced, key=forced.get)
        result["auto_over_best_forced"] = fastest["auto"] / forced[best]
        result["best_forced"] = best
        print(f"auto / best forced ({best}): {result['auto_over_best_forced']:.3f}")
    if {"processesx1", "processesx2"} <= set(fastest):
        ratios = [one / two for one in executors["processesx1"] for two in executors["processesx2"]]
        result["processes2_speedup_over_1"] = fastest["processesx1"] / fastest["processesx2"]
        print(f"processes 2 vs 1: {result['processes2_speedup_over_1']:.2f}x (fastest of each; every pairing {min(ratios):.2f}-{max(ratios):.2f}x)")
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"strategies_{device.type}" if not args.paths_only else args.out / f"strategies_paths_{device.type}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2))
    if args.paths_only:
        print(f"wrote {stem}.json")
        return
    figure(executors, throughput, str(device)).savefig(stem.with_suffix(".png"), dpi=110)
    print(f"wrote {stem}.json and {stem}.png")


if __name__ == "__main__":
    main()
