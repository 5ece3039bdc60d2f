"""The report card's cost on three model sizes, against the machine's measured peak.

    python benchmarks/card.py                       # all three models at --budget small (ResNet-18: minutes)
    python benchmarks/card.py --models mlp,cnn      # the small ones only
    python benchmarks/card.py --device cuda         # on a GPU (nothing requires one)

Models (random labels over 10 classes; the weights are a short Adam fit, so the card sees a trained-looking model):
- `mlp`: 64 -> 32 -> 10 ReLU MLP (2.4k parameters) on 1437 training / 360 test examples of 64 features;
- `cnn`: three 3x3 conv layers (16, 32, 32 channels, stride 2 after the first) + linear head on 1-channel 28x28
  inputs (about 20k parameters), 1000 / 250 examples;
- `resnet18`: the CIFAR ResNet-18 (3x3 stem, no max-pool, BatchNorm; 11.2M parameters) on 64 / 64 inputs of
  3x32x32 (the size issue 14 names).

For each it reports: the cost of one gradient and one Hessian-vector product on the card's subset (their ratio:
goal <= 3), the card's own estimate per section before running, the measured wall time per section at
`--budget small`, and the FLOPs of a forward pass, a gradient and a Hessian-vector product (counted by
torch.utils.flop_counter) divided by their times against the machine's matmul peak (a 2048^3 fp32 matmul timed
here: on a CPU its GFLOP/s with the process's threads). Goals (issue 14): MLP card <= 15 s, ResNet-18 card
<= 15 min on 2 CPU cores. Writes `card.json` and `card.png` (seconds per section, per model) to --out.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
from matplotlib.figure import Figure
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import biaslab
from hardware import matmul_peak
from biaslab.card import sections, subjects
from biaslab.probes import curvature


class Block(nn.Module):
    """The basic residual block of ResNet-18."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.skip = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.skip = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.skip(x))


def resnet18(classes: int = 10) -> nn.Module:
    """He et al.'s ResNet-18 in its CIFAR form (3x3 stem, no max-pool): 11.2M parameters."""
    layers: list[nn.Module] = [nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU()]
    c_in = 64
    for c_out, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        layers += [Block(c_in, c_out, stride), Block(c_out, c_out, 1)]
        c_in = c_out
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, classes))


def small_cnn(classes: int = 10) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, 2, 1), nn.ReLU(), nn.Conv2d(16, 32, 3, 2, 1), nn.ReLU(), nn.Conv2d(32, 32, 3, 2, 1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(512, classes),
    )  # fmt: skip


MODELS = {  # name -> (builder, input shape, n_train, n_test, Adam steps)
    "mlp": (lambda: nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)), (64,), 1437, 360, 300),
    "cnn": (small_cnn, (1, 28, 28), 1000, 250, 100),
    "resnet18": (resnet18, (3, 32, 32), 64, 64, 5),
}


def problem(name: str, device: torch.device):
    builder, shape, n_train, n_test, steps = MODELS[name]
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = builder().to(device)
    x = torch.randn(n_train + n_test, *shape, generator=g).to(device)
    y = torch.randint(0, 10, (n_train + n_test,), generator=g).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(steps):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x[:n_train]), y[:n_train]).backward()
        optimizer.step()
    return model, (x[:n_train], y[:n_train]), (x[n_train:], y[n_train:])


def flops_of(work) -> int:
    with FlopCounterMode(display=False) as counter:
        work()
    return counter.get_total_flops()


def measure_model(name: str, device: torch.device, peak: float) -> dict:
    model, train, test = problem(name, device)
    options = sections.card_options("small")
    subject = subjects.user_subject(model, train, test, device=str(device))
    costs = sections.unit_costs(subject, options)
    ((x, y),) = sections.subset(subject, options)
    params = curvature.trainable(model)
    with curvature.evaluating(model):
        flops = {
            "forward": flops_of(lambda: model(x)),
            "gradient": flops_of(lambda: torch.autograd.grad(nn.functional.cross_entropy(model(x), y), params)),
        }
    with curvature.curvature_operator(model, nn.functional.cross_entropy, [(x, y)]) as (matvec, dim):
        vector = torch.randn(dim, device=params[0].device)
        flops["hvp"] = flops_of(lambda: matvec(vector))
    seconds = {"forward": costs.forward_subset, "gradient": costs.gradient_subset, "hvp": costs.hvp_subset}
    predicted = sections.estimate(subject, options, costs=costs)
    started = time.perf_counter()
    card = biaslab.probe(model, train=train, test=test, budget="small", device=str(device))
    total = time.perf_counter() - started
    result = {
        "parameters": sum(p.numel() for p in model.parameters()), "subset": x.shape[0],
        "hvp_over_gradient": costs.hvp_subset / costs.gradient_subset,
        "unit_seconds": seconds, "flops": flops,
        "fraction_of_peak": {k: flops[k] / seconds[k] / 1e9 / peak for k in seconds},
        "estimated_seconds": predicted, "measured_seconds": card.seconds, "card_seconds": total,
        "failed": [n for n in card.notes if ": failed (" in n],
    }  # fmt: skip
    print(f"{name}: {result['parameters']:,} parameters, subset {x.shape[0]}; HVP / gradient = {result['hvp_over_gradient']:.2f}")
    for kind in seconds:
        print(f"  {kind:<8} {seconds[kind] * 1e3:9.2f} ms  {flops[kind] / 1e9:8.3f} GFLOP  {result['fraction_of_peak'][kind]:6.1%} of peak")
    for section, value in card.seconds.items():
        print(f"  {section:<12} estimated {predicted[section]:8.2f} s   measured {value:8.2f} s")
    print(f"  card total {total:.1f} s" + (f"; failed: {result['failed']}" if result["failed"] else ""))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mlp,cnn,resnet18")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    device = torch.device(args.device)
    peak = matmul_peak(device=args.device)
    print(f"device {device}, {torch.get_num_threads()} threads; matmul peak {peak:.1f} GFLOP/s (fp32, 2048^3)")
    results = {name: measure_model(name, device, peak) for name in args.models.split(",")}
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {"device": str(device), "threads": torch.get_num_threads(), "peak_gflops": peak, "machine": platform.processor() or platform.machine()}
    (args.out / "card.json").write_text(json.dumps({"meta": meta, "models": results}, indent=2))
    figure = Figure(figsize=(7, 3.5))
    ax = figure.subplots()
    names, width = list(results), 0.8 / len(results)
    for i, name in enumerate(names):
        heights = [max(results[name]["measured_seconds"].get(s, 0.0), 1e-3) for s in sections.SECTIONS]
        ax.bar([j + i * width for j in range(len(sections.SECTIONS))], heights, width, label=name, color=f"C{i}")
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(sections.SECTIONS))], list(sections.SECTIONS), rotation=30, fontsize=8)
    ax.set(yscale="log", ylabel="seconds (wall)", title=f"card sections at --budget small on {device}")
    ax.legend(fontsize=8)
    figure.savefig(args.out / "card.png", bbox_inches="tight", dpi=110)
    print(f"wrote {args.out / 'card.json'} and {args.out / 'card.png'}")


if __name__ == "__main__":
    main()
