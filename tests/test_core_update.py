"""The jitted ALGD update: fused scan, target schedule, cost targets, recompilation,
ensembles, variants, the registry entry and the seed axis."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algd_jax import programs
from algd_jax.algorithms import algd, get_algorithm
from algd_jax.algorithms.algd import (
    ALGDConfig,
    critic_step,
    draw_update_noise,
    paper_faithful,
    policy_chain,
    select_action,
    update,
    update_from_key,
    update_many,
    update_with_noise,
)
from algd_jax.networks import CriticMLP, cost_critic
from tests.conftest import (
    DA,
    DS,
    SMALL,
    B,
    assert_states_close,
    flat,
    leaves,
    make_batch,
    new_agent,
)


def test_fused_scan_equals_sequential_updates():
    num = 4
    batch = make_batch(0, (num,))
    fused, fused_metrics = update_many(new_agent(), batch)
    state = new_agent()
    seq_metrics = []
    for u in range(num):
        state, m = update(state, jax.tree.map(lambda x, u=u: x[u], batch))
        seq_metrics.append(m)
    assert_states_close(fused, state)
    for key in fused_metrics:
        np.testing.assert_allclose(
            fused_metrics[key], [m[key] for m in seq_metrics], rtol=2e-5, atol=1e-6
        )
    assert int(fused.step) == int(state.step) == num
    # Something moved: the update is not a no-op.
    before = new_agent()
    assert not np.allclose(flat(before.actor.params), flat(fused.actor.params))


def test_registry_update_is_update_with_noise_drawn_from_the_state_key():
    algo = get_algorithm("algd")
    assert algo.update is update_from_key and algo.config_type is ALGDConfig
    state, batch = new_agent(), make_batch(10)
    new, metrics = jax.jit(algo.update)(state, batch)
    # The noise as the registry's update draws it: split the state's key, draw from the
    # second half, keep the first.
    key, noise_key = jax.random.split(state.key)
    noise = draw_update_noise(noise_key, SMALL, B, DA)
    expected, expected_metrics = jax.jit(update_with_noise)(state.replace(key=key), batch, noise)
    for x, y in zip(leaves(new), leaves(expected), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(jax.random.key_data(new.key), jax.random.key_data(key))
    assert metrics.keys() == expected_metrics.keys() == set(algd.metric_names(SMALL))
    for name in metrics:
        np.testing.assert_allclose(metrics[name], expected_metrics[name], rtol=1e-6, atol=1e-7)
    # ... and other noise gives another update (the comparison above can fail).
    other = draw_update_noise(jax.random.key(123), SMALL, B, DA)
    _, other_metrics = jax.jit(update_with_noise)(state.replace(key=key), batch, other)
    assert not np.allclose(other_metrics["actor_loss"], metrics["actor_loss"])


def _online_after_each_update(state, batch):
    """A fused scan of the updates that also returns the online critics after each one."""

    def body(s, b):
        s, _ = update_from_key(s, b)
        return s, (s.critic.params, s.cost_critic.params)

    return jax.lax.scan(body, state, batch)


def _as_f64(tree):
    return jax.tree.map(lambda x: np.asarray(x, np.float64), tree)


def _mixed_targets(initial, online, rate, due):
    """Targets by hand: `T <- (1 - rate) T + rate online_u` after each update u in `due`."""
    target = initial
    for u in range(len(online)):
        if u in due:
            target = jax.tree.map(lambda t, p: (1.0 - rate) * t + rate * p, target, online[u])
    return target


def _max_diff(a, b) -> float:
    return max(float(np.max(np.abs(x - y))) for x, y in zip(leaves(a), leaves(b), strict=True))


@pytest.mark.parametrize(
    "every,due,wrong",
    [
        (2, (0, 2, 4, 6), (1, 3, 5)),  # wrong: every k-th counted from 1 (odd indices)
        (5, (0, 5), (4,)),
    ],
)
def test_targets_move_on_every_kth_update_of_the_global_count(every, due, wrong):
    num, rate = 7, 0.5  # a large Polyak rate and fast critics: schedules differ clearly
    config = dataclasses.replace(
        SMALL, target_update_every=every, polyak=rate, critic_lr=1e-2, cost_critic_lr=1e-2
    )
    batch = make_batch(1, (num,))
    state = new_agent(config)
    initial = _as_f64((state.critic.target_params, state.cost_critic.target_params))
    final, online = jax.jit(_online_after_each_update)(state, batch)
    assert int(final.step) == num
    online = [jax.tree.map(lambda x, u=u: x[u], _as_f64(online)) for u in range(num)]
    actual = _as_f64((final.critic.target_params, final.cost_critic.target_params))
    expected = _mixed_targets(initial, online, rate, due)
    for x, y in zip(leaves(actual), leaves(expected), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
    # The check tells schedules apart: a shifted schedule, or mixing on every update, or
    # never, would have given other targets.
    for other in (wrong, tuple(range(num)), ()):
        assert _max_diff(actual, _mixed_targets(initial, online, rate, other)) > 1e-3, other

    # The counter is global: seven separate one-update calls (each knowing only the state's
    # step) move the targets on the same updates as the fused scan.
    sequential = new_agent(config)
    for u in range(num):
        sequential, _ = update(sequential, jax.tree.map(lambda x, u=u: x[u], batch))
    assert int(sequential.step) == num
    assert_states_close(
        (sequential.critic.target_params, sequential.cost_critic.target_params),
        (final.critic.target_params, final.cost_critic.target_params),
    )


def test_shared_cost_target_through_critic_step():
    """With `cost_target="shared"` every cost member regresses on c + gamma_c mask_c mean_i
    Qc'_i(s', a'), a' the policy's next action; checked on the loss and on the first Adam
    step of the ensemble."""
    lr = 1e-3
    config = dataclasses.replace(SMALL, cost_target="shared", cost_critic_lr=lr)
    state = new_agent(config)
    # A fixed ensemble of targets that clearly disagree: members offset by 0, 2 and 4.
    target_params = jax.tree.map(jnp.array, state.cost_critic.target_params)
    members = target_params["params"]["members"]
    members["out"]["bias"] = members["out"]["bias"] + jnp.array([[0.0], [2.0], [4.0]])
    state = state.replace(cost_critic=state.cost_critic.replace(target_params=target_params))
    batch = make_batch(2)
    batch = batch._replace(mask_c=jnp.asarray(np.arange(B) % 4 != 0, jnp.float32))
    noise = draw_update_noise(jax.random.key(3), config, B, DA)
    _, cost, metrics = jax.jit(critic_step)(state, batch, noise)

    next_action = policy_chain(
        state, state.actor.params, batch.next_obs, noise.critic_init, noise.critic_steps
    ).a0
    apply = state.cost_critic.apply_fn
    qc_next = np.asarray(apply(target_params, batch.next_obs, next_action), np.float64)
    assert qc_next.shape == (SMALL.ensemble_size, B)
    c, mask = np.asarray(batch.cost, np.float64), np.asarray(batch.mask_c, np.float64)
    shared = c + config.cost_gamma * mask * qc_next.mean(axis=0)  # [B]
    per_member = c + config.cost_gamma * mask * qc_next  # [M, B]
    q = np.asarray(apply(state.cost_critic.params, batch.obs, batch.action), np.float64)
    loss = np.mean((q - shared) ** 2)
    np.testing.assert_allclose(metrics["cost_critic_loss"], loss, rtol=1e-5)
    np.testing.assert_allclose(metrics["target_qc"], shared.mean(), rtol=1e-5)
    # The per-member target would have given another loss.
    assert abs(np.mean((q - per_member) ** 2) - loss) > 0.1 * loss

    # Adam's first step moves each parameter by -lr g / (|g| + eps), g the gradient of the
    # mean squared error against the target: -lr sign(g) where |g| is well above eps.
    def expected_step(target):
        target = jnp.asarray(target, jnp.float32)
        grads = jax.grad(lambda p: jnp.mean((apply(p, batch.obs, batch.action) - target) ** 2))(
            state.cost_critic.params
        )
        return [(g, -lr * np.sign(g)) for g in leaves(grads)]

    steps = [
        new.astype(np.float64) - p
        for p, new in zip(leaves(state.cost_critic.params), leaves(cost.params), strict=True)
    ]
    for step, (g, expected) in zip(steps, expected_step(shared), strict=True):
        assert np.all(np.abs(step) <= lr * (1 + 1e-4))
        clear = np.abs(g) > 1e-5
        assert np.mean(clear) > 0.5  # most of the ensemble learns from this batch
        np.testing.assert_allclose(step[clear], expected[clear], rtol=1e-3)
    # ... which the per-member target would have moved otherwise.
    assert any(
        np.max(np.abs(step - expected)) > lr
        for step, (_, expected) in zip(steps, expected_step(per_member), strict=True)
    )


def test_no_recompilation_with_new_data():
    # jit objects of one function share a cache, so count entries added by these calls. A
    # config no other test uses, so that what this test compiles does not depend on which
    # tests ran before it in this process.
    config = dataclasses.replace(SMALL, cost_budget=0.4375)
    before = update_many._cache_size()
    state, _ = update_many(new_agent(config), make_batch(0, (2,)))
    compiled = update_many._cache_size()
    assert compiled == before + 1
    for seed in range(1, 4):
        state, _ = update_many(state, make_batch(seed, (2,)))
    # A fresh agent of the same config (another seed) shares the compiled program too.
    update_many(new_agent(config, seed=5), make_batch(4, (2,)))
    assert update_many._cache_size() == compiled
    # A different U is a different program, as it should be: the counter does move.
    update_many(state, make_batch(9, (3,)))
    assert update_many._cache_size() == compiled + 1


def test_program_size_does_not_grow_with_u():
    # The fused update is a scan: its body appears once in the program whatever U is (an
    # unrolled Python loop would repeat it U times), so compile time does not grow with U.
    # Checked on the lowered program's size, not by timing the compiler.
    def program_chars(num):
        lowered = jax.jit(algd._update_many).lower(new_agent(), make_batch(0, (num,)))
        return len(lowered.as_text())

    one, ten = program_chars(1), program_chars(10)
    assert ten < 1.05 * one, (one, ten)


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
    actions = select_action(state, batch.obs[0], jax.random.key(0))
    assert actions.shape == (B, DA) and np.all(np.abs(np.asarray(actions)) <= 1)
    if variant == "paper":
        # Score-only loss and projected ascent: lambda = max(0, lambda + eta (qc - h)).
        np.testing.assert_allclose(metrics["actor_loss"], metrics["score_mse"])
        assert np.all(np.asarray(metrics["multiplier"]) >= 0)


@pytest.mark.parametrize("variant", ["algd", "lgd", "algd-ddpm"])
def test_registry_entries_fix_their_variant(variant):
    algo = get_algorithm(variant)
    assert algo.default_config().agent == variant
    assert algo.default_config(ensemble_size=2).ensemble_size == 2
    assert "agent" not in algo.option_names() and "cost_budget" not in algo.option_names()
    assert {"target_update_every", "cost_target"} <= set(algo.option_names())


def test_projected_multiplier_rule():
    config = dataclasses.replace(
        SMALL, multiplier="projected", multiplier_lr=0.1, init_multiplier=0.05
    )
    state = new_agent(config)
    batch = make_batch(4)
    noise = draw_update_noise(jax.random.key(0), config, B, DA)
    new, metrics = jax.jit(update_with_noise)(state, batch, noise)
    risk = float(metrics["qc_risk"])
    expected = max(0.0, 0.05 + 0.1 * (risk - config.cost_budget))
    assert float(new.multiplier.params["value"]) == pytest.approx(expected, rel=1e-5)
    assert float(metrics["multiplier"]) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("axis", ["map", "vmap"])
def test_seed_axis_equals_separate_runs(axis):
    seeds = (0, 1)
    batch = make_batch(5, (len(seeds), 2))  # [S, U, B, ...]: each seed its own data
    algo = get_algorithm("algd")
    progs = programs.programs(algo.act, algo.update, axis)
    stacked = programs.stack([new_agent(seed=s) for s in seeds])
    names = tuple(algo.metric_names(SMALL))
    together, sums = progs.train(stacked, programs.new_sums(names, len(seeds)), batch, 0, 0)
    assert sums["sum"]["critic_loss"].shape == (len(seeds),)
    np.testing.assert_array_equal(sums["count"], [2, 2])
    for i, s in enumerate(seeds):
        own_batch = jax.tree.map(lambda x, i=i: x[i], batch)
        alone, alone_metrics = update_many(new_agent(seed=s), own_batch)
        mine = programs.unstack(together, i)
        if axis == "map":
            # Seed by seed inside one program: bitwise the numbers of a lone run.
            for x, y in zip(leaves(mine), leaves(alone), strict=True):
                np.testing.assert_array_equal(x, y)
        else:
            assert_states_close(mine, alone)
        # the device-side epoch sums are the sums of the lone run's per-update metrics
        np.testing.assert_allclose(
            sums["sum"]["critic_loss"][i], np.sum(alone_metrics["critic_loss"]), rtol=2e-5
        )
    # The seeds are distinct learners.
    assert not np.allclose(
        flat(programs.unstack(together, 0).actor.params),
        flat(programs.unstack(together, 1).actor.params),
    )


def test_seed_axis_act_folds_the_step_into_each_seeds_key():
    algo = get_algorithm("algd")
    progs = programs.programs(algo.act, algo.update, "map")
    states = [new_agent(seed=s) for s in (0, 1)]
    obs = make_batch(8, rows=2).obs  # [S, ds]: one observation per seed
    keys = jax.random.split(jax.random.key(4), 2)
    actions = progs.act(programs.stack(states), obs, keys, 7, False)
    assert actions.shape == (2, DA)
    for k, state in enumerate(states):
        alone = select_action(state, obs[k : k + 1], jax.random.fold_in(keys[k], 7))[0]
        np.testing.assert_allclose(actions[k], alone, rtol=1e-6, atol=1e-7)
    later = progs.act(programs.stack(states), obs, keys, 8, False)
    assert not np.allclose(actions, later)
    det = progs.act(programs.stack(states), obs, keys, 8, True)
    np.testing.assert_array_equal(det, progs.act(programs.stack(states), obs, keys, 9, True))


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
    obs = make_batch(7).obs
    a1 = select_action(state, obs, jax.random.key(0), deterministic=True)
    a2 = select_action(state, obs, jax.random.key(1), deterministic=True)
    np.testing.assert_array_equal(a1, a2)
    s1 = select_action(state, obs, jax.random.key(0))
    s2 = select_action(state, obs, jax.random.key(1))
    assert not np.allclose(s1, s2)


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("mc_samples", 0, "--mc-samples"),
        ("ensemble_size", -1, "--ensemble-size"),
        ("diffusion_steps", 0, "--diffusion-steps"),
        ("rho", 0.0, "--rho"),
        ("beta", -1.0, "--beta"),
        ("sigma_min", 2.0, "--sigma-min"),
        ("target_update_every", 0, "--target-update-every"),
        ("cost_target", "mean", "--cost-target"),
        ("multiplier", "pid", "--multiplier"),
    ],
)
def test_impossible_config_is_rejected(field, value, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(SMALL, **{field: value}).validate()


@pytest.mark.parametrize("variant", ["algd", "lgd", "algd-ddpm"])
def test_actor_gradient_equals_autodiff_through_the_energy_at_a0(variant):
    # actor_loss_fn evaluates L(s, a_0) together with the Monte-Carlo samples and chains its
    # action gradient through a_0 by hand; it must equal plain autodiff of
    # mean L(s, a_0(theta)) + w * score mse.
    config = dataclasses.replace(SMALL, agent=variant)
    state = new_agent(config)
    obs = make_batch(7).obs
    noise = draw_update_noise(jax.random.key(8), config, B, DA)
    params = (state.critic.params, state.cost_critic.params)

    def fused(p):
        return algd.actor_loss_fn(state, p, *params, obs, noise)[0]

    def direct(p):
        energy = algd.state_energy(state, *params)
        chain = algd.policy_chain(
            state, p, obs, noise.actor_init, noise.actor_steps, noise.actor_taus
        )
        sigma = jnp.asarray(algd.proposal_sigma(config))[noise.actor_taus]
        phi_star = algd.mc_score_target_and_energy_at(
            energy, obs, jax.lax.stop_gradient(chain.a_tau), sigma, noise.mc, config.beta
        )[0]
        phi, _ = state.actor.apply_fn(p, obs, chain.a_tau, noise.actor_taus)
        score_mse = jnp.mean((phi - phi_star) ** 2)
        return jnp.mean(energy(obs, chain.a0)) + config.score_loss_weight * score_mse

    # jitted: op-by-op dispatch of these two graphs costs far more than compiling them
    value, grads = jax.jit(jax.value_and_grad(fused))(state.actor.params)
    expected_value, expected_grads = jax.jit(jax.value_and_grad(direct))(state.actor.params)
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
