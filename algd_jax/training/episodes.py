"""The window of finished training episodes a loop keeps for its algorithm (`LoopInfo`).

A loop state with a leading seed axis holds three windows of width max(W, 1), oldest
first: `window_costs`, `window_discounted_costs`, `window_returns` `[S, max(W, 1)]`
(float64); W = `Algorithm.episode_window(config)`. Being part of the loop state, the window
is checkpointed and resumes exactly.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

from algd_jax.algorithms.base import LoopInfo


def push_episode(loop: Any, k: int, totals: np.ndarray, window: int) -> None:
    """Append seed k's finished episode (totals in `EPISODE_FIELDS` order) to its episode
    window of length `window`, dropping the oldest (in place; nothing when `window` is 0)."""
    if window == 0:
        return
    for values, value in (
        (loop.window_costs, totals[1]),
        (loop.window_discounted_costs, totals[2]),
        (loop.window_returns, totals[0]),
    ):
        values[k, :-1] = values[k, 1:]
        values[k, -1] = value


def loop_info(
    loop: Any,
    total_updates: int,
    window: int,
    env_step: np.ndarray | None = None,
    update_step: np.ndarray | None = None,
) -> LoopInfo:
    """The `LoopInfo` of every seed (leading axis `[S]`, episode windows `[S, window]`), as
    device arrays, from a loop state with `env_step`, `epoch_index`, `update_count`,
    `episode_index` and the windows (`env_step`/`update_step`: other counters instead)."""
    start = loop.window_costs.shape[1] - window
    i32 = lambda x: jnp.asarray(np.asarray(x, np.int32))  # noqa: E731
    f32 = lambda x: jnp.asarray(np.asarray(x, np.float32))  # noqa: E731
    steps = loop.env_step if env_step is None else env_step
    return LoopInfo(
        env_step=i32(steps),
        epoch=i32(loop.epoch_index),
        update_step=i32(loop.update_count if update_step is None else update_step),
        total_updates=i32(np.full(np.shape(steps), total_updates)),
        episode_costs=f32(loop.window_costs[:, start:]),
        episode_discounted_costs=f32(loop.window_discounted_costs[:, start:]),
        episode_returns=f32(loop.window_returns[:, start:]),
        episode_count=i32(loop.episode_index),
    )
