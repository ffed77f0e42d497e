"""The run's independent random streams, each a pure function of the seed and counters.

Every random draw of a loop on the host comes from one of these streams, so a resumed run
draws exactly what an uninterrupted one would, and seed k inside a multi-seed run draws
what seed k alone would.
"""

from __future__ import annotations

import numpy as np

from algd_jax.envs import TaskSpec

#: Reset seeds of the training envs (off-policy: per episode; on-policy: per env and episode).
TRAIN_ENV_STREAM = 0
#: Reset seeds of the evaluation episodes, from (seed, epoch, episode).
EVAL_ENV_STREAM = 1
#: Replay row indices, from (seed, env step).
REPLAY_STREAM = 2
#: The acting noise's PRNG key.
ACT_STREAM = 3
#: Uniform warm-up actions (`Algorithm.warmup_acting == "uniform"`), from (seed, env step).
UNIFORM_ACT_STREAM = 4


def stream_seed(seed: int, stream: int, *counters: int) -> int:
    """A 32-bit seed for one random stream of the run, e.g. (seed, TRAIN_ENV_STREAM, k)."""
    return int(np.random.SeedSequence([seed, stream, *counters]).generate_state(1)[0])


def uniform_actions(seeds: list[int], step: int, spec: TaskSpec) -> np.ndarray:
    """Uniform random actions `[S, da]` in the task's box for env step `step` (0-based),
    each from its seed and the step (so a resumed run draws the same ones)."""
    low = np.asarray(spec.action_low, np.float32)
    high = np.asarray(spec.action_high, np.float32)
    return np.stack(
        [
            np.random.default_rng(stream_seed(s, UNIFORM_ACT_STREAM, step))
            .uniform(low, high)
            .astype(np.float32)
            for s in seeds
        ]
    )
