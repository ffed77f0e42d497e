"""The jitted ALGD update: fused scan, recompilation, ensembles, variants, seed-vmapping."""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algd_jax import agent as agent_lib
from algd_jax.algorithms.algd import (
    create_agent,
    draw_update_noise,
    select_action,
    stack_states,
    update,
    update_many,
    update_with_noise,
)
from algd_jax.algorithms.algd import ALGDConfig, paper_faithful
from algd_jax.networks import CriticMLP, cost_critic

DS, DA, B = 5, 3, 16
SMALL = ALGDConfig(
    ensemble_size=3,
    mc_samples=3,
    diffusion_steps=4,
    critic_hidden=32,
    score_hidden=32,
    cost_budget=0.5,
)


def make_batch(seed: int, leading: tuple[int, ...] = ()) -> dict[str, jax.Array]:
    rng = np.random.default_rng(seed)
    shape = (*leading, B)
    batch = {
        "obs": rng.normal(size=(*shape, DS)),
        "action": rng.uniform(-1, 1, (*shape, DA)),
        "reward": rng.normal(size=shape),
        "cost": rng.uniform(0, 1, shape),
        "next_obs": rng.normal(size=(*shape, DS)),
        "mask_r": (rng.uniform(size=shape) > 0.1),
        "mask_c": np.ones(shape),
    }
    return {k: jnp.asarray(v, jnp.float32) for k, v in batch.items()}


def new_agent(config: ALGDConfig = SMALL, seed: int = 0):
    return create_agent(config, DS, -np.ones(DA), np.ones(DA), seed)


def leaves(state):
    return [
        np.asarray(x)
        for x in jax.tree.leaves(state)
        if hasattr(x, "dtype") and not jnp.issubdtype(x.dtype, jax.dtypes.prng_key)
    ]


def flat(tree) -> np.ndarray:
    return np.concatenate([np.ravel(x) for x in leaves(tree)])


def assert_states_close(a, b, rtol=2e-5, atol=1e-6):
    for x, y in zip(leaves(a), leaves(b), strict=True):
        np.testing.assert_allclose(x, y, rtol=rtol, atol=atol)


def test_fused_scan_equals_sequential_updates():
    num = 4
    batch = make_batch(0, (num,))
    fused, fused_metrics = update_many(new_agent(), batch)
    state = new_agent()
    seq_metrics = []
    for u in range(num):
        state, m = update(state, jax.tree.map(lambda x, u=u: x[u], batch), u)
        seq_metrics.append(m)
    assert_states_close(fused, state)
    for key in fused_metrics:
        np.testing.assert_allclose(
            fused_metrics[key], [m[key] for m in seq_metrics], rtol=2e-5, atol=1e-6
        )
    assert int(fused.step) == num
    # Something moved: the update is not a no-op.
    before = new_agent()
    assert not np.allclose(flat(before.actor.params), flat(fused.actor.params))


def test_polyak_only_on_even_indices():
    batch = make_batch(1)
    state = new_agent()
    target0 = jax.tree.map(np.asarray, state.critic.target_params)
    odd, _ = update(new_agent(), batch, 1)
    even, _ = update(new_agent(), batch, 2)
    for x, y in zip(
        jax.tree.leaves(target0), jax.tree.leaves(odd.critic.target_params), strict=True
    ):
        np.testing.assert_array_equal(x, y)
    online = jax.tree.leaves(even.critic.params)
    for x, y, z in zip(
        jax.tree.leaves(target0), jax.tree.leaves(even.critic.target_params), online, strict=True
    ):
        np.testing.assert_allclose(y, 0.995 * x + 0.005 * np.asarray(z), rtol=1e-5, atol=1e-7)


def test_no_recompilation_with_new_data():
    # jit objects of one function share a cache, so count entries added by these calls.
    state, _ = update_many(new_agent(), make_batch(0, (2,)))
    compiled = update_many._cache_size()
    for seed in range(1, 4):
        state, _ = update_many(state, make_batch(seed, (2,)))
    assert update_many._cache_size() == compiled
    # A different U is a different program, as it should be: the counter does move.
    update_many(state, make_batch(9, (3,)))
    assert update_many._cache_size() == compiled + 1


def test_compile_time_does_not_grow_with_u():
    def compile_seconds(num):
        fn = jax.jit(agent_lib._update_many, donate_argnums=0)
        lowered = fn.lower(new_agent(), make_batch(0, (num,)))
        start = time.perf_counter()
        lowered.compile()
        return time.perf_counter() - start

    # Warm the caches shared by both measurements with a third size (equal programs would
    # hit JAX's compilation cache).
    compile_seconds(3)
    t1, t10 = compile_seconds(1), compile_seconds(10)
    # An unrolled Python loop would take ~10x; a scan compiles the body once.
    assert t10 < 2.0 * t1 + 0.5, (t1, t10)


def test_ensemble_equals_loop_over_members():
    net = cost_critic(4, 8)
    obs = jax.random.normal(jax.random.key(0), (7, DS))
    act = jax.random.normal(jax.random.key(1), (7, DA))
    params = net.init(jax.random.key(2), obs, act)
    out = net.apply(params, obs, act)
    single = CriticMLP(hidden=8, activation="silu", kernel_init="scaled_normal")
    for m in range(4):
        member = jax.tree.map(lambda x, m=m: x[m], params["params"]["members"])
        np.testing.assert_allclose(
            out[m], single.apply({"params": member}, obs, act), rtol=1e-6, atol=1e-6
        )
    # Members differ: split init keys.
    assert not np.allclose(out[0], out[1])


def test_cost_critic_init_scale():
    net = cost_critic(8, 256)
    params = net.init(jax.random.key(0), jnp.zeros((1, 17)), jnp.zeros((1, 6)))
    kernel = np.asarray(params["params"]["members"]["hidden_1"]["kernel"])
    assert kernel.std() == pytest.approx(1 / (2 * np.sqrt(256)), rel=0.02)
    assert np.all(np.asarray(params["params"]["members"]["hidden_1"]["bias"]) == 0)


@pytest.mark.parametrize("variant", ["lgd", "algd-ddpm", "paper"])
def test_variants_update_and_differ(variant):
    config = (
        paper_faithful(SMALL) if variant == "paper" else dataclasses.replace(SMALL, agent=variant)
    )
    batch = make_batch(3, (3,))
    state, metrics = update_many(new_agent(config), batch)
    _, base_metrics = update_many(new_agent(), batch)
    for key, value in metrics.items():
        assert np.all(np.isfinite(np.asarray(value))), key
    assert not np.allclose(metrics["actor_loss"], base_metrics["actor_loss"])
    actions = select_action(state, batch["obs"][0], jax.random.key(0))
    assert actions.shape == (B, DA) and np.all(np.abs(np.asarray(actions)) <= 1)
    if variant == "paper":
        # Score-only loss and projected ascent: lambda = max(0, lambda + eta (qc - h)).
        np.testing.assert_allclose(metrics["actor_loss"], metrics["score_mse"])
        assert np.all(np.asarray(metrics["multiplier"]) >= 0)


def test_projected_multiplier_rule():
    config = dataclasses.replace(
        SMALL, multiplier="projected", multiplier_lr=0.1, init_multiplier=0.05
    )
    state = new_agent(config)
    batch = make_batch(4)
    noise = draw_update_noise(jax.random.key(0), config, B, DA)
    new, metrics = update_with_noise(state, batch, noise)
    risk = float(metrics["qc_risk"])
    expected = max(0.0, 0.05 + 0.1 * (risk - config.cost_budget))
    assert float(new.multiplier.params["value"]) == pytest.approx(expected, rel=1e-5)


def test_seeds_vmap_equals_separate_runs():
    batch = make_batch(5, (2,))
    states = [new_agent(seed=s) for s in (0, 1)]
    stacked = stack_states(states)
    vmapped, _ = jax.jit(jax.vmap(agent_lib._update_many, in_axes=(0, None)))(stacked, batch)
    for i, s in enumerate((0, 1)):
        alone, _ = update_many(new_agent(seed=s), batch)
        assert_states_close(jax.tree.map(lambda x, i=i: x[i], vmapped), alone)


def test_same_seed_same_numbers():
    batch = make_batch(6, (2,))
    a, ma = update_many(new_agent(seed=3), batch)
    b, mb = update_many(new_agent(seed=3), batch)
    for x, y in zip(leaves(a), leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)
    c, _ = update_many(new_agent(seed=4), batch)
    assert not np.array_equal(flat(a.actor.params), flat(c.actor.params))


def test_deterministic_action_is_the_noise_free_chain():
    state = new_agent()
    obs = make_batch(7)["obs"]
    a1 = select_action(state, obs, jax.random.key(0), deterministic=True)
    a2 = select_action(state, obs, jax.random.key(1), deterministic=True)
    np.testing.assert_array_equal(a1, a2)
    s1 = select_action(state, obs, jax.random.key(0))
    s2 = select_action(state, obs, jax.random.key(1))
    assert not np.allclose(s1, s2)


@pytest.mark.parametrize(
    "field,value",
    [
        ("mc_samples", 0),
        ("ensemble_size", -1),
        ("diffusion_steps", 0),
        ("rho", 0.0),
        ("beta", -1.0),
        ("sigma_min", 2.0),
    ],
)
def test_impossible_config_is_rejected(field, value):
    with pytest.raises(ValueError, match=field.split("_")[0].replace("_", "-")):
        dataclasses.replace(SMALL, **{field: value}).validate()


@pytest.mark.parametrize("variant", ["algd", "lgd", "algd-ddpm"])
def test_actor_gradient_equals_autodiff_through_the_energy_at_a0(variant):
    # actor_loss_fn evaluates L(s, a_0) together with the Monte-Carlo samples and chains its
    # action gradient through a_0 by hand; it must equal plain autodiff of
    # mean L(s, a_0(theta)) + w * score mse.
    config = dataclasses.replace(SMALL, agent=variant)
    state = new_agent(config)
    batch = make_batch(7)
    noise = draw_update_noise(jax.random.key(8), config, B, DA)
    params = (state.critic.params, state.cost_critic.params)

    def fused(p):
        return agent_lib.actor_loss_fn(state, p, *params, batch["obs"], noise)[0]

    def direct(p):
        energy = agent_lib.state_energy(state, *params)
        chain = agent_lib.policy_chain(
            state, p, batch["obs"], noise.actor_init, noise.actor_steps, noise.actor_taus
        )
        sigma = jnp.asarray(agent_lib.proposal_sigma(config))[noise.actor_taus]
        phi_star = agent_lib.mc_score_target_and_energy_at(
            energy, batch["obs"], jax.lax.stop_gradient(chain.a_tau), sigma, noise.mc, config.beta
        )[0]
        phi, _ = state.actor.apply_fn(p, batch["obs"], chain.a_tau, noise.actor_taus)
        score_mse = jnp.mean((phi - phi_star) ** 2)
        return jnp.mean(energy(batch["obs"], chain.a0)) + config.score_loss_weight * score_mse

    value, grads = jax.value_and_grad(fused)(state.actor.params)
    expected_value, expected_grads = jax.value_and_grad(direct)(state.actor.params)
    np.testing.assert_allclose(value, expected_value, rtol=1e-6)
    assert float(np.max(np.abs(flat(expected_grads)))) > 1e-3  # a gradient worth comparing
    np.testing.assert_allclose(flat(grads), flat(expected_grads), rtol=1e-5, atol=1e-7)


def test_update_noise_parts_are_independent_standard_normals_and_uniform_steps():
    rows = 4096
    noise = draw_update_noise(jax.random.key(11), SMALL, rows, DA)
    parts = {
        "critic_init": (rows, DA),
        "critic_steps": (SMALL.diffusion_steps, rows, DA),
        "actor_init": (rows, DA),
        "actor_steps": (SMALL.diffusion_steps, rows, DA),
        "mc": (rows, SMALL.mc_samples, DA),
    }
    for name, shape in parts.items():
        x = np.asarray(getattr(noise, name))
        assert x.shape == shape, name
        assert abs(x.mean()) < 0.03 and abs(x.std() - 1.0) < 0.03, name
    # Cut from one draw: the parts must not overlap.
    corr = np.corrcoef(np.ravel(noise.critic_init), np.ravel(noise.actor_init))[0, 1]
    assert abs(corr) < 0.05
    taus = np.asarray(noise.actor_taus)
    assert taus.dtype == np.int32 and taus.min() == 0 and taus.max() == SMALL.diffusion_steps - 1
    counts = np.bincount(taus, minlength=SMALL.diffusion_steps)
    expected = rows / SMALL.diffusion_steps
    assert np.all(np.abs(counts - expected) < 0.1 * expected), counts


def test_recomputed_silu_has_silu_values_and_gradients():
    from algd_jax.networks import silu_recomputed

    x = jnp.linspace(-30.0, 30.0, 1001)
    np.testing.assert_allclose(silu_recomputed(x), jax.nn.silu(x), rtol=1e-6, atol=1e-7)
    grad = jax.vmap(jax.grad(silu_recomputed))(x)
    s = 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))
    np.testing.assert_allclose(grad, s * (1.0 + np.asarray(x) * (1.0 - s)), rtol=1e-5, atol=1e-6)
