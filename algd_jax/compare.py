"""Statistics and the comparison figure of a sweep (`experiments.compare`).

Per task and algorithm (or per value of an ablation axis) over seeds:

- the final evaluation return and judged cost (each seed's mean over its last K evaluated
  epochs) with a 95% percentile bootstrap confidence interval of the mean over seeds;
- the fraction of seeds whose final cost is within the task's limit, and the mean cost
  divided by that limit (with the interval divided likewise);
- the probability that the reference algorithm's final return beats another's:
  P(X > Y) + P(X = Y) / 2 = U / (n_x n_y) from the Mann-Whitney U test, with its two-sided
  p-value;
- across tasks, the interquartile mean (IQM, `trim_mean(x, 0.25)`) of the min-max
  normalised final return, with a stratified bootstrap interval (seeds resampled within
  each task).

Every interval is `scipy.stats.bootstrap(..., confidence_level=0.95, method="percentile",
n_resamples=R, random_state=np.random.default_rng(S))` with a fresh generator of seed S for
each interval, so the numbers can be recomputed from the per-seed CSV.
"""

from __future__ import annotations

import csv
import json
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from algd_jax.judging import judged_column
from algd_jax.logging_utils import read_progress
from algd_jax.train_config import GROUP_FILE, RunError, load_run_config

#: Config fields that do not change what a run computes (seeds are what the statistics
#: are over; the rest is bookkeeping).
IGNORED_FIELDS = {
    "seed",
    "seeds",
    "run_dir",
    "resume",
    "progress",
    "keep_checkpoints",
    "total_steps",
    "list_tasks",
    "list_algos",
    "seed_axis",
    "preset",
}
CONFIDENCE = 0.95


@dataclass
class SeedRun:
    """One seed's run: its directory, config, task spec and progress rows."""

    path: Path
    config: dict[str, Any]
    task_spec: dict[str, Any]
    rows: list[dict[str, str]]

    @property
    def task(self) -> str:
        return str(self.config["task"])

    @property
    def algo(self) -> str:
        return str(self.config["algo"])

    @property
    def seed(self) -> int:
        return int(self.config["seed"])

    def setting(self, name: str) -> Any:
        """A loop or algorithm option by its flag or field name (`mc-samples`)."""
        key = name.removeprefix("--").replace("-", "_")
        if key in self.config.get("hparams", {}):
            return self.config["hparams"][key]
        if key in self.config and key != "hparams":
            return self.config[key]
        raise RunError(f"{self.path}: its config has no option {name}; choose another --by")

    def column(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(env steps, values) of a progress column, NaN where it is empty."""
        steps = np.array([int(r["env_steps"]) for r in self.rows])
        values = np.array([_float(r.get(name, "")) for r in self.rows])
        return steps, values


def _float(text: str | None) -> float:
    try:
        return float(text) if text not in (None, "") else math.nan
    except ValueError:
        return math.nan


def judged_cost(spec: dict[str, Any]) -> tuple[str, float]:
    """(cost kind, limit) of a run's task, by the one rule of `algd_jax.judging`."""
    kind, limit, _ = judged_column(spec)
    return kind, limit


def find_run_dirs(paths: Sequence[Path]) -> list[Path]:
    """Each seed's run directory under sweep folders (`manifest.json` and `runs/`),
    multi-seed run directories (`group.json`) or single runs (`config.json`)."""
    out: list[Path] = []
    for path in paths:
        path = Path(path)
        if (path / "config.json").is_file():
            out.append(path)
        elif (path / GROUP_FILE).is_file():
            out.extend(sorted(p.parent for p in path.glob("seed*/config.json")))
        elif (path / "runs").is_dir():
            found = sorted(p.parent for p in (path / "runs").rglob("config.json"))
            rank = _grid_order(path)  # the sweep's grid order; others after it
            found.sort(key=lambda d: rank.get(d, len(rank)))
            if not found:
                raise RunError(f"{path}: its runs/ folder holds no run yet")
            out.extend(found)
        elif path.exists():
            raise RunError(f"{path}: not a sweep folder, a run directory or a multi-seed run")
        else:
            raise RunError(f"{path}: no such directory")
    unique = list(dict.fromkeys(p.resolve() for p in out))
    return unique


def _grid_order(sweep: Path) -> dict[Path, int]:
    """Run directory -> its position in a sweep manifest's job order (others last)."""
    try:
        jobs = json.loads((sweep / "manifest.json").read_text()).get("jobs", {})
    except (OSError, json.JSONDecodeError, AttributeError):
        jobs = {}
    order = [Path(d) for job in jobs.values() for d in job.get("run_dirs", [])]
    return {d: i for i, d in enumerate(order)}


def load_runs(paths: Sequence[Path]) -> list[SeedRun]:
    """Every seed's run with at least one progress row (runs without rows are skipped: an
    unfinished sweep can be compared as far as it got)."""
    runs = []
    for path in find_run_dirs(paths):
        data = load_run_config(path)
        if not data or "task_spec" not in data:
            raise RunError(f"{path}: config.json does not describe a run")
        rows = read_progress(path / "progress.csv")
        if rows:
            runs.append(SeedRun(path, data["config"], data["task_spec"], rows))
    if not runs:
        raise RunError("no run has a progress.csv row yet (no epoch has ended)")
    return runs


def _flat(config: dict[str, Any]) -> dict[str, str]:
    out = {k: v for k, v in config.items() if k not in IGNORED_FIELDS and k != "hparams"}
    out.update(config.get("hparams", {}))
    return {k: json.dumps(v) for k, v in out.items()}


@dataclass
class Group:
    """The seeds of one curve: a task and a label (algorithm, or axis value)."""

    task: str
    label: str
    algo: str
    runs: list[SeedRun] = field(default_factory=list)


def group_runs(runs: Sequence[SeedRun], by: str | None = None) -> list[Group]:
    """Runs grouped per task by algorithm (plus the settings that tell two groups of one
    algorithm apart), or with `by` by the value of that axis; first-seen order."""
    keyed: dict[tuple[str, str], Group] = {}
    if by is None:
        flats = [_flat(r.config) for r in runs]
        for run, flat in zip(runs, flats, strict=True):
            same = [f for r, f in zip(runs, flats, strict=True) if r.algo == run.algo]
            differing = sorted(k for k in flat if k != "task" and len({f.get(k) for f in same}) > 1)
            label = run.algo + "".join(f" {k}={json.loads(flat[k])}" for k in differing)
            keyed.setdefault((run.task, label), Group(run.task, label, run.algo)).runs.append(run)
    else:
        algos = {r.algo for r in runs}
        name = by.removeprefix("--")
        for run in runs:
            label = f"{name}={run.setting(by)}"
            if len(algos) > 1:
                label = f"{run.algo} {label}"
            keyed.setdefault((run.task, label), Group(run.task, label, run.algo)).runs.append(run)
    for group in keyed.values():
        seeds = [r.seed for r in group.runs]
        if len(set(seeds)) != len(seeds):
            dup = next(s for s in seeds if seeds.count(s) > 1)
            paths = [str(r.path) for r in group.runs if r.seed == dup]
            raise RunError(
                f"{group.task} {group.label}: seed {dup} appears twice ({paths[0]}, "
                f"{paths[1]}); compare each set of runs on its own"
            )
        group.runs.sort(key=lambda r: r.seed)
    return list(keyed.values())


@dataclass(frozen=True)
class SeedFinal:
    """One seed's final numbers: means over its last K evaluated epochs."""

    task: str
    label: str
    algo: str
    seed: int
    env_steps: int
    ret: float
    cost: float
    limit: float
    cost_kind: str
    run_dir: str


def seed_final(group: Group, run: SeedRun, last: int) -> SeedFinal:
    kind, limit = judged_cost(run.task_spec)
    _, returns = run.column("eval/return")
    _, costs = run.column("eval/" + kind)
    evaluated = np.flatnonzero(np.isfinite(returns))
    if evaluated.size == 0:
        raise RunError(f"{run.path}: no evaluation in progress.csv (was --eval-episodes 0?)")
    chosen = evaluated[-last:]
    return SeedFinal(
        group.task,
        group.label,
        group.algo,
        run.seed,
        int(run.rows[-1]["env_steps"]),
        float(np.mean(returns[chosen])),
        float(np.mean(costs[chosen])),
        limit,
        kind,
        str(run.path),
    )


def bootstrap_ci(values: np.ndarray, resamples: int, seed: int) -> tuple[float, float]:
    """95% percentile bootstrap interval of the mean of `values` (NaN for < 2 values)."""
    x = np.asarray(values, float)
    if x.size < 2:
        return math.nan, math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # identical values: a degenerate (zero-width) interval
        res = stats.bootstrap(
            (x,),
            np.mean,
            confidence_level=CONFIDENCE,
            n_resamples=resamples,
            method="percentile",
            random_state=np.random.default_rng(seed),
        )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def prob_better(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(P(X > Y) + P(X = Y)/2, two-sided Mann-Whitney p-value) for samples x, y."""
    if len(x) == 0 or len(y) == 0:
        return math.nan, math.nan
    res = stats.mannwhitneyu(x, y, alternative="two-sided")
    return float(res.statistic) / (len(x) * len(y)), float(res.pvalue)


def _iqm(*samples: np.ndarray, axis: int = -1) -> np.ndarray:
    return stats.trim_mean(np.concatenate(samples, axis=axis), 0.25, axis=axis)


def iqm_ci(per_task: Sequence[np.ndarray], resamples: int, seed: int) -> tuple[float, float, float]:
    """(IQM, low, high) of values pooled over tasks; the interval from a stratified
    bootstrap (each task's seeds resampled on their own). NaN interval if a task has < 2."""
    pooled = np.concatenate([np.asarray(v, float) for v in per_task])
    point = float(stats.trim_mean(pooled, 0.25))
    if any(len(v) < 2 for v in per_task):
        return point, math.nan, math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = stats.bootstrap(
            tuple(np.asarray(v, float) for v in per_task),
            _iqm,
            confidence_level=CONFIDENCE,
            n_resamples=resamples,
            method="percentile",
            vectorized=True,
            random_state=np.random.default_rng(seed),
        )
    return point, float(res.confidence_interval.low), float(res.confidence_interval.high)


def normalised_returns(finals: Sequence[SeedFinal]) -> dict[tuple[str, str], np.ndarray]:
    """Per (task, label): final returns min-max normalised by all seeds of that task
    (0 = the lowest final return any group reached on the task, 1 = the highest)."""
    out: dict[tuple[str, str], np.ndarray] = {}
    for task in dict.fromkeys(f.task for f in finals):
        mine = [f for f in finals if f.task == task]
        lo, hi = min(f.ret for f in mine), max(f.ret for f in mine)
        span = hi - lo if hi > lo else math.nan
        for label in dict.fromkeys(f.label for f in mine):
            rets = np.array([f.ret for f in mine if f.label == label])
            out[(task, label)] = (rets - lo) / span
    return out


@dataclass
class Summary:
    """The statistics of one group (one table row)."""

    task: str
    label: str
    seeds: int
    env_steps: int
    ret: float
    ret_lo: float
    ret_hi: float
    cost: float
    cost_lo: float
    cost_hi: float
    limit: float
    cost_kind: str
    cost_over_limit: float
    cost_over_limit_lo: float
    cost_over_limit_hi: float
    within_limit: float
    p_reference_better: float
    mannwhitney_p: float


def summarise(
    finals: Sequence[SeedFinal], reference: str | None, resamples: int, seed: int
) -> list[Summary]:
    """One `Summary` per (task, label), in first-seen order. `reference`: the label whose
    final return is compared with every other label's of the same task."""
    out = []
    keys = list(dict.fromkeys((f.task, f.label) for f in finals))
    for task, label in keys:
        mine = [f for f in finals if (f.task, f.label) == (task, label)]
        rets = np.array([f.ret for f in mine])
        costs = np.array([f.cost for f in mine])
        limit = mine[0].limit
        ret_lo, ret_hi = bootstrap_ci(rets, resamples, seed)
        cost_lo, cost_hi = bootstrap_ci(costs, resamples, seed)
        ref = [f.ret for f in finals if (f.task, f.label) == (task, reference)]
        if reference is not None and ref and label != reference:
            p, pval = prob_better(np.array(ref), rets)
        else:
            p, pval = math.nan, math.nan
        scale = limit if limit > 0 else math.nan
        out.append(
            Summary(
                task,
                label,
                len(mine),
                min(f.env_steps for f in mine),
                float(rets.mean()),
                ret_lo,
                ret_hi,
                float(costs.mean()),
                cost_lo,
                cost_hi,
                limit,
                mine[0].cost_kind,
                float(costs.mean()) / scale,
                cost_lo / scale,
                cost_hi / scale,
                float(np.mean(costs <= limit)),
                p,
                pval,
            )
        )
    return out


def aggregate(
    finals: Sequence[SeedFinal], resamples: int, seed: int
) -> list[tuple[str, int, float, float, float]]:
    """Per label present on every task: (label, tasks, IQM of the normalised final return,
    stratified-bootstrap low, high)."""
    normalised = normalised_returns(finals)
    tasks = list(dict.fromkeys(f.task for f in finals))
    rows = []
    for label in dict.fromkeys(f.label for f in finals):
        per_task = [normalised[(t, label)] for t in tasks if (t, label) in normalised]
        if len(per_task) != len(tasks) or any(np.isnan(v).any() for v in per_task):
            continue
        rows.append((label, len(tasks), *iqm_ci(per_task, resamples, seed)))
    return rows


# -- writing ---------------------------------------------------------------------------

SEED_COLUMNS = [
    "task",
    "label",
    "algo",
    "seed",
    "env_steps",
    "return",
    "cost",
    "limit",
    "cost_kind",
    "run_dir",
]


def write_seed_csv(path: Path, finals: Sequence[SeedFinal]) -> None:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(SEED_COLUMNS)
        for f in finals:
            w.writerow(
                [f.task, f.label, f.algo, f.seed, f.env_steps, repr(f.ret), repr(f.cost)]
                + [repr(f.limit), f.cost_kind, f.run_dir]
            )


def write_table_csv(path: Path, summaries: Sequence[Summary]) -> None:
    names = list(Summary.__dataclass_fields__)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(names)
        for s in summaries:
            w.writerow([repr(v) if isinstance(v, float) else v for v in vars(s).values()])


def write_aggregate_csv(path: Path, rows: Sequence[tuple[str, int, float, float, float]]) -> None:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["label", "tasks", "iqm_normalised_return", "low", "high"])
        for label, n, point, lo, hi in rows:
            w.writerow([label, n, repr(point), repr(lo), repr(hi)])


def _ci(point: float, lo: float, hi: float, digits: int) -> str:
    if math.isnan(lo):
        return f"{point:.{digits}f}"
    return f"{point:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def markdown(
    summaries: Sequence[Summary],
    agg: Sequence[tuple[str, int, float, float, float]],
    reference: str | None,
    last: int,
) -> str:
    """The table as Markdown: one row per task and label, then the across-task IQM."""
    ref = reference or "reference"
    lines = [
        f"Final numbers: each seed's mean over its last {last} evaluation(s); mean over seeds "
        f"with a {CONFIDENCE:.0%} bootstrap interval in brackets.",
        "",
        f"| task | run | seeds | env steps | return | cost | limit | cost / limit "
        f"| within limit | P({ref} return > this) | Mann-Whitney p |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        p = "" if math.isnan(s.p_reference_better) else f"{s.p_reference_better:.2f}"
        pv = "" if math.isnan(s.mannwhitney_p) else f"{s.mannwhitney_p:.3g}"
        lines.append(
            f"| {s.task} | {s.label} | {s.seeds} | {s.env_steps} | "
            f"{_ci(s.ret, s.ret_lo, s.ret_hi, 2)} | {_ci(s.cost, s.cost_lo, s.cost_hi, 2)} "
            f"({s.cost_kind.replace('_', ' ')}) | {s.limit:.4g} | "
            f"{_ci(s.cost_over_limit, s.cost_over_limit_lo, s.cost_over_limit_hi, 2)} | "
            f"{s.within_limit:.0%} | {p} | {pv} |"
        )
    if agg:
        lines += [
            "",
            "Across tasks: interquartile mean of the min-max normalised final return "
            f"(per task, 0 = lowest and 1 = highest seed of any run), {CONFIDENCE:.0%} "
            "stratified bootstrap interval.",
            "",
            "| run | tasks | IQM normalised return |",
            "|---|---|---|",
        ]
        lines += [f"| {label} | {n} | {_ci(pt, lo, hi, 3)} |" for label, n, pt, lo, hi in agg]
    return "\n".join(lines) + "\n"


# -- the figure ------------------------------------------------------------------------


def _curve(group: Group, column: str) -> tuple[np.ndarray, np.ndarray]:
    """(env steps, [seeds, steps] values) on the steps every seed has a value at."""
    series = []
    for run in group.runs:
        steps, values = run.column(column)
        ok = np.isfinite(values)
        series.append(dict(zip(steps[ok].tolist(), values[ok].tolist(), strict=True)))
    common = sorted(set.intersection(*(set(s) for s in series))) if series else []
    return np.array(common), np.array([[s[t] for t in common] for s in series])


def _band(values: np.ndarray, resamples: int, seed: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Pointwise 95% bootstrap interval of the mean over seeds (rows), None for one seed."""
    if values.shape[0] < 2 or values.shape[1] == 0:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = stats.bootstrap(
            (values,),
            np.mean,
            axis=0,
            confidence_level=CONFIDENCE,
            n_resamples=resamples,
            method="percentile",
            random_state=np.random.default_rng(seed),
        )
    lo, hi = res.confidence_interval.low, res.confidence_interval.high
    flat = values.max(axis=0) == values.min(axis=0)  # identical seeds: no spread
    return np.where(flat, values[0], lo), np.where(flat, values[0], hi)


def draw(
    groups: Sequence[Group], out: Path, resamples: int, seed: int, title: str | None = None
) -> None:
    """The Fig. 3 layout: one column per task; rows: evaluation return, evaluation cost
    (limit dashed) against env steps, and box plots of the training episode cost over four
    equal env-step intervals. One colour per label on every panel; bands are the
    pointwise 95% bootstrap interval of the mean over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(g.task for g in groups))
    labels = list(dict.fromkeys(g.label for g in groups))
    palette = plt.get_cmap("tab10")
    colour = {label: palette(i % 10) for i, label in enumerate(labels)}
    fig, axes = plt.subplots(3, len(tasks), figsize=(4.2 * len(tasks), 9.0), squeeze=False)
    for j, task in enumerate(tasks):
        mine = [g for g in groups if g.task == task]
        kind, limit = judged_cost(mine[0].runs[0].task_spec)
        for i, column in enumerate(("eval/return", "eval/" + kind)):
            ax = axes[i, j]
            for g in mine:
                steps, values = _curve(g, column)
                if steps.size == 0:
                    continue
                ax.plot(steps, values.mean(axis=0), color=colour[g.label], label=g.label)
                band = _band(values, resamples, seed)
                if band is not None:
                    ax.fill_between(steps, *band, color=colour[g.label], alpha=0.2, lw=0)
            if i == 1:
                ax.axhline(limit, color="black", ls="--", lw=1, label="limit")
            ax.set_xlabel("env steps")
            ax.grid(alpha=0.3)
        axes[0, j].set_title(task)
        axes[0, j].set_ylabel("evaluation return")
        axes[1, j].set_ylabel(f"evaluation {kind.replace('_', ' ')}")
        _boxes(axes[2, j], mine, "train/episode_" + kind, limit, colour)
        axes[2, j].set_ylabel(f"training episode {kind.replace('_', ' ')}")
    handles = [plt.Line2D([], [], color=colour[label], lw=2) for label in labels]
    handles.append(plt.Line2D([], [], color="black", ls="--", lw=1))
    fig.legend(handles, [*labels, "limit"], loc="lower center", ncol=min(len(labels) + 1, 6))
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.05, 1, 0.97 if title else 1))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def _boxes(ax: Any, groups: Sequence[Group], column: str, limit: float, colour: dict) -> None:
    """Box plots of a training column per label over four equal env-step intervals."""
    end = max(int(r.rows[-1]["env_steps"]) for g in groups for r in g.runs)
    edges = np.linspace(0, end, 5)
    width = 0.8 / len(groups)
    for k, g in enumerate(groups):
        data, positions = [], []
        for i in range(4):
            vals = []
            for run in g.runs:
                steps, values = run.column(column)
                inside = (steps > edges[i]) & (steps <= edges[i + 1]) & np.isfinite(values)
                vals.extend(values[inside].tolist())
            if vals:
                data.append(vals)
                positions.append(i + (k - (len(groups) - 1) / 2) * width)
        if data:
            parts = ax.boxplot(
                data, positions=positions, widths=width * 0.9, patch_artist=True, showfliers=False
            )
            for box in parts["boxes"]:
                box.set(facecolor=colour[g.label], alpha=0.6)
            for median in parts["medians"]:
                median.set(color="black")
    ax.axhline(limit, color="black", ls="--", lw=1)
    ax.set_xticks(range(4))
    ax.set_xticklabels([f"{edges[i]:.0f}-{edges[i + 1]:.0f}" for i in range(4)], fontsize=8)
    ax.set_xlim(-0.6, 3.6)
    ax.set_xlabel("env steps")
    ax.grid(alpha=0.3, axis="y")
