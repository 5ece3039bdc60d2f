"""The width sweep as a competent PyTorch user writes it without biaslab.

This is the baseline of `benchmarks/width_sweep.py`: the same runs as biaslab's
`width-sweep` preset (same data, widths, label noise, seeds, optimizer, step
budget, evaluation cadence and stopping rule), written the usual way:

- `DataLoader(TensorDataset(x, y), batch_size=100, shuffle=True)` for training,
- `nn.Sequential(nn.Linear(40, H), nn.ReLU(), nn.Linear(H, 10))` with
  Kaiming-normal weights (ReLU gain, fan-in) and zero biases,
- the standard loop `zero_grad / cross_entropy / backward / step`, with
  `loss.item()` accumulated every step for a running-loss print,
- every `eval_every_epochs` epochs: training and test error, each over a
  `DataLoader(..., batch_size=1000)`; stop at the first evaluation with zero
  training error (or after `stop_zero_error_evals` in a row), else at the budget,
- one model after another in one process, torch's default thread count.

Only the data comes from biaslab (`biaslab.data.load` of the preset's DataSpec,
label noise included), so the errors of both are comparable; data preparation is
done before the clock starts. Seeding is the user's usual `torch.manual_seed(seed)`
(init and shuffling share the global RNG), so the batch order differs from
biaslab's: the per-run errors agree only within seed noise.

    from benchmarks.plain_width_sweep import PlainConfig, prepare_data, run_plain_sweep
    config = PlainConfig.from_preset("quick")
    results = run_plain_sweep([(64, 0.0, 0), (64, 0.15, 0)], config)
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

EXPERIMENT = "width-sweep"


@dataclass(frozen=True)
class PlainConfig:
    """What the plain script needs: the data spec (for biaslab.data.load) and the training settings."""

    data_spec: object  # biaslab.spec.DataSpec, with label_noise set per run
    lr: float = 0.05
    momentum: float = 0.9
    batch_size: int = 100
    epochs: int = 300
    eval_every_epochs: int = 5
    stop_zero_error_evals: int | None = 1

    @classmethod
    def from_preset(cls, preset: str = "quick") -> "PlainConfig":
        """The settings of biaslab's width-sweep preset, in epochs instead of steps."""
        sweep = _preset_sweep(preset)
        base = sweep.base
        data, train = base.data, base.train
        steps_per_epoch = math.ceil(data.n_train / train.batch_size)
        if train.max_steps % steps_per_epoch or train.eval_every % steps_per_epoch:
            raise ValueError(f"preset {preset!r}: max_steps and eval_every must be whole epochs of {steps_per_epoch} steps")
        if train.optimizer != "sgd" or train.schedule != "constant" or train.loss != "cross_entropy" or train.weight_decay or train.nesterov:
            raise ValueError(f"preset {preset!r}: the plain script implements constant-lr SGD with momentum and cross-entropy only")
        return cls(
            data_spec=data,
            lr=train.lr,
            momentum=train.momentum,
            batch_size=train.batch_size,
            epochs=train.max_steps // steps_per_epoch,
            eval_every_epochs=train.eval_every // steps_per_epoch,
            stop_zero_error_evals=train.stop_zero_error_evals,
        )


def preset_runs(preset: str = "quick") -> list[tuple[int, float, int]]:
    """(width, label_noise, seed) of every run of biaslab's preset, in its grid order."""
    return [(s.model.width, s.data.label_noise, s.seed) for s in _preset_sweep(preset).expand()]


def _preset_sweep(preset: str):
    from biaslab.experiments import CATALOG

    return CATALOG.get(EXPERIMENT).presets[preset]()


def prepare_data(config: PlainConfig, noise: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The exact tensors biaslab trains on (label noise applied), flattened to (n, 40). Not timed."""
    from biaslab.data import load

    data = load(config.data_spec.model_copy(update={"label_noise": noise}))
    flat = lambda x: x.reshape(x.shape[0], -1).contiguous()  # noqa: E731
    return flat(data.x_train), data.y_train, flat(data.x_test), data.y_test


# --- from here on: the user's script, no biaslab -------------------------------------------------


def make_model(in_features: int, width: int, n_classes: int) -> nn.Module:
    model = nn.Sequential(nn.Linear(in_features, width), nn.ReLU(), nn.Linear(width, n_classes))
    for layer in model:
        if isinstance(layer, nn.Linear):
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")  # std sqrt(2 / fan_in), as biaslab's "kaiming"
            nn.init.zeros_(layer.bias)
    return model


def error_rate(model: nn.Module, loader: DataLoader) -> float:
    model.eval()
    wrong, total = 0, 0
    with torch.no_grad():
        for xb, yb in loader:
            wrong += (model(xb).argmax(dim=1) != yb).sum().item()
            total += yb.numel()
    model.train()
    return wrong / total


def train_one(
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    width: int,
    seed: int,
    config: PlainConfig,
    verbose: bool = False,
) -> dict:
    """Train one network the usual way; return its final errors, epochs, steps and wall time."""
    started = time.perf_counter()
    torch.manual_seed(seed)
    train_set = TensorDataset(x_train, y_train)
    train_loader = DataLoader(train_set, batch_size=config.batch_size, shuffle=True)
    train_eval_loader = DataLoader(train_set, batch_size=1000)
    test_loader = DataLoader(TensorDataset(x_test, y_test), batch_size=1000)
    n_classes = int(max(y_train.max(), y_test.max())) + 1
    model = make_model(x_train.shape[1], width, n_classes)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum)

    train_error, test_error, steps, epoch, streak = math.nan, math.nan, 0, 0, 0
    running_loss, running_steps = 0.0, 0
    for epoch in range(1, config.epochs + 1):
        model.train()
        for xb, yb in train_loader:
            optimizer.zero_grad()
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            optimizer.step()
            running_loss += loss.item()
            running_steps += 1
            steps += 1
        if epoch % config.eval_every_epochs and epoch != config.epochs:
            continue
        train_error = error_rate(model, train_eval_loader)
        test_error = error_rate(model, test_loader)
        if verbose:
            print(f"H={width} seed={seed} epoch {epoch}: loss {running_loss / running_steps:.4f} train err {train_error:.4f} test err {test_error:.4f}")
        running_loss, running_steps = 0.0, 0
        streak = streak + 1 if train_error == 0.0 else 0
        if config.stop_zero_error_evals is not None and streak >= config.stop_zero_error_evals:
            break
    return {
        "width": width,
        "seed": seed,
        "train_error": train_error,
        "test_error": test_error,
        "epochs": epoch,
        "steps": steps,
        "stopped": "zero_error" if train_error == 0.0 and config.stop_zero_error_evals is not None else "budget",
        "seconds": time.perf_counter() - started,
    }


def run_plain_sweep(
    runs: list[tuple[int, float, int]], config: PlainConfig, verbose: bool = False, data: dict | None = None
) -> list[dict]:
    """Run every (width, label_noise, seed) one after another in this process.

    Returns one dict per run, in the given order: width, label_noise, seed,
    train_error, test_error, epochs, steps, stopped, seconds (wall time of that
    run, data preparation excluded). `data` maps label_noise to `prepare_data`'s
    tensors; missing levels are prepared here, before the first run.
    """
    data = dict(data or {})
    for noise in sorted({noise for _, noise, _ in runs} - set(data)):
        data[noise] = prepare_data(config, noise)
    results = []
    for width, noise, seed in runs:
        result = train_one(*data[noise], width=width, seed=seed, config=config, verbose=verbose)
        results.append({"label_noise": noise, **result})
    return results


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="tiny", choices=("tiny", "quick"))
    parser.add_argument("--verbose", action="store_true", help="print the running loss at every evaluation")
    args = parser.parse_args()
    config = PlainConfig.from_preset(args.preset)
    print(asdict(config) | {"data_spec": config.data_spec.model_dump()})
    started = time.perf_counter()
    for r in run_plain_sweep(preset_runs(args.preset), config, verbose=args.verbose):
        print(f"H={r['width']:5d} noise={r['label_noise']:.2f} seed={r['seed']} train {r['train_error']:.4f} test {r['test_error']:.4f} "
              f"epochs {r['epochs']:3d} {r['seconds']:.2f}s")
    print(f"total {time.perf_counter() - started:.1f}s")


if __name__ == "__main__":
    main()
