"""What a card measures: a trained model, its loss, the data it is scored on, and its init when known.

A `Subject` comes from one of three places, and each says in words which data it
holds, because every number on a card means something only for that data:
- a stored run (`subject_from_run`): the model rebuilt from the run's spec, its
  init regenerated from the spec's seed, its trained weights read from the store,
  scored on the run's own data (the split and preprocessing it trained on);
- the user's own model and data (`user_subject`): an `nn.Module`, and training
  and test data as tensors, a `Dataset`, a `DataLoader` or a file, used exactly as
  given: biaslab neither splits, shuffles nor standardizes them;
- the user's own model scored on one of biaslab's named datasets: allowed, but
  the card then says that this is biaslab's split and preprocessing, not theirs.

User files are read without running their code: weights as safetensors or a torch
file read with `weights_only=True`; data as `.npz` (no pickle), safetensors or a
weights-only torch file. A `torch.export` program (`.pt2`) can hold pickled
objects, so it is read only when the caller says the file is trusted.
"""

from __future__ import annotations

import hashlib
import importlib
import math
import os
import pickle
import sys
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from biaslab import data as datasets
from biaslab import models, probes
from biaslab.runtime import generator, resolve_device, resolve_dtype
from biaslab.spec import DataSpec, RunSpec, SpecError, parse_value
from biaslab.store import Store
from biaslab.train import LOSSES

DATA_KEYS = ("x_train", "y_train", "x_test", "y_test")
DATA_SUFFIXES = (".npz", ".safetensors", ".pt", ".pth")
CHECKPOINT_KEYS = ("state_dict", "model_state_dict", "model")  # where training scripts commonly nest a state_dict


@dataclass
class Subject:
    """A trained model with its loss, its data, its init (when known), and where each came from."""

    model: nn.Module
    data: datasets.Dataset
    loss: str  # a name in train.LOSSES
    init: dict[str, torch.Tensor] | None
    source: dict[str, Any]  # where it came from (run id and spec, or module, weights file and data file)
    data_note: str = ""  # in words: which data and split the card is scored on, and what was done to it
    expected_train_error: float | None = None  # what the owner says the training error is; checked on the card
    warnings: list[str] = field(default_factory=list)  # shown at the top of the card

    @property
    def loss_fn(self):
        return LOSSES[self.loss]


def probe_device(name: str) -> torch.device:
    """The device to probe on; an unavailable one (cuda without a GPU) is one clear line."""
    try:
        return resolve_device(name)
    except (ValueError, RuntimeError) as error:
        raise SpecError(f"--device: {error}") from None


# --- a stored run ---------------------------------------------------------------------------------------------


def subject_from_run(store: Store, run_id: str, device: str = "cpu") -> Subject:
    """The trained model of a stored run (its spec must have had save_weights=true), on the run's own data."""
    record = store.get(run_id)
    spec = RunSpec.model_validate(record.spec)
    if spec.problem is not None:
        raise SpecError(f"run {record.spec_id}: a {spec.problem.kind} problem run has no classifier to probe")
    weights = store.weights(record.spec_id)
    torch_device, dtype = probe_device(device), resolve_dtype(spec.dtype)
    data = datasets.load(spec.data, torch_device, dtype)
    model = models.build(spec.model, data.in_shape, data.n_classes, generator(spec.seed, "init"), torch_device, dtype)
    init = probes.snapshot(model)
    load_state(model, {name: torch.from_numpy(array) for name, array in weights.items()}, f"run {record.spec_id}")
    source = {"run": record.spec_id, "experiment": record.experiment, "spec": record.spec}
    note = f"the run's own data, as it was trained: {describe_named_data(spec.data, data)}"
    expected = record.final.get("train_error")
    return Subject(model, data, spec.train.loss, init, source, note, expected if _is_number(expected) else None)


# --- the user's model -------------------------------------------------------------------------------------------


def model_from_factory(factory: str, kwargs: Mapping[str, Any] | None = None) -> nn.Module:
    """`module:function` or `path/file.py:function`, resolved from the current directory as `python -m` does, called with kwargs."""
    module_name, sep, attribute = factory.rpartition(":")
    if not sep or not module_name or not attribute:
        raise SpecError(f"model: {factory!r} should be 'module:function' or 'file.py:function' (a function returning an nn.Module)")
    module = _import_user_module(module_name)
    builder = getattr(module, attribute, None)
    if not callable(builder):
        raise SpecError(f"model: cannot find {factory!r}: {module_name} has no function {attribute!r}")
    kwargs = dict(kwargs or {})
    try:
        model = builder(**kwargs)
    except TypeError as error:
        raise SpecError(f"model: {factory}({_call_text(kwargs)}) failed: {error}") from None
    if not isinstance(model, nn.Module):
        raise SpecError(f"model: {factory} returned {type(model).__name__}, not an nn.Module")
    return model


def _import_user_module(name: str):
    """Import a user's module the way `python -m` finds it: the current directory first; a .py path also works."""
    path = Path(name)
    if path.suffix == ".py":
        if not path.is_file():
            raise SpecError(f"model: no such file {path}")
        directory, name = str(path.resolve().parent), path.stem
    else:
        directory = os.getcwd()
    if directory not in sys.path:
        sys.path.insert(0, directory)
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name == name or name.startswith(f"{error.name}."):
            raise SpecError(f"model: cannot find {name!r}: no module {error.name!r} in {directory} or on the Python path") from None
        raise SpecError(f"model: importing {name!r} failed: {error}") from None
    except Exception as error:  # the user's module raised at import: their error, reported in one line
        raise SpecError(f"model: importing {name!r} raised {type(error).__name__}: {error}") from None


def factory_arguments(items: Iterable[str]) -> dict[str, Any]:
    """['width=128', 'act=relu'] -> {'width': 128, 'act': 'relu'} (values read as JSON where they parse)."""
    kwargs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip().isidentifier():
            raise SpecError(f"model argument {item!r}: expected NAME=VALUE with a Python name, e.g. width=128")
        kwargs[key.strip()] = parse_value(value.strip())
    return kwargs


def _call_text(kwargs: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items())


class ExportedModel(nn.Module):
    """A `torch.export` program as an nn.Module the probes can use.

    An exported program runs in the mode it was exported in and cannot switch
    train/eval (torch refuses `.eval()` on it), so `train()` here records the flag
    and leaves the program alone. Parameters are the program's own, so gradients
    and Hessian-vector products flow through it.
    """

    def __init__(self, program: nn.Module):
        super().__init__()
        self.program = program

    def train(self, mode: bool = True) -> "ExportedModel":
        self.training = mode
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.program(x)


def load_exported(path: Path, trusted: bool) -> nn.Module:
    """A `torch.export.save` program, read only when `trusted` (torch.export.load may unpickle objects)."""
    _check_file(path, "model")
    if not trusted:
        raise SpecError(
            f"model: {path} is a torch.export program, which torch reads with pickle; pass --trust-exported "
            "(trusted=True) only for a file you made, or give a factory and a state_dict instead"
        )
    try:
        program = torch.export.load(str(path))
    except Exception as error:  # a damaged or foreign archive: say so in one line
        raise SpecError(f"model: {path} is not a readable torch.export program ({type(error).__name__}: {str(error)[:160]})") from None
    return ExportedModel(program.module())


def load_state_file(path: Path) -> dict[str, torch.Tensor]:
    """A state_dict from .safetensors, or from a torch file read with weights_only=True (no arbitrary unpickling).

    A checkpoint dict that nests the state_dict under 'state_dict', 'model_state_dict'
    or 'model' is accepted too (what training scripts usually save).
    """
    path = Path(path)
    _check_file(path, "weights")
    state = _read_tensor_file(path, "weights")
    if not isinstance(state, dict):
        raise SpecError(f"weights: {path} holds a {type(state).__name__}, not a state_dict (a dict of tensors)")
    if not _all_tensors(state):
        nested = [state[key] for key in CHECKPOINT_KEYS if isinstance(state.get(key), dict) and _all_tensors(state[key])]
        if not nested:
            raise SpecError(f"weights: {path} is not a state_dict: its values are not all tensors (keys {sorted(map(str, state))[:6]})")
        state = nested[0]
    if not state:
        raise SpecError(f"weights: {path} holds no tensors")
    return state


def _all_tensors(mapping: dict) -> bool:
    return bool(mapping) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in mapping.items())


def _check_file(path: Path, what: str) -> None:
    if not path.exists():
        raise SpecError(f"{what}: no such file {path}")
    if not path.is_file():
        raise SpecError(f"{what}: {path} is not a file")


def _read_tensor_file(path: Path, what: str) -> Any:
    """The contents of a safetensors file or a weights-only torch file; one line for anything unreadable."""
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as error:
            raise SpecError(f"{what}: {path} is not a readable safetensors file ({str(error)[:160]})") from None
    if _is_torchscript(path):
        raise SpecError(f"{what}: {path} is a TorchScript archive; save model.state_dict() (torch.save or safetensors) instead")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        first = str(error).strip().splitlines()[0][:160]
        raise SpecError(f"{what}: {path} holds more than tensors; refused (read with weights_only=True): {first}") from None
    except (RuntimeError, OSError, EOFError, ValueError, zipfile.BadZipFile) as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:160]
        raise SpecError(f"{what}: {path} cannot be read as a torch file (truncated or not made by torch.save?): {first}") from None


def _is_torchscript(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return any("/code/__torch__" in name for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def check_fits(model: nn.Module, state: Mapping[str, torch.Tensor], where: str) -> None:
    """One line naming the first mismatch when `state` does not fit the model's state_dict (names and shapes)."""
    reference = model.state_dict()
    missing, unexpected = sorted(set(reference) - set(state)), sorted(set(state) - set(reference))
    if missing or unexpected:
        raise SpecError(f"weights: {where} does not fit the model (missing {missing[:5]}, unexpected {unexpected[:5]})")
    for name, tensor in reference.items():
        if tuple(state[name].shape) != tuple(tensor.shape):
            raise SpecError(f"weights: {where}: {name!r} has shape {tuple(state[name].shape)}, the model's is {tuple(tensor.shape)}")


def load_state(model: nn.Module, state: Mapping[str, torch.Tensor], where: str) -> None:
    """Copy `state` into the model; one line naming the first mismatch when it does not fit."""
    check_fits(model, state, where)
    reference = model.state_dict()
    with torch.no_grad():
        for name, tensor in reference.items():
            tensor.copy_(state[name].to(tensor.dtype))


def weights_hash(model: nn.Module) -> str:
    """SHA-256 (16 hex digits) of the state_dict's names, dtypes, shapes and bytes: which weights were measured."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        array = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{array.dtype}|{tuple(array.shape)}|".encode())
        digest.update(array.reshape(-1).view(torch.uint8).numpy().tobytes() if array.numel() else b"")  # 0-d buffers too
    return digest.hexdigest()[:16]


def layer_summary(model: nn.Module) -> list[dict[str, Any]]:
    """One row per module that owns parameters: its name, type, parameter count and weight shape."""
    rows = []
    for name, module in model.named_modules():
        own = list(module.parameters(recurse=False))
        if own:
            weight = getattr(module, "weight", None)
            shape = list(weight.shape) if isinstance(weight, torch.Tensor) else []
            rows.append({"layer": name or "(root)", "type": type(module).__name__, "parameters": sum(p.numel() for p in own), "shape": shape})
    return rows


# --- the user's data --------------------------------------------------------------------------------------------


def tensors_of(data: Any, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) from a pair of arrays/tensors, a map-style `Dataset` of (x, y) items, or a `DataLoader` (one full pass)."""
    from torch.utils.data import DataLoader, Dataset

    if isinstance(data, DataLoader):
        xs, ys = [], []
        for batch in data:
            x, y = _pair(batch, name)
            xs.append(torch.as_tensor(x))
            ys.append(torch.as_tensor(y))
        if not xs:
            raise SpecError(f"{name}: the DataLoader yielded no batches")
        return torch.cat(xs), torch.cat(ys)
    if isinstance(data, Dataset) and not isinstance(data, (tuple, list)):
        if not hasattr(data, "__len__"):
            raise SpecError(f"{name}: an iterable Dataset has no length; wrap it in a DataLoader or pass tensors")
        items = [_pair(data[i], name) for i in range(len(data))]
        if not items:
            raise SpecError(f"{name}: the Dataset is empty")
        return torch.stack([torch.as_tensor(x) for x, _ in items]), torch.stack([torch.as_tensor(y) for _, y in items])
    x, y = _pair(data, name)
    return torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x), torch.as_tensor(
        np.asarray(y) if not isinstance(y, torch.Tensor) else y
    )


def _pair(item: Any, name: str) -> tuple[Any, Any]:
    if isinstance(item, Mapping):
        missing = [k for k in ("x", "y") if k not in item]
        if missing:
            raise SpecError(f"{name}: a mapping item needs keys 'x' and 'y' (missing {missing})")
        return item["x"], item["y"]
    if isinstance(item, (tuple, list)) and len(item) == 2:
        return item[0], item[1]
    raise SpecError(f"{name}: expected (inputs, labels) pairs, got {type(item).__name__}")


def read_data_file(path: Path) -> dict[str, torch.Tensor]:
    """x_train, y_train, x_test, y_test from .npz (no pickle), .safetensors or a weights-only torch file."""
    path = Path(path)
    _check_file(path, "data file")
    if path.suffix not in DATA_SUFFIXES:
        raise SpecError(f"data file: {path} has suffix {path.suffix!r}; allowed: {', '.join(DATA_SUFFIXES)}")
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as archive:
                content = {key: torch.from_numpy(np.array(archive[key])) for key in archive.files}
        except (ValueError, OSError, zipfile.BadZipFile, EOFError) as error:
            raise SpecError(f"data file: {path} is not a readable .npz without pickled objects ({str(error)[:160]})") from None
    else:
        content = _read_tensor_file(path, "data file")
    if not isinstance(content, dict):
        raise SpecError(f"data file: {path} holds a {type(content).__name__}; expected a dict with keys {', '.join(DATA_KEYS)}")
    missing = [key for key in DATA_KEYS if key not in content]
    if missing:
        found = ", ".join(sorted(map(str, content))) or "nothing"
        raise SpecError(f"data file: {path} has no {', '.join(map(repr, missing))}; it must hold {', '.join(DATA_KEYS)} (found: {found})")
    for key in DATA_KEYS:
        if not isinstance(content[key], torch.Tensor):
            raise SpecError(f"data file: {path}: {key!r} is a {type(content[key]).__name__}, not an array")
    return {key: content[key] for key in DATA_KEYS}


def data_from_factory(factory: str, kwargs: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """`module:function` returning {'x_train', 'y_train', 'x_test', 'y_test'}, a 4-tuple, or ((x, y), (x, y))."""
    module_name, sep, attribute = factory.rpartition(":")
    if not sep or not module_name or not attribute:
        raise SpecError(f"data factory: {factory!r} should be 'module:function' (returning x_train, y_train, x_test, y_test)")
    builder = getattr(_import_user_module(module_name), attribute, None)
    if not callable(builder):
        raise SpecError(f"data factory: {module_name} has no function {attribute!r}")
    try:
        result = builder(**dict(kwargs or {}))
    except TypeError as error:
        raise SpecError(f"data factory: {factory}() failed: {error}") from None
    if isinstance(result, Mapping):
        missing = [key for key in DATA_KEYS if key not in result]
        if missing:
            raise SpecError(f"data factory: {factory} returned a dict without {', '.join(map(repr, missing))}")
        return {"train": (result["x_train"], result["y_train"]), "test": (result["x_test"], result["y_test"])}
    if isinstance(result, (tuple, list)) and len(result) == 4:
        return {"train": (result[0], result[1]), "test": (result[2], result[3])}
    if isinstance(result, (tuple, list)) and len(result) == 2:
        return {"train": result[0], "test": result[1]}
    raise SpecError(f"data factory: {factory} returned {type(result).__name__}; expected a dict with {', '.join(DATA_KEYS)} or a 4-tuple")


def user_dataset(model: nn.Module, train: Any, test: Any, loss: str, device: torch.device) -> datasets.Dataset:
    """The user's train and test data as one `Dataset`, checked against each other and the model, used as given."""
    x_train, y_train = tensors_of(train, "train")
    x_test, y_test = tensors_of(test, "test")
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        if x.shape[0] != y.shape[0]:
            raise SpecError(f"{split}: {x.shape[0]} inputs but {y.shape[0]} labels (x_{split} shape {tuple(x.shape)}, y_{split} {tuple(y.shape)})")
        if x.shape[0] == 0:
            raise SpecError(f"{split}: no examples")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise SpecError(f"x_test: examples of shape {tuple(x_test.shape[1:])} but x_train's are {tuple(x_train.shape[1:])}")
    dtype = next(model.parameters()).dtype
    classes = loss == "cross_entropy" or not (y_train.is_floating_point() or y_test.is_floating_point())
    if classes:  # integer labels; with mse they are one-hot targets, as in training (train.squared_error)
        y_train, y_test = (_class_labels(y, split) for y, split in ((y_train, "y_train"), (y_test, "y_test")))
    else:  # real-valued regression targets for mse
        y_train, y_test = y_train.to(dtype), y_test.to(dtype)
    x_train, x_test = (x.to(dtype) if x.is_floating_point() else x for x in (x_train, x_test))
    outputs = _outputs(model, x_train[:2].to(device))
    if classes:
        top = int(max(y_train.max(), y_test.max()))
        if top >= outputs:
            raise SpecError(f"labels: the data has label {top} but the model has {outputs} outputs (labels must be 0..{outputs - 1})")
    move = lambda t: t.to(device)  # noqa: E731
    noisy = torch.zeros(x_train.shape[0], dtype=torch.bool, device=device)
    return datasets.Dataset(move(x_train), move(y_train), move(x_test), move(y_test), outputs, noisy, "user")


def _class_labels(y: torch.Tensor, name: str) -> torch.Tensor:
    if y.ndim != 1:
        raise SpecError(f"{name}: class labels must be one integer per example (shape (n,)), got shape {tuple(y.shape)}")
    if y.is_floating_point():
        if not torch.equal(y, y.round()):
            raise SpecError(f"{name}: class labels must be integers; got non-integer values (use --loss mse for real targets)")
    elif y.dtype == torch.bool:
        y = y.long()
    if int(y.min()) < 0:
        raise SpecError(f"{name}: class labels must be >= 0, got {int(y.min())}")
    return y.long()


def _outputs(model: nn.Module, x: torch.Tensor) -> int:
    """The model's output width on a couple of examples; one line when the data does not fit the model."""
    was_training = model.training
    try:
        with torch.no_grad():
            out = model.eval()(x)
    except Exception as error:  # a shape mismatch between the user's data and model: their input error
        raise SpecError(f"data: the model cannot take inputs of shape {tuple(x.shape[1:])}: {type(error).__name__}: {str(error)[:160]}") from None
    finally:
        model.train(was_training)
    if out.ndim != 2:
        raise SpecError(f"model: outputs should be (examples, classes), got shape {tuple(out.shape)}")
    return int(out.shape[1])


def user_subject(
    model: nn.Module,
    train: Any,
    test: Any,
    *,
    loss: str = "cross_entropy",
    init: Mapping[str, torch.Tensor] | None = None,
    device: str = "cpu",
    source: Mapping[str, Any] | None = None,
    data_note: str | None = None,
    expected_train_error: float | None = None,
) -> Subject:
    """The user's model on the user's data, exactly as given (no split, shuffle or standardization by biaslab)."""
    if loss not in LOSSES:
        raise SpecError(f"loss: {loss!r} is not a loss; allowed: {', '.join(LOSSES)}")
    if not any(True for _ in model.parameters()):
        raise SpecError("model: it has no parameters to measure")
    torch_device = probe_device(device)
    model.to(torch_device)
    data = user_dataset(model, train, test, loss, torch_device)
    n_train, n_test = data.x_train.shape[0], data.x_test.shape[0]
    note = data_note or f"your data as given: {n_train} training and {n_test} test examples, inputs of shape {list(data.in_shape)}"
    note += "; used as given (biaslab did not split, shuffle or standardize it)"
    start = {name: tensor.detach().to(torch_device).clone() for name, tensor in init.items()} if init is not None else None
    return Subject(model, data, loss, start, dict(source or {}), note, expected_train_error)


def subject_on_named_data(model: nn.Module, spec: DataSpec, loss: str, device: str, source: Mapping[str, Any]) -> Subject:
    """The user's model on one of biaslab's datasets: its split and preprocessing, stated on the card."""
    if loss not in LOSSES:
        raise SpecError(f"loss: {loss!r} is not a loss; allowed: {', '.join(LOSSES)}")
    torch_device = probe_device(device)
    dtype = next(model.parameters()).dtype
    model.to(torch_device)
    data = datasets.load(spec, torch_device, dtype)
    _outputs(model, data.x_train[:2])  # one clear line when the dataset does not fit the model
    note = (
        f"biaslab's built-in data, NOT your own split: {describe_named_data(spec, data)}. If the model was trained on another "
        "split or preprocessing, these numbers do not describe it: give your own data (--data-file or --data-factory)"
    )
    return Subject(model, data, loss, None, dict(source), note)


def describe_named_data(spec: DataSpec, data: datasets.Dataset) -> str:
    """'digits: 1200 training / 597 test examples (biaslab's split, data.seed 0), standardized with training statistics'."""
    parts = [f"{spec.name}: {data.x_train.shape[0]} training / {data.x_test.shape[0]} test examples (biaslab's split, data.seed {spec.seed})"]
    parts.append("standardized per feature with training statistics" if spec.standardize and data.x_train.is_floating_point() else "not standardized")
    if spec.label_noise > 0:
        parts.append(f"{spec.label_noise:.0%} of training labels redrawn at random")
    if spec.inputs != "none":
        parts.append(f"inputs: {spec.inputs}")
    return ", ".join(parts)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)
