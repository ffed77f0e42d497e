"""Seed k of a multi-seed run on the `map` seed axis is bitwise seed k alone: the compiled
programs for S = 2 and S = 1 seeds give the same states, epoch metric sums and actions.

Issue 22 reported a 7e-7 relative difference in `train/target_qc`, and on 2026-12-02 a sweep
of sac-lag on HalfCheetahVelocity showed lone seeds drifting from the same seeds run
together: XLA removed the one-seed program's loop over seeds and rounded a reduction
differently in the last bit. `programs.seed_axis_options` keeps that loop; the sac-lag test
below failed without it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algd_jax import programs
from algd_jax.algorithms import get_algorithm
from tests.conftest import SMALL, leaves, make_batch, new_agent


@pytest.mark.slow  # two compilations of the fused update: ~30 s on 2 idle cores
def test_one_seed_of_two_is_bitwise_the_seed_alone_on_the_map_axis() -> None:
    algo = get_algorithm("algd")
    progs = programs.programs(algo.act, algo.update, "map")
    names = tuple(algo.metric_names(SMALL))
    batch = make_batch(5, (2, 2))  # [S, U, B, ...]
    both = programs.stack([new_agent(seed=s) for s in (0, 1)])
    two, sums_two = progs.train(both, programs.new_sums(names, 2), batch, 0, 0)
    alone = programs.stack([new_agent(seed=0)])
    one, sums_one = progs.train(
        alone, programs.new_sums(names, 1), jax.tree.map(lambda x: x[:1], batch), 0, 0
    )
    for x, y in zip(leaves(one), leaves(two), strict=True):
        np.testing.assert_array_equal(x[0], y[0])
    for name in names:  # the logged epoch means come from these sums
        assert np.asarray(sums_one["sum"][name])[0] == np.asarray(sums_two["sum"][name])[0], name
    obs = np.random.default_rng(0).normal(size=(2, 5)).astype(np.float32)
    keys = jax.random.split(jax.random.key(0), 2)
    for deterministic in (False, True):
        a_two = np.asarray(progs.act(two, obs, keys, 3, deterministic))
        a_one = np.asarray(progs.act(one, obs[:1], keys[:1], 3, deterministic))
        np.testing.assert_array_equal(a_one[0], a_two[0])


def _sac_lag_run(num_seeds: int, calls: int = 4) -> list[list[np.ndarray]]:
    """Seed 0's learner leaves after each of `calls` train calls of sac-lag (16 units, 16
    rows, U = 1, with a `LoopInfo`) on HalfCheetahVelocity's shapes, with `num_seeds`
    seeds in the program; the batches and infos of seed 0 are the same for any count."""
    from algd_jax.algorithms.base import LoopInfo
    from algd_jax.envs import get_task
    from benchmarks.common import make_batch  # HalfCheetah's 17 x 6 shapes

    algo = get_algorithm("sac-lag")
    spec = get_task("HalfCheetahVelocity")
    config = algo.resolve(algo.default_config(actor_hidden=16, critic_hidden=16), spec)
    progs = programs.Programs(algo.act, algo.update, "map", algo.observe)
    names = tuple(algo.metric_names(config))
    states = programs.stack([programs.new_state(algo, config, spec, s) for s in range(num_seeds)])
    sums = programs.new_sums(names, num_seeds)
    window = 4
    seen = []
    for call in range(calls):
        # drawn for two seeds and cut, so that seed 0's rows do not depend on `num_seeds`
        batch = jax.tree.map(
            lambda x: x[:num_seeds], make_batch(np.random.default_rng(call), 16, (2, 1))
        )
        full = lambda value, dtype, *shape: jnp.full((num_seeds, *shape), value, dtype)  # noqa: E731
        info = LoopInfo(
            env_step=full(1000 + call, jnp.int32),
            epoch=full(1, jnp.int32),
            update_step=full(call, jnp.int32),
            total_updates=full(1000, jnp.int32),
            episode_costs=full(30.0, jnp.float32, window),
            episode_discounted_costs=full(3.0, jnp.float32, window),
            episode_returns=full(0.0, jnp.float32, window),
            episode_count=full(window, jnp.int32),
        )
        states, sums = progs.train(states, sums, batch, call, 1000 + call, info)
        seen.append([np.array(x)[0] for x in leaves(states)])
    return seen


def test_a_lone_seed_is_bitwise_that_seed_of_two_for_sac_lag() -> None:
    # Without `seed_axis_options` (XLA removing the one-seed program's loop over seeds) a
    # critic's Adam moment differed in the last bit from the second call on (2026-12-02,
    # AMD Zen 3): a lone run and the same seed in a group then drift apart.
    for call, (one, two) in enumerate(zip(_sac_lag_run(1), _sac_lag_run(2), strict=True)):
        for i, (x, y) in enumerate(zip(one, two, strict=True)):
            np.testing.assert_array_equal(x, y, err_msg=f"call {call}, leaf {i}")
