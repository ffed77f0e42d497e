"""Plot return and cost against env steps for one or more runs.

    python -m experiments.plot runs/algd-HalfCheetahVelocity/* --out fig.png

Runs that share a configuration (everything but the seed and bookkeeping flags) are drawn
as one curve: the mean over seeds with a shaded band of ± one standard deviation. The
cost panel shows the task's limit as a dashed line. One column per task.
"""

from __future__ import annotations

import math
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import tyro

from algd_jax.logging_utils import read_progress
from algd_jax.train_config import GROUP_FILE, RunError, load_run_config

#: Config fields that do not change what a run computes (seeds are what a band averages).
IGNORED_FIELDS = {
    "seed",
    "run_dir",
    "resume",
    "progress",
    "keep_checkpoints",
    "total_steps",
    "list_tasks",
    "list_algos",
    "seeds",
    "seed_axis",
}


@dataclass(frozen=True)
class PlotArgs:
    """Plot return and cost curves of training runs (mean ± std over seeds)."""

    run_dirs: tyro.conf.Positional[tuple[Path, ...]]
    """Run directories written by experiments.run (a multi-seed run stands for its seeds)."""
    out: Path = Path("fig.png")
    """Image file to write (the format follows the suffix: png, pdf, svg)."""
    source: Literal["eval", "train"] = "eval"
    """`eval`: the deterministic evaluation episodes; `train`: the training episodes."""


@dataclass
class Run:
    path: Path
    config: dict[str, Any]
    task_spec: dict[str, Any]
    rows: list[dict[str, str]]


def expand(paths: tuple[Path, ...]) -> list[Path]:
    """Run directories, with a multi-seed run directory replaced by its seeds' directories."""
    out: list[Path] = []
    for path in paths:
        if (path / GROUP_FILE).is_file() and not (path / "config.json").is_file():
            out.extend(sorted(p.parent for p in path.glob("seed*/config.json")))
        else:
            out.append(path)
    return out


def load_run(path: Path) -> Run:
    """A run's config and progress rows; `RunError` if it is not a run or has no rows."""
    data = load_run_config(path)
    if not data or "task_spec" not in data:
        raise RunError(f"{path}: config.json does not describe a run")
    rows = read_progress(path / "progress.csv")
    if not rows:
        raise RunError(f"{path}: no progress.csv rows yet (the first epoch has not ended)")
    return Run(path, data["config"], data["task_spec"], rows)


def _group_key(run: Run) -> str:
    relevant = {k: v for k, v in run.config.items() if k not in IGNORED_FIELDS}
    return repr(sorted(relevant.items()))


def _flatten(config: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in config.items() if k != "hparams" and k not in IGNORED_FIELDS}
    out.update(config.get("hparams", {}))
    return out


def _labels(groups: dict[str, list[Run]]) -> dict[str, str]:
    """The agent name, plus the settings that tell groups of the same task apart."""
    flat = {key: _flatten(runs[0].config) for key, runs in groups.items()}
    labels = {}
    for key, cfg in flat.items():
        same_task = [f for k, f in flat.items() if f["task"] == cfg["task"]]
        differing = sorted(
            name
            for name in cfg
            if name not in ("algo", "task") and any(f.get(name) != cfg[name] for f in same_task)
        )
        extra = ", ".join(f"{name}={cfg[name]}" for name in differing)
        seeds = len(groups[key])
        labels[key] = (
            f"{cfg['algo']}{' (' + extra + ')' if extra else ''}, "
            f"{seeds} seed{'s' if seeds > 1 else ''}"
        )
    return labels


def _column(rows: list[dict[str, str]], name: str) -> np.ndarray:
    return np.array([float(r[name]) if r[name] != "" else math.nan for r in rows])


def aggregate(runs: list[Run], column: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(env steps, mean, std) over runs on the env steps every run has logged."""
    steps = sorted(set.intersection(*({int(r["env_steps"]) for r in run.rows} for run in runs)))
    values = []
    for run in runs:
        by_step = {int(r["env_steps"]): r for r in run.rows}
        values.append(_column([by_step[s] for s in steps], column))
    stacked = np.stack(values)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # columns that are NaN in every run
        return np.array(steps), np.nanmean(stacked, 0), np.nanstd(stacked, 0)


def plot(args: PlotArgs) -> Path:
    """Draw the figure and write it to `args.out`; returns that path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not args.run_dirs:
        raise RunError("give at least one run directory")
    runs = [load_run(Path(p)) for p in expand(args.run_dirs)]
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(_group_key(run), []).append(run)
    labels = _labels(groups)
    tasks = list(dict.fromkeys(run.config["task"] for run in runs))

    fig, axes = plt.subplots(
        2, len(tasks), figsize=(5.5 * len(tasks), 6.5), squeeze=False, sharex="col"
    )
    prefix = "eval/" if args.source == "eval" else "train/episode_"
    for col, task in enumerate(tasks):
        ax_ret, ax_cost = axes[0, col], axes[1, col]
        spec = next(r.task_spec for r in runs if r.config["task"] == task)
        discounted = spec["eval_cost"] == "discounted"
        cost_name = "discounted_cost" if discounted else "cost"
        limit = spec["cost_budget"] if discounted else spec["episode_cost_limit"]
        for key, members in groups.items():
            if members[0].config["task"] != task:
                continue
            for ax, name in ((ax_ret, "return"), (ax_cost, cost_name)):
                x, mean, std = aggregate(members, prefix + name)
                (line,) = ax.plot(x, mean, label=labels[key])
                if len(members) > 1:
                    ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.2)
        ax_cost.axhline(limit, color="black", linestyle="--", linewidth=1, label="cost limit")
        ax_ret.set_title(task)
        ax_ret.set_ylabel(f"{args.source} return")
        cost_label = "discounted cost" if discounted else "episode cost"
        ax_cost.set_ylabel(f"{args.source} {cost_label}")
        ax_cost.set_xlabel("environment steps")
        for ax in (ax_ret, ax_cost):
            ax.grid(alpha=0.3)
        ax_cost.legend(fontsize="small")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    plt.close(fig)
    return args.out


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = tyro.cli(PlotArgs, args=argv, prog="python -m experiments.plot")
    try:
        out = plot(args)
    except RunError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
