"""Hand-computed checks of the SAC-family baselines' distinctive pieces: the tanh-Gaussian
log-density, the temperature, CAL's bound and rectified multiplier, SAC-AugLag's augmented
penalty, SAC-Lag's OmniSafe multiplier rule, RCRL's feasibility backup; the loop's episode
window; and the baselines' presets and bad input."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algd_jax import multipliers, sac
from algd_jax.algorithms import LoopInfo, cal, get_algorithm, rcrl, sac_auglag, sac_lag, window_mean
from algd_jax.envs import get_task
from algd_jax.programs import fused
from algd_jax.train_config import RunError, parse_command_line
from benchmarks.common import make_batch

# ----------------------------------------------------------------------------- SAC core


def _info(
    costs: list[float], count: int, epoch: int, env_step: int = 0, total_updates: int = 100
) -> LoopInfo:
    window = jnp.asarray(costs, jnp.float32)
    return LoopInfo(
        env_step=jnp.asarray(env_step, jnp.int32),
        epoch=jnp.asarray(epoch, jnp.int32),
        update_step=jnp.asarray(0, jnp.int32),
        total_updates=jnp.asarray(total_updates, jnp.int32),
        episode_costs=window,
        episode_discounted_costs=window * 0.5,
        episode_returns=jnp.zeros_like(window),
        episode_count=jnp.asarray(count, jnp.int32),
    )


def test_tanh_gaussian_log_prob_is_the_change_of_variables() -> None:
    """log pi(a) against the density of u = atanh((a - bias) / scale) times |du/da|, the
    Jacobian taken by central differences of the inverse map in float64."""
    rng = np.random.default_rng(0)
    mean = rng.normal(size=(4, 3)) * 0.5
    log_std = rng.uniform(-1.0, 0.5, (4, 3))
    noise = rng.normal(size=(4, 3))
    scale, bias = np.array([1.0, 2.0, 0.5]), np.array([0.0, 1.0, -0.25])
    action, log_prob = sac.tanh_gaussian_sample(
        *(jnp.asarray(x, jnp.float32) for x in (mean, log_std, noise, scale, bias))
    )
    a = np.asarray(action, np.float64)

    def inverse(x: np.ndarray) -> np.ndarray:
        return np.arctanh((x - bias) / scale)

    u = inverse(a)
    std = np.exp(log_std)
    log_normal = -0.5 * ((u - mean) / std) ** 2 - np.log(std) - 0.5 * np.log(2 * np.pi)
    step = 1e-6
    du_da = (inverse(a + step) - inverse(a - step)) / (2 * step)
    expected = np.sum(log_normal + np.log(du_da), axis=-1)
    np.testing.assert_allclose(np.asarray(log_prob), expected, rtol=2e-4, atol=2e-3)
    assert np.all(np.abs(a - bias) < scale)  # inside the box


def test_deterministic_action_is_tanh_of_the_mean_in_the_box() -> None:
    got = sac.deterministic_action(jnp.array([0.0, 100.0]), jnp.array([2.0, 1.0]), 1.0)
    np.testing.assert_allclose(np.asarray(got), [1.0, 2.0], atol=1e-6)


def test_soft_q_target_by_hand() -> None:
    q_next = jnp.array([[1.0, 5.0], [2.0, 4.0]])  # [2, B]
    got = sac.soft_q_target(q_next, jnp.array([-1.0, 2.0]), jnp.array([0.5, 1.0]),
                            jnp.array([1.0, 0.0]), 0.9, jnp.asarray(0.2))  # fmt: skip
    # row 0: 0.5 + 0.9 (min(1, 2) - 0.2 * -1) = 0.5 + 0.9 * 1.2; row 1: terminal
    np.testing.assert_allclose(np.asarray(got), [0.5 + 0.9 * 1.2, 1.0], rtol=1e-6)


@pytest.mark.parametrize(("entropy", "direction"), [(3.0, -1), (-5.0, +1)])
def test_temperature_loss_moves_alpha_toward_the_target_entropy(
    entropy: float, direction: int
) -> None:
    """Target -2 nats: an entropy above it lowers alpha, one below raises it; the
    gradient in log alpha is alpha (entropy - target)."""
    log_alpha = jnp.asarray(np.log(0.5), jnp.float32)
    log_prob = jnp.full((8,), -entropy)
    grad = jax.grad(sac.temperature_loss)(log_alpha, log_prob, -2.0)
    assert float(grad) == pytest.approx(0.5 * (entropy + 2.0), rel=1e-5)
    stepped = log_alpha - 0.1 * grad
    assert np.sign(float(stepped - log_alpha)) == direction


# ----------------------------------------------------------------------------- CAL


def test_cal_ucb_is_mean_plus_k_bessel_std() -> None:
    qc = jnp.array([[1.0, 0.0], [2.0, 0.0], [6.0, 3.0]])  # [M = 3, B = 2]
    # column 0: mean 3, sample variance ((2^2 + 1^2 + 3^2) / 2) = 7; column 1: mean 1, var 3
    got = sac.ucb(qc, 0.5)
    np.testing.assert_allclose(np.asarray(got), [3 + 0.5 * np.sqrt(7), 1 + 0.5 * np.sqrt(3)],
                               rtol=1e-6)  # fmt: skip
    np.testing.assert_allclose(np.asarray(sac.ucb(qc[:1], 0.5)), [1.0, 0.0])  # M = 1: std 0


def test_cal_rectified_multiplier_is_the_positive_part() -> None:
    ucb = jnp.array([1.5, 2.5])  # mean 2
    # infeasible batch (2 > h = 1.9): lambda + c (2 - 1.9) = 0.5 + 10 * 0.1 = 1.5 > lambda
    assert float(cal.rectified_multiplier(0.5, ucb, 1.9, 10.0)) == pytest.approx(1.5, rel=1e-5)
    # feasible: 0.5 + 10 (2 - 2.02) = 0.3; far feasible: clipped at 0
    assert float(cal.rectified_multiplier(0.5, ucb, 2.02, 10.0)) == pytest.approx(0.3, rel=1e-4)
    assert float(cal.rectified_multiplier(0.5, ucb, 2.1, 10.0)) == 0.0


def test_cal_max_subset_target_takes_the_max_of_drawn_members() -> None:
    qc_next = jnp.array([[1.0, 4.0], [3.0, 2.0]])
    key = jax.random.key(0)
    members = jax.random.randint(key, (3,), 0, 2)
    expected = 0.5 + 0.9 * np.max(np.asarray(qc_next)[np.asarray(members)], axis=0)
    got = cal.max_subset_target(qc_next, jnp.full((2,), 0.5), jnp.ones(2), 0.9, key, 3)
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-6)


def _cal_rule(steps: int, updates: int, cap: int, epoch: int = 1000) -> list[bool]:
    """CAL's `main.py` guard, in plain Python: at env step t (counted from the first
    updating step) the U updates run unless the epoch's updates so far exceed cap * t."""
    done, applied = 0, []
    for t in range(steps):
        done = 0 if t % epoch == 0 else done
        run = not done > cap * t
        applied.append(run)
        done += updates if run else 0
    return applied


def test_cal_update_cap_follows_cal_s_first_epoch_guard() -> None:
    """U = 10, cap 5: CAL updates on every other step of its first epoch (t = 0, 2, 4 ...,
    so about 5 updates per step), which `observe` + `update` reproduce from the loop's
    env step and epoch; a new epoch resets the count, and the cap unset never skips."""
    spec = get_task("HalfCheetahVelocity")
    algo = get_algorithm("cal")
    config = algo.resolve(algo.default_config(critic_hidden=8, actor_hidden=8, ensemble_size=2),
                          spec)  # fmt: skip
    assert config.max_updates_per_step == 5
    many = jax.jit(fused(algo.update))
    observe = jax.jit(algo.observe)
    rng = np.random.default_rng(0)
    batch = make_batch(rng, 8, (10,))

    def run(config, calls):
        state = algo.init(config, spec, jax.random.key(0))
        applied = []
        for env_step, epoch in calls:
            state = observe(state, _info([], 0, epoch, env_step=env_step))
            before = int(state.step)
            state, metrics = many(state, batch)
            ran = int(state.step) - before
            assert ran in (0, 10)
            np.testing.assert_array_equal(np.asarray(metrics["update_applied"]), float(ran > 0))
            applied.append(ran > 0)
        return applied, state

    first = 5000  # the loop's first updating env step (after --initial-steps)
    calls = [(first + t, 5) for t in range(8)]
    applied, state = run(config, calls)
    assert applied == _cal_rule(8, 10, 5) == [True, False] * 4
    assert int(state.step) == 40
    # a new epoch at t = 8 starts its count at 0: 40 updates were the old epoch's
    applied, _ = run(config, [*calls, (first + 8, 6), (first + 9, 6)])
    assert applied[8:] == [True, True]
    applied, _ = run(dataclasses.replace(config, max_updates_per_step=None), calls)
    assert all(applied)
    # U = 10 skips only in the first 1000-step epoch, U = 20 (CAL's HalfCheetah) in three
    for updates, epochs in ((10, 1), (20, 3)):
        rule = np.reshape(_cal_rule(5000, updates, 5), (5, 1000))
        assert [not all(row) for row in rule] == [e < epochs for e in range(5)]


# ----------------------------------------------------------------------------- SAC-AugLag


def test_auglag_penalty_is_eq_9_and_its_gradient_the_shifted_multiplier() -> None:
    lam, rho, h = 0.7, 2.0, 1.0
    qc = jnp.array([0.2, 1.0, 3.0])
    shifted = np.maximum(lam + rho * (np.asarray(qc) - h), 0.0)  # [0, 0.7, 4.7]
    expected = (shifted**2 - lam**2) / (2 * rho)  # [-0.1225, 0, 5.4]
    penalty = np.asarray(sac_auglag.augmented_penalty(qc, lam, h, rho))
    np.testing.assert_allclose(penalty, [-0.1225, 0.0, 5.4], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(penalty, expected, rtol=1e-5, atol=1e-7)
    grad = jax.grad(lambda q: jnp.sum(sac_auglag.augmented_penalty(q, lam, h, rho)))(qc)
    np.testing.assert_allclose(np.asarray(grad), shifted, rtol=1e-5)
    # where active, it is the Lagrangian plus (rho / 2)(qc - h)^2
    assert float(sac_auglag.augmented_penalty(jnp.asarray(3.0), lam, h, rho)) == pytest.approx(
        lam * 2.0 + rho / 2 * 4.0, rel=1e-5
    )


# ----------------------------------------------------------------------------- SAC-Lag


def test_window_mean_over_the_filled_part() -> None:
    values = jnp.array([1.0, 2.0, 3.0, 4.0])
    assert float(window_mean(values, jnp.asarray(2))) == pytest.approx(3.5)
    assert float(window_mean(values, jnp.asarray(10))) == pytest.approx(2.5)
    assert float(window_mean(values, jnp.asarray(0))) == 0.0
    assert float(window_mean(jnp.zeros((0,)), jnp.asarray(5))) == 0.0


def test_sac_lag_omnisafe_rule_on_a_hand_made_sequence_of_episode_costs() -> None:
    """W = 3, limit 25, lambda_0 0.001, Adam on lambda (lr 0.1) clamped at 0, warm-up 2
    epochs: frozen during the warm-up and before any episode, then a first Adam step of
    +lr (its first step is lr * g / |g|) when J = 35 > 25, then down to exactly 0, never
    below, while J < 25."""
    config = dataclasses.replace(
        sac_lag.SACLagConfig(**sac_lag.OMNISAFE_VALUES),
        multiplier_lr=0.1,
        episode_window=3,
        warmup_epochs=2,
        episode_cost="sum",
        episode_cost_limit=25.0,
    )
    rule = config.multiplier
    lam = multipliers.create_multiplier(rule, 0.001, multipliers.multiplier_tx(rule, 0.1))

    def step(state, costs, count, epoch):
        new, signal, moved = sac_lag.episode_dual_step(config, state, _info(costs, count, epoch))
        return new, float(multipliers.value(rule, new.params["value"])), float(signal), bool(moved)

    lam, value, _, moved = step(lam, [0.0, 30.0, 40.0], 2, epoch=1)  # warm-up
    assert not moved and value == pytest.approx(0.001)
    lam, value, _, moved = step(lam, [0.0, 0.0, 0.0], 0, epoch=5)  # no episode yet
    assert not moved and value == pytest.approx(0.001)
    lam, value, signal, moved = step(lam, [0.0, 30.0, 40.0], 2, epoch=2)
    assert moved and signal == pytest.approx(35.0)
    assert value == pytest.approx(0.001 + 0.1, rel=1e-4)
    values = []
    for _ in range(20):
        lam, value, signal, _ = step(lam, [10.0, 20.0, 15.0], 7, epoch=3)
        values.append(value)
    assert signal == pytest.approx(15.0)
    assert min(values) == 0.0 and all(v >= 0.0 for v in values)
    assert values[-1] == 0.0


def test_sac_lag_observe_uses_the_judged_episode_cost() -> None:
    """On a speed task the driver averages the discounted episode costs (here 0.5 x)."""
    spec = get_task("HalfCheetahVelocity")
    algo = get_algorithm("sac-lag")
    config = algo.resolve(algo.preset_config("omnisafe"), spec)
    assert config.episode_cost == "discounted"
    assert config.episode_cost_limit == pytest.approx(151.989)
    config = dataclasses.replace(config, warmup_epochs=0, critic_hidden=8, actor_hidden=8)
    state = algo.init(config, spec, jax.random.key(0))
    state = algo.observe(state, _info([100.0, 200.0], 2, epoch=0))
    assert float(state.dual_signal) == pytest.approx(75.0)
    assert algo.episode_window(config) == 10 and algo.warmup_acting(config) == "uniform"


def test_cost_normalizer_is_the_running_mean_and_std_of_every_batch() -> None:
    """Three batches pushed one by one give the mean and the ddof-1 standard deviation of
    all their values; standardised values are clipped at 5; one value alone passes raw."""
    rng = np.random.default_rng(1)
    batches = [rng.uniform(0, 3, 16).astype(np.float32) for _ in range(3)]
    stats = sac_lag.empty_normalizer()
    for b in batches:
        stats = sac_lag.normalizer_push(stats, jnp.asarray(b))
    values = np.concatenate(batches)
    assert float(stats["count"]) == 48
    assert float(stats["mean"]) == pytest.approx(values.mean(), rel=1e-5)
    assert float(sac_lag.normalizer_std(stats)) == pytest.approx(values.std(ddof=1), rel=1e-4)
    # [0, 0, 0, 0, 10]: mean 2, std sqrt(80 / 4) = 4.472; 10 -> 1.789, 0 -> -0.447
    small = sac_lag.normalizer_push(sac_lag.empty_normalizer(), jnp.array([0.0, 0, 0, 0, 10]))
    got = sac_lag.normalize_costs(small, jnp.array([0.0, 10.0, 100.0]), 5.0)
    np.testing.assert_allclose(np.asarray(got), [-2 / np.sqrt(20), 8 / np.sqrt(20), 5.0],
                               rtol=1e-5)  # fmt: skip
    one = sac_lag.normalizer_push(sac_lag.empty_normalizer(), jnp.array([3.0]))
    assert float(sac_lag.normalize_costs(one, jnp.array([3.0]), 5.0)[0]) == 3.0
    # the standard deviation has OmniSafe's floor 0.01
    flat = sac_lag.normalizer_push(sac_lag.empty_normalizer(), jnp.ones(4))
    assert float(sac_lag.normalizer_std(flat)) == pytest.approx(0.01)


def test_sac_lag_cost_normalization_feeds_the_critic_and_lives_in_the_state() -> None:
    """With `--preset omnisafe` the cost critic's TD target is built on standardised costs:
    on the first batch (statistics = that batch) the mean target drops by exactly the mean
    raw cost (the bootstrap part is the same network at the same next actions); the
    statistics are in the state, and the raw costs are untouched for everything else."""
    spec = get_task("HalfCheetahVelocity")
    algo = get_algorithm("sac-lag")
    base = dataclasses.replace(algo.preset_config("omnisafe"), critic_hidden=8, actor_hidden=8)
    assert base.cost_normalize and base.cost_normalize_clip == 5.0
    batch = make_batch(np.random.default_rng(2), 32)
    raw_cost = np.asarray(batch.cost)
    targets = {}
    for on in (False, True):
        config = algo.resolve(dataclasses.replace(base, cost_normalize=on), spec)
        state = algo.init(config, spec, jax.random.key(0))
        new, metrics = jax.jit(algo.update)(state, batch)
        targets[on] = float(metrics["target_qc"])
        if on:
            stats = new.extra["cost_norm"]
            assert float(stats["count"]) == 32
            assert float(stats["mean"]) == pytest.approx(raw_cost.mean(), rel=1e-5)
            assert float(metrics["cost_norm_std"]) == pytest.approx(raw_cost.std(ddof=1), rel=1e-4)
        else:
            assert float(new.extra["cost_norm"]["count"]) == 0  # off: never pushed
    assert targets[False] - targets[True] == pytest.approx(raw_cost.mean(), rel=1e-4)


def test_kaiming_uniform_is_pytorch_s_linear_init() -> None:
    """OmniSafe's init: weights and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (variance
    1 / (3 fan_in)) in the actor (fan_in 17 = HalfCheetah's observation) and the critics
    (fan_in 23 = observation + action); CAL's Xavier layers keep zero biases."""
    spec = get_task("HalfCheetahVelocity")
    algo = get_algorithm("sac-lag")
    config = algo.resolve(algo.preset_config("omnisafe"), spec)
    state = algo.init(config, spec, jax.random.key(0))
    layers = [
        (state.actor.params["params"]["hidden_0"], 17),
        (state.actor.params["params"]["hidden_1"], 256),
        (jax.tree.map(lambda x: x[0], state.critic.params["params"]["members"]["hidden_0"]), 23),
        (
            jax.tree.map(lambda x: x[0], state.cost_critic.params["params"]["members"]["hidden_1"]),
            256,
        ),
    ]
    for layer, fan_in in layers:
        bound = 1 / np.sqrt(fan_in)
        for name in ("kernel", "bias"):
            w = np.asarray(layer[name])
            assert np.abs(w).max() <= bound and np.abs(w).max() > 0.9 * bound, (name, fan_in)
        kernel = np.asarray(layer["kernel"])
        assert kernel.shape[0] == fan_in
        assert kernel.var() == pytest.approx(bound**2 / 3, rel=0.1)
    cal_state = get_algorithm("cal").init(
        get_algorithm("cal").default_config(critic_hidden=8, actor_hidden=8), spec,
        jax.random.key(0),
    )  # fmt: skip
    assert not np.any(np.asarray(cal_state.actor.params["params"]["hidden_0"]["bias"]))


def test_omnisafe_preset_sets_the_cost_critic_like_the_reward_critic() -> None:
    config = get_algorithm("sac-lag").preset_config("omnisafe")
    assert (config.kernel_init, config.cost_kernel_init) == ("kaiming_uniform", "kaiming_uniform")
    assert (config.activation, config.cost_activation) == ("relu", "relu")
    assert config.ensemble_size == 1 and config.cost_normalize
    default = get_algorithm("sac-lag").default_config()
    assert (default.kernel_init, default.cost_activation) == ("xavier_uniform", "silu")
    assert not default.cost_normalize


# ----------------------------------------------------------------------------- RCRL


def test_rcrl_feasibility_backup_on_two_states() -> None:
    """s0 (h = -1) -> s1 (h = 2, terminal). The terminal value is h(s1) = 2; s0's is
    (1 - g) h(s0) + g max(h(s0), 2) = 0.01 * -1 + 0.99 * 2 = 1.97: s0 is infeasible because
    its successor is. Iterating the backup on the table reaches these fixed points."""
    gamma = 0.99
    h = jnp.array([-1.0, 2.0])
    table = jnp.zeros((1, 2))  # [M = 1, states]
    for _ in range(5):
        q_next = jnp.array([[table[0, 1], 0.0]])  # s0's successor is s1; s1 has none
        table = rcrl.feasibility_target(h, q_next, jnp.array([1.0, 0.0]), gamma)
    np.testing.assert_allclose(np.asarray(table[0]), [0.01 * -1 + 0.99 * 2.0, 2.0], rtol=1e-6)
    # a state that stays safe forever (self-loop, h = -1) has value h = -1
    q = jnp.zeros((1, 1))
    for _ in range(3000):
        q = rcrl.feasibility_target(jnp.array([-1.0]), q, jnp.ones(1), gamma)
    assert float(q[0, 0]) == pytest.approx(-1.0, abs=1e-5)


def test_rcrl_constraint_signal_and_cost_level() -> None:
    config = dataclasses.replace(rcrl.RCRLConfig(), cost_level=1.5)
    cost = jnp.array([0.5, 1.5, 4.0])
    np.testing.assert_allclose(np.asarray(rcrl.constraint_signal(cost, config)), [-1, 0, 2.5])
    signed = dataclasses.replace(config, indicator=True, cost_scale=20.0)
    np.testing.assert_allclose(np.asarray(rcrl.constraint_signal(cost, signed)), [-20, 0, 20])
    # HalfCheetahVelocity: h = 151.989 over sum_{t<1000} 0.99^t = 99.9957 -> 1.520 per step
    level = rcrl.per_step_cost_level(get_task("HalfCheetahVelocity"))
    assert level == pytest.approx(151.989 / ((1 - 0.99**1000) / 0.01), rel=1e-9)
    assert level == pytest.approx(1.520, abs=5e-4)
    # one-step toy episodes: the level is h itself; episodic limits: C / T = 10 / 400
    assert rcrl.per_step_cost_level(get_task("ToyTwoModeBandit")) == pytest.approx(0.4)
    assert rcrl.per_step_cost_level(get_task("PointButton1")) == pytest.approx(10 / 400)


def test_rcrl_learning_rates_decay_linearly_over_the_run() -> None:
    """The official schedules: each rate from its start to its end value, linearly over
    2e6 updates (or, unset, the run's planned updates that `observe` hands over), then
    flat; the Adam step a critic takes at half the horizon has the size of the half-way
    rate (Adam's first step moves a parameter by lr g / (|g| + eps) ~ lr)."""
    config = rcrl.RCRLConfig()
    assert config.lr_decay_updates == 2_000_000 and config.lr_schedule == "linear"

    def rates(step: int, horizon: int) -> dict[str, float]:
        got = rcrl.scheduled_rates(config, jnp.asarray(step), jnp.asarray(horizon))
        return {k: float(v) for k, v in got.items()}

    assert rates(0, 1000) == pytest.approx(
        {"actor": 2e-5, "critic": 1e-4, "cost_critic": 1e-4, "multiplier": 6e-7, "alpha": 8e-5}
    )
    half = rates(500, 1000)
    assert half["actor"] == pytest.approx((2e-5 + 1e-6) / 2, rel=1e-5)
    assert half["multiplier"] == pytest.approx((6e-7 + 1e-7) / 2, rel=1e-5)
    assert rates(5000, 1000)["alpha"] == pytest.approx(3e-6, rel=1e-5)  # flat after the end
    assert rates(500, 0)["critic"] == pytest.approx(1e-4)  # horizon unknown: the start

    spec = get_task("HalfCheetahVelocity")
    algo = get_algorithm("rcrl")
    small = {"critic_hidden": 8, "actor_hidden": 8, "multiplier_hidden": 8}
    tiny = algo.resolve(algo.default_config(**small, lr_decay_updates=None), spec)
    state = algo.init(tiny, spec, jax.random.key(0))
    assert int(state.extra["lr_horizon"]) == 0
    state = algo.observe(state, _info([], 0, 0, total_updates=1000))
    assert int(state.extra["lr_horizon"]) == 1000
    state = state.replace(step=jnp.asarray(500, jnp.int32))
    batch = make_batch(np.random.default_rng(3), 32)
    new, metrics = jax.jit(algo.update)(state, batch)
    moved = jax.tree.map(lambda a, b: np.abs(np.asarray(a) - np.asarray(b)).max(),
                         new.critic.params, state.critic.params)  # fmt: skip
    assert max(jax.tree.leaves(moved)) == pytest.approx(half["critic"], rel=1e-3)
    assert float(metrics["actor_lr"]) == pytest.approx(half["actor"], rel=1e-5)
    # a fixed horizon is kept whatever the loop plans; constant rates ignore it
    default = dataclasses.replace(tiny, lr_decay_updates=2_000_000)
    state = algo.observe(algo.init(default, spec, jax.random.key(0)), _info([], 0, 0))
    assert int(state.extra["lr_horizon"]) == 2_000_000
    flat = dataclasses.replace(tiny, lr_schedule="constant")
    _, metrics = jax.jit(algo.update)(algo.init(flat, spec, jax.random.key(0)), batch)
    assert float(metrics["actor_lr"]) == pytest.approx(2e-5)


# ----------------------------------------------------------------------------- presets, input


def test_presets_set_loop_values_and_flags_win() -> None:
    omni = parse_command_line(["--algo", "sac-lag", "--preset", "omnisafe"])
    assert (omni.updates_per_step, omni.batch_size, omni.initial_steps) == (1, 256, 10_000)
    assert omni.hparams.init_alpha == 0.2 and omni.hparams.multiplier == "adam-clamped"
    mine = parse_command_line(
        ["--algo", "sac-lag", "--preset", "omnisafe", "--updates-per-step", "3",
         "--multiplier-lr", "0.01"]
    )  # fmt: skip
    assert mine.updates_per_step == 3 and mine.hparams.multiplier_lr == 0.01
    paper = parse_command_line(["--algo", "rcrl", "--preset", "paper"])
    assert paper.hparams.ensemble_size == 6 and paper.updates_per_step == 10


def test_cal_task_aware_preset_and_flags_win() -> None:
    cheetah = parse_command_line(["--algo", "cal", "--task", "HalfCheetahVelocity"])
    assert cheetah.hparams.convexity == 1000.0 and cheetah.updates_per_step == 20
    human = parse_command_line(["--algo", "cal", "--task", "HumanoidVelocity"])
    assert human.hparams.ucb_k == 0.0 and human.hparams.cost_target == "max-subset"
    hopper = parse_command_line(["--algo", "cal", "--task", "HopperVelocity"])
    assert hopper.hparams.convexity == 10.0 and hopper.updates_per_step == 10
    mine = parse_command_line(
        ["--algo", "cal", "--task", "HalfCheetahVelocity", "--convexity", "5",
         "--updates-per-step", "4", "--preset", "paper"]
    )  # fmt: skip
    assert mine.hparams.convexity == 5.0 and mine.updates_per_step == 4
    assert mine.hparams.ensemble_size == 6


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--algo", "cal", "--ensemble-size", "1"], "--ucb-k"),
        (["--algo", "cal", "--ensemble-size", "0"], "--ensemble-size 0"),
        (["--algo", "cal", "--convexity", "-1"], "--convexity -1.0"),
        (["--algo", "sac-auglag", "--rho", "-1"], "--rho -1.0"),
        (["--algo", "sac-auglag", "--rho", "0"], "--rho 0.0"),
        (["--algo", "rcrl", "--ensemble-size", "0"], "--ensemble-size 0"),
        (["--algo", "sac-lag", "--multiplier-lr", "-1"], "--multiplier-lr -1.0"),
        (["--algo", "cal", "--mc-samples", "2"], "option of algd"),
        (["--algo", "sac-lag", "--ucb-k", "1"], "option of cal"),
        (["--algo", "algd", "--ucb-k", "1"], "option of cal"),
        (["--algo", "algd", "--no-indicator"], "option of rcrl"),  # a boolean's --no- form
        (["--algo", "cal", "--no-cost-normalize"], "option of sac-lag"),
        (["--algo", "cal", "--ucb-k", "-0.5"], "--ucb-k -0.5"),
        (["--algo", "sac-auglag", "--multiplier-lr", "0"], "--multiplier-lr 0.0"),
        (["--algo", "sac-lag", "--ensemble-size", "0"], "--ensemble-size 0"),
        (["--algo", "sac-lag", "--cost-normalize"], "--cost-normalize needs --lambda-driver"),
        (["--algo", "rcrl", "--target-entropy", "nan"], "--target-entropy nan"),
        (["--algo", "rcrl", "--lr-decay-updates", "0"], "--lr-decay-updates 0"),
        (["--algo", "cal", "--max-updates-per-step", "0"], "--max-updates-per-step 0"),
    ],
)
def test_bad_baseline_input_is_one_line(args: list[str], needle: str) -> None:
    with pytest.raises(RunError) as err:
        parse_command_line(args)
    message = str(err.value)
    assert needle in message and "\n" not in message


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--algo", "cal", "--ensemble-size", "1"], "--ucb-k 0.5 needs"),
        (["--algo", "sac-auglag", "--rho", "-1"], "--rho -1.0"),
        (["--algo", "cal", "--convexity", "-2"], "--convexity -2.0"),
        # HalfCheetah's box [-1, 1]^6: no distribution on it has more than 6 log 2 nats
        (["--algo", "sac-lag", "--target-entropy", "4.2"], "(4.159 nats, the uniform"),
        (["--algo", "rcrl", "--target-entropy", "10"], "alpha would grow without bound"),
    ],
)
def test_bad_baseline_input_stops_before_anything_is_written(
    args: list[str], needle: str, tmp_path, capsys
) -> None:
    """The whole command: exit status 2, one line on stderr, no run directory."""
    from experiments.run import main

    run_dir = tmp_path / "never"
    code = main([*args, "--task", "HalfCheetahVelocity", "--run-dir", str(run_dir)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and needle in err and len(err.splitlines()) == 1, err
    assert not run_dir.exists()
    # a reachable target entropy is accepted: 6 log 2 - 0.01 nats
    spec = get_task("HalfCheetahVelocity")
    sac.check_target_entropy(6 * np.log(2) - 0.01, spec)


# ----------------------------------------------------------------------------- toy optimum

#: The best feasible expected return of a tanh-Gaussian policy on ToyTwoModeBandit:
#: R_L = 10, the safe lane's peak, approached as the standard deviation goes to 0 at
#: tanh(mean) = -0.5 (a fine search: 1201 means in [-3, 3] x 381 log-stds in [-8, 1.5],
#: 301-node Gauss-Hermite expectations, then a 801 x 801 refinement, gives 9.999998 at
#: std 3e-4). The two-lane optimum, which puts mass 0.1 on the fast lane, is 10.2: a unimodal
#: policy cannot represent it (the paper's L1).
TANH_GAUSSIAN_TOY_OPTIMUM = 10.0


@pytest.mark.parametrize(
    "squash", [np.tanh, lambda u: np.clip(u, -1.0, 1.0)], ids=["tanh-gaussian", "clipped-gaussian"]
)
def test_the_best_feasible_tanh_gaussian_on_the_toy_is_the_safe_peak(squash) -> None:  # type: ignore[no-untyped-def]
    """The SAC family's tanh-Gaussian and PPO-Lag's Gaussian clipped to the box (its
    `ActionScale`) have the same best feasible expected return on the toy: the safe peak."""
    from algd_jax.envs.toy import TwoModeBandit

    bandit = TwoModeBandit()
    nodes, weights = np.polynomial.hermite_e.hermegauss(151)
    weights = weights / weights.sum()
    means = np.linspace(-3.0, 3.0, 601)
    log_stds = np.linspace(-7.0, 1.5, 171)
    u = means[:, None, None] + np.exp(log_stds)[None, :, None] * nodes
    actions = squash(u)[..., None]
    ret, cost = bandit.reward(actions) @ weights, bandit.cost(actions) @ weights
    best = np.where(cost <= bandit.budget, ret, -np.inf)
    i, j = np.unravel_index(np.argmax(best), best.shape)
    assert best[i, j] == pytest.approx(TANH_GAUSSIAN_TOY_OPTIMUM, abs=1e-3)
    assert best.max() <= TANH_GAUSSIAN_TOY_OPTIMUM + 1e-9
    assert squash(means[i]) == pytest.approx(bandit.safe_mode, abs=5e-3)
    assert log_stds[j] == log_stds[0]  # the narrowest policy searched
    assert bandit.constrained_optimum().value == pytest.approx(10.2)
    # the sup over tanh-Gaussians is the best single feasible action (what the figure draws)
    assert bandit.deterministic_optimum().value == TANH_GAUSSIAN_TOY_OPTIMUM
    # a policy spread over both lanes pays for the gap between them: every feasible one
    # with std >= 0.3 returns at most 9.6
    wide = np.exp(log_stds) >= 0.3
    assert best[:, wide].max() < 9.6


def test_toy_figure_feasible_from_by_hand() -> None:
    """The update count after which the (unsmoothed, window 1) cost stays within h = 0.4."""
    from experiments.toy_figure import feasible_from

    cost = np.array([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    assert feasible_from(cost, 0.4, 1, 4) == [8, 0, None]
    # window 2: [1, 1, 0.5, 0] -> over until the third iteration
    assert feasible_from(cost[:1], 0.4, 2, 4) == [12]


def test_a_diverged_baseline_stops_like_algd(tmp_path, capsys) -> None:
    """A learning rate that blows the critics up stops the run with one line naming the
    metric, the update and the last good checkpoint (the loop's check, for any entry)."""
    import re

    from algd_jax.checkpointing import Checkpointer
    from experiments.run import main
    from tests.conftest import tiny_flags

    run_dir = tmp_path / "nan"
    args = tiny_flags("sac-auglag") + [
        "--initial-steps", "150", "--critic-lr", "1e30", "--cost-critic-lr", "1e30",
        "--total-steps", "300", "--run-dir", str(run_dir),
    ]  # fmt: skip
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert re.search(r"non-finite \w+ at update \d+ \(after env step \d+\)", err), err
    assert "Last good checkpoint: step 100" in err
    assert Checkpointer(run_dir).steps() == [100]
