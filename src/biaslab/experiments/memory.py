"""How much memory a run needs, estimated from its spec before it runs, so a sweep can decide what runs at once.

An estimate is the peak resident memory (RSS) in bytes of a worker process that
runs one job (a run, or a population of runs trained together):

    peak = PROCESS_BASELINE + TORCH_WORKSPACE + the working memory of each run in the job

`working_memory(spec)` is the experiment's own term (`Experiment.working_memory`,
which an experiment overrides where it knows better: matrix factorization counts
its convex reference's solver, the sharpness experiments add `hessian_memory`,
a double-backward graph over the training set and Lanczos's basis). The default,
for the standard supervised run, counts from the spec's sizes alone (nothing is
loaded or trained):
- data: the training and test inputs, three float32 copies while they are built
  and standardized, and in float64 the copy the run holds;
- parameters: weights, gradients, optimizer state (momentum 1, Adam 2) and the
  init snapshot probes measure distances from, at the run's dtype;
- activations: every module's output per example (from a forward pass of the
  model on PyTorch's `meta` device, which allocates nothing) times the training
  batch, kept for the backward pass, and times the evaluation chunk; a
  population evaluates all members on the whole set at once.

The constants were measured on the development machine (Linux, PyTorch 2.13
CPU, Python 3.11) with `benchmarks/memory.py` and `tests/test_memory.py`, which
compare estimates with measured peaks. They are of host memory for CPU runs;
GPU memory is not estimated.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import torch

from biaslab.data.sources import DEFAULT_TRAIN_FRACTION, n_classes
from biaslab.spec import DataSpec, ModelSpec, RunSpec

MB = 10**6
GB = 10**9

PROCESS_BASELINE = 450 * MB  # Python with torch, numpy, matplotlib, cvxpy and biaslab.experiments imported (measured 433 MB)
TORCH_WORKSPACE = 100 * MB  # torch's kernels, autograd engine and LAPACK on first use (measured 85 MB: a 100 x 100 factorization)
INPUT_COPIES = 3  # float32 copies of the inputs alive while a dataset is built: source arrays, tensors, standardization's result
PARAMETER_COPIES = 3  # weights, gradients and the init snapshot that probes measure distances from
ACTIVATION_COPIES = 3  # training: forward outputs kept for backward, their gradients, one temporary
EVAL_CHUNK = 4096  # examples per forward pass when a single run is evaluated (probes.core.predict)
OPTIMIZER_STATES = {"gd": 0, "sgd": 1, "adam": 2, "adamw": 2, "sam": 2, "asam": 2}  # per parameter; sgd without momentum: 0
DTYPE_BYTES = {"float32": 4, "float64": 8}


@dataclass(frozen=True)
class DataSize:
    """What the estimate needs to know of a dataset without loading it."""

    in_shape: tuple[int, ...]  # one example's input
    n_train: int
    n_test: int
    tokens: bool = False  # int64 token ids (never cast to the run's dtype)


def data_size(spec: DataSpec) -> DataSize:
    """Input shape and split sizes of the dataset a DataSpec names, with each source's defaults (data.sources)."""
    if spec.name == "modular":
        equations = spec.modulus * (spec.modulus - 1 if spec.operation == "div" else spec.modulus)
        n_train = round((spec.train_fraction or DEFAULT_TRAIN_FRACTION) * equations)
        return DataSize((2,), n_train, equations - n_train, tokens=True)
    shapes = {
        "mnist1d": ((1, 40), 4000, 1000),
        "digits": ((1, 8, 8), 1200, 597),
        "teacher": ((spec.dim,), 1000, 1000),
        "mnist": ((1, 28, 28), 60000, 10000),
        "cifar10": ((3, 32, 32), 50000, 10000),
        "chebyshev": ((1,), 20, 100),
    }
    in_shape, n_train, n_test = shapes[spec.name]
    if spec.name == "digits" and spec.n_train is not None and spec.n_test is None:
        n_test = 1797 - spec.n_train  # digits tests on what training leaves
    return DataSize(in_shape, spec.n_train or n_train, spec.n_test or n_test)


def data_bytes(spec: RunSpec) -> int:
    """The inputs while they are built (float32 copies) and, in float64, the copy the run holds; labels are small."""
    size = data_size(spec.data)
    examples = (size.n_train + size.n_test) * math.prod(size.in_shape)
    if size.tokens:
        return examples * 8 * 2  # int64 ids: the table and the split
    cast = DTYPE_BYTES[spec.dtype] if spec.dtype != "float32" else 0
    return examples * (4 * INPUT_COPIES + cast)


@lru_cache(maxsize=256)
def model_size(model: ModelSpec, in_shape: tuple[int, ...], n_out: int) -> tuple[int, int]:
    """(parameters, activations per example) of the model a spec builds: the sum of every distinct module output's
    elements in one forward pass, run on the `meta` device (shapes only, no memory, no arithmetic)."""
    from biaslab.models import ARCHITECTURES

    network = ARCHITECTURES.get(model.kind)(model, in_shape, n_out).to("meta")  # built uninitialized (skip_init)
    outputs: dict[int, torch.Tensor] = {}  # by identity: an Identity module passes its input on, counted once

    def keep(module: torch.nn.Module, inputs: object, output: object) -> None:
        if isinstance(output, torch.Tensor):
            outputs[id(output)] = output

    leaves = [m for m in network.modules() if not any(True for _ in m.children())]
    hooks = [m.register_forward_hook(keep) for m in leaves]
    try:
        dtype = torch.int64 if model.kind in ("token_mlp", "transformer") else torch.float32
        network(torch.zeros((1, *in_shape), dtype=dtype, device="meta"))
    finally:
        for hook in hooks:
            hook.remove()
    return sum(p.numel() for p in network.parameters()), sum(t.numel() for t in outputs.values())


def optimizer_states(spec: RunSpec) -> int:
    """Tensors of optimizer state per parameter tensor (momentum buffers, Adam's two moments)."""
    if spec.train.optimizer == "sgd" and spec.train.momentum == 0.0:
        return 0
    return OPTIMIZER_STATES[spec.train.optimizer]


def default_working_memory(spec: RunSpec, in_population: bool = False) -> int:
    """Bytes a standard supervised run of `spec` holds at its peak beyond the process baseline and torch's workspace.

    `in_population`: the run is one member of a population, whose evaluation
    runs every member on the whole training set at once (no chunks).
    """
    size = data_size(spec.data)
    dtype_bytes = DTYPE_BYTES[spec.dtype]
    try:
        parameters, activations = model_size(spec.model, size.in_shape, n_classes(spec.data))
    except (ValueError, RuntimeError):  # a model that does not fit its data fails when the run builds it; nothing to size
        parameters, activations = 0, 0
    n_train = size.n_train
    batch = n_train if spec.train.batch_size is None else min(spec.train.batch_size, n_train)
    evaluated = max(n_train, size.n_test) if in_population else min(max(n_train, size.n_test), EVAL_CHUNK)
    weights = parameters * dtype_bytes * (PARAMETER_COPIES + optimizer_states(spec))
    training = batch * activations * dtype_bytes * ACTIVATION_COPIES
    evaluation = evaluated * activations * dtype_bytes
    return data_bytes(spec) + weights + max(training, evaluation) + probe_memory(spec)


HESSIAN_GRAPH_COPIES = 7  # a double-backward graph: forward outputs, their gradients kept by create_graph, temporaries
# (measured about 6.5 with the sharpness probes that follow it on the same examples: 20k examples, 256 x 2 MLP)
LANCZOS_MAX_ITER = 100  # probes.curvature.top_eigenvalues' default cap on Lanczos steps
LANCZOS_COPIES = 2  # Lanczos's basis (full reorthogonalization) and the copy stacked from it at every step


def hessian_memory(spec: RunSpec, iterations: int, examples: int | None = None) -> int:
    """Bytes a Hessian probe (`probes.curvature`) holds on `examples` training examples (default: all, as one batch):
    the double-backward graph of the loss over them and Lanczos's basis at `iterations` vectors of all parameters
    (the solver's cap: an upper bound, since it stops when the top pairs converge)."""
    size = data_size(spec.data)
    try:
        parameters, activations = model_size(spec.model, size.in_shape, n_classes(spec.data))
    except (ValueError, RuntimeError):  # as in default_working_memory: the run fails when it builds the model
        return 0
    dtype_bytes = DTYPE_BYTES[spec.dtype]
    graph = (examples or size.n_train) * activations * dtype_bytes * HESSIAN_GRAPH_COPIES
    return graph + iterations * parameters * dtype_bytes * LANCZOS_COPIES


def probe_memory(spec: RunSpec) -> int:
    """Bytes the spec's Hessian probes hold while they measure (effective_dim: a double-backward graph over its
    examples, Lanczos's basis of at most LANCZOS_MAX_ITER vectors and one quadrature basis of n_eff_steps); 0 without."""
    if "effective_dim" not in spec.probes:
        return 0
    options = spec.probe_options
    return hessian_memory(spec, iterations=LANCZOS_MAX_ITER + options.n_eff_steps, examples=options.n_eff_examples)


def job_peak_memory(job: Sequence[RunSpec]) -> int:
    """Estimated peak RSS in bytes of a worker process running `job` (one run, or the members of a population)."""
    from biaslab.experiments import CATALOG

    if len(job) > 1:  # populations are standard supervised runs (Experiment.trains_populations): the default applies,
        # with the inputs counted once per distinct draw (members that differ only in labels share one input tensor)
        working = sum(default_working_memory(spec, in_population=True) - data_bytes(spec) for spec in job)
        working += sum(data_bytes(spec) for spec in {s.data.model_copy(update={"label_noise": 0.0}): s for s in job}.values())
    else:
        spec = job[0]
        working = CATALOG.get(spec.experiment).working_memory(spec) if spec.experiment in CATALOG else default_working_memory(spec)
    return PROCESS_BASELINE + TORCH_WORKSPACE + working


def peak_memory(spec: RunSpec) -> int:
    """Estimated peak RSS in bytes of a worker process running `spec` alone."""
    return job_peak_memory([spec])


def gigabytes(n_bytes: int) -> str:
    """Bytes as decimal gigabytes for a one-line message: '1.4 GB' (two digits under 10 GB: '0.63 GB')."""
    value = n_bytes / GB
    return f"{value:.2g} GB" if value < 10 else f"{value:.0f} GB"


@dataclass(frozen=True)
class Measured:
    """What one job took in a fresh worker-like process: resident memory after the imports and at the peak (bytes)."""

    baseline: int  # the largest resident set with biaslab.experiments imported, before the job
    peak: int  # the process's largest resident set, imports included
    statuses: list[str] = field(default_factory=list)  # one per run of the job
    errors: list[str] = field(default_factory=list)  # the last line of each failed run's traceback

    @property
    def growth(self) -> int:
        """What running the job added to an idle worker: peak - baseline."""
        return self.peak - self.baseline


_MEASURE = """
import json, resource, sys

def peak():
    # Linux: VmHWM, the high-water mark of this process's own memory since exec. Not ru_maxrss, which a child
    # inherits from its parent's resident set at fork (kept across exec): a large parent would mask the child's.
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)

import torch
import biaslab.experiments as experiments
from biaslab.spec import RunSpec
job = [RunSpec.model_validate(spec) for spec in json.load(sys.stdin)]
torch.set_num_threads(1)  # as in a worker process
baseline = peak()
records = experiments.run_population(job)
peak = peak()
errors = [(r.error or "").strip().splitlines()[-1] for r in records if r.status == "failed"]
print(json.dumps({"baseline": baseline, "peak": peak, "statuses": [r.status for r in records], "errors": errors}))
"""


def measure_peak(job: Sequence[RunSpec], timeout: float | None = None) -> Measured:
    """Run `job` (one run, or a population) in a fresh Python process as a worker would, with this biaslab, and
    measure its resident memory (Linux: VmHWM; elsewhere getrusage's maxrss). For checking estimates (tests,
    benchmarks/memory.py); it takes the job's whole run time plus a few seconds of imports. Raises RuntimeError
    with the child's last line if the process dies."""
    source = str(Path(__file__).resolve().parents[2])  # the directory holding this biaslab package
    env = os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, [source, os.environ.get("PYTHONPATH")]))}
    payload = json.dumps([spec.model_dump(mode="json") for spec in job])
    child = subprocess.run([sys.executable, "-c", _MEASURE], input=payload, capture_output=True, text=True, env=env, timeout=timeout)
    if child.returncode != 0:
        last = (child.stderr.strip().splitlines() or [f"exit code {child.returncode}"])[-1]
        raise RuntimeError(f"measure_peak: the measuring process failed: {last}")
    result = json.loads(child.stdout.strip().splitlines()[-1])
    return Measured(result["baseline"], result["peak"], result["statuses"], result["errors"])
