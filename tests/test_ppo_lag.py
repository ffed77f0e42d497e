"""PPO-Lag's pure functions against hand-computed references (`algd_jax.algorithms.ppo_lag`).

Every update-phase test shares one tiny config and one set of shapes, so the module compiles
`update_rollout` three times in all (the base config, the base config mapped over seeds, and
a config with a tiny KL target).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algd_jax.algorithms import ppo_lag as P
from algd_jax.algorithms.base import Algorithm, LoopInfo


class _Box(NamedTuple):
    obs_dim: int
    act_dim: int
    action_low: tuple[float, ...]
    action_high: tuple[float, ...]


SPEC = _Box(3, 2, (-1.0, -2.0), (1.0, 2.0))
T, E = 12, 4  # N = 48 rows = 3 minibatches of 16
# target_kl huge: every pass runs, so "applied == planned" needs no second config.
BASE = P.PPOLagConfig(
    steps_per_epoch=T * E,
    update_iters=4,
    minibatch_size=16,
    target_kl=1e6,
    actor_hidden=16,
    critic_hidden=16,
    episode_window=8,
)
N_MINIBATCHES = 3
# Compiled once for the module (eager dispatch of the small ops is what costs on 2 cores).
normalize_observation = jax.jit(P.normalize_observation)
rollout_act = jax.jit(P.rollout_act)


def _info(
    cost: float = 30.0, count: int = 5, window: int = 8, discounted: float = -1.0
) -> LoopInfo:
    """A seed's loop information: every window slot `cost` (undiscounted) and `discounted`
    (discounted), `count` episodes finished, 10 update phases planned."""
    i32 = lambda x: jnp.asarray(x, jnp.int32)  # noqa: E731
    return LoopInfo(
        env_step=i32(0),
        epoch=i32(0),
        update_step=i32(0),
        total_updates=i32(10),
        episode_costs=jnp.full((window,), cost, jnp.float32),
        episode_discounted_costs=jnp.full((window,), discounted, jnp.float32),
        episode_returns=jnp.zeros((window,), jnp.float32),
        episode_count=i32(count),
    )


def _rollout(state: P.PPOLagState, seed: int) -> tuple[P.PPOLagState, P.Rollout]:
    """A rollout of random observations, rewards, costs and episode ends, acted by `state`."""
    k_obs, k_act, k_r, k_c, k_end, k_fin = jax.random.split(jax.random.key(seed), 6)
    raw_obs = 2.0 + 3.0 * jax.random.normal(k_obs, (T * E, SPEC.obs_dim))
    state, obs = normalize_observation(state, raw_obs)
    _, extras = rollout_act(state, obs, k_act)
    shape = (T, E)
    end = jax.random.uniform(k_end, shape)
    terminated, truncated = end < 0.1, (end >= 0.1) & (end < 0.2)
    final_r, final_c = (jax.random.normal(k, shape) for k in jax.random.split(k_fin))
    v_r, v_c = extras.value_r.reshape(shape), extras.value_c.reshape(shape)
    rollout = P.Rollout(
        obs=obs.reshape(T, E, -1),
        raw_action=extras.raw_action.reshape(T, E, -1),
        log_prob=extras.log_prob.reshape(shape),
        value_r=v_r,
        value_c=v_c,
        reward=jax.random.normal(k_r, shape),
        cost=jax.random.uniform(k_c, shape),
        next_value_r=P.bootstrap_values(v_r, v_r[-1], final_r, truncated),
        next_value_c=P.bootstrap_values(v_c, v_c[-1], final_c, truncated),
        terminated=terminated,
        truncated=truncated,
    )
    return state, rollout


def _copy(tree):
    return jax.tree.map(lambda x: x.copy() if isinstance(x, jax.Array) else x, tree)


# ----------------------------------------------------------------------------- GAE


def test_gae_matches_hand_computed_with_terminal_and_truncation():
    # gamma = lam = 0.5 (gamma lam = 0.25); env 0 terminates at t = 1, is truncated at t = 3
    # (final-observation value 4.0) and is cut by the rollout's end at t = 4 (V(s_5) = 3.0).
    rewards = jnp.array([[1.0, 1.0], [2.0, 1.0], [3.0, 1.0], [4.0, 1.0], [5.0, 1.0]])
    values = jnp.array([[0.5, 0.0], [1.0, 0.0], [1.5, 0.0], [2.0, 0.0], [2.5, 0.0]])
    # Env 0's next value at the terminal (9.0) must be ignored. Env 1: no ends, V = 0.
    next_values = jnp.array([[1.0, 0.0], [9.0, 0.0], [2.0, 0.0], [4.0, 0.0], [3.0, 0.0]])
    terminated = jnp.array([[0, 0], [1, 0], [0, 0], [0, 0], [0, 0]], bool)
    truncated = jnp.array([[0, 0], [0, 0], [0, 0], [1, 0], [0, 0]], bool)
    adv, ret = P.gae(rewards, values, next_values, terminated, truncated, 0.5, 0.5)
    # deltas env 0: 1 + .5*1 - .5 = 1; 2 - 1 = 1; 3 + .5*2 - 1.5 = 2.5; 4 + .5*4 - 2 = 4;
    # 5 + .5*3 - 2.5 = 4. A_4 = 4, A_3 = 4 (cut), A_2 = 2.5 + .25*4 = 3.5, A_1 = 1 (cut),
    # A_0 = 1 + .25*1 = 1.25.
    np.testing.assert_allclose(adv[:, 0], [1.25, 1.0, 3.5, 4.0, 4.0], rtol=1e-6)
    np.testing.assert_allclose(ret[:, 0], [1.75, 2.0, 5.0, 6.0, 6.5], rtol=1e-6)
    # Env 1: delta = 1 everywhere, A_t = sum_k 0.25^k over the remaining steps.
    expected = [sum(0.25**k for k in range(5 - t)) for t in range(5)]
    np.testing.assert_allclose(adv[:, 1], expected, rtol=1e-6)
    np.testing.assert_allclose(ret[:, 1], expected, rtol=1e-6)


def test_bootstrap_values_reads_the_final_value_only_at_truncations():
    values = jnp.array([[1.0], [2.0], [3.0]])
    final = jnp.array([[10.0], [20.0], [30.0]])
    truncated = jnp.array([[False], [True], [False]])
    got = P.bootstrap_values(values, jnp.array([4.0]), final, truncated)
    np.testing.assert_array_equal(got[:, 0], [2.0, 20.0, 4.0])


# ----------------------------------------------------------------------------- losses


def test_clipped_objective_gradient_is_zero_outside_the_clip_range():
    clip = 0.2
    old = jnp.zeros(6)
    # ratios 1.5 (A > 0, clipped), 0.5 (A < 0, clipped), 1.5 (A < 0: the unclipped term is
    # the min), 0.5 (A > 0: unclipped is the min), 1.1 and 0.9 (inside the range).
    ratio = jnp.array([1.5, 0.5, 1.5, 0.5, 1.1, 0.9])
    adv = jnp.array([2.0, -2.0, -2.0, 2.0, 3.0, -3.0])
    grad = jax.grad(lambda lp: P.clipped_surrogate(lp, old, adv, clip)[0])(jnp.log(ratio))
    # d/dlogp of -mean(r A) is -r A / N where the unclipped term is active, else 0.
    expected = np.where([False, False, True, True, True, True], -np.asarray(ratio * adv) / 6, 0)
    np.testing.assert_allclose(grad, expected, rtol=1e-6, atol=0)
    assert grad[0] == 0.0 and grad[1] == 0.0


def test_zero_weight_rows_are_left_out_of_the_losses():
    # The last minibatch of a rollout that is not a multiple of the size is padded with
    # zero-weight rows: the losses must equal those on the real rows alone.
    rng = np.random.default_rng(1)
    lp, old, adv = (jnp.asarray(rng.normal(size=7), jnp.float32) * 0.3 for _ in range(3))
    w = jnp.array([1, 1, 1, 1, 1, 0, 0], jnp.float32)
    full = P.clipped_surrogate(lp, old, adv, 0.2, w)[0]
    np.testing.assert_allclose(full, P.clipped_surrogate(lp[:5], old[:5], adv[:5], 0.2)[0])
    heads = P.ValueHeads(2, 8)
    obs = jnp.asarray(rng.normal(size=(7, 3)), jnp.float32)
    target = jnp.asarray(rng.normal(size=7), jnp.float32)
    params = heads.init(jax.random.key(0), obs)["params"]
    loss_w, mse_w = P.value_loss(heads, params, obs, target, w, 0.001)
    loss_5, mse_5 = P.value_loss(heads, params, obs[:5], target[:5], jnp.ones(5), 0.001)
    np.testing.assert_allclose([loss_w, mse_w], [loss_5, mse_5], rtol=1e-6)


def test_gradient_clip_is_pytorchs_per_network_or_per_head():
    grads = {"a": jnp.array([[3.0, 0.0], [0.3, 0.0]]), "b": jnp.array([[4.0], [0.4]])}
    # Global norm sqrt(9 + 16 + 0.09 + 0.16) = 5.025; scaled by 1 / (norm + 1e-6).
    norm = np.sqrt(25.25)
    out = P.clip_grad_norm(grads, 1.0)
    np.testing.assert_allclose(out["a"], np.asarray(grads["a"]) / (norm + 1e-6), rtol=1e-6)
    # Per head (leading axis): head 0 has norm 5 -> scaled to 1; head 1 norm 0.5 -> as is.
    per = P.clip_grad_norm(grads, 1.0, member_axis=True)
    np.testing.assert_allclose(per["b"][:, 0], [4.0 / (5.0 + 1e-6), 0.4], rtol=1e-6)
    np.testing.assert_allclose(per["a"][1], [0.3, 0.0], rtol=1e-6)


def test_gaussian_log_prob_and_kl_match_closed_forms():
    mean, log_std, x = jnp.array([0.5, -1.0]), jnp.log(jnp.array([2.0, 0.5])), jnp.array([1.5, 0])
    z2 = (1.0 / 2.0) ** 2 + (1.0 / 0.5) ** 2
    expected = -0.5 * z2 - np.log(2.0) - np.log(0.5) - np.log(2 * np.pi)
    np.testing.assert_allclose(P.gaussian_log_prob(x, mean, log_std), expected, rtol=1e-6)
    # KL(N(0, 1) || N(1, 2^2)) = log 2 + (1 + 1) / 8 - 1/2 per dimension.
    kl = P.gaussian_kl(jnp.zeros(2), jnp.zeros(2), jnp.ones(2), jnp.log(jnp.full(2, 2.0)))
    np.testing.assert_allclose(kl, 2 * (np.log(2.0) + 2.0 / 8.0 - 0.5), rtol=1e-6)


# ----------------------------------------------------------------------------- multiplier


def test_multiplier_moves_up_over_the_limit_down_under_it_never_below_zero():
    step = jax.jit(P.multiplier_step, static_argnums=3)
    config = dataclasses.replace(BASE, cost_limit=25.0, init_multiplier=0.5, multiplier_lr=0.1)
    state = P.init(config, SPEC, jax.random.key(0))
    lam0 = float(state.lagrange.value)
    window = jnp.zeros(8).at[-3:].set(jnp.array([20.0, 30.0, 40.0]))  # J_c = 30 > 25
    up, metrics = step(state.lagrange, window, jnp.asarray(3), config)
    # Adam's first step has length lr (m_hat / sqrt(v_hat) = sign(g)); the unfilled slots
    # (zeros at the front) do not count.
    np.testing.assert_allclose(float(metrics["episode_cost_mean"]), 30.0, rtol=1e-6)
    np.testing.assert_allclose(float(up.value), lam0 + 0.1, rtol=1e-5)
    down, _ = step(state.lagrange, jnp.full(8, 10.0), jnp.asarray(50), config)
    np.testing.assert_allclose(float(down.value), lam0 - 0.1, rtol=1e-5)
    lagrange = state.lagrange
    for _ in range(20):  # far under the limit: lambda reaches 0 and stays there
        lagrange, _ = step(lagrange, jnp.zeros(8), jnp.asarray(8), config)
        assert float(lagrange.value) >= 0.0
    assert float(lagrange.value) == 0.0
    # No finished episode yet: nothing to compare, lambda and its moments unchanged.
    same, _ = step(up, jnp.zeros(8), jnp.asarray(0), config)
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.all(a == b)), same, up))


def test_defaults_are_omnisafes_ppolag():
    defaults = P.PPOLagConfig()
    omnisafe = {  # PPOLag.yaml, as the project's baseline spec (§5.6) lists it
        "steps_per_epoch": 20000,
        "update_iters": 40,
        "minibatch_size": 64,
        "target_kl": 0.02,
        "entropy_coef": 0.0,
        "max_grad_norm": 40.0,
        "critic_norm_coef": 0.001,
        "gamma": 0.99,
        "gae_lambda": 0.95,
        "gae_lambda_c": 0.95,
        "clip": 0.2,
        "actor_hidden": 64,
        "critic_hidden": 64,
        "actor_lr": 3e-4,
        "critic_lr": 3e-4,
        "cost_limit": 25.0,
        "init_multiplier": 0.001,
        "multiplier_lr": 0.035,
        "episode_window": 100,
        "obs_clip": 5.0,
    }
    assert {k: getattr(defaults, k) for k in omnisafe} == omnisafe
    state = P.init(BASE, SPEC, jax.random.key(0))  # BASE keeps the default lambda_0
    np.testing.assert_allclose(float(state.lagrange.value), 0.001, rtol=1e-6)
    np.testing.assert_array_equal(state.actor.params["log_std"], np.zeros(2))  # std 1
    tiny = P.init(dataclasses.replace(BASE, init_multiplier=0.0), SPEC, jax.random.key(0))
    assert float(tiny.lagrange.value) == pytest.approx(1e-5)  # OmniSafe's floor


# ----------------------------------------------------------------------------- observations


def test_running_statistics_equal_numpy_mean_and_var_of_the_stream():
    rng = np.random.default_rng(0)
    batches = [rng.normal(3.0, 2.0, size=(b, 3)).astype(np.float32) for b in (1, 5, 17, 2)]
    masked = rng.normal(-1.0, 1.0, size=(6, 3)).astype(np.float32)
    mask = np.array([1, 0, 1, 1, 0, 0], bool)
    state = P.init(BASE, SPEC, jax.random.key(0))
    first = None
    for i, batch in enumerate(batches):
        state, out = P.normalize_observation(state, jnp.asarray(batch))
        if i == 0:
            first = out
    state, _ = P.normalize_observation(state, jnp.asarray(masked), jnp.asarray(mask))
    stream = np.concatenate([*batches, masked[mask]])
    norm = state.obs_norm
    assert int(norm.count) == stream.shape[0]
    np.testing.assert_allclose(norm.mean, stream.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(
        norm.sumsq / (int(norm.count) - 1), stream.var(axis=0, ddof=1), rtol=1e-4
    )
    # One observation pushed: returned as it is (OmniSafe); later ones standardised and
    # clipped at 5 with the updated statistics.
    np.testing.assert_array_equal(first, batches[0])
    x = jnp.array([[100.0, 3.0, 3.0]])
    std = np.maximum(stream.std(axis=0, ddof=1), 1e-2)
    expected = np.clip((np.asarray(x) - stream.mean(axis=0)) / std, -5, 5)
    np.testing.assert_allclose(P.obs_norm_apply(norm, x, 5.0), expected, rtol=1e-4)
    assert float(P.obs_norm_apply(norm, x, 5.0)[0, 0]) == 5.0


def test_actions_are_inside_the_box_and_deterministic_is_the_mean():
    state = P.init(BASE, SPEC, jax.random.key(0))
    obs = 50.0 * jax.random.normal(jax.random.key(1), (64, 3))
    state, obs_n = P.normalize_observation(state, obs)
    env_action, extras = P.rollout_act(state, obs_n, jax.random.key(2))
    low, high = np.array(SPEC.action_low), np.array(SPEC.action_high)
    assert np.all((env_action >= low) & (env_action <= high))
    np.testing.assert_allclose(
        env_action, np.clip(np.asarray(extras.raw_action) * [1, 2], low, high)
    )
    a = P.act(state, obs, jax.random.key(3), deterministic=True)
    b = P.act(state, obs, jax.random.key(4), deterministic=True)
    np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------------------- update phase


@pytest.fixture(scope="module")
def base_run():
    """Two consecutive update phases of the base config, from fresh copies of the inputs."""
    state = P.init(BASE, SPEC, jax.random.key(0))
    state, rollout = _rollout(state, 1)
    before = _copy(state)
    s1, m1 = P.update_rollout_jit(_copy(state), rollout, _info())
    s1_copy = _copy(s1)
    s1, rollout2 = _rollout(s1, 2)
    s2, m2 = P.update_rollout_jit(s1, rollout2, _info(cost=10.0))
    return before, rollout, s1_copy, m1, s2, m2


def test_every_planned_update_runs_when_the_kl_target_is_huge(base_run):
    _, _, _, m1, _, _ = base_run
    assert float(m1["passes"]) == BASE.update_iters
    assert float(m1["updates"]) == BASE.update_iters * N_MINIBATCHES
    assert float(m1["kl"]) > 0.0


def test_kl_early_stop_ends_the_passes_when_the_target_is_tiny(base_run):
    before, rollout, s1_full, _, _, _ = base_run
    tiny = dataclasses.replace(BASE, target_kl=1e-12)
    s1, m = P.update_rollout_jit(_copy(before.replace(config=tiny)), rollout, _info())
    assert float(m["passes"]) == 1.0
    assert float(m["updates"]) == N_MINIBATCHES < BASE.update_iters * N_MINIBATCHES
    assert float(m["kl"]) > 1e-12
    # One pass moved the policy less far than four (the same first shuffle, then no more).
    distance = P.gaussian_kl  # KL(before || after) over the rollout's observations
    obs = rollout.obs.reshape(T * E, -1)

    def kl_from_before(after):
        policy = P._parts(before)[0]
        m0, s0 = policy.apply({"params": before.actor.params}, obs)
        m1_, s1_ = policy.apply({"params": after.actor.params}, obs)
        return float(jnp.mean(distance(m0, s0, m1_, s1_)))

    np.testing.assert_allclose(kl_from_before(s1), float(m["kl"]), rtol=1e-3, atol=1e-7)
    assert kl_from_before(s1) < kl_from_before(s1_full)


def test_update_phase_moves_lambda_and_counts_phases(base_run):
    before, _, s1, m1, s2, m2 = base_run
    # First phase: J_c = 30 > 25 -> lambda up by the Adam step; second: 10 < 25 -> down.
    np.testing.assert_allclose(float(m1["multiplier"]), 0.001 + 0.035, rtol=1e-4)
    assert float(m2["multiplier"]) < float(m1["multiplier"])
    assert int(s1.phases) == 1 and int(s2.phases) == 2
    # Linear decay of the actor's learning rate over the 10 planned phases.
    np.testing.assert_allclose(float(m1["actor_lr"]), BASE.actor_lr, rtol=1e-6)
    np.testing.assert_allclose(float(m2["actor_lr"]), 0.9 * BASE.actor_lr, rtol=1e-6)
    for name in P.metric_names(BASE):
        assert np.isfinite(float(m1[name])), name
    assert set(m1) == set(P.METRIC_NAMES)


def test_update_phase_compiles_once(base_run):
    # base_run made two calls with a state the first call returned: one program.
    assert P.update_rollout_jit._cache_size() >= 1
    size = P.update_rollout_jit._cache_size()
    _, _, s1, _, _, _ = base_run
    s1, rollout = _rollout(_copy(s1), 3)
    P.update_rollout_jit(s1, rollout, _info())
    assert P.update_rollout_jit._cache_size() == size


def test_seeds_under_vmap_give_each_seeds_numbers_alone(base_run):
    seeds = (0, 1, 2)
    states, rollouts = [], []
    for s in seeds:
        state, rollout = _rollout(P.init(BASE, SPEC, jax.random.key(10 + s)), 20 + s)
        states.append(state)
        rollouts.append(rollout)
    infos = [_info(cost=c) for c in (30.0, 10.0, 25.5)]
    stack = lambda trees: jax.tree.map(lambda *xs: jnp.stack(xs), *trees)  # noqa: E731
    mapped = jax.jit(jax.vmap(P.update_rollout))
    s_all, m_all = mapped(stack(states), stack(rollouts), stack(infos))
    for k in range(len(seeds)):
        s_k, m_k = P.update_rollout_jit(_copy(states[k]), rollouts[k], infos[k])
        for name in m_k:
            np.testing.assert_allclose(m_all[name][k], m_k[name], rtol=1e-5, atol=1e-6)
        got = jax.tree.map(lambda x, k=k: x[k], s_all.actor.params)
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
            got,
            s_k.actor.params,
        )
        np.testing.assert_allclose(s_all.lagrange.value[k], s_k.lagrange.value, rtol=1e-6)


def test_learns_a_one_step_bandit():
    """Every step is a one-step episode with reward -|a - 0.5|^2 (env units): the
    deterministic action's reward improves over a few update phases."""
    state = P.init(BASE, SPEC, jax.random.key(5))
    target = jnp.array([0.5, 0.5])
    obs_raw = jnp.ones((T * E, SPEC.obs_dim))

    def greedy_reward(s):
        a = P.act(s, obs_raw[:1], jax.random.key(0), deterministic=True)
        return float(-jnp.sum((a - target) ** 2))

    start = greedy_reward(state)
    key = jax.random.key(6)
    for phase in range(12):
        key, k_act = jax.random.split(key)
        state, obs = normalize_observation(state, obs_raw)
        env_action, ex = rollout_act(state, obs, k_act)
        reward = -jnp.sum((env_action - target) ** 2, axis=-1).reshape(T, E)
        zeros = jnp.zeros((T, E))
        rollout = P.Rollout(
            obs=obs.reshape(T, E, -1),
            raw_action=ex.raw_action.reshape(T, E, -1),
            log_prob=ex.log_prob.reshape(T, E),
            value_r=ex.value_r.reshape(T, E),
            value_c=ex.value_c.reshape(T, E),
            reward=reward,
            cost=zeros,
            next_value_r=zeros,
            next_value_c=zeros,
            terminated=jnp.ones((T, E), bool),
            truncated=jnp.zeros((T, E), bool),
        )
        state, metrics = P.update_rollout_jit(state, rollout, _info(cost=0.0, count=phase + 1))
    end = greedy_reward(state)
    # Start: about -0.5 (the untrained mean near 0 in both dims); a clear improvement after.
    assert end > start + 0.1, (start, end)
    assert float(metrics["multiplier"]) == 0.0  # cost 0 < limit: lambda pushed to 0


def test_config_rejects_impossible_values():
    with pytest.raises(ValueError, match="--clip"):
        P.PPOLagConfig(clip=0.0).validate()
    with pytest.raises(ValueError, match="--minibatch-size"):
        P.PPOLagConfig(minibatch_size=128, steps_per_epoch=64).validate()


def test_resolve_takes_the_tasks_limit_and_kind_of_episode_cost():
    class Spec(NamedTuple):
        cost_budget: float
        episode_cost_limit: float | None
        eval_cost: str

    speed = P.resolve(BASE, Spec(151.989, None, "discounted"))
    assert (speed.cost_limit, speed.episode_cost) == (151.989, "discounted")
    episodic = P.resolve(BASE, Spec(3.1, 10.0, "sum"))
    assert (episodic.cost_limit, episodic.episode_cost) == (10.0, "sum")


def test_lambda_reads_the_window_of_the_configured_kind(base_run):
    """J_c comes from the undiscounted window with `episode_cost="sum"` and from the
    discounted one with `"discounted"`: the same info moves lambda up in one case (30 > 25)
    and down in the other (10 < 25)."""
    before, rollout, _, _, _, _ = base_run
    info = _info(cost=30.0, discounted=10.0)
    for kind, mean, up in (("sum", 30.0, True), ("discounted", 10.0, False)):
        config = dataclasses.replace(BASE, episode_cost=kind)
        lagrange, metrics = P.multiplier_step(
            before.lagrange, P.episode_window_costs(config, info), info.episode_count, config
        )
        np.testing.assert_allclose(float(metrics["episode_cost_mean"]), mean, rtol=1e-6)
        assert (float(lagrange.value) > float(before.lagrange.value)) == up


def test_the_rollout_size_is_steps_per_epoch_and_e_belongs_to_the_loop():
    config = P.PPOLagConfig(steps_per_epoch=48, minibatch_size=16).validate()
    assert P.rollout_size(config) == 48
    # E is the loop's --num-envs (default 1, OmniSafe's vector_env_nums), not an option
    assert "num_envs" not in P.ALGORITHM.option_names()
    with pytest.raises(ValueError, match="--minibatch-size"):
        P.PPOLagConfig(steps_per_epoch=8, minibatch_size=16).validate()


def test_the_registry_entry_is_on_policy_and_hides_the_task_fields():
    entry = P.ALGORITHM
    assert entry.kind == "on-policy" and entry.update is None
    assert entry.on_policy is P.ON_POLICY
    assert "cost_limit" not in entry.option_names()
    assert "episode_cost" not in entry.option_names()
    assert entry.episode_window(BASE) == BASE.episode_window
    with pytest.raises(ValueError, match="on-policy entry needs on_policy"):
        dataclasses.replace(entry, on_policy=None)
    with pytest.raises(ValueError, match="off-policy entry needs an update"):
        Algorithm(
            name="x",
            description="",
            config_type=P.PPOLagConfig,
            init=P.init,
            act=P.act,
            update=None,
            metric_names=P.metric_names,
            resolve=P.resolve,
        )
