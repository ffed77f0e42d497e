"""Train a registered algorithm (ALGD by default) on one task, for one or several seeds.

    python -m experiments.run --task HalfCheetahVelocity            # a new run
    python -m experiments.run --task HalfCheetahVelocity --seeds 0 1 2 3   # 4 seeds, 1 process
    python -m experiments.run --algo lgd                            # another algorithm
    python -m experiments.run --resume runs/algd-HalfCheetahVelocity/seed0-<timestamp>
    python -m experiments.run --list-tasks
    python -m experiments.run --list-algos
    python -m experiments.run --help                                # every field, presets

Ctrl-C saves a checkpoint and exits; `--resume RUN_DIR` continues exactly where it stopped.
Problems the user can fix are reported as one line on stderr with a non-zero exit status:
2 bad input (nothing ran), 1 a fault that stopped training or a damaged checkpoint, 3 a
refused `--resume` of a run that already has `--total-steps` env steps, 130 interrupted.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence

from algd_jax.train_config import (
    EXIT_ALREADY_DONE,
    EXIT_INTERRUPTED,
    RunError,
    parse_command_line,
)


def list_tasks_table() -> str:
    """One line per registered task: name, family, sizes, episode length and limit."""
    from algd_jax.envs import get_task, list_tasks

    lines = [f"{'task':<30} {'family':<11} {'obs':>4} {'act':>4} {'T':>5}  limit"]
    for name in list_tasks():
        try:
            spec = get_task(name)
        except ValueError:
            spec = None
        if spec is None:
            spec = get_task(name, cost_limit=0.0)  # only for the sizes
            limit = "needs --cost-limit"
        elif spec.episode_cost_limit is None:
            limit = f"h = {spec.cost_budget:g} on the discounted cost"
        else:
            limit = f"C = {spec.episode_cost_limit:g} per episode (h = {spec.cost_budget:.4g})"
        lines.append(
            f"{name:<30} {spec.family:<11} {spec.obs_dim:>4} {spec.act_dim:>4} "
            f"{spec.max_episode_steps:>5}  {limit}"
        )
    return "\n".join(lines)


def list_algos_table() -> str:
    """One line per registered algorithm: name and description."""
    from algd_jax.algorithms import get_algorithm, list_algorithms

    names = list_algorithms()
    width = max(len(n) for n in names)
    return "\n".join(f"{n:<{width}}  {get_algorithm(n).description}" for n in names)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        config = parse_command_line(argv, prog="python -m experiments.run")
        if config.list_tasks:
            print(list_tasks_table())
            return 0
        if config.list_algos:
            print(list_algos_table())
            return 0
        # Imported late: parsing and --help stay fast, without JAX start-up.
        from algd_jax.training import train

        result = train(config)
    except KeyboardInterrupt:
        # Ctrl-C before the training loop took over its signals: a new run removes what it
        # had begun to create; a resume either has not changed its run yet or has finished
        # its start-up repair (which holds signals until it is done), so it resumes again.
        print(
            "interrupted during start-up; nothing was trained (a new run's directory was "
            "removed; a resumed run is as resumable as before)",
            file=sys.stderr,
        )
        return 130
    except RunError as err:
        # not failures: a run that already has its steps, a clean stop
        quiet = err.exit_code in (EXIT_ALREADY_DONE, EXIT_INTERRUPTED)
        print(str(err) if quiet else f"error: {err}", file=sys.stderr)
        return err.exit_code
    for seed, run_dir, row in zip(result.seeds, result.run_dirs, result.last_rows, strict=True):
        row = row or {}
        summary = ""
        if math.isfinite(row.get("eval/return", math.nan)):
            cost_label = result.cost_column.removeprefix("eval/").replace("_", " ")
            summary = (
                f", eval return {row['eval/return']:.2f}, eval {cost_label} "
                f"{row[result.cost_column]:.2f} (limit {result.cost_limit:g})"
            )
        who = f"seed {seed}: " if len(result.seeds) > 1 else ""
        print(f"{who}done: {result.env_steps} env steps{summary}; run directory {run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
