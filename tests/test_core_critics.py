"""Shared critic pieces (`algd_jax.critics`) on fixed numbers."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from algd_jax.critics import (
    create_critic,
    double_q_target,
    ensemble_cost_target,
    polyak,
    target_update_due,
    td_step,
)
from algd_jax.networks import cost_critic

# A fixed ensemble of M = 3 target values on B = 2 transitions.
QC_NEXT = jnp.array([[1.0, 2.0], [3.0, 4.0], [5.0, 9.0]])
COST = jnp.array([0.5, 1.0])
MASK = jnp.array([1.0, 0.0])  # the second transition ended its cost return
GAMMA = 0.9


def test_shared_cost_target_regresses_every_member_on_the_mean():
    target = ensemble_cost_target(QC_NEXT, COST, MASK, GAMMA, "shared")
    # mean over members [3, 5]: 0.5 + 0.9 * 3 and 1.0 + 0 (masked)
    np.testing.assert_allclose(target, [[3.2, 1.0]] * 3, rtol=1e-6)


def test_per_member_cost_target_bootstraps_each_member_from_its_own():
    target = ensemble_cost_target(QC_NEXT, COST, MASK, GAMMA, "per-member")
    np.testing.assert_allclose(target, [[1.4, 1.0], [3.2, 1.0], [5.0, 1.0]], rtol=1e-6)
    np.testing.assert_allclose(ensemble_cost_target(QC_NEXT, COST, MASK, GAMMA), target)


def test_unknown_cost_target_is_rejected():
    with pytest.raises(ValueError, match="per-member or shared"):
        ensemble_cost_target(QC_NEXT, COST, MASK, GAMMA, "mean")  # type: ignore[arg-type]


def test_double_q_target_takes_the_smaller_member():
    q_next = jnp.array([[1.0, 5.0, -1.0], [2.0, 4.0, -3.0]])
    target = double_q_target(q_next, jnp.array([1.0, 0.0, 2.0]), jnp.array([1.0, 1.0, 0.0]), 0.5)
    np.testing.assert_allclose(target, [1.5, 2.0, 2.0])


@pytest.mark.parametrize(
    "every,moving",
    [(1, range(7)), (2, [0, 2, 4, 6]), (5, [0, 5]), (7, [0])],
)
def test_target_update_due_counts_from_the_first_update(every, moving):
    due = [bool(target_update_due(jnp.asarray(u, jnp.int32), every)) for u in range(7)]
    assert due == [u in moving for u in range(7)]


def _critic():
    net = cost_critic(2, 4)
    params = net.init(jax.random.key(0), jnp.zeros((1, 3)), jnp.zeros((1, 2)))
    return create_critic(net, params, optax.sgd(0.1))


def test_polyak_mixes_only_when_due():
    critic = _critic()
    online = jax.tree.map(lambda x: x + 1.0, critic.params)
    critic = critic.replace(params=online)
    mixed = polyak(critic, 0.25, jnp.asarray(True))
    kept = polyak(critic, 0.25, jnp.asarray(False))
    for t0, p, m, k in zip(
        jax.tree.leaves(critic.target_params),
        jax.tree.leaves(online),
        jax.tree.leaves(mixed.target_params),
        jax.tree.leaves(kept.target_params),
        strict=True,
    ):
        np.testing.assert_allclose(m, 0.75 * np.asarray(t0) + 0.25 * np.asarray(p), rtol=1e-6)
        np.testing.assert_array_equal(k, t0)


def test_create_critic_copies_the_target_into_its_own_buffers():
    critic = _critic()
    for p, t in zip(
        jax.tree.leaves(critic.params), jax.tree.leaves(critic.target_params), strict=True
    ):
        np.testing.assert_array_equal(p, t)
        assert p is not t
    assert critic.step.dtype == jnp.int32 and not critic.step.weak_type


@pytest.mark.parametrize("members", ["sum", "mean"])
def test_td_step_is_one_step_on_the_members_squared_errors(members):
    critic = _critic()
    obs = jax.random.normal(jax.random.key(1), (5, 3))
    action = jax.random.normal(jax.random.key(2), (5, 2))
    target = jax.random.normal(jax.random.key(3), (2, 5))
    new, per_member = td_step(critic, obs, action, target, members)
    q = critic.apply_fn(critic.params, obs, action)
    np.testing.assert_allclose(per_member, jnp.mean((q - target) ** 2, axis=1), rtol=1e-6)
    reduce = jnp.sum if members == "sum" else jnp.mean

    def loss(p):
        return reduce(jnp.mean((critic.apply_fn(p, obs, action) - target) ** 2, axis=1))

    grads = jax.grad(loss)(critic.params)
    for p, g, n in zip(
        jax.tree.leaves(critic.params),
        jax.tree.leaves(grads),
        jax.tree.leaves(new.params),
        strict=True,
    ):
        np.testing.assert_allclose(n, p - 0.1 * g, rtol=1e-5, atol=1e-7)
    assert int(new.step) == 1
