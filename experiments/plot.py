"""Plot return and cost (and the multiplier and violation) against env steps for runs.

    python -m experiments.plot runs/algd-HalfCheetahVelocity/* --out fig.png
    python -m experiments.plot runs/lgd-X runs/algd-X --panels return,cost,multiplier,violation

Runs that share a configuration (everything but the seed and bookkeeping flags) are drawn
as one curve: the mean over seeds with a shaded band of ± one standard deviation, in one
colour on every panel. The cost panel shows the task's limit as a dashed line. One column
per task, one row per panel. `--panels` chooses the rows (the paper's Fig. 2 is
`return,multiplier,violation`): `return` and `cost` are the evaluation (or training)
episodes', `multiplier` is the `train/multiplier` column (lambda, the epoch's mean over
updates) and `violation` is `max(0, train/violation)`, the epoch's mean of `qc_risk - h` on
the replay batches, clipped at zero like the paper's `max(0, c - h)`.
"""

from __future__ import annotations

import math
import os
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import tyro

from algd_jax.judging import judged_column
from algd_jax.run_files import read_progress, read_run_config
from algd_jax.train_config import GROUP_FILE, RunError, parse_args

#: Rows `--panels` may ask for, in any order.
PANELS = ("return", "cost", "multiplier", "violation")

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
    panels: str = "return,cost"
    """Comma-separated rows: any of return, cost, multiplier, violation."""


def check_image_out(out: Path, flag: str = "--out") -> None:
    """Refuse, before any slow work, an image path matplotlib cannot write: an unknown
    suffix, or a folder that is a file or cannot be written (`RunError`, one line)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    formats = plt.figure().canvas.get_supported_filetypes()
    plt.close("all")
    suffix = out.suffix.lstrip(".").lower()
    if suffix not in formats:
        raise RunError(
            f"{flag} {out}: unknown image format {suffix or '(no suffix)'!r}; use one of "
            f"{', '.join(sorted(formats))}"
        )
    folder = out.absolute().parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise RunError(f"{flag} {out}: {folder} is a file, not a folder; choose another --out")
    if not os.access(folder, os.W_OK):
        raise RunError(f"cannot write {out} ({folder} is not writable); choose a writable {flag}")


def parse_panels(text: str) -> list[str]:
    """`"return,cost"` -> `["return", "cost"]`; `RunError` for an unknown or repeated one."""
    names = [p.strip() for p in text.split(",") if p.strip()]
    if not names:
        raise RunError(f"--panels needs at least one of {', '.join(PANELS)}")
    for name in names:
        if name not in PANELS:
            raise RunError(f"--panels {name!r}: choose from {', '.join(PANELS)}")
    if len(set(names)) != len(names):
        raise RunError(f"--panels {text!r} names a panel twice")
    return names


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
    data = read_run_config(path).data  # validated, as every reader of a run's files
    if "task_spec" not in data:
        raise RunError(f"{path}: config.json does not describe a run (no task_spec)")
    rows = read_progress(path / "progress.csv")
    if not rows:
        raise RunError(f"{path}: no progress.csv rows yet (the first epoch has not ended)")
    return Run(path, data["config"], data["task_spec"], rows)


def _group_key(run: Run) -> str:
    relevant = {k: v for k, v in run.config.items() if k not in IGNORED_FIELDS}
    return repr(sorted(relevant.items()))


def group_runs(runs: list[Run]) -> dict[str, list[Run]]:
    """Runs grouped by configuration (seeds of one setting together), in first-seen order."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(_group_key(run), []).append(run)
    return groups


def _flatten(config: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in config.items() if k != "hparams" and k not in IGNORED_FIELDS}
    out.update(config.get("hparams", {}))
    return out


def _labels(groups: dict[str, list[Run]]) -> dict[str, str]:
    """The agent name, plus the settings that tell groups of the same task apart: loop
    settings against every group of the task, an algorithm's options against the groups
    of the same algorithm (another algorithm's options do not tell anything apart)."""
    flat = {key: _flatten(runs[0].config) for key, runs in groups.items()}
    options = {key: set(runs[0].config.get("hparams", {})) for key, runs in groups.items()}
    labels = {}
    for key, cfg in flat.items():
        same_task = [f for k, f in flat.items() if f["task"] == cfg["task"]]
        same_algo = [f for f in same_task if f["algo"] == cfg["algo"]]
        differing = sorted(
            name
            for name in cfg
            if name not in ("algo", "task")
            and any(
                f.get(name) != cfg[name] for f in (same_algo if name in options[key] else same_task)
            )
        )
        extra = ", ".join(f"{name}={cfg[name]}" for name in differing)
        seeds = len(groups[key])
        labels[key] = (
            f"{cfg['algo']}{' (' + extra + ')' if extra else ''}, "
            f"{seeds} seed{'s' if seeds > 1 else ''}"
        )
    return labels


def _column(rows: list[dict[str, str]], name: str) -> np.ndarray:
    """A column as floats (NaN where empty, or where the run does not write the column)."""
    return np.array([float(r[name]) if r.get(name, "") != "" else math.nan for r in rows])


#: Columns that stand in for `multiplier` and `violation` in a run that logs a quantity of
#: another kind under its own name (RCRL: the state-wise multiplier lambda(s) and the
#: feasibility value Q_h(s, pi(s)), whose limit is 0, not h), with the axis label's words.
STAND_INS = {
    "train/multiplier": ("train/multiplier_state_mean", "mean state-wise lambda(s)"),
    "train/violation": ("train/feasibility_value", "max(0, feasibility value Q_h(s, pi))"),
}


def panel_column(runs: list[Run], column: str) -> tuple[str, str | None]:
    """The column a group of runs is drawn from for a panel's `column`, and the words of a
    stand-in (None when the runs log `column` itself)."""
    logged = set(runs[0].rows[0]) if runs[0].rows else set()
    if column not in logged and column in STAND_INS and STAND_INS[column][0] in logged:
        return STAND_INS[column]
    return column, None


def aggregate(
    runs: list[Run], column: str, floor: float | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(env steps, mean, std) over runs on the env steps every run has logged; with `floor`,
    each run's values are clipped below at it first."""
    steps = sorted(set.intersection(*({int(r["env_steps"]) for r in run.rows} for run in runs)))
    values = []
    for run in runs:
        by_step = {int(r["env_steps"]): r for r in run.rows}
        column_values = _column([by_step[s] for s in steps], column)
        values.append(column_values if floor is None else np.maximum(column_values, floor))
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
    check_image_out(args.out)
    panels = parse_panels(args.panels)
    runs = [load_run(Path(p)) for p in expand(args.run_dirs)]
    groups = group_runs(runs)
    labels = _labels(groups)
    # one colour per group (e.g. per algorithm), the same on every panel and task
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    colours = {key: cycle[n % len(cycle)] for n, key in enumerate(groups)}
    tasks = list(dict.fromkeys(run.config["task"] for run in runs))

    fig, axes = plt.subplots(
        len(panels),
        len(tasks),
        figsize=(5.5 * len(tasks), 3.25 * len(panels)),
        squeeze=False,
        sharex="col",
    )
    prefix = "eval/" if args.source == "eval" else "train/episode_"
    for col, task in enumerate(tasks):
        spec = next(r.task_spec for r in runs if r.config["task"] == task)
        cost_name, limit, cost_label = judged_column(spec)
        rows = {
            "return": (prefix + "return", f"{args.source} return"),
            "cost": (prefix + cost_name, f"{args.source} {cost_label}"),
            "multiplier": ("train/multiplier", "multiplier lambda"),
            "violation": ("train/violation", "violation max(0, qc_risk - h)"),
        }
        stand_ins: dict[str, set[str]] = {panel: set() for panel in panels}
        for key, members in groups.items():
            if members[0].config["task"] != task:
                continue
            for row, panel in enumerate(panels):
                ax = axes[row, col]
                column, stand_in = panel_column(members, rows[panel][0])
                if stand_in is not None:
                    stand_ins[panel].add(f"{stand_in} ({members[0].config['algo']})")
                floor = 0.0 if panel == "violation" else None
                x, mean, std = aggregate(members, column, floor)
                marker = "o" if len(x) == 1 else None  # a lone epoch is a point, not a line
                ax.plot(x, mean, label=labels[key], color=colours[key], marker=marker)
                if len(members) > 1:
                    ax.fill_between(x, mean - std, mean + std, color=colours[key], alpha=0.2)
        for row, panel in enumerate(panels):
            ax = axes[row, col]
            if panel == "cost":
                ax.axhline(limit, color="black", linestyle="--", linewidth=1, label="cost limit")
            ax.set_ylabel("\n".join([rows[panel][1], *sorted(stand_ins[panel])]))
            ax.grid(alpha=0.3)
        axes[0, col].set_title(task)
        axes[-1, col].set_xlabel("environment steps")
        axes[panels.index("cost") if "cost" in panels else -1, col].legend(fontsize="small")
    fig.tight_layout()
    try:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.out, dpi=120)
    except (OSError, ValueError) as err:
        reason = getattr(err, "strerror", None) or str(err).splitlines()[0]
        raise RunError(f"cannot write {args.out} ({reason}); choose a writable --out") from None
    plt.close(fig)
    return args.out


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parse_args(PlotArgs, argv, prog="python -m experiments.plot")
        out = plot(args)
    except RunError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
