"""Compare algorithms over seeds: the paper's Fig. 3 layout and a table with bootstrap
confidence intervals, the fraction of seeds within the limit and Mann-Whitney probabilities.

    python -m experiments.compare sweeps/NAME --out fig.png
    python -m experiments.compare sweeps/A sweeps/B runs/algd-X/seeds0-1-<stamp> --out fig.png
    python -m experiments.compare sweeps/ablation --by mc-samples --out ablation.png

Writes the figure (`--out`), the table as Markdown and CSV (`--table`, default the figure's
name with `.md`; the CSV beside it), the across-task IQM as `<table>_aggregate.csv` and every
seed's final numbers as `<table>_seeds.csv`. See docs/sweeps.md for what the numbers mean.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import tyro

from algd_jax import compare as cmp
from algd_jax.train_config import RunError, parse_args


@dataclass(frozen=True)
class CompareArgs:
    """Compare runs over seeds: Fig. 3 layout figure, Markdown and CSV tables."""

    paths: tyro.conf.Positional[tuple[Path, ...]]
    """Sweep folders (experiments.sweep --out), multi-seed run directories or single runs."""
    out: Path = Path("compare.png")
    """Figure to write (png, pdf or svg)."""
    table: Path | None = None
    """Markdown table to write (default: --out with .md); its CSV is written beside it."""
    by: str | None = None
    """Draw an ablation instead: one line per value of this option (e.g. mc-samples)."""
    reference: str = "algd"
    """The run whose final return is compared with every other's (Mann-Whitney)."""
    last: int = 1
    """K: each seed's final numbers are the mean of its last K evaluations."""
    resamples: int = 10_000
    """Bootstrap resamples of each confidence interval."""
    bootstrap_seed: int = 0
    """Seed of every bootstrap's random generator (one fresh generator per interval)."""
    title: str | None = None
    """Figure title."""


def compare(args: CompareArgs) -> str:
    """Write the figure and tables; return the Markdown table."""
    if args.last < 1:
        raise RunError(f"--last {args.last}: average at least 1 evaluation")
    if args.resamples < 100:
        raise RunError(f"--resamples {args.resamples}: use at least 100")
    if not args.paths:
        raise RunError("give at least one sweep folder or run directory")
    runs = cmp.load_runs(args.paths)
    groups = cmp.group_runs(runs, args.by)
    finals = [cmp.seed_final(g, r, args.last) for g in groups for r in g.runs]
    reference = None if args.by else args.reference
    summaries = cmp.summarise(finals, reference, args.resamples, args.bootstrap_seed)
    agg = cmp.aggregate(finals, args.resamples, args.bootstrap_seed)
    table = args.table or args.out.with_suffix(".md")
    stem = table.with_suffix("")
    try:
        table.parent.mkdir(parents=True, exist_ok=True)
        text = cmp.markdown(summaries, agg, reference, args.last)
        table.write_text(text)
        cmp.write_table_csv(table.with_suffix(".csv"), summaries)
        cmp.write_aggregate_csv(stem.with_name(stem.name + "_aggregate.csv"), agg)
        cmp.write_seed_csv(stem.with_name(stem.name + "_seeds.csv"), finals)
        cmp.draw(groups, args.out, min(args.resamples, 2000), args.bootstrap_seed, args.title)
    except OSError as err:
        where = f"cannot write {err.filename} ({err.strerror})"
        raise RunError(f"{where}; choose a writable --out") from None
    return text


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parse_args(CompareArgs, argv, prog="python -m experiments.compare")
        text = compare(args)
    except RunError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
