"""Typed configuration of a training run, its per-task presets and its command line.

`TrainConfig` holds every number of the training loop (SPEC §7 defaults), the algorithm's
name and its hyper-parameters (`hparams`, an instance of the algorithm's own config type).
The command line is generated from these dataclasses by `tyro`: `--algo NAME` chooses the
algorithm, whose fields then appear as flags in a section of their own in `--help`.

Presets: fields whose default depends on the task (`epoch_steps`, `cost_mask`, and the
critic budget) are filled in from the task's `TaskSpec` *before* the command line is
parsed, so `--help` (optionally with `--task NAME`) shows the values that task will use.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import difflib
import importlib.util
import io
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

import tyro

from algd_jax.algorithms import Algorithm, UnknownAlgorithmError, get_algorithm, list_algorithms
from algd_jax.envs import TaskSpec, get_task
from algd_jax.options import (
    NON_NEGATIVE_INT,
    POSITIVE_INT,
    SEED,
    Range,
    check_ranges,
    ranged,
)

#: Fields that may differ between a run's saved config and the `--resume` command line.
RESUMABLE_OVERRIDES = (
    "total_steps",
    "run_dir",
    "resume",
    "progress",
    "keep_checkpoints",
    "wandb",
    "wandb_group",
)
#: Largest seed: seeds feed numpy's SeedSequence and JAX's 32-bit keys.
MAX_SEED = 2**31 - 1
#: Valid seeds (`--seed`, each of `--seeds`).
SEED_RANGE = SEED
SEED_RANGE_OR_NONE = dataclasses.replace(SEED_RANGE, allow_none=True)
#: Name of the file that marks a multi-seed run directory.
GROUP_FILE = "group.json"
#: Written atomically into a run directory (each seed's, and a multi-seed root) when its
#: training reached --total-steps.
FINISHED_FILE = "finished.json"


#: Exit statuses of the commands (`RunError.exit_code`).
EXIT_FAULT = 1
"""Training stopped on a fault (non-finite value, out of memory, full disk) or a damaged
checkpoint; the last good checkpoint is named."""
EXIT_BAD_INPUT = 2
"""Bad input: an option, a run directory or a run file that cannot be used; nothing ran."""
EXIT_ALREADY_DONE = 3
"""A refused `--resume`: the run already has `--total-steps` env steps; nothing changed."""
EXIT_INTERRUPTED = 130
"""Ctrl-C or SIGTERM (a checkpoint was saved, or the message says why not)."""


class RunError(Exception):
    """A problem the user can fix (bad input, unusable run directory, a training fault).

    `str(error)` is one self-contained line; the command prints it and exits with
    `exit_code` instead of showing a traceback.
    """

    def __init__(self, message: str, exit_code: int = EXIT_BAD_INPUT) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class TrainConfig:
    """Train a safe-RL algorithm on one task: host-side environment stepping, a replay ring
    buffer, U fused updates per env step, one deterministic evaluation per epoch,
    checkpoints and logs in a run directory (`runs/<algo>-<task>/seed<k>-<timestamp>/` by
    default). `--seeds` trains several seeds in one process as one compiled program."""

    task: str = "HalfCheetahVelocity"
    """Task name; `--list-tasks` prints them all. Its spec sets the presets below."""
    algo: str = "algd"
    """Algorithm name (alias: --agent); `--list-algos` prints them all. Its own options are
    listed in their own section below."""
    preset: str = "defaults"
    """A named set of the algorithm's option values, applied before the flags below (which
    still override it). ALGD: `authors-code` (= the defaults: the authors' released code)
    or `paper` (every value the paper states: M = N = 6, targets every 5th update, sigma in
    [1e-4, 0.1], kappa = 0, projected multiplier, score-only actor loss). The baselines:
    `paper` (the ALGD paper's comparison: M = 6, batch 256, U = 10); sac-lag also
    `omnisafe` (OmniSafe's SACLag.yaml, loop values included)."""
    cost_limit: float | None = ranged(None, Range(low=0.0, allow_none=True))
    """Cost limit overriding the task's default: the critic budget h on the discounted
    cost for the paper's velocity tasks, the per-episode limit C for Safety-Gymnasium tasks
    (converted to h). Required by tasks without a default."""
    paper_setting: bool = False
    """Use the paper's variant of the task where it has one (navigation: 400-step episodes,
    limit 10, 400-step epochs)."""
    seed: int = ranged(0, SEED_RANGE)
    """Seed of the agent, the environments, the replay sampler and the acting noise."""
    seeds: tuple[int, ...] | None = ranged(None, SEED_RANGE_OR_NONE)
    """Several seeds trained together in one process (e.g. `--seeds 0 1 2 3`), each with
    its own run directory `<run-dir>/seed<k>/`; replaces --seed."""
    total_steps: int = ranged(1_000_000, POSITIVE_INT)
    """Environment steps to train for (may be raised on --resume to continue a run)."""
    initial_steps: int = ranged(5000, NON_NEGATIVE_INT)
    """Environment steps acted by the untrained policy before any update."""
    learning_starts: int = ranged(1000, POSITIVE_INT)
    """Updates also wait until the replay buffer holds this many transitions."""
    updates_per_step: int = ranged(10, POSITIVE_INT)
    """U: gradient updates after every environment step, fused into one jitted call."""
    batch_size: int = ranged(256, POSITIVE_INT)
    """B: transitions per update."""
    replay_size: int = ranged(1_000_000, POSITIVE_INT)
    """Replay capacity in transitions per seed (oldest overwritten first)."""
    epoch_steps: int = ranged(1000, POSITIVE_INT)
    """Environment steps per epoch: one progress.csv row, evaluation and checkpoint each
    (preset from the task)."""
    eval_episodes: int = ranged(1, NON_NEGATIVE_INT)
    """Deterministic evaluation episodes per epoch, on a separate env with its own seed
    (0 disables evaluation and the best-feasible checkpoint)."""
    truncation_ends_bootstrap: bool = False
    """Also stop bootstrapping at the time limit (the authors' code); by default only
    `terminated` ends it (mask = 1 - terminated)."""
    cost_mask: Literal["same", "none"] = "same"
    """Cost TD mask: `same` as the reward mask, or `none` (mask_c = 1, the reference on
    navigation tasks). Preset from the task."""
    loop: Literal["host", "device"] = "host"
    """Where the environments step: `host` (the off-policy loop for off-policy algorithms,
    the on-policy loop for on-policy ones) or `device` (the on-device loop: tasks written
    in JAX, each epoch one compiled call for all seeds; `--list-tasks` marks them)."""
    num_envs: int = ranged(1, POSITIVE_INT)
    """E: environments per seed stepped together (the on-policy and on-device loops; the
    off-policy host loop steps one per seed)."""
    seed_axis: Literal["auto", "map", "vmap"] = "auto"
    """How several seeds share one compiled program: `map` runs them one after the other
    (bitwise the numbers of each seed alone), `vmap` batches them (faster on a GPU, equal
    to a lone seed up to float rounding); `auto`: map on a CPU, vmap elsewhere."""
    keep_checkpoints: int = ranged(3, POSITIVE_INT)
    """How many of the latest checkpoints to keep (the best feasible one is kept apart)."""
    run_dir: Path | None = None
    """Run directory to create (default: runs/<algo>-<task>/seed<k>-<timestamp>/). It
    must not exist yet: a previous run is never overwritten."""
    resume: Path | None = None
    """Continue the run in this directory from its last checkpoint; other flags must
    agree with its config.json (except --total-steps, --progress, --keep-checkpoints,
    --wandb, --wandb-group)."""
    progress: Literal["auto", "bar", "lines", "off"] = "auto"
    """Terminal output: a progress bar (`bar`), one line per epoch and seed (`lines`),
    nothing (`off`); `auto` shows the bar on a terminal and lines otherwise."""
    wandb: str | None = None
    """Also log each epoch's row and the resolved config to this Weights & Biases project,
    one W&B run per seed (the `wandb` extra: pip install -e ".[wandb]"; `WANDB_MODE=offline`
    logs to files only). Not part of the run's configuration: it may change on --resume."""
    wandb_group: str | None = None
    """The W&B group of this run's seeds (default `<task>/<algo>`); experiments.sweep
    passes its name."""
    list_tasks: bool = False
    """Print every registered task with its budget and exit."""
    list_algos: bool = False
    """Print every registered algorithm with a one-line description and exit."""
    hparams: tyro.conf.Suppress[Any] = None
    """The algorithm's hyper-parameters (its config type); filled by the command line."""

    @property
    def seed_list(self) -> list[int]:
        """The seeds this run trains (`--seeds`, or the one `--seed`)."""
        return list(self.seeds) if self.seeds is not None else [self.seed]

    @property
    def algorithm(self) -> Algorithm:
        return get_algorithm(self.algo)

    def with_hparams(self) -> TrainConfig:
        """This config with the algorithm's default hyper-parameters if none are set."""
        if self.hparams is not None:
            return self
        return dataclasses.replace(self, hparams=self.algorithm.default_config())

    def validate(self) -> TrainConfig:
        """Raise `RunError` with one clear line if a value is impossible.

        First the declared range of every numeric option, of the loop and of the
        algorithm's hyper-parameters (`algd_jax.options`), all problems in one line; then
        the checks that relate several options."""
        try:
            algorithm = get_algorithm(self.algo)
        except UnknownAlgorithmError as err:
            raise RunError(str(err)) from None
        config = self.with_hparams().hparams
        if not isinstance(config, algorithm.config_type):
            raise RunError(f"hyper-parameters of {type(config).__name__} do not fit {self.algo}")
        if self.wandb is not None and not wandb_installed():
            raise RunError(WANDB_MISSING)
        problems = check_ranges(self) + check_ranges(config)
        if problems:
            raise RunError("; ".join(problems))
        check_seeds(self.seed_list, "--seeds" if self.seeds is not None else "--seed")
        if algorithm.kind == "off-policy":
            self._check_replay_schedule()
        try:
            validate = getattr(config, "validate", None)
            if validate is not None:
                validate()
        except ValueError as err:
            raise RunError(str(err)) from None
        return self

    def _check_replay_schedule(self) -> None:
        """The checks relating the replay and warm-up options (off-policy loops only)."""
        if self.replay_size < self.learning_starts:
            raise RunError(
                f"--replay-size {self.replay_size} can never hold the --learning-starts "
                f"{self.learning_starts} transitions updates wait for; raise --replay-size or "
                f"lower --learning-starts"
            )
        if self.learning_starts < self.batch_size:
            raise RunError(
                f"--learning-starts {self.learning_starts} is smaller than --batch-size "
                f"{self.batch_size}: the first batches would repeat rows; raise "
                f"--learning-starts or lower --batch-size"
            )
        first_update = max(self.initial_steps, self.learning_starts)
        if self.total_steps < first_update:
            raise RunError(
                f"--total-steps {self.total_steps} ends before the first update (after env step "
                f"{first_update}: --initial-steps {self.initial_steps}, --learning-starts "
                f"{self.learning_starts}); raise --total-steps"
            )

    # -- serialisation -------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready nested dict (paths as strings, seeds as a list, the algorithm's
        options without the values its registry entry or the task sets)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for key in ("run_dir", "resume"):
            if out[key] is not None:
                out[key] = str(out[key])
        if out["seeds"] is not None:
            out["seeds"] = list(out["seeds"])
        hparams = self.with_hparams().hparams
        out["hparams"] = {k: getattr(hparams, k) for k in self.algorithm.option_names()}
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Inverse of `to_dict`; raises `RunError` on unknown or missing fields."""
        data = dict(data)
        try:
            algorithm = get_algorithm(data["algo"])
            hparams = algorithm.default_config(**data.pop("hparams"))
            for key in ("run_dir", "resume"):
                if data.get(key) is not None:
                    data[key] = Path(data[key])
            if data.get("seeds") is not None:
                data["seeds"] = tuple(int(s) for s in data["seeds"])
            return cls(**data, hparams=hparams)
        except (TypeError, KeyError, UnknownAlgorithmError) as err:
            raise RunError(
                f"config.json does not describe a training run of this version ({err})"
            ) from None


#: What `--wandb` says when the package is not installed.
WANDB_MISSING = (
    '--wandb needs the Weights & Biases package; install it with pip install -e ".[wandb]"'
)


def wandb_installed() -> bool:
    """Whether `import wandb` can succeed (looked up without importing it: that takes
    seconds)."""
    try:
        return importlib.util.find_spec("wandb") is not None
    except (ImportError, ValueError):
        return False


def check_seeds(seeds: Sequence[int], flag: str = "--seeds") -> None:
    """Seeds must be distinct integers in [0, 2**31 - 1]."""
    if not seeds:
        raise RunError(f"{flag} needs at least one seed")
    for s in seeds:
        if not 0 <= s <= MAX_SEED:
            raise RunError(f"{flag} {s}: seeds must be integers from 0 to {MAX_SEED}")
    duplicates = sorted({s for s in seeds if list(seeds).count(s) > 1})
    if duplicates:
        raise RunError(f"{flag} lists seed {duplicates[0]} twice; give each seed once")


def resolve_task(config: TrainConfig) -> TaskSpec:
    """The task's spec with `--cost-limit` and `--paper-setting` applied.

    Raises `RunError` for an unknown task, a missing required limit, or a task whose
    optional package is not installed (the registry's messages are already one line).
    """
    try:
        return get_task(config.task, config.cost_limit, paper_setting=config.paper_setting)
    except (ValueError, ImportError) as err:
        raise RunError(str(err)) from None


def resolve_hparams(config: TrainConfig, spec: TaskSpec) -> Any:
    """The algorithm's config the learner is built with: the options plus what the task
    sets (the critic budget)."""
    config = config.with_hparams()
    try:
        return config.algorithm.resolve(config.hparams, spec)
    except ValueError as err:  # an option that cannot work on this task: one line
        raise RunError(str(err)) from None


def presets(config: TrainConfig, spec: TaskSpec) -> TrainConfig:
    """`config` with the task-dependent defaults taken from `spec`."""
    values: dict[str, Any] = {"epoch_steps": spec.epoch_steps, "cost_mask": spec.cost_mask}
    paper_total = getattr(spec, "paper_total_steps", None)
    if paper_total is not None:
        values["total_steps"] = paper_total
    return dataclasses.replace(config, **values)


def algorithm_presets(config: TrainConfig, spec: TaskSpec) -> TrainConfig:
    """`config` with what its algorithm's preset sets besides the options (loop values
    such as U and the batch size: `Algorithm.loop_presets`) and the option values that
    depend on the task (`Algorithm.task_preset`), applied over the task presets; the flags
    parsed afterwards still win."""
    algorithm = config.algorithm
    loop = dict(algorithm.loop_presets.get(config.preset, {}))
    options: dict[str, Any] = {}
    for key, value in algorithm.task_preset(config.preset, spec).items():
        if key.startswith("loop."):
            loop[key.removeprefix("loop.")] = value
        else:
            options[key] = value
    hparams = config.with_hparams().hparams
    if options:
        hparams = dataclasses.replace(hparams, **options)
    return dataclasses.replace(config, **loop, hparams=hparams)


# -- command line ----------------------------------------------------------------------


@cache
def cli_type(algo: str) -> type:
    """`TrainConfig` with `hparams` typed as the algorithm's options (its config type
    without the fields its registry entry or the task sets), shown as one section."""
    algorithm = get_algorithm(algo)
    hidden = set(algorithm.fixed) | set(algorithm.task_fields)
    fields = []
    for f in dataclasses.fields(algorithm.config_type):
        if f.name in hidden:
            annotation: Any = tyro.conf.Suppress[typing.Any]
            default = algorithm.fixed.get(f.name, f.default)
            fields.append((f.name, annotation, dataclasses.field(default=default)))
    options = dataclasses.make_dataclass(
        f"{algo.replace('-', '_')}_options", fields, bases=(algorithm.config_type,), frozen=True
    )
    options.__doc__ = f"{algorithm.description}."
    cls = dataclasses.make_dataclass(
        "TrainCommand",
        [
            (
                "hparams",
                Annotated[
                    options,
                    tyro.conf.OmitArgPrefixes,
                    tyro.conf.arg(name=algo, help=f"{algorithm.description}."),
                ],
                dataclasses.field(default_factory=options),
            )
        ],
        bases=(TrainConfig,),
        frozen=True,
    )
    cls.__doc__ = TrainConfig.__doc__
    return cls


def _to_cli(config: TrainConfig) -> Any:
    """`config` as an instance of its algorithm's command-line type."""
    cls = cli_type(config.algo)
    options_type = typing.get_args(typing.get_type_hints(cls, include_extras=True)["hparams"])[0]
    hparams = config.with_hparams().hparams
    values = {f.name: getattr(hparams, f.name) for f in dataclasses.fields(hparams)}
    kwargs = {f.name: getattr(config, f.name) for f in dataclasses.fields(TrainConfig)}
    kwargs["hparams"] = options_type(**values)
    return cls(**kwargs)


def _from_cli(parsed: Any) -> TrainConfig:
    algorithm = get_algorithm(parsed.algo)
    hp = parsed.hparams
    hparams = algorithm.config_type(**{f.name: getattr(hp, f.name) for f in dataclasses.fields(hp)})
    kwargs = {f.name: getattr(parsed, f.name) for f in dataclasses.fields(TrainConfig)}
    kwargs["hparams"] = hparams
    return TrainConfig(**kwargs)


def _preparse(argv: Sequence[str]) -> argparse.Namespace:
    """Read the few flags that decide the defaults of all others, ignoring the rest.

    Values that do not parse are left for tyro, which reports them properly.
    """
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    for flag in ("--task", "--cost-limit", "--resume", "--run-dir", "--seed"):
        pre.add_argument(flag, default=None)
    pre.add_argument("--algo", "--agent", dest="algo", default=None)
    pre.add_argument("--preset", default="defaults")
    pre.add_argument("--seeds", nargs="*", default=None)
    pre.add_argument("--paper-setting", action="store_true")
    pre.add_argument("--list-tasks", action="store_true")
    pre.add_argument("--list-algos", action="store_true")
    pre.add_argument("-h", "--help", action="store_true")
    # argparse takes `-inf` (unlike `-1`) for a flag; a leading space keeps it a value
    tokens = [" " + t if t.startswith("-") and _is_number(t) else t for t in argv]
    args, _ = pre.parse_known_args(tokens)
    return args


def _float_or_none(text: str | None) -> float | None:
    try:
        return None if text is None else float(text)
    except ValueError:
        return None


def _flag(name: str) -> str:
    return f"--{name.replace('_', '-')}"


def _bool_flags(cls: type) -> set[str]:
    out = set()
    for f in dataclasses.fields(cls):
        if f.type in (bool, "bool"):
            out |= {_flag(f.name), _flag("no_" + f.name)}
    return out


def _field_types() -> dict[str, Any]:
    hints = typing.get_type_hints(TrainConfig)
    return {_flag(k): v for k, v in hints.items() if k != "hparams"}


def _check_flags(argv: Sequence[str], algorithm: Algorithm) -> None:
    """One clear line for a flag the chosen algorithm does not have, or a value of the
    wrong type, before tyro would print its multi-line box."""
    options = {
        _flag(n): typing.get_type_hints(algorithm.config_type)[n] for n in algorithm.option_names()
    }
    known = {**_field_types(), **options, "--agent": str, "--help": bool, "-h": bool}
    known_flags = set(known) | _bool_flags(TrainConfig) | _bool_flags(algorithm.config_type)
    others: dict[str, list[str]] = {}
    for name in list_algorithms():
        other = get_algorithm(name)
        booleans = _bool_flags(other.config_type)
        for option in other.option_names():
            flags = [_flag(option), _flag("no_" + option)]
            for flag in flags[: 2 if flags[1] in booleans else 1]:
                others.setdefault(flag, []).append(name)
    args = list(argv)
    for i, token in enumerate(args):
        if not token.startswith("-") or _is_number(token):
            continue
        flag, _, inline = token.partition("=")
        if flag not in known_flags:
            if flag in others:
                raise RunError(
                    f"{flag} is an option of {', '.join(others[flag])}, not of "
                    f"{algorithm.name}; pass --algo {others[flag][0]} or drop it"
                )
            close = difflib.get_close_matches(flag, sorted(known_flags), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]}?" if close else "; see --help"
            raise RunError(f"unknown flag {flag}{hint}")
        expected = known.get(flag)
        if expected is None or expected is bool:
            continue
        values = [inline] if inline else _values_after(args, i)
        for value in values:
            problem = _type_problem(value, expected)
            if problem:
                raise RunError(f"{flag} {value!r}: {problem}")


def _is_number(token: str) -> bool:
    try:
        float(token)
        return True
    except ValueError:
        return False


def _values_after(args: list[str], i: int) -> list[str]:
    values = []
    for token in args[i + 1 :]:
        if token.startswith("-") and not _is_number(token):
            break
        values.append(token)
    return values


def _type_problem(value: str, expected: Any) -> str | None:
    """Why `value` is not of type `expected` (None when it is or cannot be judged)."""
    origin, args = typing.get_origin(expected), typing.get_args(expected)
    if origin in (typing.Union, types.UnionType):
        if value == "None" and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _type_problem(value, inner[0]) if len(inner) == 1 else None
    if origin is tuple:
        return _type_problem(value, args[0]) if args else None
    if origin is Literal:
        choices = [str(a) for a in args]
        return None if value in choices else f"expected one of {', '.join(choices)}"
    if expected is int:
        try:
            int(value)
        except ValueError:
            return "expected an integer"
    if expected is float:
        try:
            float(value)
        except ValueError:
            return "expected a number"
    return None


def parse_args(cls: type, argv: Sequence[str], prog: str, default: Any = None) -> Any:
    """`tyro.cli(cls)` with its boxed error messages turned into one `RunError` line (the
    box's first paragraph, e.g. `Unrecognized options: --nope`); `--help` still exits
    through `SystemExit(0)`. Every command line of the project parses through this."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return tyro.cli(cls, args=list(argv), default=default, prog=prog)
    except SystemExit as exit_info:
        if exit_info.code in (0, None):
            raise
        raise RunError(_box_line(err.getvalue())) from None


def _box_line(text: str) -> str:
    """The message of one of tyro's error boxes as a line: its title and first paragraph
    (up to the first rule), whitespace collapsed, and where to read more."""
    lines = [line.strip().strip("│").strip() for line in text.splitlines()]
    title, body = "", []
    for line in lines:
        if line.startswith("╭"):
            title = " ".join(line.strip("╭╮─ ").split())
            continue
        if not line or line.startswith("╰"):
            continue
        if set(line) <= {"─", " "}:
            break
        body.append(" ".join(line.split()))
    message = " ".join(body) or title or "could not parse the command line"
    return message.rstrip(".") + "; see --help"


def load_run_config(run_dir: Path, label: str = "") -> dict[str, Any]:
    """The validated `config.json` of a run directory (or `group.json` of a multi-seed
    run) as parsed JSON; see `algd_jax.run_files.read_run_config`, which raises `RunError`
    (prefixed by `label`, e.g. "--resume") for a missing, unreadable or damaged file."""
    from algd_jax.run_files import read_run_config

    return read_run_config(run_dir, label).data


def _algorithm(name: str) -> Algorithm:
    try:
        return get_algorithm(name)
    except UnknownAlgorithmError as err:
        raise RunError(str(err)) from None


def parse_command_line(argv: Sequence[str], prog: str = "experiments.run") -> TrainConfig:
    """Parse a command line into a validated `TrainConfig` with task presets applied.

    With `--resume RUN_DIR` the defaults are that run's saved config, so any flag that
    disagrees with it is reported (`RunError`). `--help` exits through `SystemExit(0)`.
    """
    # --agent is the older name of --algo
    argv = [
        "--algo" if t == "--agent" else "--algo=" + t[8:] if t.startswith("--agent=") else t
        for t in argv
    ]
    pre = _preparse(argv)
    if pre.list_tasks:
        return TrainConfig(list_tasks=True)
    if pre.list_algos:
        return TrainConfig(list_algos=True)
    if pre.seeds is not None and pre.seed is not None:
        raise RunError("pass either --seed K or --seeds K1 K2 ..., not both")
    if pre.seeds is not None and not pre.seeds and not pre.help:
        raise RunError("--seeds needs at least one seed, e.g. --seeds 0 1 2")

    if pre.resume is not None and not pre.help:
        from algd_jax.run_files import check_run

        # every file of the run is validated before anything else happens
        saved = check_run(Path(pre.resume), "--resume").config
        if pre.algo is not None and pre.algo != saved.algo:
            raise RunError(
                f"--resume {pre.resume}: --algo {pre.algo} on the command line disagrees "
                f"with {saved.algo} in its config.json"
            )
        algorithm = _algorithm(saved.algo)
        _check_flags(argv, algorithm)
        parsed = _from_cli(parse_args(cli_type(saved.algo), argv, prog, _to_cli(saved)))
        _check_resume_agrees(parsed, saved, pre.resume)
        # The run lives where --resume points, wherever it was first created.
        run_dir = Path(pre.resume)
        if pre.run_dir is not None and Path(pre.run_dir).resolve() != run_dir.resolve():
            raise RunError("--run-dir and --resume name different directories; pass only --resume")
        return dataclasses.replace(parsed, resume=run_dir, run_dir=run_dir).validate()

    algo = pre.algo if pre.algo is not None else TrainConfig.algo
    algorithm = _algorithm(algo)
    try:
        hparams = algorithm.preset_config(pre.preset)
    except ValueError as err:
        raise RunError(str(err)) from None
    task = pre.task if pre.task is not None else TrainConfig.task
    base = TrainConfig(
        task=task,
        algo=algo,
        preset=pre.preset,
        cost_limit=_float_or_none(pre.cost_limit),
        paper_setting=pre.paper_setting,
        hparams=hparams,
    )
    if pre.help:
        # Show the presets of the chosen task if it resolves, the generic defaults if not.
        with contextlib.suppress(RunError):
            spec = resolve_task(base)
            base = algorithm_presets(presets(base, spec), spec)
        tyro.cli(cli_type(algo), args=list(argv), default=_to_cli(base), prog=prog)  # exits
    _check_flags(argv, algorithm)
    spec = resolve_task(base)
    defaults = algorithm_presets(presets(base, spec), spec)
    parsed = parse_args(cli_type(algo), argv, prog, _to_cli(defaults))
    return _from_cli(parsed).validate()


def _check_resume_agrees(parsed: TrainConfig, saved: TrainConfig, where: str) -> None:
    for f in dataclasses.fields(TrainConfig):
        name = f.name
        if name in RESUMABLE_OVERRIDES:
            continue
        new, old = getattr(parsed, name), getattr(saved, name)
        if new == old:
            continue
        if name == "hparams":
            diffs = [
                g.name
                for g in dataclasses.fields(new)
                if getattr(new, g.name) != getattr(old, g.name)
            ]
            name = diffs[0]
            new, old = getattr(new, name), getattr(old, name)
        show = lambda v: " ".join(map(str, v)) if isinstance(v, tuple) else v  # noqa: E731
        raise RunError(
            f"--resume {where}: {_flag(name)} {show(new)} on the command line disagrees with "
            f"{show(old)} in its config.json"
        )
