"""The generalization report card of one trained classifier: every probe, its error bar, and the bounds.

From Python, on your own model and your own split::

    card = biaslab.probe(model, train=(x_train, y_train), test=(x_test, y_test), budget="small")
    card["curvature"]["hessian_top"], card.estimate("curvature", "hessian_trace")
    card.to_html("card/card.html")          # or just `card` as the last line of a notebook cell

`train`/`test` take tensors or arrays as (x, y) pairs, a map-style `Dataset` or a
`DataLoader`, and are used exactly as given. From the command line the same
goes through `biaslab probe --model mod:factory --weights w.safetensors
--data-file split.npz`. A stored run (`biaslab probe RUN_ID`) is scored on the
data it was trained on. See `subjects` (what is measured), `sections` (the
probes, estimates and time budgets), `measures` (how to read each number) and
`page` (the HTML).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from biaslab.card.page import card_html, write_card
from biaslab.card.result import Card
from biaslab.card.sections import (
    BUDGETS,
    SECTIONS,
    CardOptions,
    Progress,
    UnitCosts,
    card_options,
    choose_sections,
    estimate,
    fit_budget,
    fit_section,
    measure,
    parse_duration,
    unit_costs,
)
from biaslab.card.subjects import (
    Subject,
    load_state_file,
    subject_from_run,
    subject_on_named_data,
    user_subject,
)
from biaslab.spec import DataSpec, SpecError


def probe(
    model: nn.Module,
    train: Any = None,
    test: Any = None,
    *,
    data: DataSpec | str | None = None,
    loss: str = "cross_entropy",
    init: Mapping[str, torch.Tensor] | None = None,
    expected_train_error: float | None = None,
    budget: str = "full",
    sections: Iterable[str] | None = None,
    skip: Iterable[str] = (),
    time_budget: float | str | None = None,
    device: str = "cpu",
    on_progress: Progress | None = None,
    **options: Any,
) -> Card:
    """The report card of `model` on `train` and `test` (your own data, used as given), or on a named dataset.

    `init` (the weights at initialization, e.g. a `state_dict` saved before training)
    enables the distance from init and the PAC-Bayes bound. `expected_train_error`
    is checked against the measured one: a mismatch beyond sampling error puts a
    warning at the top of the card. `budget` is 'full' or 'small'; `time_budget`
    (seconds or '10m') scales the probe counts to fit; further keyword arguments
    set `CardOptions` fields (examples, seed, trace_probes, ...). `sections` and
    `skip` choose what runs.
    """
    chosen = choose_sections(sections, skip)
    card_settings = card_options(budget, **options)
    if data is not None:
        if train is not None or test is not None:
            raise SpecError("probe: give either train= and test= (your data) or data= (a biaslab dataset), not both")
        spec = DataSpec(name=data) if isinstance(data, str) else data
        subject = subject_on_named_data(model, spec, loss, device, {"model": type(model).__name__, "data": spec.model_dump(mode="json")})
        subject.expected_train_error = expected_train_error
        subject.init = _on_device(init, subject)
    else:
        if train is None or test is None:
            raise SpecError("probe: give train= and test= as (x, y) pairs, Datasets or DataLoaders (or data= for a biaslab dataset)")
        subject = user_subject(model, train, test, loss=loss, init=init, device=device, source={"model": type(model).__name__},
                               expected_train_error=expected_train_error)  # fmt: skip
    return run_card(subject, card_settings, chosen, time_budget, on_progress)


def run_card(
    subject: Subject, options: CardOptions, sections: list[str], time_budget: float | str | None = None, on_progress: Progress | None = None,
    costs: UnitCosts | None = None,
) -> Card:
    """Plan (when a time budget is given) and measure: the one path the CLI and `probe` share.

    `costs` are unit costs the caller already measured (the CLI does, to print its estimate), so they are not timed twice.
    """
    plan: dict[str, Any] = {}
    if time_budget is not None:
        seconds = parse_duration(str(time_budget)) if isinstance(time_budget, str) else float(time_budget)
        options, predicted, fits = fit_budget(subject, options, seconds, sections, costs)
        plan = {"budget_seconds": seconds, "estimate": predicted, "fits": fits}
    card = measure(subject, options, on_progress, sections)
    card.plan = plan
    if plan and not plan["fits"]:
        card.notes.append(f"time budget: even the smallest settings were estimated at {sum(plan['estimate'].values()):.0f} s, over the {plan['budget_seconds']:.0f} s asked; consider --skip bounds or fewer --examples.")
    return card


def _on_device(init: Mapping[str, torch.Tensor] | None, subject: Subject) -> dict[str, torch.Tensor] | None:
    """The init state on the subject's device (None stays None), so the distance and the PAC-Bayes prior can use it."""
    if init is None:
        return None
    device = subject.data.x_train.device
    return {name: tensor.detach().to(device).clone() for name, tensor in init.items()}


def subject_from_module(factory: str, weights: Path, data: DataSpec, loss: str = "cross_entropy", device: str = "cpu") -> Subject:
    """A user's model from `module:function` and a state_dict file, on a named biaslab dataset (its split, stated)."""
    from biaslab.card.subjects import load_state, model_from_factory

    model = model_from_factory(factory)
    load_state(model, load_state_file(weights), str(weights))
    source = {"model": factory, "weights": str(weights), "data": data.model_dump(mode="json")}
    return subject_on_named_data(model, data, loss, device, source)


__all__ = [
    "BUDGETS", "Card", "CardOptions", "SECTIONS", "Subject", "card_html", "card_options", "choose_sections", "estimate",
    "fit_budget", "fit_section", "load_state_file", "measure", "parse_duration", "probe", "run_card", "subject_from_module",
    "subject_from_run", "unit_costs", "user_subject", "write_card",
]  # fmt: skip
