"""Valid ranges of numeric options, declared where each option is declared.

A config dataclass states the range of a numeric field with `ranged`:

    beta: float = ranged(1.0, POSITIVE)    # followed by its docstring, as any field

and `check_ranges(config)` checks every declared field at once, returning one line per
problem (`--beta inf: must be a finite number > 0`). The loop's options and every
algorithm's options are checked by the same pass before anything is written, so a new
algorithm gets validation by declaring its ranges, not by writing checks.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

RANGE_KEY = "range"


@dataclass(frozen=True)
class Range:
    """A set of valid values: finite numbers between `low` and `high`.

    Attributes:
        low, high: bounds (None: unbounded on that side).
        low_open, high_open: whether the bound itself is excluded.
        integer: the value must be an integer (a bool is not one).
        allow_none: `None` is valid too (an option that means "not set").
    """

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    integer: bool = False
    allow_none: bool = False

    def describe(self) -> str:
        """The range in words, e.g. `a finite number in (0, 1]` or `an integer >= 1`."""
        what = "an integer" if self.integer else "a finite number"
        lo, hi = self.low, self.high
        if lo is not None and hi is not None:
            left = "(" if self.low_open else "["
            right = ")" if self.high_open else "]"
            text = f"{what} in {left}{_num(lo)}, {_num(hi)}{right}"
        elif lo is not None:
            text = f"{what} {'>' if self.low_open else '>='} {_num(lo)}"
        elif hi is not None:
            text = f"{what} {'<' if self.high_open else '<='} {_num(hi)}"
        else:
            text = what
        return text + (" (or unset)" if self.allow_none else "")

    def problem(self, value: Any) -> str | None:
        """None when `value` is in the range, else why not (for an error line)."""
        if value is None:
            return None if self.allow_none else f"must be {self.describe()}"
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"must be {self.describe()}"
        if self.integer and not isinstance(value, int):
            return f"must be {self.describe()}"
        if not math.isfinite(value):
            return f"must be {self.describe()}"
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return f"must be {self.describe()}"
        if self.high is not None and (value > self.high or (self.high_open and value == self.high)):
            return f"must be {self.describe()}"
        return None

    def contains(self, value: Any) -> bool:
        return self.problem(value) is None


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


# The ranges most options need.
FINITE = Range()
POSITIVE = Range(low=0.0, low_open=True)
NON_NEGATIVE = Range(low=0.0)
UNIT_INTERVAL = Range(low=0.0, high=1.0)  # [0, 1]
OPEN_UNIT_INTERVAL = Range(low=0.0, high=1.0, low_open=True, high_open=True)  # (0, 1)
FRACTION = Range(low=0.0, high=1.0, low_open=True)  # (0, 1]
DISCOUNT = Range(low=0.0, high=1.0, high_open=True)  # [0, 1)
POSITIVE_INT = Range(low=1, integer=True)
NON_NEGATIVE_INT = Range(low=0, integer=True)
#: Seeds feed numpy's SeedSequence and JAX's 32-bit keys: integers in [0, 2**31 - 1].
SEED = Range(low=0, high=2**31 - 1, integer=True)


def ranged(default: Any, valid: Range, **field_kwargs: Any) -> Any:
    """A dataclass field with `default` whose valid values are `valid`."""
    metadata = {**field_kwargs.pop("metadata", {}), RANGE_KEY: valid}
    return dataclasses.field(default=default, metadata=metadata, **field_kwargs)


def range_of(cls_or_config: Any, name: str) -> Range | None:
    """The declared range of field `name`, or None if it declares none."""
    for f in dataclasses.fields(cls_or_config):
        if f.name == name:
            return f.metadata.get(RANGE_KEY)
    raise KeyError(name)


def declared_ranges(cls_or_config: Any) -> dict[str, Range]:
    """Every field of a dataclass that declares a range, by field name."""
    return {
        f.name: f.metadata[RANGE_KEY]
        for f in dataclasses.fields(cls_or_config)
        if RANGE_KEY in f.metadata
    }


def flag_name(field_name: str) -> str:
    """The command-line flag of a config field (`mc_samples` -> `--mc-samples`)."""
    return "--" + field_name.replace("_", "-")


def _show(value: Any) -> str:
    """A value as a user would type it (`inf`, `0`, `1e-30`, `0 -1` for a tuple)."""
    if isinstance(value, tuple | list):
        return " ".join(_show(v) for v in value)
    return repr(value) if isinstance(value, str) else str(value)


def check_ranges(config: Any, only: set[str] | None = None) -> list[str]:
    """One line per declared field of `config` whose value is out of its range,
    e.g. `--critic-lr inf: must be a finite number > 0`. `only`: check just these fields.

    A tuple or list value (`--seeds 0 1 2`) is checked element by element; `None` for the
    whole field is valid when the range allows it."""
    problems = []
    for name, valid in declared_ranges(config).items():
        if only is not None and name not in only:
            continue
        value = getattr(config, name)
        if isinstance(value, tuple | list):
            each = dataclasses.replace(valid, allow_none=False)
            bad = next((v for v in value if each.problem(v) is not None), None)
            why = None if bad is None else each.problem(bad)
            shown = _show(bad)
        else:
            why, shown = valid.problem(value), _show(value)
        if why is not None:
            problems.append(f"{flag_name(name)} {shown}: {why}")
    return problems


def require_ranges(config: Any, error: type[Exception] = ValueError) -> None:
    """Raise `error` with one line (the problems of `check_ranges`, joined by `; `) when a
    declared field of `config` is out of its range."""
    problems = check_ranges(config)
    if problems:
        raise error("; ".join(problems))


# -- the types of a saved configuration ------------------------------------------------


def type_problem(value: Any, annotation: Any) -> str | None:
    """Why a JSON value does not fit a dataclass field's annotation (None if it does).

    Understands what config dataclasses use: bool, int, float (an int is one too), str,
    Path (a string), Literal, `X | None`, `tuple[X, ...]`, nested dataclasses (a JSON
    object) and Any."""
    import pathlib
    import types
    import typing

    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is Any or annotation is typing.Any:
        return None
    if origin is typing.Annotated:
        return type_problem(value, args[0])
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        problems = [type_problem(value, a) for a in args if a is not type(None)]
        if any(p is None for p in problems):
            return None
        return problems[0] if len(problems) == 1 else "does not fit " + str(annotation)
    if origin is typing.Literal:
        if value in args and type(value) in {type(a) for a in args}:
            return None
        return "expected one of " + ", ".join(map(str, args))
    if origin in (tuple, list):
        if not isinstance(value, list | tuple):
            return "expected a list"
        for item in value:
            why = type_problem(item, args[0]) if args else None
            if why is not None:
                return f"an element {item!r}: {why}"
        return None
    if annotation is bool:
        return None if isinstance(value, bool) else "expected true or false"
    if annotation is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        return None if ok else "expected an integer"
    if annotation is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return None if ok else "expected a number"
    if annotation is str or annotation is pathlib.Path:
        return None if isinstance(value, str) else "expected a string"
    if dataclasses.is_dataclass(annotation):
        return None if isinstance(value, dict) else "expected an object"
    return None


def field_type_problems(cls: type, data: dict[str, Any], prefix: str = "") -> list[str]:
    """One line per entry of `data` (a JSON object meant for dataclass `cls`) that is not a
    field of `cls` or whose value does not fit the field's type, e.g.
    `config.seed 'zero': expected an integer`. Missing fields are not reported here."""
    import typing

    hints = typing.get_type_hints(cls, include_extras=True)
    problems = []
    for name, value in data.items():
        if name not in hints:
            problems.append(f"{prefix}{name}: not a field of this version")
            continue
        why = type_problem(value, hints[name])
        if why is not None:
            problems.append(f"{prefix}{name} {value!r}: {why}")
    return problems
