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


def check_ranges(config: Any, only: set[str] | None = None) -> list[str]:
    """One line per declared field of `config` whose value is out of its range,
    e.g. `--critic-lr inf: must be a finite number > 0`. `only`: check just these fields."""
    problems = []
    for name, valid in declared_ranges(config).items():
        if only is not None and name not in only:
            continue
        value = getattr(config, name)
        why = valid.problem(value)
        if why is not None:
            problems.append(f"{flag_name(name)} {value!r}: {why}")
    return problems
