"""A sweep's grid: tasks x algorithms x hyper-parameter axes x blocks of seeds, as jobs.

A *cell* is one (task, algorithm, axis values); a *job* is one cell and one block of its
seeds, trained in one `experiments.run` process through `--seeds` (one compiled program).
Folders are deterministic and readable, never timestamps:

    <out>/runs/<task>/<algo>[/<axis>=<value>,...]/seeds<a>-<b>/seed<k>/   # one job's run
    <out>/logs/<task>__<algo>[__<axes>]__seeds<a>-<b>.log                  # its terminal

so the same cell and seeds always map to the same folder and two jobs never share one.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from algd_jax.algorithms import UnknownAlgorithmError, get_algorithm
from algd_jax.train_config import RunError, TrainConfig, check_seeds

#: Loop fields that are not grid axes: the sweep sets them, or they do not change numbers.
NOT_AXES = {
    "task",
    "algo",
    "seed",
    "seeds",
    "run_dir",
    "resume",
    "progress",
    "list_tasks",
    "list_algos",
    "hparams",
    "total_steps",
    "keep_checkpoints",
    "wandb",
    "wandb_group",
}
#: Run flags the sweep writes itself into each job's command line.
RESERVED_FLAGS = {
    "--task": "--tasks",
    "--algo": "--algos",
    "--agent": "--algos",
    "--seed": "--seeds",
    "--run-dir": "--out",
    "--resume": "re-running the same sweep command",
    "--progress": "nothing (jobs log one line per epoch)",
    "--list-tasks": "python -m experiments.run --list-tasks",
    "--list-algos": "python -m experiments.run --list-algos",
}
#: Run flags that may change between two runs of one sweep (a longer --total-steps
#: continues finished runs; logging to W&B changes no number); every other flag is part of
#: a cell's identity.
RESUMABLE_FLAGS = ("--total-steps", "--keep-checkpoints", "--wandb", "--wandb-group")


def flag(name: str) -> str:
    """`mc_samples` or `mc-samples` -> `--mc-samples`."""
    return "--" + name.removeprefix("--").replace("_", "-")


def loop_axes() -> list[str]:
    """Loop options that may be grid axes (e.g. `cost-limit`, `updates-per-step`)."""
    return [flag(f.name)[2:] for f in dataclasses.fields(TrainConfig) if f.name not in NOT_AXES]


def axis_names(algo: str) -> list[str]:
    """Every axis an algorithm's cells may vary: its own options and the loop's."""
    return [flag(n)[2:] for n in get_algorithm(algo).option_names()] + loop_axes()


@dataclass(frozen=True)
class Axis:
    """One `--grid` axis: a flag name (`mc-samples`), its values as command-line text, and
    the algorithm it is scoped to (`algd:mc-samples=2,4`; None: every algorithm)."""

    name: str
    values: tuple[str, ...]
    algo: str | None = None


def parse_axis(text: str) -> Axis:
    """`mc-samples=2,4,8` or `algd:mc-samples=2,4` -> `Axis`; `RunError` if malformed."""
    scope, _, rest = text.rpartition(":") if ":" in text.split("=", 1)[0] else ("", "", text)
    name, eq, values = rest.partition("=")
    name = name.strip().removeprefix("--").replace("_", "-")
    parts = tuple(v.strip() for v in values.split(","))
    if not eq or not name or not all(parts):
        raise RunError(f"--grid {text!r}: write an axis as NAME=V1,V2,... (e.g. mc-samples=2,4)")
    if len(set(parts)) != len(parts):
        raise RunError(f"--grid {text!r} lists a value twice")
    return Axis(name, parts, scope.strip() or None)


def parse_seeds(tokens: Sequence[str]) -> list[int]:
    """`["0-9"]`, `["0", "1", "5"]` or `["0-3,7"]` -> the seeds, in order."""
    seeds: list[int] = []
    for token in tokens:
        for part in token.split(","):
            m = re.fullmatch(r"(\d+)(?:-(\d+))?", part.strip())
            if not m:
                raise RunError(f"--seeds {part!r}: give seeds as K, A-B or A-B,K (e.g. 0-9)")
            lo, hi = int(m[1]), int(m[2] if m[2] is not None else m[1])
            if hi < lo:
                raise RunError(f"--seeds {part}: the range ends before it starts")
            seeds.extend(range(lo, hi + 1))
    check_seeds(seeds)
    return seeds


def flag_values(tokens: Sequence[str]) -> dict[str, list[str]]:
    """Run flags as `{--flag: [values]}` (`--x=1` and `--x 1` alike), in order."""
    out: dict[str, list[str]] = {}
    current: str | None = None
    for token in tokens:
        if token.startswith("--"):
            name, eq, value = token.partition("=")
            out[name] = [value] if eq else []
            current = None if eq else name
        elif current is not None:
            out[current].append(token)
        else:
            raise RunError(f"run flag value {token!r} follows no flag")
    return out


def check_run_flags(run_flags: Sequence[str], axes: Sequence[Axis]) -> None:
    """Refuse run flags the sweep sets itself, and an axis also given as a plain flag."""
    given = flag_values(run_flags)
    for name in given:
        if name in RESERVED_FLAGS:
            raise RunError(f"{name} is set by the sweep for each job; use {RESERVED_FLAGS[name]}")
    for axis in axes:
        if flag(axis.name) in given:
            raise RunError(
                f"{flag(axis.name)} is both a run flag and a --grid axis; give it only once"
            )


def check_axes(axes: Sequence[Axis], algos: Sequence[str]) -> None:
    """Each axis must apply to every algorithm it is scoped to (one line naming the first
    that it does not, and how to scope it)."""
    seen: set[tuple[str | None, str]] = set()
    for axis in axes:
        if (axis.algo, axis.name) in seen:
            raise RunError(f"--grid names the axis {axis.name} twice")
        seen.add((axis.algo, axis.name))
        if axis.algo is not None and axis.algo not in algos:
            raise RunError(
                f"--grid {axis.algo}:{axis.name}: {axis.algo} is not among --algos "
                f"{' '.join(algos)}"
            )
        for algo in [axis.algo] if axis.algo is not None else algos:
            names = axis_names(algo)
            if axis.name not in names:
                having = [a for a in algos if axis.name in axis_names(a)]
                fix = (
                    f"scope it to {', '.join(having)} (--grid {having[0]}:{axis.name}=...)"
                    if having
                    else "see python -m experiments.run --algo " + algo + " --help"
                )
                raise RunError(f"--grid {axis.name} is not an option of {algo}; {fix}")


def check_algos(algos: Sequence[str]) -> None:
    for algo in algos:
        try:
            get_algorithm(algo)
        except UnknownAlgorithmError as err:
            raise RunError(str(err)) from None


def _safe(text: str) -> str:
    """A value as it may appear in a folder name."""
    return re.sub(r"[^A-Za-z0-9._+-]", "_", text)


def cell_folder(task: str, algo: str, axes: Sequence[tuple[str, str]]) -> Path:
    """`<task>/<algo>[/<axis>=<value>,...]` (axes in the order given)."""
    folder = Path(_safe(task)) / _safe(algo)
    if axes:
        folder = folder / ",".join(f"{n}={_safe(v)}" for n, v in axes)
    return folder


def seeds_label(seeds: Sequence[int]) -> str:
    """`seeds0-9` for a contiguous block, `seeds0_2_5` otherwise."""
    s = list(seeds)
    if len(s) > 1 and s == list(range(s[0], s[-1] + 1)):
        return f"seeds{s[0]}-{s[-1]}"
    return "seeds" + "_".join(map(str, s))


@dataclass(frozen=True)
class Job:
    """One `experiments.run` process: a cell and a block of its seeds.

    Attributes:
        task, algo: the cell's task and algorithm.
        axes: the cell's `(axis, value)` pairs, in `--grid` order.
        seeds: the seeds this job trains together.
        run_flags: the flags every job of the sweep shares (e.g. `--total-steps 20000`).
        out: the sweep's folder (absolute).
    """

    task: str
    algo: str
    axes: tuple[tuple[str, str], ...]
    seeds: tuple[int, ...]
    run_flags: tuple[str, ...]
    out: Path

    @property
    def cell(self) -> str:
        return cell_folder(self.task, self.algo, self.axes).as_posix()

    @property
    def id(self) -> str:
        """`<cell>/seeds<...>`: the job's run directory relative to `<out>/runs`."""
        return f"{self.cell}/{seeds_label(self.seeds)}"

    @property
    def run_dir(self) -> Path:
        return self.out / "runs" / self.id

    @property
    def log(self) -> Path:
        return self.out / "logs" / (self.id.replace("/", "__") + ".log")

    @property
    def total_steps(self) -> int | None:
        """`--total-steps` of the run flags (None: the run's own default)."""
        values = flag_values(self.run_flags).get("--total-steps")
        try:
            return int(values[0]) if values else None
        except ValueError:
            return None

    def identity(self) -> dict[str, list[str]]:
        """The flags that decide this job's numbers (what a re-run must not change)."""
        values = flag_values(self.flags())
        return {k: v for k, v in values.items() if k not in RESUMABLE_FLAGS}

    def flags(self) -> list[str]:
        """Task, algorithm, shared run flags and axis values (no seeds or paths)."""
        out = ["--task", self.task, "--algo", self.algo, *self.run_flags]
        for name, value in self.axes:
            out += [flag(name), value]
        return out

    def command(self, resume: bool, python: str | None = None) -> list[str]:
        """The job's command line: a new run in `run_dir`, or `--resume` of it."""
        where = ["--resume", str(self.run_dir)] if resume else ["--run-dir", str(self.run_dir)]
        return [
            python or sys.executable,
            "-m",
            "experiments.run",
            *self.flags(),
            "--seeds",
            *map(str, self.seeds),
            *where,
            "--progress",
            "lines",
        ]


def expand(
    tasks: Sequence[str],
    algos: Sequence[str],
    seeds: Sequence[int],
    axes: Sequence[Axis],
    run_flags: Sequence[str],
    out: Path,
    seeds_per_job: int | None = None,
) -> list[Job]:
    """Every job of the grid, task-major, after checking algorithms, axes and flags."""
    if not tasks:
        raise RunError("--tasks needs at least one task")
    if not algos:
        raise RunError("--algos needs at least one algorithm")
    for name, values in (("--tasks", tasks), ("--algos", algos)):
        if len(set(values)) != len(values):
            raise RunError(f"{name} lists a name twice")
    if seeds_per_job is not None and seeds_per_job < 1:
        raise RunError(f"--seeds-per-job must be a positive integer, got {seeds_per_job}")
    check_algos(algos)
    check_axes(axes, algos)
    check_run_flags(run_flags, axes)
    block = seeds_per_job or len(seeds)
    blocks = [tuple(seeds[i : i + block]) for i in range(0, len(seeds), block)]
    out = out.absolute()
    jobs = []
    for task, algo in itertools.product(tasks, algos):
        mine = [a for a in axes if a.algo in (None, algo)]
        for values in itertools.product(*(a.values for a in mine)):
            cell_axes = tuple((a.name, v) for a, v in zip(mine, values, strict=True))
            for seed_block in blocks:
                jobs.append(Job(task, algo, cell_axes, seed_block, tuple(run_flags), out))
    return jobs


def first_difference(old: dict[str, list[str]], new: dict[str, list[str]]) -> str | None:
    """The first flag whose values differ between two `identity()`s, as `--flag` text."""
    for name in [*new, *(k for k in old if k not in new)]:
        if old.get(name) != new.get(name):
            return name
    return None
