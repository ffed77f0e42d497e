"""Declared ranges of numeric options (`algd_jax.options`): the ranges themselves, that every
numeric option of the loop and of every registered algorithm declares one, and that every
option refuses NaN, +inf, -inf and an out-of-range value with one line before anything is
written.

The walk over all options calls the command line's parser and validation in-process (tens
of milliseconds a case); a few cases also go through a real process for the exit status,
the missing traceback and the run directory that was never created."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any

import pytest

from algd_jax.algorithms import get_algorithm, list_algorithms
from algd_jax.options import (
    DISCOUNT,
    FINITE,
    FRACTION,
    NON_NEGATIVE,
    NON_NEGATIVE_INT,
    OPEN_UNIT_INTERVAL,
    POSITIVE,
    POSITIVE_INT,
    UNIT_INTERVAL,
    Range,
    check_ranges,
    declared_ranges,
    field_type_problems,
    range_of,
    ranged,
    require_ranges,
    type_problem,
)
from algd_jax.train_config import RunError, TrainConfig, parse_command_line
from tests.conftest import run_modules

# -- the ranges ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("valid", "inside", "outside", "words"),
    [
        (FINITE, [0.0, -1e300, 7], [math.nan, math.inf, -math.inf], "a finite number"),
        (POSITIVE, [1e-300, 3, 1.0], [0, 0.0, -1e-300, math.inf], "a finite number > 0"),
        (NON_NEGATIVE, [0, 0.0, 2.5], [-1e-300, math.nan], "a finite number >= 0"),
        (UNIT_INTERVAL, [0.0, 1.0, 0.5], [-0.1, 1.0000001], "a finite number in [0, 1]"),
        (OPEN_UNIT_INTERVAL, [1e-9, 0.999], [0.0, 1.0], "a finite number in (0, 1)"),
        (FRACTION, [1.0, 1e-9], [0.0, 1.5], "a finite number in (0, 1]"),
        (DISCOUNT, [0.0, 0.99], [1.0, -0.01], "a finite number in [0, 1)"),
        (POSITIVE_INT, [1, 10**30], [0, -1, 1.0, 2.5, True], "an integer >= 1"),
        (NON_NEGATIVE_INT, [0, 5], [-1, 0.0, False], "an integer >= 0"),
        (Range(high=2.0, high_open=True), [1.999, -1e9], [2.0, math.inf], "a finite number < 2"),
        (Range(high=2.5), [2.5], [2.6], "a finite number <= 2.5"),
        (Range(low=0, high=3, integer=True), [0, 3], [-1, 4, 1.5], "an integer in [0, 3]"),
    ],
)
def test_range_contains_and_describes(
    valid: Range, inside: list[Any], outside: list[Any], words: str
) -> None:
    assert valid.describe() == words
    for value in inside:
        assert valid.contains(value), value
    for value in outside:
        assert valid.problem(value) == f"must be {words}", value


def test_none_bool_and_strings() -> None:
    assert POSITIVE.problem(None) == "must be a finite number > 0"
    optional = Range(low=0.0, allow_none=True)
    assert optional.contains(None) and optional.describe() == "a finite number >= 0 (or unset)"
    assert not optional.contains(-1.0)
    assert not FINITE.contains(True)  # a bool is not a number here
    assert not FINITE.contains("1.0")


@dataclasses.dataclass(frozen=True)
class _Toy:
    lr: float = ranged(1e-3, POSITIVE)
    steps: int = ranged(5, POSITIVE_INT)
    seeds: tuple[int, ...] | None = ranged(None, Range(low=0, integer=True, allow_none=True))
    name: str = "x"
    flag: bool = False


def test_check_ranges_names_flag_value_and_range() -> None:
    assert declared_ranges(_Toy) == {
        "lr": POSITIVE,
        "steps": POSITIVE_INT,
        "seeds": Range(low=0, integer=True, allow_none=True),
    }
    assert range_of(_Toy, "name") is None
    with pytest.raises(KeyError):
        range_of(_Toy, "nope")
    assert check_ranges(_Toy()) == []
    bad = _Toy(lr=math.inf, steps=0, seeds=(0, 3, -2))
    assert check_ranges(bad) == [
        "--lr inf: must be a finite number > 0",
        "--steps 0: must be an integer >= 1",
        "--seeds -2: must be an integer >= 0",  # the bad element, not "(or unset)"
    ]
    assert check_ranges(bad, only={"steps"}) == ["--steps 0: must be an integer >= 1"]
    with pytest.raises(ValueError, match=r"^--lr inf: .*; --steps 0: .*; --seeds -2: "):
        require_ranges(bad)
    with pytest.raises(RunError):
        require_ranges(bad, RunError)


def test_type_problems_of_a_saved_config() -> None:
    assert type_problem(3, float) is None and type_problem(True, float) == "expected a number"
    assert type_problem(3.0, int) == "expected an integer"
    assert type_problem(None, int | None) is None
    assert type_problem([0, 1], tuple[int, ...] | None) is None
    assert type_problem([0, "a"], tuple[int, ...]) == "an element 'a': expected an integer"
    assert type_problem("map", typing.Literal["map", "vmap"]) is None
    assert type_problem("x", typing.Literal["map", "vmap"]) == "expected one of map, vmap"
    assert type_problem("runs/x", Path | None) is None
    assert type_problem(1, bool) == "expected true or false"
    assert field_type_problems(_Toy, {"lr": "fast", "steps": 2, "other": 1}, "config.") == [
        "config.lr 'fast': expected a number",
        "config.other: not a field of this version",
    ]


# -- every option of every algorithm -----------------------------------------------------


def _numeric(annotation: Any) -> bool:
    """int or float (possibly `| None` or a tuple of them), not bool."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType, tuple):
        return any(_numeric(a) for a in args if a not in (type(None), Ellipsis))
    return annotation in (int, float)


def _is_int(annotation: Any) -> bool:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType, tuple):
        return any(_is_int(a) for a in args if a not in (type(None), Ellipsis))
    return annotation is int


def _walked_algorithms() -> list[str]:
    """One algorithm per config type and option set (entries of one family, e.g. algd, lgd
    and algd-ddpm, share both, and so every declared range)."""
    seen, out = set(), []
    for name in list_algorithms():
        algorithm = get_algorithm(name)
        key = (algorithm.config_type, algorithm.option_names())
        if key not in seen:
            seen.add(key)
            out.append(name)
    return out


def _options(algo: str) -> list[tuple[str, Any, Range | None]]:
    """(field, annotation, declared range) of every numeric option `--algo algo` offers:
    the loop's, then the algorithm's own."""
    out = []
    loop_hints = typing.get_type_hints(TrainConfig)
    loop_ranges = declared_ranges(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        if f.name != "hparams" and _numeric(loop_hints[f.name]):
            out.append((f.name, loop_hints[f.name], loop_ranges.get(f.name)))
    algorithm = get_algorithm(algo)
    hints = typing.get_type_hints(algorithm.config_type)
    ranges = declared_ranges(algorithm.config_type)
    for name in algorithm.option_names():
        if _numeric(hints[name]):
            out.append((name, hints[name], ranges.get(name)))
    return out


def _outside(valid: Range) -> float:
    """A finite value just outside `valid`."""
    if valid.low is not None:
        return valid.low if valid.low_open else valid.low - 1
    if valid.high is not None:
        return valid.high if valid.high_open else valid.high + 1
    raise ValueError("an unbounded range has no finite value outside it")


@pytest.mark.parametrize("algo", list_algorithms())
def test_every_numeric_option_declares_its_range(algo: str) -> None:
    missing = [name for name, _, valid in _options(algo) if valid is None]
    assert missing == [], f"numeric options of {algo} without `ranged(...)`: {missing}"


@pytest.mark.parametrize("algo", _walked_algorithms())
def test_every_option_refuses_non_finite_and_out_of_range_values(algo: str, tmp_path: Path) -> None:
    never = tmp_path / "never"
    walked = 0
    for name, annotation, valid in _options(algo):
        assert valid is not None
        flag = "--" + name.replace("_", "-")
        values = ["nan", "inf", "-inf"]
        if valid.low is not None or valid.high is not None:
            bad = _outside(valid)
            values.append(str(int(bad)) if _is_int(annotation) else repr(float(bad)))
        for value in values:
            # `--seeds` takes a list: put the bad value after a good seed
            given = ["0", value] if name == "seeds" else [value]
            argv = ["--algo", algo, "--progress", "off", flag, *given, "--run-dir", str(never)]
            with pytest.raises(RunError) as refused:
                parse_command_line(argv)
            message = str(refused.value)
            assert refused.value.exit_code == 2, (argv, message)
            assert len(message.splitlines()) == 1, (argv, message)
            assert message.startswith(flag), (argv, message)  # the flag first
            assert value in message or repr(float(value)) in message, (argv, message)
            assert "must be" in message or "expected" in message, (argv, message)
            walked += 1
    assert walked >= 4 * 10
    assert not never.exists() and list(tmp_path.iterdir()) == []


def test_a_config_built_in_code_is_validated_by_the_trainer(tmp_path: Path) -> None:
    """The same pass guards `OffPolicyLoop(config)` without the command line."""
    from algd_jax.training import OffPolicyLoop

    config = TrainConfig(task="DiffDriveCircle", run_dir=tmp_path / "never").with_hparams()
    bad = dataclasses.replace(config, hparams=dataclasses.replace(config.hparams, rho=math.inf))
    with pytest.raises(RunError, match=r"^--rho inf: must be a finite number > 0$"):
        OffPolicyLoop(bad)
    assert not (tmp_path / "never").exists()


#: Refusals that also go through a real process: flags -> the one stderr line.
PROCESS_CASES = [
    (["--critic-lr", "inf"], "error: --critic-lr inf: must be a finite number > 0"),
    (
        ["--score-loss-weight", "nan", "--init-multiplier", "-1", "--multiplier", "projected"],
        "error: --score-loss-weight nan: must be a finite number >= 0; --init-multiplier "
        "-1.0: must be a finite number >= 0",
    ),
]


@pytest.fixture(scope="module")
def in_process(tmp_path_factory: pytest.TempPathFactory) -> list:
    """Each of `PROCESS_CASES` as `experiments.run ... --run-dir NEVER`, all in one separate
    process: (result, NEVER) per case."""
    root = tmp_path_factory.mktemp("refused")
    nevers = [root / f"never{i}" for i in range(len(PROCESS_CASES))]
    commands = [
        ("experiments.run", [*args, "--run-dir", str(never)])
        for (args, _), never in zip(PROCESS_CASES, nevers, strict=True)
    ]
    return list(zip(run_modules(*commands), nevers, strict=True))


@pytest.mark.parametrize("case", range(len(PROCESS_CASES)))
def test_refusals_in_a_real_process(in_process: list, case: int) -> None:
    done, never = in_process[case]
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [PROCESS_CASES[case][1]]
    assert done.stdout == ""
    assert not never.exists()
