"""Acting in host environments: episode bookkeeping and deterministic evaluation rollouts,
for one or many seeds in lockstep.

Used by the training loop (evaluation at epoch ends), `experiments.evaluate` and the
benchmarks. An `ActFn` maps the observations of S environments `[S, ds]` to their actions
`[S, da]`; the environments are stepped on the host, one after the other.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium
import numpy as np

ActFn = Callable[[np.ndarray], np.ndarray]

#: Per-episode quantities, in this order wherever they are stored as a vector.
EPISODE_FIELDS = ("return", "cost", "discounted_cost", "length")


def cost_of(info: dict[str, Any]) -> float:
    """The step's cost from the env's `info` (every task reports `info["cost"]`)."""
    return float(info["cost"])


class EpisodeStats:
    """Running totals of one episode per seed: return, summed cost, discounted cost
    (`sum_t gamma_c**t c_t`) and length in `totals [S, 4]` (float64), and `gamma_c**t` in
    `discount [S]`. The arrays are updated in place, so they may be views of a larger state
    (the training loop's `LoopState.episode` and `.discount`)."""

    def __init__(self, totals: np.ndarray, discount: np.ndarray, cost_gamma: float) -> None:
        self.cost_gamma = float(cost_gamma)
        self.totals = totals
        self.discount = discount

    @classmethod
    def zeros(cls, num: int, cost_gamma: float) -> EpisodeStats:
        return cls(np.zeros((num, 4), np.float64), np.ones((num,), np.float64), cost_gamma)

    def record(self, index: int, reward: float, cost: float) -> None:
        t = self.totals[index]
        t[0] += reward
        t[1] += cost
        t[2] += self.discount[index] * cost
        t[3] += 1
        self.discount[index] *= self.cost_gamma

    def reset(self, index: int) -> None:
        self.totals[index] = 0.0
        self.discount[index] = 1.0

    def summary(self, index: int) -> dict[str, float]:
        return dict(zip(EPISODE_FIELDS, (float(x) for x in self.totals[index]), strict=True))


def run_episodes(
    envs: Sequence[gymnasium.Env],
    act: ActFn,
    seeds: Sequence[int],
    cost_gamma: float,
    frames: list[np.ndarray] | None = None,
) -> list[dict[str, float]]:
    """One episode on each env, all in lockstep, from `envs[k].reset(seed=seeds[k])`.

    `act` gets the observations of every env `[S, ds]` (finished ones keep their last
    observation; their actions are dropped) and returns `[S, da]`. Returns, per env, the
    return, summed cost, discounted cost and length. Appends env 0's `render()` frames to
    `frames` when given.
    """
    num = len(envs)
    stats = EpisodeStats.zeros(num, cost_gamma)
    obs = np.stack(
        [
            np.asarray(env.reset(seed=int(s))[0], np.float32)
            for env, s in zip(envs, seeds, strict=True)
        ]
    )
    active = np.ones(num, bool)
    while active.any():
        if frames is not None and active[0]:
            frames.append(envs[0].render())
        actions = np.asarray(act(obs))
        for k in np.flatnonzero(active):
            next_obs, reward, terminated, truncated, info = envs[k].step(actions[k])
            stats.record(k, float(reward), cost_of(info))
            obs[k] = np.asarray(next_obs, np.float32)
            if terminated or truncated:
                active[k] = False
    return [stats.summary(k) for k in range(num)]


def mean_of(summaries: Sequence[dict[str, float]], key: str) -> float:
    """Mean of one field over episodes (NaN when there are none)."""
    return float(np.mean([s[key] for s in summaries])) if summaries else math.nan
