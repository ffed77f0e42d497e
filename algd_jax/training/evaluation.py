"""Evaluation on host environments at the end of an epoch (the off-policy and on-policy
loops; the on-device loop evaluates inside its compiled epoch)."""

from __future__ import annotations

from collections.abc import Sequence

import gymnasium

from algd_jax.rollouts import EPISODE_FIELDS, ActFn, mean_of, run_episodes
from algd_jax.training.streams import EVAL_ENV_STREAM, stream_seed


def evaluate_seeds(
    envs: Sequence[gymnasium.Env],
    act: ActFn,
    seeds: list[int],
    epoch: int,
    episodes: int,
    cost_gamma: float,
) -> list[dict[str, float] | None]:
    """`episodes` deterministic episodes per seed, the S seeds in lockstep (`envs`: one
    evaluation env per seed; `act`: observations `[S, ds]` -> actions `[S, da]`). Episode j
    of epoch `epoch` is reset from (seed, EVAL_ENV_STREAM, epoch, j). Returns each seed's
    mean episode (`EPISODE_FIELDS` keys), or None without evaluation episodes."""
    if not envs or episodes == 0:
        return [None for _ in seeds]
    per_seed: list[list[dict[str, float]]] = [[] for _ in seeds]
    for j in range(episodes):
        reset_seeds = [stream_seed(s, EVAL_ENV_STREAM, epoch, j) for s in seeds]
        for k, summary in enumerate(run_episodes(envs, act, reset_seeds, cost_gamma)):
            per_seed[k].append(summary)
    return [{key: mean_of(evals, key) for key in EPISODE_FIELDS} for evals in per_seed]
