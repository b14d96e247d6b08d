"""Value checks for knobs and config fields: a bad value is an error that names the knob, the
value and what is valid, before any work is done.

    check("batch_size", 0, Knob("int", low=1))  # ValueError: batch_size = 0 is too small: valid: an integer >= 1
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["int", "float", "bool", "str", "ints", "floats", "weights"]


@dataclass(frozen=True)
class Knob:
    """What values a knob takes. ``ints``/``floats``: a non-empty list of such numbers;
    ``weights``: a dict from ``keys`` to numbers (a number each, in range)."""

    kind: Kind
    low: float | None = None
    high: float | None = None
    nullable: bool = False
    choices: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()
    partial: bool = False  # ``weights``: some keys may be left out
    below_high: bool = False  # high is excluded

    def describe(self) -> str:
        if self.choices:
            text = "one of " + ", ".join(repr(c) for c in self.choices)
        elif self.kind == "bool":
            text = "true or false"
        elif self.kind == "str":
            text = "a non-empty string"
        else:
            number = "an integer" if self.kind in ("int", "ints") else "a number"
            bounds = []
            if self.low is not None:
                bounds.append(f">= {self.low:g}")
            if self.high is not None:
                bounds.append(f"{'<' if self.below_high else '<='} {self.high:g}")
            number += (" " + " and ".join(bounds)) if bounds else ""
            text = {"int": number, "float": number, "ints": f"a non-empty list, each {number}",
                    "floats": f"a non-empty list, each {number}",
                    "weights": f"a mapping from {'some of ' if self.partial else ''}{', '.join(self.keys)} to {number} each"}[self.kind]
        return text + (", or null (None)" if self.nullable else "")


def _a(value: Any) -> str:
    name = type(value).__name__
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def _number_ok(value: Any, integer: bool) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) if integer else isinstance(value, (int, float))


def _in_range(value: float, knob: Knob) -> bool:
    if knob.low is not None and value < knob.low:
        return False
    if knob.high is not None and (value >= knob.high if knob.below_high else value > knob.high):
        return False
    return True


def check(name: str, value: Any, knob: Knob) -> Any:
    """``value`` if it is valid for ``knob``, else a ``ValueError`` naming name, value and what is valid."""
    def bad(why: str = "is not valid") -> ValueError:
        hint = ""
        if isinstance(value, str) and knob.kind != "str":
            hint = (" (a string: with papermill, give a flag as -p NAME True or False, and a list or mapping "
                    "as -y 'NAME: [1, 2]')")
        return ValueError(f"{name} = {value!r} {why}; valid: {knob.describe()}{hint}")

    if value is None:
        if knob.nullable:
            return value
        raise bad("may not be null")
    if knob.kind == "bool":
        if not isinstance(value, bool):
            raise bad(f"is {_a(value)}, not true/false")
    elif knob.kind == "str":
        if not isinstance(value, str) or not value:
            raise bad()
        if knob.choices and value not in knob.choices:
            raise bad("is not one of the choices")
    elif knob.kind in ("int", "float"):
        if not _number_ok(value, knob.kind == "int"):
            raise bad(f"is {_a(value)}, not {'an integer' if knob.kind == 'int' else 'a number'}")
        if not _in_range(value, knob):
            raise bad("is out of range")
    elif knob.kind in ("ints", "floats"):
        if not isinstance(value, (list, tuple)) or not value:
            raise bad("is not a non-empty list")
        for v in value:
            if not _number_ok(v, knob.kind == "ints") or not _in_range(v, knob):
                raise bad(f"holds {v!r}")
    elif knob.kind == "weights":
        if not isinstance(value, dict):
            raise bad("is not a mapping")
        unknown = [k for k in value if k not in knob.keys]
        missing = [] if knob.partial else [k for k in knob.keys if k not in value]
        if unknown or missing:
            raise bad(f"has {'unknown key(s) ' + str(unknown) if unknown else 'no value for ' + str(missing)}")
        for k, v in value.items():
            if not _number_ok(v, False) or not _in_range(v, knob):
                raise bad(f"holds {k}: {v!r}")
    return value


def check_fields(config: Any, rules: dict[str, Knob | None]) -> None:
    """Check a config dataclass's fields against ``rules`` (from its ``__post_init__``); a rule
    of None marks a field the config checks itself."""
    for name, knob in rules.items():
        if knob is not None:
            check(f"{type(config).__name__}.{name}", getattr(config, name), knob)
    unchecked = [f.name for f in dataclasses.fields(config) if f.name not in rules]
    if unchecked:  # a new field needs a rule: said while developing, not silently accepted
        raise TypeError(f"{type(config).__name__} fields without a check: {unchecked}")
