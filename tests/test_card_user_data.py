"""The report card on the user's own model and split: their numbers, their files, one clear line for every bad input.

The scenario of issue 14: an owner splits and preprocesses scikit-learn's digits their own way, trains an MLP, and
asks for a card. The card's train/test errors must be the owner's own evaluation, the CLI and `biaslab.probe` must
agree, and a card scored on biaslab's own split must say so and warn when the training error is not the stated one.
"""

from __future__ import annotations

import hashlib
import json
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

import biaslab
from biaslab.card import sections, subjects
from biaslab.card.measures import format_value
from biaslab.cli import main

# errors are float32 means of 0/1 over ~1300 examples: abs=1e-6 is well under one example (1/1300)
FAST = ["--budget", "small", "--examples", "64", "--sections", "fit,norms,margins,calibration"]


@pytest.fixture(scope="module")
def owner(tmp_path_factory):
    """An owner's files: mynets.py, a split.npz of digits (own 75/25 split, pixels / 16), trained weights, init weights."""
    from sklearn.datasets import load_digits

    root = tmp_path_factory.mktemp("owner")
    (root / "mynets.py").write_text(textwrap.dedent("""
        from torch import nn

        def build_mlp(width=16):
            return nn.Sequential(nn.Linear(64, width), nn.ReLU(), nn.Linear(width, 10))

        def flat_mlp(width=16):
            return nn.Sequential(nn.Flatten(), nn.Linear(64, width), nn.ReLU(), nn.Linear(width, 10))
    """))
    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(7).permutation(len(y))
    x, y = (x / 16.0).astype(np.float32)[order], y.astype(np.int64)[order]
    split = {"x_train": x[:1300], "y_train": y[:1300], "x_test": x[1300:], "y_test": y[1300:]}
    np.savez(root / "split.npz", **split)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))
    torch.save(model.state_dict(), root / "init.pt")
    xt, yt = torch.from_numpy(split["x_train"]), torch.from_numpy(split["y_train"])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(xt), yt).backward()
        optimizer.step()
    torch.save(model.state_dict(), root / "mlp.pt")
    with torch.no_grad():  # the owner's own evaluation, computed here independently of biaslab
        errors = {s: (model(torch.from_numpy(split[f"x_{s}"])).argmax(1).numpy() != split[f"y_{s}"]).mean() for s in ("train", "test")}
    return root, split, model, errors


def cli_card(root, out, *extra) -> dict:
    args = ["probe", "--model", "mynets:build_mlp", "--weights", str(root / "mlp.pt"), "--data-file", str(root / "split.npz"), "--out", str(out)]
    assert main([*args, *extra]) == 0
    return json.loads((out / "card.json").read_text())


def test_the_card_scores_the_owners_split_with_the_owners_numbers(owner, tmp_path, monkeypatch):
    root, split, model, errors = owner
    monkeypatch.chdir(root)  # mynets.py is found from the current directory, as `python -m` finds it; no PYTHONPATH
    saved = cli_card(root, tmp_path / "c", *FAST)
    fit = saved["sections"]["fit"]
    assert fit["train_error"] == pytest.approx(errors["train"], abs=1e-6)
    assert fit["test_error"] == pytest.approx(errors["test"], abs=1e-6)
    assert fit["n_train"] == 1300 and fit["n_test"] == len(split["y_test"])
    assert "your data from" in saved["data"] and "did not split, shuffle or standardize" in saved["data"]
    assert saved["warnings"] == []


def test_the_python_entry_point_gives_the_clis_numbers(owner, tmp_path, monkeypatch):
    root, split, model, _ = owner
    monkeypatch.chdir(root)
    saved = cli_card(root, tmp_path / "c", *FAST)
    card = biaslab.probe(model, train=(split["x_train"], split["y_train"]), test=(split["x_test"], split["y_test"]),
                         budget="small", examples=64, sections=["fit", "norms", "margins", "calibration"])  # fmt: skip
    assert set(card) == set(saved["sections"])
    for section, row in card.sections.items():
        for key, value in row.items():
            assert saved["sections"][section][key] == pytest.approx(value, rel=1e-12, abs=1e-12), (section, key)
    assert "<img src='data:image/png;base64," in card._repr_html_()


def test_a_dataloader_and_a_dataset_give_the_same_card_as_tensors(owner):
    from torch.utils.data import DataLoader, TensorDataset

    _, split, model, _ = owner
    train = TensorDataset(torch.from_numpy(split["x_train"]), torch.from_numpy(split["y_train"]))
    test = DataLoader(TensorDataset(torch.from_numpy(split["x_test"]), torch.from_numpy(split["y_test"])), batch_size=50, shuffle=True)
    card = biaslab.probe(model, train=train, test=test, sections=["fit"])
    direct = biaslab.probe(model, train=(split["x_train"], split["y_train"]), test=(split["x_test"], split["y_test"]), sections=["fit"])
    # the shuffled loader reorders the test set: counts agree exactly, float32 mean losses to their rounding
    assert {k: v for k, v in card["fit"].items() if "loss" not in k} == {k: v for k, v in direct["fit"].items() if "loss" not in k}
    assert card["fit"] == pytest.approx(direct["fit"], rel=1e-6, abs=1e-7)


def test_biaslabs_own_split_is_stated_and_a_wrong_train_error_warns(owner, tmp_path, monkeypatch, capsys):
    """The owner's model scored on biaslab's digits (another split, standardized): the card says so and warns."""
    root, _, model, errors = owner
    monkeypatch.chdir(root)
    flat = nn.Sequential(nn.Flatten(), *[layer for layer in model])
    torch.save(flat.state_dict(), root / "flat.pt")
    args = ["probe", "--model", "mynets:flat_mlp", "--weights", str(root / "flat.pt"), "--data", "name=digits",
            "--expect-train-error", str(errors["train"]), "--out", str(tmp_path / "c"), *FAST]  # fmt: skip
    assert main(args) == 0
    saved = json.loads((tmp_path / "c" / "card.json").read_text())
    assert "NOT your own split" in saved["data"] and "standardized" in saved["data"]
    assert len(saved["warnings"]) == 1 and "not the one stated" in saved["warnings"][0]
    assert "warning: The training error measured here" in capsys.readouterr().err
    assert "class='warning'" in (tmp_path / "c" / "card.html").read_text()


def test_no_warning_when_the_stated_error_is_within_sampling_error(owner):
    _, split, model, errors = owner
    stated = errors["train"] + 0.5 * sections.train_error_tolerance(errors["train"], 1300)
    card = biaslab.probe(model, train=(split["x_train"], split["y_train"]), test=(split["x_test"], split["y_test"]),
                         expected_train_error=stated, sections=["fit"])  # fmt: skip
    assert card.warnings == []


def test_a_model_file_path_factory_arguments_and_the_init(owner, tmp_path, monkeypatch):
    root, split, model, _ = owner
    monkeypatch.chdir(tmp_path)  # not the owner's directory: the model is named by its file path
    args = ["probe", "--model", f"{root / 'mynets.py'}:build_mlp", "--model-arg", "width=16", "--weights", str(root / "mlp.pt"),
            "--init", str(root / "init.pt"), "--data-file", str(root / "split.npz"), "--out", str(tmp_path / "c"), *FAST]  # fmt: skip
    assert main(args) == 0
    saved = json.loads((tmp_path / "c" / "card.json").read_text())
    init = torch.load(root / "init.pt", weights_only=True)
    expected = torch.sqrt(sum((p.detach() - init[n]).square().sum() for n, p in model.named_parameters())).item()
    assert saved["sections"]["norms"]["dist_init"] == pytest.approx(expected, rel=1e-6)
    assert saved["source"]["model_args"] == {"width": 16} and saved["subject"]["init_known"] is True


def test_the_card_records_size_layers_and_a_hash_of_the_weights(owner):
    _, split, model, _ = owner
    data = dict(train=(split["x_train"], split["y_train"]), test=(split["x_test"], split["y_test"]), sections=["fit"])
    card = biaslab.probe(model, **data)
    assert card.subject["parameters"] == sum(p.numel() for p in model.parameters()) == 64 * 16 + 16 + 16 * 10 + 10
    assert [row["layer"] for row in card.subject["layers"]] == ["0", "2"] and card.subject["layers"][0]["shape"] == [16, 64]
    digest = hashlib.sha256()  # the documented recipe, recomputed here
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode() + tensor.numpy().tobytes())
    assert card.subject["weights_sha256"] == digest.hexdigest()[:16]
    changed = nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))
    changed.load_state_dict(model.state_dict())
    with torch.no_grad():
        changed[0].weight[0, 0] += 1e-3
    assert biaslab.probe(changed, **data).subject["weights_sha256"] != card.subject["weights_sha256"]


def test_the_hash_covers_buffers_of_every_shape():
    """BatchNorm keeps a 0-d int64 counter: the hash must read it like any other tensor."""
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    first = subjects.weights_hash(model)
    model[1].num_batches_tracked += 1
    assert subjects.weights_hash(model) != first


@pytest.mark.slow
def test_an_exported_program_is_read_only_when_trusted(owner, tmp_path):
    root, split, model, errors = owner
    program = torch.export.export(model, (torch.from_numpy(split["x_train"][:4]),), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, tmp_path / "m.pt2")
    base = ["probe", "--model", str(tmp_path / "m.pt2"), "--data-file", str(root / "split.npz"), "--out", str(tmp_path / "c")]
    assert main(base + FAST) == 2
    assert main(base + ["--trust-exported", "--budget", "small", "--examples", "64", "--sections", "fit,curvature"]) == 0
    saved = json.loads((tmp_path / "c" / "card.json").read_text())
    assert saved["sections"]["fit"]["train_error"] == pytest.approx(errors["train"], abs=1e-6)
    assert saved["sections"]["curvature"]["hessian_top"] > 0


def test_a_checkpoint_that_nests_the_state_dict_is_read(owner, tmp_path):
    root, _, model, _ = owner
    torch.save({"epoch": 3, "state_dict": model.state_dict()}, tmp_path / "ckpt.pt")
    state = subjects.load_state_file(tmp_path / "ckpt.pt")
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


# --- bad input: exit 2 and one line naming the file and what was expected ------------------------------------------


def _bad_files(root, tmp_path) -> dict[str, str]:
    """Damaged or foreign files of every kind a user might hand over."""
    split = dict(np.load(root / "split.npz"))
    np.savez(tmp_path / "no_test.npz", **{k: v for k, v in split.items() if k != "y_test"})
    np.savez(tmp_path / "short.npz", **(split | {"y_train": split["y_train"][:-1]}))
    np.savez(tmp_path / "wide.npz", **(split | {"x_test": np.zeros((5, 65), np.float32), "y_test": np.zeros(5, np.int64)}))
    np.savez(tmp_path / "labels.npz", **(split | {"y_train": split["y_train"] + 0.5}))
    np.savez(tmp_path / "classes.npz", **(split | {"y_test": split["y_test"] + 10}))
    np.savez(tmp_path / "pickled.npz", x_train=np.array([{"a": 1}], dtype=object), y_train=split["y_train"], x_test=split["x_test"], y_test=split["y_test"])
    (tmp_path / "split.csv").write_text("1,2\n")
    (tmp_path / "empty.safetensors").write_bytes(b"")
    good = (root / "mlp.pt").read_bytes()
    (tmp_path / "truncated.pt").write_bytes(good[: len(good) // 2])
    torch.save({"0.weight": torch.zeros(3, 3)}, tmp_path / "wrong_shape.pt")
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    torch.jit.save(torch.jit.script(nn.Linear(64, 10)), tmp_path / "script.pt")
    (tmp_path / "adir.pt").mkdir()
    return {}


@pytest.mark.parametrize(
    "change, message",
    [
        ({"--data-file": "no_test.npz"}, "has no 'y_test'; it must hold x_train, y_train, x_test, y_test"),
        ({"--data-file": "short.npz"}, "train: 1300 inputs but 1299 labels"),
        ({"--data-file": "wide.npz"}, "x_test: examples of shape (65,) but x_train's are (64,)"),
        ({"--data-file": "labels.npz"}, "y_train: class labels must be integers"),
        ({"--data-file": "classes.npz"}, "the model has 10 outputs"),
        ({"--data-file": "pickled.npz"}, "not a readable .npz without pickled objects"),
        ({"--data-file": "split.csv"}, "allowed: .npz, .safetensors, .pt, .pth"),
        ({"--data-file": "missing.npz"}, "data file: no such file"),
        ({"--weights": "empty.safetensors"}, "is not a readable safetensors file"),
        ({"--weights": "truncated.pt"}, "cannot be read as a torch file"),
        ({"--weights": "wrong_shape.pt"}, "does not fit the model"),
        ({"--weights": "tensor.pt"}, "holds a Tensor, not a state_dict"),
        ({"--weights": "script.pt"}, "is a TorchScript archive"),
        ({"--weights": "adir.pt"}, "is not a file"),
        ({"--model": "nomodule:build_mlp"}, "cannot find 'nomodule': no module 'nomodule'"),
        ({"--model": "mynets:nothing"}, "mynets has no function 'nothing'"),
        ({"--model-arg": "depth=3"}, "build_mlp(depth=3) failed: build_mlp() got an unexpected keyword argument 'depth'"),
        ({"--model-arg": "3=width"}, "expected NAME=VALUE"),
        ({"--sections": "fit,hessian"}, "sections: 'hessian' is not a section; allowed: fit, norms"),
        ({"--time-budget": "soon"}, "time budget: 'soon' is not a duration"),
        ({"--data-arg": "n=3"}, "--data-arg: only with --data-factory"),
    ],
)
def test_bad_user_input_is_one_clear_line(owner, tmp_path, monkeypatch, capsys, change, message):
    root = owner[0]
    _bad_files(root, tmp_path)
    monkeypatch.chdir(root)
    args = {"--model": "mynets:build_mlp", "--weights": str(root / "mlp.pt"), "--data-file": str(root / "split.npz")}
    for flag, value in change.items():
        args[flag] = str(tmp_path / value) if flag in ("--data-file", "--weights") else value
    argv = ["probe", *[item for pair in args.items() for item in pair], "--out", str(tmp_path / "c"), "--budget", "small"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


def test_a_data_factory_supplies_the_split(owner, tmp_path, monkeypatch):
    root, split, _, errors = owner
    (tmp_path / "mydata.py").write_text(textwrap.dedent(f"""
        import numpy as np

        def load(part="all"):
            d = np.load({str(root / 'split.npz')!r})
            return {{k: d[k] for k in d.files}}
    """))
    monkeypatch.chdir(tmp_path)
    args = ["probe", "--model", f"{root / 'mynets.py'}:build_mlp", "--weights", str(root / "mlp.pt"), "--data-factory", "mydata:load",
            "--data-arg", "part=all", "--out", str(tmp_path / "c"), "--sections", "fit"]  # fmt: skip
    assert main(args) == 0
    fit = json.loads((tmp_path / "c" / "card.json").read_text())["sections"]["fit"]
    assert fit["train_error"] == pytest.approx(errors["train"], abs=1e-6) and fit["test_error"] == pytest.approx(errors["test"], abs=1e-6)


# --- against independent computations on a tiny model -----------------------------------------------------------


def tiny_problem():
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(40, 3, generator=generator, dtype=torch.float64)
    y = torch.randint(0, 3, (40,), generator=generator)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3)).double()
    return model, x, y


def test_card_curvature_margins_and_ece_match_direct_computations():
    model, x, y = tiny_problem()
    card = biaslab.probe(model, train=(x, y), test=(x[:20], y[:20]), sections=["curvature", "margins", "calibration"], budget="small")
    params = list(model.parameters())
    shapes = [p.shape for p in params]

    def loss_of(flat):
        pieces, start = [], 0
        for shape in shapes:
            pieces.append(flat[start : start + shape.numel()].view(shape))
            start += shape.numel()
        out = torch.func.functional_call(model, dict(zip([n for n, _ in model.named_parameters()], pieces)), (x,))
        return nn.functional.cross_entropy(out, y)

    flat = torch.cat([p.detach().flatten() for p in params])
    eigenvalues = torch.linalg.eigvalsh(torch.autograd.functional.hessian(loss_of, flat))
    assert card["curvature"]["hessian_top"] == pytest.approx(eigenvalues[-1].item(), rel=1e-6)
    assert card["curvature"]["hessian_eig2"] == pytest.approx(eigenvalues[-2].item(), rel=1e-6)
    with torch.no_grad():
        out = model(x)
    true = out[torch.arange(40), y]
    others = out.clone()
    others[torch.arange(40), y] = -float("inf")
    margins = (true - others.max(dim=1).values).numpy()
    assert card["margins"]["margin_raw_median"] == pytest.approx(np.quantile(margins, 0.5), rel=1e-9)
    with torch.no_grad():  # ECE with 15 equal-width bins, by a plain loop over bins
        probs = torch.softmax(model(x[:20]), dim=1).numpy()
    confidence, correct = probs.max(1), probs.argmax(1) == y[:20].numpy()
    ece = 0.0
    for b in range(15):
        low, high = b / 15, (b + 1) / 15
        inside = (confidence > low) & (confidence <= high) if b else (confidence >= 0) & (confidence <= high)
        if inside.any():
            ece += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    assert card["calibration"]["test_ece"] == pytest.approx(ece, abs=1e-9)


def test_the_subset_is_random_not_the_first_examples():
    """A file sorted by class must not give curvature a one-class subset."""
    model = nn.Sequential(nn.Linear(2, 3))
    x, y = torch.randn(300, 2), torch.arange(3).repeat_interleave(100)
    subject = subjects.user_subject(model, (x, y), (x, y))
    ((xs, ys),) = sections.subset(subject, sections.card_options(examples=60))
    assert xs.shape[0] == 60 and len(torch.unique(ys)) == 3


def test_the_time_budget_scales_work_to_fit_a_measured_cost():
    model, x, y = tiny_problem()
    subject = subjects.user_subject(model, (x, y), (x, y), init=dict(model.named_parameters()))
    costs = sections.UnitCosts(40, 1e-3, 2e-3, 3e-3, 1e-3, 1e-2, 1e-2, 1e-4)
    full = sections.card_options("full")
    whole = sum(sections.estimate(subject, full, costs=costs).values())
    options, predicted, fits = sections.fit_budget(subject, full, whole / 5, costs=costs)
    assert fits and sum(predicted.values()) <= whole / 5 and options.pacbayes_steps < full.pacbayes_steps
    options, predicted, fits = sections.fit_budget(subject, full, 1e-6, costs=costs)
    assert not fits and options.pacbayes_steps == sections.FLOORS["pacbayes_steps"]
    assert sections.parse_duration("10m") == 600 and sections.parse_duration("1.5h") == 5400 and sections.parse_duration("90") == 90


def test_a_planned_card_states_its_budget(owner):
    _, split, model, _ = owner
    card = biaslab.probe(model, train=(split["x_train"], split["y_train"]), test=(split["x_test"], split["y_test"]),
                         sections=["fit", "curvature"], budget="small", time_budget="1h")  # fmt: skip
    assert card.plan["budget_seconds"] == 3600 and card.plan["fits"] and set(card.plan["estimate"]) == {"fit", "curvature"}
    assert "Time budget" in biaslab.card.card_html(card)


def test_values_read_as_a_person_reads_them():
    assert format_value("hessian_converged", 1.0) == "yes" and format_value("pac_bayes_vacuous", 0.0, "bounds") == "no"
    assert format_value("spectral", float("inf"), "bounds").startswith("∞ (vacuous")
    assert format_value("spectral", 3.2e5, "bounds") == "3.2e+05 (vacuous: exceeds 1)"
    assert "not defined" in format_value("alpha.0.weight", float("nan"))
    assert format_value("n_train", 1300.0) == "1,300"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_probing_on_cuda_without_a_gpu_is_one_line(owner, tmp_path, monkeypatch, capsys):
    root = owner[0]
    monkeypatch.chdir(root)
    argv = ["probe", "--model", "mynets:build_mlp", "--weights", str(root / "mlp.pt"), "--data-file", str(root / "split.npz"), "--device", "cuda"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--device:" in err and "CUDA is not available" in err and err.count("\n") == 1


@pytest.mark.slow
def test_effective_dimensionality_matches_the_dense_hessian():
    """N_eff = sum max(lambda, 0) / (max(lambda, 0) + z) from SLQ with full Lanczos steps, against the exact eigenvalues."""
    from biaslab.probes import curvature

    model, x, y = tiny_problem()
    params = list(model.parameters())
    dim = sum(p.numel() for p in params)
    density = curvature.spectral_density(model, nn.functional.cross_entropy, [(x, y)], probes=300, steps=dim, generator=torch.Generator().manual_seed(0))
    names, shapes = [n for n, _ in model.named_parameters()], [p.shape for p in params]

    def loss_of(flat):
        pieces, start = [], 0
        for shape in shapes:
            pieces.append(flat[start : start + shape.numel()].view(shape))
            start += shape.numel()
        return nn.functional.cross_entropy(torch.func.functional_call(model, dict(zip(names, pieces)), (x,)), y)

    eigenvalues = torch.linalg.eigvalsh(torch.autograd.functional.hessian(loss_of, torch.cat([p.detach().flatten() for p in params]))).clamp_min(0)
    for z in (0.01, 0.1, 1.0):
        exact = (eigenvalues / (eigenvalues + z)).sum().item()
        estimate = density.effective_dimensionality(z)
        assert abs(estimate.value - exact) <= 4 * estimate.stderr + 1e-9 and estimate.stderr < 0.1 * exact, (z, estimate, exact)
    assert density.effective_dimensionality(0.01).value > density.effective_dimensionality(1.0).value


def test_the_init_is_honoured_on_a_named_dataset_too(owner, tmp_path, monkeypatch):
    """--init with --data name=... must give the distance from init, not be dropped silently."""
    root, _, model, _ = owner
    monkeypatch.chdir(root)
    flat = nn.Sequential(nn.Flatten(), *[layer for layer in model])
    torch.save(flat.state_dict(), root / "flat.pt")
    init = {f"{int(k.split('.')[0]) + 1}.{k.split('.')[1]}": v for k, v in torch.load(root / "init.pt", weights_only=True).items()}
    torch.save(init, root / "flat_init.pt")
    args = ["probe", "--model", "mynets:flat_mlp", "--weights", str(root / "flat.pt"), "--init", str(root / "flat_init.pt"),
            "--data", "name=digits", "--out", str(tmp_path / "c"), "--sections", "norms"]  # fmt: skip
    assert main(args) == 0
    saved = json.loads((tmp_path / "c" / "card.json").read_text())
    assert saved["subject"]["init_known"] is True and saved["sections"]["norms"]["dist_init"] > 0
    card = biaslab.probe(flat, data="digits", init=init, sections=["norms"])
    assert card["norms"]["dist_init"] == pytest.approx(saved["sections"]["norms"]["dist_init"], rel=1e-6)


def test_integer_labels_with_the_squared_loss_are_one_hot_targets(owner):
    """--loss mse with class labels scores the squared error to one-hot targets, as training with mse does."""
    _, split, model, errors = owner
    card = biaslab.probe(model, train=(split["x_train"], split["y_train"]), test=(split["x_test"], split["y_test"]), loss="mse", sections=["fit"])
    x, y = torch.from_numpy(split["x_train"]), torch.from_numpy(split["y_train"])
    with torch.no_grad():
        expected = 0.5 * (model(x) - nn.functional.one_hot(y, 10).float()).square().sum(dim=1).mean().item()
    assert card["fit"]["train_loss"] == pytest.approx(expected, rel=1e-6)
    assert card["fit"]["train_error"] == pytest.approx(errors["train"], abs=1e-6)


def test_the_cli_time_budget_is_planned_and_stated(owner, tmp_path, monkeypatch):
    root = owner[0]
    monkeypatch.chdir(root)
    argv = ["probe", "--model", "mynets:build_mlp", "--weights", str(root / "mlp.pt"), "--data-file", str(root / "split.npz"),
            "--time-budget", "10m", "--sections", "fit,curvature", "--budget", "small", "--out", str(tmp_path / "c")]  # fmt: skip
    assert main(argv) == 0
    plan = json.loads((tmp_path / "c" / "card.json").read_text())["plan"]
    assert plan["budget_seconds"] == 600 and plan["fits"] and set(plan["estimate"]) == {"fit", "curvature"}
