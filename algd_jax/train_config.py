"""Typed configuration of a training run, its per-task presets and its command line.

`TrainConfig` holds every number of the training loop (SPEC §7 defaults) plus the agent's
hyper-parameters (`AgentConfig`, flattened into the same command line). The command line
is generated from these dataclasses by `tyro`, so `python -m experiments.run --help` lists
every field with its default and its docstring.

Presets: fields whose default depends on the task (`epoch_steps`, `cost_mask`, and the
critic budget) are filled in from the task's `TaskSpec` *before* the command line is
parsed, so `--help` (optionally with `--task NAME`) shows the values that task will use.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import tyro

from algd_jax.config import AgentConfig
from algd_jax.envs import TaskSpec, get_task
from algd_jax.envs.spec import episodic_limit_to_budget

AGENT_CHOICES = ("algd", "lgd", "algd-ddpm")

#: Fields that may differ between a run's saved config and the `--resume` command line.
RESUMABLE_OVERRIDES = ("total_steps", "run_dir", "resume", "progress", "keep_checkpoints")


class RunError(Exception):
    """A problem the user can fix (bad input, unusable run directory, a training fault).

    `str(error)` is one self-contained line; the command prints it and exits with
    `exit_code` instead of showing a traceback.
    """

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class AgentOptions(AgentConfig):
    """The agent's hyper-parameters as they appear on the command line.

    The critic budget `h` is not a flag of its own: it follows from the task and
    `--cost-limit` (see `resolve_agent_config`), so that the budget the critic is trained
    against and the limit evaluation checks can never disagree.
    """

    cost_budget: tyro.conf.Suppress[float] = 0.0


@dataclass(frozen=True)
class TrainConfig:
    """Train ALGD on one task: host-side environment stepping, a replay ring buffer, U fused
    updates per env step, one deterministic evaluation per epoch, checkpoints and logs in a
    run directory (`runs/<agent>-<task>/seed<k>-<timestamp>/` by default)."""

    task: str = "HalfCheetahVelocity"
    """Task name; `--list-tasks` prints them all. Its spec sets the presets below."""
    cost_limit: float | None = None
    """Cost limit overriding the task's default: the critic budget h on the discounted
    cost for the paper's velocity tasks, the per-episode limit C for Safety-Gymnasium tasks
    (converted to h). Required by tasks without a default."""
    paper_setting: bool = False
    """Use the paper's variant of the task where it has one (navigation: 400-step episodes,
    limit 10, 400-step epochs)."""
    seed: int = 0
    """Seed of the agent, the environments, the replay sampler and the acting noise."""
    total_steps: int = 1_000_000
    """Environment steps to train for (may be raised on --resume to continue a run)."""
    initial_steps: int = 5000
    """Environment steps acted by the untrained diffusion policy before any update."""
    learning_starts: int = 1000
    """Updates also wait until the replay buffer holds this many transitions."""
    updates_per_step: int = 10
    """U: gradient updates after every environment step, fused into one jitted call."""
    batch_size: int = 256
    """B: transitions per update."""
    replay_size: int = 1_000_000
    """Replay capacity in transitions (oldest overwritten first)."""
    epoch_steps: int = 1000
    """Environment steps per epoch: one progress.csv row, evaluation and checkpoint each
    (preset from the task)."""
    eval_episodes: int = 1
    """Deterministic evaluation episodes per epoch, on a separate env with its own seed
    (0 disables evaluation and the best-feasible checkpoint)."""
    truncation_ends_bootstrap: bool = False
    """Also stop bootstrapping at the time limit (the authors' code); by default only
    `terminated` ends it (mask = 1 - terminated)."""
    cost_mask: Literal["same", "none"] = "same"
    """Cost TD mask: `same` as the reward mask, or `none` (mask_c = 1, the reference on
    navigation tasks). Preset from the task."""
    keep_checkpoints: int = 3
    """How many of the latest checkpoints to keep (the best feasible one is kept apart)."""
    run_dir: Path | None = None
    """Run directory to create (default: runs/<agent>-<task>/seed<k>-<timestamp>/). It
    must not exist yet: a previous run is never overwritten."""
    resume: Path | None = None
    """Continue the run in this directory from its last checkpoint; other flags must
    agree with its config.json (except --total-steps, --progress, --keep-checkpoints)."""
    progress: Literal["auto", "bar", "lines", "off"] = "auto"
    """Terminal output: a progress bar (`bar`), one line per epoch (`lines`), nothing
    (`off`); `auto` shows the bar on a terminal and stays quiet otherwise."""
    list_tasks: bool = False
    """Print every registered task with its budget and exit."""
    algo: Annotated[AgentOptions, tyro.conf.OmitArgPrefixes] = field(default_factory=AgentOptions)
    """Agent hyper-parameters."""

    def validate(self) -> TrainConfig:
        """Raise `RunError` with one clear line if a value is impossible."""
        positive = {
            "total_steps": "--total-steps",
            "updates_per_step": "--updates-per-step (U)",
            "batch_size": "--batch-size",
            "replay_size": "--replay-size",
            "epoch_steps": "--epoch-steps",
            "keep_checkpoints": "--keep-checkpoints",
            "learning_starts": "--learning-starts",
        }
        for name, flag in positive.items():
            value = getattr(self, name)
            if value < 1:
                raise RunError(f"{flag} must be a positive integer, got {value}")
        for name in ("initial_steps", "eval_episodes"):
            value = getattr(self, name)
            if value < 0:
                raise RunError(f"--{name.replace('_', '-')} must be >= 0, got {value}")
        if self.algo.agent not in AGENT_CHOICES:
            raise RunError(
                f"unknown agent {self.algo.agent!r}; choose one of {', '.join(AGENT_CHOICES)}"
            )
        try:
            dataclasses.replace(self.algo, cost_budget=0.0).validate()
        except ValueError as err:
            raise RunError(str(err)) from None
        return self

    # -- serialisation -------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready nested dict (paths as strings)."""
        out = dataclasses.asdict(self)
        for key in ("run_dir", "resume"):
            if out[key] is not None:
                out[key] = str(out[key])
        out["algo"].pop("cost_budget")
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Inverse of `to_dict`; raises `RunError` on unknown or missing fields."""
        data = dict(data)
        try:
            algo = AgentOptions(**data.pop("algo"))
            for key in ("run_dir", "resume"):
                if data.get(key) is not None:
                    data[key] = Path(data[key])
            return cls(**data, algo=algo)
        except (TypeError, KeyError) as err:
            raise RunError(f"config.json does not describe a training run ({err})") from None


def resolve_task(config: TrainConfig) -> TaskSpec:
    """The task's spec with `--cost-limit` and `--paper-setting` applied.

    Raises `RunError` for an unknown task, a missing required limit, or a task whose
    optional package is not installed (the registry's messages are already one line).
    """
    try:
        return get_task(config.task, config.cost_limit, paper_setting=config.paper_setting)
    except (ValueError, ImportError) as err:
        raise RunError(str(err)) from None


def critic_budget(spec: TaskSpec, cost_gamma: float) -> float:
    """h for the critic: the task's budget, re-derived from its episodic limit when the
    cost discount differs from the one the registry used."""
    if spec.episode_cost_limit is None or cost_gamma == spec.cost_gamma:
        return spec.cost_budget
    return episodic_limit_to_budget(spec.episode_cost_limit, spec.max_episode_steps, cost_gamma)


def resolve_agent_config(config: TrainConfig, spec: TaskSpec) -> AgentConfig:
    """The `AgentConfig` the learner is built with: the CLI options plus the task budget."""
    values = {f.name: getattr(config.algo, f.name) for f in dataclasses.fields(AgentConfig)}
    values["cost_budget"] = critic_budget(spec, config.algo.cost_gamma)
    return AgentConfig(**values)


def presets(config: TrainConfig, spec: TaskSpec) -> TrainConfig:
    """`config` with the task-dependent defaults taken from `spec`."""
    return dataclasses.replace(config, epoch_steps=spec.epoch_steps, cost_mask=spec.cost_mask)


# -- command line ----------------------------------------------------------------------


def _preparse(argv: Sequence[str]) -> argparse.Namespace:
    """Read the few flags that decide the defaults of all others, ignoring the rest.

    Values that do not parse are left for tyro, which reports them properly.
    """
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    for flag in ("--task", "--cost-limit", "--resume", "--run-dir", "--agent"):
        pre.add_argument(flag, default=None)
    pre.add_argument("--paper-setting", action="store_true")
    pre.add_argument("--list-tasks", action="store_true")
    pre.add_argument("-h", "--help", action="store_true")
    args, _ = pre.parse_known_args(list(argv))
    return args


def _float_or_none(text: str | None) -> float | None:
    try:
        return None if text is None else float(text)
    except ValueError:
        return None


def load_run_config(run_dir: Path, label: str = "") -> dict[str, Any]:
    """The parsed `config.json` of a run directory ({} if it is not a run's config).

    Raises `RunError` (message prefixed by `label`, e.g. "--resume") when the directory
    or its config.json is missing or unreadable.
    """
    prefix = f"{label} {run_dir}" if label else str(run_dir)
    path = run_dir / "config.json"
    if not run_dir.is_dir():
        raise RunError(f"{prefix}: no such directory")
    if not path.is_file():
        raise RunError(f"{prefix}: not a run directory (no config.json)")
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) and "config" in data else {}
    except (OSError, json.JSONDecodeError) as err:
        raise RunError(f"{prefix}: config.json is unreadable ({err})") from None


def parse_command_line(argv: Sequence[str], prog: str = "experiments.run") -> TrainConfig:
    """Parse a command line into a validated `TrainConfig` with task presets applied.

    With `--resume RUN_DIR` the defaults are that run's saved config, so any flag that
    disagrees with it is reported (`RunError`). `--help` exits through `SystemExit(0)`.
    """
    pre = _preparse(argv)
    if pre.agent is not None and pre.agent not in AGENT_CHOICES:
        raise RunError(f"unknown agent {pre.agent!r}; choose one of {', '.join(AGENT_CHOICES)}")
    if pre.list_tasks:
        return TrainConfig(list_tasks=True)

    if pre.resume is not None and not pre.help:
        saved_data = load_run_config(Path(pre.resume), "--resume")
        if not saved_data:
            raise RunError(f"--resume {pre.resume}: config.json does not describe a run")
        saved = TrainConfig.from_dict(saved_data["config"])
        # Parse on top of the saved values: a flag that differs from them is a mismatch.
        parsed = tyro.cli(TrainConfig, args=list(argv), default=saved, prog=prog)
        mismatched = [
            f.name
            for f in dataclasses.fields(TrainConfig)
            if f.name not in RESUMABLE_OVERRIDES
            and getattr(parsed, f.name) != getattr(saved, f.name)
        ]
        if mismatched:
            name = mismatched[0]
            new, old = getattr(parsed, name), getattr(saved, name)
            if name == "algo":
                diffs = [
                    f.name
                    for f in dataclasses.fields(AgentOptions)
                    if getattr(new, f.name) != getattr(old, f.name)
                ]
                name = diffs[0]
                new, old = getattr(new, name), getattr(old, name)
            raise RunError(
                f"--resume {pre.resume}: --{name.replace('_', '-')} {new} on the command line "
                f"disagrees with {old} in its config.json"
            )
        # The run lives where --resume points, wherever it was first created.
        run_dir = Path(pre.resume)
        if pre.run_dir is not None and Path(pre.run_dir).resolve() != run_dir.resolve():
            raise RunError("--run-dir and --resume name different directories; pass only --resume")
        return dataclasses.replace(parsed, resume=run_dir, run_dir=run_dir).validate()

    task = pre.task if pre.task is not None else TrainConfig.task
    base = TrainConfig(
        task=task, cost_limit=_float_or_none(pre.cost_limit), paper_setting=pre.paper_setting
    )
    if pre.help:
        # Show the presets of the chosen task if it resolves, the generic defaults if not.
        try:
            base = presets(base, resolve_task(base))
        except RunError:
            pass
        tyro.cli(TrainConfig, args=list(argv), default=base, prog=prog)  # exits
    spec = resolve_task(base)
    parsed = tyro.cli(TrainConfig, args=list(argv), default=presets(base, spec), prog=prog)
    return parsed.validate()
