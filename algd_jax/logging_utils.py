"""Per-epoch logs of a training run: `progress.csv`, TensorBoard scalars, terminal progress.

One row per epoch goes to both `progress.csv` and TensorBoard (tensorboardX event files
under `tb/`, scalar tags namespaced `train/...`, `eval/...`, `time/...`, x-axis = env
steps). On resume the logs are cut back to the checkpoint being resumed, so that a row
written after the last checkpoint of an interrupted run is neither lost nor duplicated.
"""

from __future__ import annotations

import csv
import math
import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, TextIO

from tensorboardX import SummaryWriter
from tqdm import tqdm

from algd_jax.train_config import RunError

#: Columns that are not TensorBoard scalars (the x-axis and counters).
INDEX_COLUMNS = ("epoch", "env_steps", "updates", "episodes")
#: Columns whose values depend on the machine's speed, not on the run's numbers.
TIMING_PREFIX = "time/"


def read_progress(path: Path) -> list[dict[str, str]]:
    """Rows of a `progress.csv` as dicts of strings (empty list if there is no file)."""
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


class ProgressLog:
    """Writes epoch rows to `run_dir/progress.csv` and `run_dir/tb/`.

    Args:
        run_dir: the run directory.
        columns: every column, in order; rows must provide exactly these keys.
        resume_step: when continuing a run, the env step of the checkpoint resumed from:
            rows after it are dropped from the CSV and TensorBoard.
    """

    def __init__(
        self, run_dir: Path, columns: Iterable[str], resume_step: int | None = None
    ) -> None:
        self.path = Path(run_dir) / "progress.csv"
        self.columns = list(columns)
        if resume_step is not None:
            self._truncate(resume_step)
        new_file = not self.path.is_file()
        self._file: TextIO = self.path.open("a", newline="")
        self._csv = csv.DictWriter(self._file, fieldnames=self.columns)
        if new_file:
            self._csv.writeheader()
            self._file.flush()
        # purge_step drops events at steps > resume_step that an interrupted session had
        # written after its last checkpoint.
        purge = None if resume_step is None else resume_step + 1
        self._tb = SummaryWriter(logdir=str(Path(run_dir) / "tb"), purge_step=purge)

    def _truncate(self, step: int) -> None:
        rows = read_progress(self.path)
        if not rows:
            return
        if list(rows[0]) != self.columns:
            raise RunError(
                f"{self.path} has other columns than this version writes; resume the run "
                f"with the version of algd-jax that started it"
            )
        keep = [r for r in rows if int(r["env_steps"]) <= step]
        if len(keep) == len(rows):
            return
        tmp = self.path.with_suffix(".csv.tmp")
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.columns)
            writer.writeheader()
            writer.writerows(keep)
        os.replace(tmp, self.path)  # atomic: the old file stays whole until the new one is

    def write(self, row: Mapping[str, float | int]) -> None:
        """Append one epoch row (flushed to disk at once) and its TensorBoard scalars."""
        self._csv.writerow({k: row[k] for k in self.columns})
        self._file.flush()
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
