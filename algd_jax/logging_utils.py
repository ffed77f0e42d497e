"""Per-epoch logs of a training run: `progress.csv`, TensorBoard scalars, terminal progress.

One row per epoch goes to both `progress.csv` and TensorBoard (tensorboardX event files
under `tb/`, scalar tags namespaced `train/...`, `eval/...`, `time/...`, x-axis = env
steps). On resume the logs are cut back to the checkpoint being resumed (only once training really
continues), so that a row written after the last checkpoint of an interrupted run is neither
lost nor duplicated.
"""

from __future__ import annotations

import csv
import io
import math
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TextIO

from tensorboardX import SummaryWriter
from tqdm import tqdm

from algd_jax.run_files import read_progress, read_progress_file
from algd_jax.train_config import RunError

__all__ = ["Display", "LogBehindCheckpoint", "ProgressLog", "ResumePlan", "plan_resume"]
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


class ProgressLog:
    """Writes epoch rows to `run_dir/progress.csv` and `run_dir/tb/`.

    Each row is one whole line written with a single call, flushed and fsynced, so a crash
    leaves at most one partial last line (which `plan_resume` finds and a resume cuts).

    Args:
        run_dir: the run directory.
        columns: every column, in order; rows must provide exactly these keys.
        resume: when continuing a run, the plan made by `plan_resume`: the CSV is rewritten
            to its kept rows, and TensorBoard events after the checkpoint are purged.
        resume_step: the env step of the checkpoint resumed from.
    """

    def __init__(
        self,
        run_dir: Path,
        columns: Iterable[str],
        resume: ResumePlan | None = None,
        resume_step: int | None = None,
    ) -> None:
        self.path = Path(run_dir) / "progress.csv"
        self.columns = list(columns)
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
        scalars."""
        self._append(_csv_line(self.columns, row))
        step = int(row["env_steps"])
        for key in self.columns:
            if key not in INDEX_COLUMNS and math.isfinite(float(row[key])):
                self._tb.add_scalar(key, float(row[key]), global_step=step)
        self._tb.flush()

    def close(self) -> None:
        self._file.close()
        self._tb.close()


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
