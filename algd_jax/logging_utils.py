"""Per-epoch logs of a training run: `progress.csv`, TensorBoard scalars, terminal progress.

One row per epoch goes to both `progress.csv` and TensorBoard (tensorboardX event files
under `tb/`, scalar tags namespaced `train/...`, `eval/...`, `time/...`, x-axis = env
steps), and with `--wandb PROJECT` to a Weights & Biases run of that seed (`WandbSink`).
On resume the logs are cut back to the checkpoint being resumed (only once training really
continues), so that a row written after the last checkpoint of an interrupted run is neither
lost nor duplicated.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TextIO

from tensorboardX import SummaryWriter
from tqdm import tqdm

from algd_jax.run_files import read_progress, read_progress_file
from algd_jax.train_config import WANDB_MISSING, RunError, TrainConfig

__all__ = ["Display", "LogBehindCheckpoint", "ProgressLog", "ResumePlan", "WandbSink"]
__all__ += ["plan_resume"]
__all__ += ["read_progress"]  # the validated reader of algd_jax.run_files, re-exported

#: Columns that are not TensorBoard scalars (the x-axis and counters).
INDEX_COLUMNS = ("epoch", "env_steps", "updates", "episodes")
#: Columns whose values depend on the machine's speed, not on the run's numbers.
TIMING_PREFIX = "time/"


class LogBehindCheckpoint(RunError):
    """progress.csv lacks rows of epochs the checkpoint has done (`torn`: its last line was
    cut off mid-write, so an older checkpoint can still be resumed)."""

    def __init__(self, message: str, path: Path, torn: bool) -> None:
        super().__init__(message)
        self.path = path
        self.torn = torn


@dataclass
class ResumePlan:
    """What resuming a run's `progress.csv` at a checkpoint will change, found without
    changing anything: the rows logged after the checkpoint (dropped) and a torn last line
    (cut)."""

    path: Path
    keep: list[dict[str, str]]
    dropped: list[dict[str, str]]
    torn: bool

    def messages(self) -> list[str]:
        out = []
        if self.torn:
            out.append(
                f"{self.path}: its last line was cut off mid-write (a crash); removing the "
                f"partial row"
            )
        if self.dropped:
            steps = ", ".join(r["env_steps"] for r in self.dropped)
            out.append(
                f"{self.path}: dropping {len(self.dropped)} row(s) logged after the checkpoint "
                f"(env steps {steps}); training repeats them"
            )
        return out


def plan_resume(run_dir: Path, columns: list[str], step: int, epochs: int) -> ResumePlan:
    """Check `run_dir/progress.csv` against the checkpoint at env step `step` (after
    `epochs` logged epochs); raises `RunError` when it cannot continue that log."""
    path = Path(run_dir) / "progress.csv"
    if not path.is_file():
        if epochs == 0:
            return ResumePlan(path, [], [], False)
        raise RunError(
            f"{path} is missing, but the checkpoint at env step {step} follows {epochs} logged "
            f"epoch(s); put the file back (its history cannot be recreated) or start a new run"
        )
    log = read_progress_file(path)  # refuses any damage but a torn last line
    torn, rows = log.torn, log.rows
    if log.header != columns:
        raise RunError(
            f"{path} has other columns than this version writes; resume the run with the "
            f"version of algd-jax that started it"
        )
    keep = [r for r in rows if int(float(r["env_steps"])) <= step]
    if len(keep) < epochs:
        raise LogBehindCheckpoint(
            f"{path} holds {len(keep)} row(s) up to env step {step}, but the checkpoint follows "
            f"{epochs} logged epochs; the file was edited or truncated, put the original back",
            path,
            torn,
        )
    return ResumePlan(path, keep, [r for r in rows if int(float(r["env_steps"])) > step], torn)


def _csv_line(columns: list[str], values: Mapping[str, Any] | None = None) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns if values is None else [values[k] for k in columns])
    return buffer.getvalue()


#: Written into a seed's run directory by `WandbSink`: the W&B run's id (a resume
#: continues that run) and the last env step logged to it.
WANDB_FILE = "wandb.json"
#: Keys of a run's config.json logged as the W&B run's config.
WANDB_CONFIG_KEYS = ("config", "algo", "agent_config", "task_spec", "versions")


class WandbSink:
    """The epoch rows of one seed's run, logged to a Weights & Biases run as well.

    Each row's finite values are logged as scalars at `step = env_steps` (the
    `progress.csv` columns, the same tags as TensorBoard), and the run's resolved
    configuration (its `config.json`: the loop's config, the algorithm's resolved
    hyper-parameters, the task's spec, the versions) as the W&B config. W&B run: project
    `config.wandb`; group `config.wandb_group` or `<task>/<algo>`; job type
    `<task>/<algo>`; tags task, algorithm (and the group when one was given); name
    `<task>/<algo>/seed<k>`. W&B's own files go under `run_dir/wandb/` (or `$WANDB_DIR`).

    The W&B run's id is kept in `run_dir/wandb.json` with the last env step logged, so a
    resumed run continues the same W&B run and logs each epoch once: rows up to that step
    (repeated by a resume after a crash, with the same numbers) are not logged again, and
    rows the W&B run lacks (the run was resumed with `--wandb` added) are logged first from
    `backlog`.

    Args:
        config: the run's config (`wandb` set).
        run_dir: the seed's run directory; its `config.json` must exist.
        backlog: `progress.csv` rows already in the file, as read back (strings).
    """

    def __init__(
        self,
        config: TrainConfig,
        run_dir: Path,
        backlog: Sequence[Mapping[str, str | float]] = (),
    ) -> None:
        if config.wandb is None:
            raise ValueError("WandbSink needs config.wandb (the W&B project)")
        try:
            import wandb
        except ImportError:
            raise RunError(WANDB_MISSING) from None
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / WANDB_FILE
        resolved = json.loads((self.run_dir / "config.json").read_text())
        seed = int(resolved["config"]["seed"])
        saved = json.loads(self.path.read_text()) if self.path.is_file() else None
        self.last_step = int(saved["last_step"]) if saved else -1
        job = f"{config.task}/{config.algo}"
        tags = [config.task, config.algo]
        if config.wandb_group is not None:
            tags.append(config.wandb_group)
        # W&B tags are at most 64 characters
        tags = [t[:64] for t in tags]
        where = os.environ.get("WANDB_DIR") or str(self.run_dir)
        try:
            self.run = wandb.init(
                project=config.wandb,
                group=config.wandb_group or job,
                job_type=job,
                tags=tags,
                name=f"{job}/seed{seed}",
                config={k: resolved[k] for k in WANDB_CONFIG_KEYS if k in resolved},
                id=saved["id"] if saved else None,  # None: W&B draws a new id
                resume="allow" if saved else None,
                dir=where,
                reinit="create_new",  # one W&B run per seed, several in one process
                # the terminal stays the loop's own (its bar, a sweep's job log)
                settings=wandb.Settings(console="off"),
            )
        except Exception as err:  # wandb raises its own types (no login, no network)
            raise RunError(
                f"--wandb {config.wandb}: Weights & Biases could not start a run "
                f"({type(err).__name__}: {' '.join(str(err).split())}); log in with "
                f"`wandb login`, or set WANDB_MODE=offline to log to files only"
            ) from None
        self.run_id: str = self.run.id
        self._save()
        for row in backlog:
            self.write(row)

    def _save(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        record = {"id": self.run_id, "project": self.run.project, "last_step": self.last_step}
        tmp.write_text(json.dumps(record) + "\n")
        os.replace(tmp, self.path)

    def write(self, row: Mapping[str, str | float | int]) -> None:
        """Log one epoch row at its env step (a step already logged is skipped)."""
        step = int(float(row["env_steps"]))
        if step <= self.last_step:
            return
        values = {k: float(v) for k, v in row.items() if k != "env_steps"}
        self.run.log({k: v for k, v in values.items() if math.isfinite(v)}, step=step)
        self.last_step = step
        self._save()

    def close(self) -> None:
        self.run.finish()


class ProgressLog:
    """Writes epoch rows to `run_dir/progress.csv` and `run_dir/tb/` (and to Weights &
    Biases when `config.wandb` is set: `WandbSink`).

    Each row is one whole line written with a single call, flushed and fsynced, so a crash
    leaves at most one partial last line (which `plan_resume` finds and a resume cuts).

    Args:
        run_dir: the run directory.
        columns: every column, in order; rows must provide exactly these keys.
        resume: when continuing a run, the plan made by `plan_resume`: the CSV is rewritten
            to its kept rows, and TensorBoard events after the checkpoint are purged.
        resume_step: the env step of the checkpoint resumed from.
        config: the run's config; with `config.wandb` set, the rows also go to a W&B run
            (the seed's `config.json` must have been written).
    """

    def __init__(
        self,
        run_dir: Path,
        columns: Iterable[str],
        resume: ResumePlan | None = None,
        resume_step: int | None = None,
        config: TrainConfig | None = None,
    ) -> None:
        self.path = Path(run_dir) / "progress.csv"
        self.columns = list(columns)
        self._wandb: WandbSink | None = None
        if config is not None and config.wandb is not None:
            # started first: a W&B run that cannot start changes no file of the run
            self._wandb = WandbSink(config, Path(run_dir), resume.keep if resume else ())
        if resume is not None and (resume.dropped or resume.torn):
            tmp = self.path.with_suffix(".csv.tmp")
            with tmp.open("w", newline="") as f:
                f.write(_csv_line(self.columns))
                for row in resume.keep:
                    f.write(_csv_line(self.columns, row))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)  # atomic: the old file stays whole until the new one is
        new_file = not self.path.is_file()
        self._file: TextIO = self.path.open("a", newline="")
        if new_file:
            self._append(_csv_line(self.columns))
        # purge_step drops events at steps > resume_step that an interrupted session had
        # written after its last checkpoint.
        purge = None if resume_step is None else resume_step + 1
        self._tb = SummaryWriter(logdir=str(Path(run_dir) / "tb"), purge_step=purge)

    def _append(self, line: str) -> None:
        self._file.write(line)
        self._file.flush()
        os.fsync(self._file.fileno())

    def write(self, row: Mapping[str, float | int]) -> None:
        """Append one epoch row (one write, flushed and fsynced) and its TensorBoard
        scalars (and W&B's)."""
        self._append(_csv_line(self.columns, row))
        step = int(row["env_steps"])
        for key in self.columns:
            if key not in INDEX_COLUMNS and math.isfinite(float(row[key])):
                self._tb.add_scalar(key, float(row[key]), global_step=step)
        self._tb.flush()
        if self._wandb is not None:
            self._wandb.write(row)

    def close(self) -> None:
        self._file.close()
        self._tb.close()
        if self._wandb is not None:
            self._wandb.close()


ProgressMode = Literal["auto", "bar", "lines", "off"]


def _fmt(x: float | None, spec: str = ".1f") -> str:
    return "-" if x is None or not math.isfinite(x) else format(x, spec)


class Display:
    """What the terminal shows while training.

    `bar`: a tqdm bar over env steps with ETA and the latest return, cost and multiplier
    (of the first seed); `lines`: one line per epoch and seed; `off`: nothing. `auto` is
    `bar` when stdout is a terminal and `lines` otherwise (a log file, nohup, a batch job).
    The cost shown is the one the task's limit applies to: `cost_kind` "discounted_cost" or
    "cost" (summed).
    """

    def __init__(
        self,
        mode: ProgressMode,
        total: int,
        initial: int,
        cost_kind: str = "cost",
        stream: TextIO | None = None,
        seeds: list[int] | None = None,
    ) -> None:
        stream = stream or sys.stdout
        self.cost_kind = cost_kind
        self.multi_seed = seeds is not None and len(seeds) > 1
        if mode == "auto":
            mode = "bar" if stream.isatty() else "lines"
        self.mode = mode
        self.stream = stream
        self._bar: tqdm[Any] | None = None
        if mode == "bar":
            self._bar = tqdm(
                total=total,
                initial=initial,
                unit="step",
                dynamic_ncols=True,
                smoothing=0.05,
                file=stream,
                desc="train",
            )
        # fixed order of the fields after the bar; "-" until a value is known
        self._status: dict[str, str] = dict.fromkeys(("ret", "cost", "lam", "eval"), "-")

    def step(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def status(
        self,
        episode_return: float | None = None,
        episode_cost: float | None = None,
        multiplier: float | None = None,
        eval_return: float | None = None,
        eval_cost: float | None = None,
    ) -> None:
        """Update the fields shown after the bar (None leaves a field as it was): the latest
        training episode's return and cost, the multiplier, the evaluation return/cost."""
        if episode_return is not None:
            self._status["ret"] = _fmt(episode_return)
        if episode_cost is not None:
            self._status["cost"] = _fmt(episode_cost)
        if multiplier is not None:
            self._status["lam"] = _fmt(multiplier, ".3g")
        if eval_return is not None:
            self._status["eval"] = f"{_fmt(eval_return)}/{_fmt(eval_cost)}"
        if self._bar is not None:
            self._bar.set_postfix(self._status, refresh=False)

    def epoch(self, row: Mapping[str, float | int], seed: int | None = None) -> None:
        """One line for an epoch's row (of `seed`, named when the run has several)."""
        if self.mode == "lines":
            who = f"seed {seed}  " if self.multi_seed and seed is not None else ""
            print(
                f"{who}epoch {row['epoch']:>4}  steps {row['env_steps']:>8}  "
                f"return {_fmt(row['train/episode_return'])}  "
                f"cost {_fmt(row[f'train/episode_{self.cost_kind}'])}  "
                f"eval {_fmt(row['eval/return'])} / {_fmt(row[f'eval/{self.cost_kind}'])}  "
                f"lam {_fmt(row.get('train/multiplier'), '.3g')}  "
                f"{_fmt(row['time/env_steps_per_s'])} steps/s  "
                f"{_fmt(row['time/updates_per_s'])} updates/s",
                file=self.stream,
                flush=True,
            )

    def message(self, text: str) -> None:
        """Print a line without breaking the bar."""
        if self._bar is not None:
            self._bar.write(text, file=self.stream)
        elif self.mode != "off":
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
