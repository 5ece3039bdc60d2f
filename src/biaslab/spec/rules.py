"""What every spec section shares: the error type, the frozen base model and the read-only-when rules.

Contract: `SpecError` is the one error a bad field or override raises, its message naming the field and what is
allowed. `_Frozen` is the base of every section: frozen, unknown keys refused, no inf or NaN. A section whose
fields are read only under some value of another field states them as a rule table, `READ_ONLY_WHEN`, a tuple of
`(field, deciding field, values under which it is read)`; its validator calls `check_read_only_when`, which refuses
a field set away from its default while it is not read (no field is accepted and then ignored), and `is_read`
answers the same question without raising (`Sweep.override` asks it to send a value only to the runs that read it).
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, model_validator

ReadRule = tuple[str, str, tuple[Any, ...]]  # (field, the deciding field, values of the deciding field under which it is read)


class SpecError(ValueError):
    """A bad field in a spec or an override; the message names the field and what is allowed."""


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    READ_ONLY_WHEN: ClassVar[tuple[ReadRule, ...]] = ()  # this section's fields that another field decides are read


def check_read_only_when(section: _Frozen, prefix: str) -> None:
    """ValueError for a field set away from its default while the field that decides whether it is read says it is
    not: no field is accepted and then ignored. The rules are the section's `READ_ONLY_WHEN`, checked in order."""
    for name, decider, values in type(section).READ_ONLY_WHEN:
        field = type(section).model_fields[name]
        if getattr(section, name) != field.default and getattr(section, decider) not in values:
            allowed = " or ".join(repr(v) for v in values)
            raise ValueError(
                f"{prefix}.{name}: read only when {prefix}.{decider} is {allowed}, got {decider} {getattr(section, decider)!r}; "
                f"leave it at its default {field.default!r}"
            )


def read_only_when_validator(prefix: str) -> Any:
    """The model validator that applies a section's READ_ONLY_WHEN (`check_read_only_when` with `prefix`, its path in a
    RunSpec), for its class body: `_settings_match = read_only_when_validator("train")`; it runs where it stands among
    the section's validators, so the order in which a spec's errors are found is the class's."""

    def check(section: _Frozen) -> _Frozen:
        check_read_only_when(section, prefix)
        return section

    return model_validator(mode="after")(check)


def is_read(section: BaseModel, name: str) -> bool:
    """Whether `section`'s field `name` is read, by its rule table (a field without a rule is always read)."""
    rules = getattr(type(section), "READ_ONLY_WHEN", ())
    return all(getattr(section, decider) in values for field, decider, values in rules if field == name)
