"""A table of where runs ended: the mean of the last K evaluations' return and cost, per
seed and per group of seeds.

    python -m experiments.summarize runs/algd-HalfCheetahVelocity/f32 runs/.../bf16 --last 3
    python -m experiments.summarize RUNS... --out table.md

Runs are grouped as `experiments.plot` groups them (everything in the config but the seed and
bookkeeping flags), so a multi-seed run directory stands for its seeds. The cost is the one
the task is judged on (the discounted cost against the budget h for the paper's velocity
tasks, the undiscounted episode cost against the limit for navigation tasks); a seed is
`feasible` when its last-K mean cost is within that limit. The output is a Markdown table,
printed and optionally written to `--out`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tyro

from algd_jax.judging import judged_column
from algd_jax.options import POSITIVE_INT, check_ranges, ranged
from algd_jax.train_config import RunError, parse_args
from experiments.plot import Run, _column, _labels, expand, group_runs, load_run


@dataclass(frozen=True)
class SummarizeArgs:
    """Tabulate the last evaluations of training runs (mean ± std over seeds)."""

    run_dirs: tyro.conf.Positional[tuple[Path, ...]]
    """Run directories written by experiments.run (a multi-seed run stands for its seeds)."""
    last: int = ranged(3, POSITIVE_INT)
    """K: how many of each run's last logged evaluations to average."""
    out: Path | None = None
    """Also write the table to this Markdown file."""


@dataclass(frozen=True)
class SeedResult:
    """One run's last-K means. `steps` is the env step of its last row."""

    label: str
    seed: int
    steps: int
    ret: float
    cost: float
    limit: float
    cost_kind: str

    @property
    def feasible(self) -> bool:
        return self.cost <= self.limit


def seed_result(run: Run, label: str, last: int) -> SeedResult:
    """The mean evaluation return and judged cost over a run's last `last` evaluated rows;
    `RunError` if the run has no evaluation rows."""
    cost_name, limit, cost_kind = judged_column(run.task_spec)
    returns, costs = _column(run.rows, "eval/return"), _column(run.rows, "eval/" + cost_name)
    evaluated = np.flatnonzero(~np.isnan(returns))
    if evaluated.size == 0:
        raise RunError(f"{run.path}: no evaluation in progress.csv (was --eval-episodes 0?)")
    chosen = evaluated[-last:]
    return SeedResult(
        label=label,
        seed=int(run.config["seed"]),
        steps=int(run.rows[-1]["env_steps"]),
        ret=float(np.mean(returns[chosen])),
        cost=float(np.mean(costs[chosen])),
        limit=limit,
        cost_kind=cost_kind,
    )


def summarize(run_dirs: Sequence[Path], last: int) -> list[SeedResult]:
    """Every run's last-K result, grouped in the order the groups first appear."""
    if last < 1:
        raise RunError(f"--last {last}: average at least 1 evaluation")
    if not run_dirs:
        raise RunError("give at least one run directory")
    runs = [load_run(Path(p)) for p in expand(tuple(run_dirs))]
    groups = group_runs(runs)
    labels = _labels(groups)
    return [
        seed_result(run, f"{members[0].config['task']}: {labels[key]}", last)
        for key, members in groups.items()
        for run in sorted(members, key=lambda r: int(r.config["seed"]))
    ]


def table(results: list[SeedResult], last: int) -> str:
    """A Markdown table: one row per seed, then one `mean ± std` row per group of several."""
    head = (
        f"| run | seed | env steps | return (last {last}) | cost (last {last}) | limit "
        "| feasible |\n|---|---|---|---|---|---|---|"
    )
    lines = [head]
    labels = list(dict.fromkeys(r.label for r in results))
    for label in labels:
        members = [r for r in results if r.label == label]
        for r in members:
            lines.append(
                f"| {label} | {r.seed} | {r.steps} | {r.ret:.1f} | {r.cost:.2f} "
                f"({r.cost_kind}) | {r.limit:.6g} | {'yes' if r.feasible else 'no'} |"
            )
        if len(members) > 1:
            ret = np.array([r.ret for r in members])
            cost = np.array([r.cost for r in members])
            feasible = sum(r.feasible for r in members)
            lines.append(
                f"| {label} | mean ± std | | {ret.mean():.1f} ± {ret.std():.1f} "
                f"| {cost.mean():.2f} ± {cost.std():.2f} | {members[0].limit:.6g} "
                f"| {feasible}/{len(members)} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parse_args(SummarizeArgs, argv, prog="python -m experiments.summarize")
        problems = check_ranges(args)
        if problems:
            raise RunError("; ".join(problems))
        text = table(summarize(args.run_dirs, args.last), args.last)
        if args.out is not None:
            try:
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(text)
            except OSError as err:
                raise RunError(
                    f"cannot write {args.out} ({err.strerror}); choose a writable --out"
                ) from None
    except RunError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
