"""Dotted-path overrides of a `RunSpec` (`--set path=value`): parsing, checking, applying and describing errors.

Contract: `check_path` accepts exactly the dotted paths that name a field of `RunSpec` (through its sections and the
kinds of a union section) and raises a `SpecError` that lists the allowed names otherwise. `parse_override` reads
one `KEY=VALUE` (JSON where it parses, text for text fields; a boolean for a number or a number for a boolean is an
error). `with_values` returns a validated copy of a spec with paths set, its errors turned by `describe_error` into
one line per field that names the field. `settable_fields` lists what `--set` can reach in a spec.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from biaslab.spec.rules import SpecError
from biaslab.spec.run import RunSpec

NAMES_ITS_FIELD = re.compile(r"^[a-z_0-9]+\.[a-z_0-9.]+[: ]")  # a validator's message that starts with its dotted field


def describe_error(error: ValidationError, prefix: str = "") -> str:
    """One line per bad field: 'train.lr: Input should be greater than 0 (got -1)'."""
    lines = []
    for item in error.errors():
        path = ".".join(str(p) for p in (prefix, *item["loc"]) if p != "")
        message = item["msg"]
        if item["type"] == "value_error":  # our validators' messages name their own field: no second prefix
            message = message.removeprefix("Value error, ")
            if NAMES_ITS_FIELD.match(message) or not path:
                lines.append(message)
                continue
        if item["type"] == "extra_forbidden":
            message = f"unknown field; allowed: {', '.join(_allowed_fields(path))}"
        elif "input" in item and not isinstance(item["input"], dict):
            message += f" (got {item['input']!r})"
        lines.append(f"{path}: {message}")
    return "; ".join(lines)


def _allowed_fields(path: str) -> list[str]:
    fields = RunSpec.model_fields
    for part in path.split(".")[:-1]:
        field = fields.get(part)
        models = _models_in(field.annotation) if field is not None else []
        if not models:
            break
        fields = {name: f for m in models for name, f in m.model_fields.items()}
    return sorted(fields)


def parse_value(text: str) -> Any:
    """A command-line value: JSON where it parses (numbers, true/false/null, lists), else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


NOT_SETTABLE = ("experiment",)  # chosen on the command line (`biaslab run EXPERIMENT`), never by --set


def parse_override(assignment: str) -> tuple[str, Any]:
    """'train.lr=0.05' -> ('train.lr', 0.05); text fields keep the text as written ('data.root=2024').

    Stricter than pydantic's coercion, which would read `true` as 1.0 and `1`
    as True: a boolean for a number field, or a number for a boolean field, is
    a SpecError, and so is a key in NOT_SETTABLE.
    """
    key, sep, value = assignment.partition("=")
    key, value = key.strip(), value.strip()
    if not sep or not key:
        raise SpecError(f"override {assignment!r}: expected KEY=VALUE, e.g. train.lr=0.05")
    if key in NOT_SETTABLE:
        raise SpecError(f"{key}: not settable with --set; name the experiment on the command line (biaslab run EXPERIMENT)")
    annotation = check_path(key)
    parsed = parse_value(value)
    if _is_text(annotation) and not isinstance(parsed, (str, list)) and parsed is not None:
        return key, value
    _check_booleans(key, annotation, parsed)
    return key, parsed


def _check_booleans(path: str, annotation: Any, value: Any) -> None:
    """SpecError where `value` (or an item of a list of values) is a boolean for a number field or a number for a boolean field."""
    if isinstance(value, list):
        for item in value:
            _check_booleans(path, annotation, item)
        return
    takes_bool = _admits(annotation, bool)
    takes_number = _admits(annotation, int) or _admits(annotation, float)
    if isinstance(value, bool) and takes_number and not takes_bool:
        raise SpecError(f"{path}: {json.dumps(value)} is a boolean, not a number; {path} takes a number")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and takes_bool and not takes_number:
        raise SpecError(f"{path}: {value!r} is a number, not a boolean; allowed: true, false")


def _admits(annotation: Any, kind: type) -> bool:
    """Whether `kind` is the annotation or one of its members (through unions, Optional, Annotated, tuples)."""
    if annotation is kind:
        return True
    return any(_admits(arg, kind) for arg in getattr(annotation, "__args__", ()) if not isinstance(arg, (str, int, float)))


def _is_text(annotation: Any) -> bool:
    """str, str | None, or a Literal of strings."""
    args = getattr(annotation, "__args__", ())
    return annotation is str or (bool(args) and all(a is str or a is type(None) or isinstance(a, str) for a in args) and str in args)


def check_path(path: str) -> Any:
    """The annotation of the field a dotted path names; SpecError unless it names a field of RunSpec."""
    fields = RunSpec.model_fields
    parts = path.split(".")
    annotation: Any = None
    for depth, part in enumerate(parts):
        field = fields.get(part)
        if field is None:
            where = ".".join(parts[:depth]) or "the spec"
            raise SpecError(f"{path}: unknown field {part!r} in {where}; allowed: {', '.join(sorted(fields))}")
        annotation = field.annotation
        models = _models_in(annotation)
        if depth < len(parts) - 1 and not models:
            raise SpecError(f"{path}: {'.'.join(parts[: depth + 1])} has no sub-fields")
        fields = {name: f for m in models for name, f in m.model_fields.items()}
    return annotation


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation names: itself, or the members of a (possibly Annotated) union."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in getattr(annotation, "__args__", ()) for m in _models_in(arg)]


def with_values(spec: RunSpec, values: dict[str, Any]) -> RunSpec:
    """A copy of `spec` with dotted-path values set, validated (strings coerced by the field's type)."""
    data = spec.model_dump(mode="json")
    for path, value in values.items():
        check_path(path)
        node = data
        *parents, leaf = path.split(".")
        for depth, part in enumerate(parents):
            where = ".".join(parents[: depth + 1])
            if node[part] is None:
                raise SpecError(f"{path}: {where} is not set in this spec; set {where} as a whole first (e.g. {where}.kind)")
            if not isinstance(node[part], dict):  # the section itself was set to a plain value just before
                raise SpecError(f"{path}: {where} is a section, not a value ({where}={json.dumps(node[part])})")
            node = node[part]
        node[leaf] = value
    try:
        return RunSpec.model_validate(data)
    except ValidationError as error:
        raise SpecError(describe_error(error)) from None


def settable_fields(spec: RunSpec) -> list[dict[str, Any]]:
    """Every field `--set` can reach in this spec: dotted path, type, current value, default and what is allowed.

    Sections that are unset in this spec (no `problem`, say) are listed by their own path only.
    """
    rows: list[dict[str, Any]] = []

    def walk(model: BaseModel, prefix: str) -> None:
        for name, field in type(model).model_fields.items():
            path, value = f"{prefix}{name}", getattr(model, name)
            if isinstance(value, BaseModel):
                walk(value, f"{path}.")
                continue
            rows.append({"path": path, "type": _type_name(field.annotation), "value": _plain(value),
                         "default": _plain(field.default), "allowed": _allowed(field)})  # fmt: skip

    walk(spec, "")
    return rows


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return list(value) if isinstance(value, tuple) else value


def _type_name(annotation: Any) -> str:
    args = getattr(annotation, "__args__", ())
    origin = getattr(annotation, "__origin__", None)
    if origin is Literal:
        return "choice"
    if origin is tuple:
        return "list of " + " | ".join(dict.fromkeys(_type_name(a) for a in args if a is not Ellipsis))
    sections = _models_in(annotation)
    if sections:
        kinds = [m.model_fields["kind"].default for m in sections if "kind" in m.model_fields] if len(sections) > 1 else []
        return "section" + (f" (kind: {', '.join(kinds)})" if kinds else "") + (" | null" if type(None) in args else "")
    if isinstance(annotation, type):
        return annotation.__name__
    names = [_type_name(a) for a in args if a is not type(None) and a is not Ellipsis]
    text = " | ".join(dict.fromkeys(names)) if names else str(annotation)
    return text + (" | null" if type(None) in args else "")


def _allowed(field: Any) -> str:
    """'one of a, b', a numeric range, or '' for free values."""
    choices = [a for a in getattr(field.annotation, "__args__", ()) if isinstance(a, str)]
    for member in getattr(field.annotation, "__args__", ()):
        choices += [a for a in getattr(member, "__args__", ()) if isinstance(a, str)]
    if choices:
        return "one of " + ", ".join(dict.fromkeys(choices))
    bounds = []
    for item in field.metadata:
        for attribute, symbol in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
            if getattr(item, attribute, None) is not None:
                bounds.append(f"{symbol} {getattr(item, attribute)}")
    return ", ".join(bounds)
