"""The epoch row every loop writes (one per seed to progress.csv and TensorBoard), and the
non-finite report every loop stops with.

Columns: `epoch, env_steps, updates, episodes`, then `EPISODE_COLUMNS`, the algorithm's
metrics as `train/<name>` (sorted), then `TIMING_COLUMNS`. A loop without evaluation
episodes writes NaN in the `eval/` columns.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from algd_jax.envs import TaskSpec
from algd_jax.judging import feasible
from algd_jax.logging_utils import TIMING_PREFIX
from algd_jax.rollouts import EPISODE_FIELDS
from algd_jax.train_config import RunError

#: Columns of progress.csv before the per-update metrics (which follow, sorted).
EPISODE_COLUMNS = (
    "train/episode_return",
    "train/episode_cost",
    "train/episode_discounted_cost",
    "train/episode_length",
    "eval/return",
    "eval/cost",
    "eval/discounted_cost",
    "eval/length",
    "eval/feasible",
)
TIMING_COLUMNS = ("time/env_steps_per_s", "time/updates_per_s", "time/wall_s")


class NonFiniteLoss(RunError):
    """A loss, an action or a parameter became NaN or infinite; training stops and keeps
    its last good checkpoint."""

    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=1)


def progress_columns(metric_names: tuple[str, ...]) -> list[str]:
    """The progress.csv header of a run whose algorithm reports `metric_names` (sorted)."""
    return [
        "epoch",
        "env_steps",
        "updates",
        "episodes",
        *EPISODE_COLUMNS,
        *(f"train/{k}" for k in metric_names),
        *TIMING_COLUMNS,
    ]


def epoch_row(
    *,
    epoch: int,
    env_steps: int,
    updates: int,
    episodes: int,
    train_totals: np.ndarray,
    train_count: int,
    evaluation: Mapping[str, float] | None,
    spec: TaskSpec,
    metrics: Mapping[str, float],
    speed: tuple[float, float],
    wall: float,
) -> tuple[dict[str, float], bool]:
    """One seed's row of an epoch, and whether its evaluation was feasible.

    `train_totals [4]`: the summed (return, cost, discounted cost, length) of the
    `train_count` training episodes that ended in the epoch (`rollouts.EPISODE_FIELDS`
    order); `evaluation`: the epoch's mean evaluation episode (`EPISODE_FIELDS` keys), None
    without one; `metrics`: the epoch means of the algorithm's metrics, by name; `speed`:
    (env steps/s, updates/s) of the epoch; `wall`: seconds of training so far.
    """
    train = train_totals / train_count if train_count else np.full(4, np.nan)
    summary = dict(evaluation or dict.fromkeys(EPISODE_FIELDS, math.nan))
    is_feasible = evaluation is not None and feasible(spec, summary)
    row: dict[str, float] = {
        "epoch": epoch,
        "env_steps": env_steps,
        "updates": updates,
        "episodes": episodes,
        "train/episode_return": float(train[0]),
        "train/episode_cost": float(train[1]),
        "train/episode_discounted_cost": float(train[2]),
        "train/episode_length": float(train[3]),
        "eval/return": summary["return"],
        "eval/cost": summary["cost"],
        "eval/discounted_cost": summary["discounted_cost"],
        "eval/length": summary["length"],
        "eval/feasible": float(is_feasible) if evaluation is not None else math.nan,
        **{f"train/{name}": value for name, value in metrics.items()},
        "time/env_steps_per_s": speed[0],
        "time/updates_per_s": speed[1],
        "time/wall_s": wall,
    }
    return row, is_feasible


def first_nonfinite(per_seed: Mapping[str, Any]) -> tuple[str, int] | None:
    """The first `(name, seed index)` whose value is NaN or infinite among per-seed metrics
    (`name -> [S]`, in the mapping's order), or None."""
    for name, values in per_seed.items():
        bad = np.flatnonzero(~np.isfinite(np.asarray(values)))
        if bad.size:
            return name, int(bad[0])
    return None


def nonfinite_parts(state: Any) -> list[str]:
    """The fields of a learner state (one seed, a dataclass pytree) holding non-finite
    floating-point numbers."""
    state = jax.device_get(state)
    parts = []
    for f in dataclasses.fields(state):
        if not f.metadata.get("pytree_node", True):
            continue
        leaves = [
            x
            for x in jax.tree.leaves(getattr(state, f.name))
            # jax's issubdtype: numpy's fails on the PRNG key leaves
            if hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, np.floating)
        ]
        if any(not np.isfinite(x).all() for x in leaves):
            parts.append(f.name)
    return parts


def timing_free(row: dict[str, str]) -> dict[str, str]:
    """A progress.csv row without its machine-speed columns (for comparing runs)."""
    return {k: v for k, v in row.items() if not k.startswith(TIMING_PREFIX)}
