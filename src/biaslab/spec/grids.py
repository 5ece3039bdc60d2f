"""Sweeps: a base `RunSpec` and a grid over dotted paths, and unions of such grids; `--set` applied to a sweep.

Contract: `Sweep.expand` gives every run, in grid order (the last axis varies fastest), then those of each part of
`also`, every one validated. `Sweep.override` applies `--set` values: a value on a swept path becomes (or replaces)
that axis, a field inside an axis of whole sections is set in each of its values, and on a union (`also`) a value
goes only to the parts whose runs can take it: parts that have the path's section and whose runs read the field by
their sections' rule tables (`biaslab.spec.rules`). Overriding validates every resulting run at once, not mid-sweep.
"""

from __future__ import annotations

import functools
import itertools
import json
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError, model_validator

from biaslab.spec.overrides import _models_in, check_path, with_values
from biaslab.spec.rules import SpecError, _Frozen, is_read
from biaslab.spec.run import RunSpec


def _set_inside(option: Any, subpath: str, value: Any, path: str) -> Any:
    """A copy of a grid value (a section as a dict) with `subpath` set."""
    if not isinstance(option, dict):
        raise SpecError(f"{path}: cannot set a field inside the grid axis value {option!r}")
    option = json.loads(json.dumps(option))
    node = option
    *parents, leaf = subpath.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
    return option


class Sweep(_Frozen):
    """A base spec and a grid: every combination of the grid's values is one run.

    `also` adds further sweeps of the same experiment whose runs join this one's,
    for experiments whose runs are not one grid product (a union of grids).
    """

    base: RunSpec
    grid: dict[str, tuple[Any, ...]] = {}
    also: tuple["Sweep", ...] = ()

    @model_validator(mode="after")
    def _grid_paths_exist(self) -> "Sweep":
        for path, values in self.grid.items():
            check_path(path)
            if len(values) == 0:
                raise ValueError(f"grid axis {path} has no values")
        for part in self.also:
            if part.base.experiment != self.base.experiment:
                raise ValueError(f"also: every part must be of experiment {self.base.experiment!r}, got {part.base.experiment!r}")
        return self

    def expand(self) -> list[RunSpec]:
        """All runs, in grid order (the last axis varies fastest), then those of each part of `also`."""
        paths = list(self.grid)
        combos = itertools.product(*(self.grid[p] for p in paths))
        own = [with_values(self.base, dict(zip(paths, combo))) for combo in combos]
        return own + [spec for part in self.also for spec in part.expand()]

    def swept_paths(self) -> set[str]:
        """The grid axes of this sweep and of every part of `also`."""
        return set(self.grid).union(*(part.swept_paths() for part in self.also))

    def override(self, values: dict[str, Any], swept: set[str] | None = None) -> "Sweep":
        """Apply --set values: a path on the grid replaces that axis (a list sets several values).

        With parts (`also`): a path swept by any part is an axis in every part
        that takes it (where it was fixed, the values become its axis); a part
        whose base spec lacks the path's section (no `problem`, say), or whose
        runs do not read the field (a forest has no ridge), leaves it out; a
        value that no part can take is an error naming the section or field.
        Which parts take a path is decided once per path and part, from the
        sections' rule tables (`READ_ONLY_WHEN`), without validating the grid.
        """
        swept = self.swept_paths() if swept is None else swept
        if not self.also:
            return self._override_one(values, swept)
        own = self.model_copy(update={"also": ()})
        parts = (own, *self.also)
        chosen: list[dict[str, Any]] = [{} for _ in parts]
        for path, value in values.items():
            takers = [mine for part, mine in zip(parts, chosen) if part._takes(path, value, swept)]
            if not takers:
                own._override_one({path: value}, swept)  # raises the error that names the unset section or the field
                raise SpecError(f"{path}: no part of this sweep reads it")  # not reached: own refuses what it does not take
            for mine in takers:
                mine[path] = value
        done = [own._override_one(chosen[0], swept)] + [part.override(mine, swept) for part, mine in zip(self.also, chosen[1:])]
        return done[0].model_copy(update={"also": tuple(done[1:])})

    def _takes(self, path: str, value: Any = None, swept: set[str] | None = None) -> bool:
        """Whether every section on `path` is set in this sweep's base spec, or the path is inside a grid axis; and,
        given a value (not None), whether this part's runs read the field (an estimator kind that has no ridge does
        not): False where a run's section says by its rule table that the field is not read while a value to set
        differs from the field's default (only this part's own grid counts, not its `also`)."""
        if not self._has_sections(path):
            return False
        *parents, leaf = path.split(".")
        if value is None or not parents or not _has_read_rule(".".join(parents), leaf):
            return True
        swept = self.swept_paths() if swept is None else swept
        inside_axis = any(path.startswith(axis + ".") for axis in self.grid)
        on_axis = path in self.grid or (path in swept and not inside_axis)
        candidates = value if isinstance(value, list) and on_axis else [value]
        for section in self._sections(parents):
            if not isinstance(section, BaseModel) or leaf not in type(section).model_fields or is_read(section, leaf):
                continue
            if any(_differs_from_default(type(section), leaf, candidate) for candidate in candidates):
                return False
        return True

    def _sections(self, parents: list[str]) -> list[Any]:
        """The distinct values, over this part's own runs, of the section at the dotted path `parents`: its top-level
        section built from the base spec and the grid axes inside or at it, validated as that section alone (a
        section's checks read only its own fields), then walked down to `parents`."""
        top = parents[0]
        axes = [axis for axis in self.grid if axis.split(".")[0] == top]
        base = self.base.model_dump(mode="json")[top]
        adapter = _section_adapter(top)
        seen: dict[str, Any] = {}
        for combo in itertools.product(*(self.grid[axis] for axis in axes)):
            data = {top: json.loads(json.dumps(base))}
            for axis, value in zip(axes, combo):
                *above, name = axis.split(".")
                node: Any = data
                for part in above:
                    node = node.get(part) if isinstance(node, dict) else None
                if isinstance(node, dict):
                    node[name] = value
            key = json.dumps(data[top], sort_keys=True)
            if key not in seen:
                try:
                    section = adapter.validate_python(data[top])
                except ValidationError:  # a bad combination: expanding the grid reports it
                    section = None
                for part in parents[1:]:
                    section = getattr(section, part, None)
                seen[key] = section
        return list(seen.values())

    def _has_sections(self, path: str) -> bool:
        """Whether every section on `path` is set in the base spec, or the path is inside a grid axis."""
        check_path(path)
        if any(path == axis or path.startswith(axis + ".") for axis in self.grid):
            return True
        node: Any = self.base.model_dump(mode="json")
        for part in path.split(".")[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
            if node is None:
                return False
        return True

    def _override_one(self, values: dict[str, Any], swept: set[str]) -> "Sweep":
        grid = dict(self.grid)
        fixed = {}
        for path, value in values.items():
            check_path(path)
            axis = next((a for a in grid if path.startswith(a + ".")), None)
            if path in grid or (path in swept and axis is None):
                if isinstance(value, list) and not value:
                    raise SpecError(f"{path}: a grid axis needs at least one value, got []")
                grid[path] = tuple(value) if isinstance(value, list) else (value,)
            elif axis is not None:  # a field inside a grid axis of whole sections: set it in every value of the axis
                grid[axis] = tuple(_set_inside(option, path[len(axis) + 1 :], value, path) for option in grid[axis])
            else:
                fixed[path] = value
        sweep = Sweep(base=with_values(self.base, fixed), grid=grid)
        sweep.expand()  # validate every combination now, not mid-sweep
        return sweep


def _has_read_rule(section_path: str, name: str) -> bool:
    """Whether a rule table of a section kind at `section_path` says when field `name` is read."""
    return any(rule[0] == name for model in _models_in(check_path(section_path)) for rule in getattr(model, "READ_ONLY_WHEN", ()))


@functools.lru_cache(maxsize=None)
def _section_adapter(name: str) -> TypeAdapter:
    """Validates a top-level section of a RunSpec alone, as RunSpec validates it."""
    return TypeAdapter(RunSpec.model_fields[name].annotation)


@functools.lru_cache(maxsize=None)
def _field_adapter(model: type[BaseModel], name: str) -> TypeAdapter:
    """Validates a value as field `name` of `model` alone (its type and bounds), as the model would coerce it."""
    field = model.model_fields[name]
    annotation = Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation
    return TypeAdapter(annotation, config=ConfigDict(allow_inf_nan=False))


def _differs_from_default(model: type[BaseModel], name: str, value: Any) -> bool:
    """Whether `value`, coerced as the field would coerce it, differs from the field's default; False for a value the
    field refuses, which is not evidence that the field is unread (validating the part reports it)."""
    try:
        coerced = _field_adapter(model, name).validate_python(value)
    except ValidationError:
        return False
    return coerced != model.model_fields[name].default
