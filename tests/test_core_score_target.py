"""Monte-Carlo score target against closed forms (SPEC §4)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algd_jax.score_target import energy_and_grad, mc_score_target, mc_score_target_and_energy_at

DA = 2


def quadratic_energy(mu: jax.Array, curvature: float):
    """L(a) = c/2 |a - mu|^2 with one mu `[da]` for every row: the Boltzmann policy is
    N(mu, beta/c I)."""

    def energy(obs, action):
        return 0.5 * curvature * jnp.sum((action - mu) ** 2, axis=-1)

    return energy


def quadratic_energy_centred_at_obs(curvature: float):
    """L(s, a) = c/2 |a - s|^2: the state is the centre mu(s) = s of its Boltzmann policy."""

    def energy(obs, action):
        return 0.5 * curvature * jnp.sum((action - obs) ** 2, axis=-1)

    return energy


def analytic_noised_score(a_tau, mu, curvature, beta, sigma):
    """grad log of N(mu, (beta/c + sigma^2) I) at a_tau."""
    return -(a_tau - mu) / (beta / curvature + sigma**2)


def mc_error(n_samples: int, rows: int = 4000, seed: int = 0) -> float:
    beta, curvature, sigma = 1.0, 1.0, 0.8
    key = jax.random.key(seed)
    k1, k2, k3 = jax.random.split(key, 3)
    mu = jax.random.normal(k1, (rows, DA))
    a_tau = mu + jax.random.normal(k2, (rows, DA))
    noise = jax.random.normal(k3, (rows, n_samples, DA))
    target = mc_score_target(
        quadratic_energy_centred_at_obs(curvature), mu, a_tau, jnp.full((rows,), sigma), noise, beta
    )
    exact = analytic_noised_score(a_tau, mu, curvature, beta, sigma)
    return float(jnp.sqrt(jnp.mean((target - exact) ** 2)))


def test_mc_target_converges_to_gaussian_score_like_inverse_sqrt_n():
    ns = np.array([4, 64, 1024])
    errors = np.array([mc_error(int(n)) for n in ns])
    slope = np.polyfit(np.log(ns), np.log(errors), 1)[0]
    # 1/sqrt(N) is a slope of -0.5; the self-normalised estimator's O(1/N) bias can only
    # make the early part steeper.
    assert -0.75 < slope < -0.4, (errors, slope)
    assert errors[-1] < 0.05


def test_lse_form_finite_where_naive_overflows():
    rows, n = 8, 16
    a_tau = 3.0 + jax.random.normal(jax.random.key(1), (rows, DA))
    noise = jax.random.normal(jax.random.key(2), (rows, n, DA))
    obs = jnp.zeros((rows, 1))
    sigma = jnp.full((rows,), 0.5)
    a0 = a_tau[:, None] + sigma[:, None, None] * noise
    for sign in (1.0, -1.0):
        # |E| ~ 1e6 with spreads of ~1e5 between samples: one sample takes all the weight.
        energy = quadratic_energy(jnp.zeros(DA), sign * 1e5)
        target = mc_score_target(energy, obs, a_tau, sigma, noise, 1.0)
        assert jnp.all(jnp.isfinite(target))
        e = energy(obs, a0)
        assert float(jnp.max(jnp.abs(e))) > 1e6
        best = jnp.argmin(e, axis=1)
        a_best = jnp.take_along_axis(a0, best[:, None, None], axis=1)[:, 0]
        np.testing.assert_allclose(target, -sign * 1e5 * a_best, rtol=1e-5)
        # The naive form exp(-E) / sum exp(-E) is 0/0 or inf/inf at these magnitudes.
        naive_w = jnp.exp(-e) / jnp.sum(jnp.exp(-e), axis=1, keepdims=True)
        assert not jnp.any(jnp.isfinite(naive_w))


def test_batched_target_equals_loop_over_samples():
    rows, n = 5, 6
    keys = jax.random.split(jax.random.key(3), 4)
    w = jax.random.normal(keys[0], (DA + 3, 1))
    obs = jax.random.normal(keys[1], (rows, 3))

    def energy(o, a):  # nonlinear, state-dependent
        return jnp.tanh(jnp.concatenate([o, a], -1) @ w)[:, 0] + jnp.sum(a**4, -1)

    a_tau = jax.random.normal(keys[2], (rows, DA))
    noise = jax.random.normal(keys[3], (rows, n, DA))
    sigma = jnp.linspace(0.1, 1.0, rows)
    beta = 0.7
    target = mc_score_target(energy, obs, a_tau, sigma, noise, beta)
    values, grads = [], []
    for i in range(n):
        a0 = a_tau + sigma[:, None] * noise[:, i]
        values.append(energy(obs, a0))
        grads.append(jax.vmap(jax.grad(lambda a, o: energy(o[None], a[None])[0]))(a0, obs))
    values, grads = jnp.stack(values, 1), jnp.stack(grads, 1)
    weights = np.exp(-(values - values.min(1, keepdims=True)) / beta)
    weights = weights / weights.sum(1, keepdims=True)
    expected = -(weights[..., None] * grads).sum(1) / beta
    np.testing.assert_allclose(target, expected, rtol=1e-5, atol=1e-6)


def test_energy_and_grad_matches_per_row_grad():
    obs = jnp.ones((4, 2))
    action = jnp.arange(12.0).reshape(4, 3) / 10

    def energy(o, a):
        return jnp.sum(jnp.sin(a) * o.sum(-1, keepdims=True), -1)

    value, grad = energy_and_grad(energy, obs, action)
    np.testing.assert_allclose(value, energy(obs, action), rtol=1e-6)
    np.testing.assert_allclose(grad, 2 * jnp.cos(action), rtol=1e-6)


@pytest.mark.parametrize("beta", [0.1, 1.0, 10.0])
def test_temperature_scales_single_sample_target(beta):
    # With N = 1 the weight is 1 and phi* = -grad L / beta exactly.
    obs = jnp.zeros((3, 1))
    a_tau = jnp.array([[0.1, -0.2], [1.0, 2.0], [-1.0, 0.5]])
    target = mc_score_target(
        quadratic_energy(jnp.zeros(DA), 2.0), obs, a_tau, jnp.zeros(3), jnp.zeros((3, 1, DA)), beta
    )
    np.testing.assert_allclose(target, -2.0 * a_tau / beta, rtol=1e-6)


def test_energy_at_extra_actions_rides_along_without_changing_the_target():
    rows, n = 6, 3
    keys = jax.random.split(jax.random.key(4), 5)
    w = jax.random.normal(keys[0], (DA + 3, 1))
    obs = jax.random.normal(keys[1], (rows, 3))

    def energy(o, a):
        return jnp.tanh(jnp.concatenate([o, a], -1) @ w)[:, 0] + jnp.sum(a**4, -1)

    a_tau = jax.random.normal(keys[2], (rows, DA))
    noise = jax.random.normal(keys[3], (rows, n, DA))
    final = jax.random.normal(keys[4], (rows, DA))
    sigma = jnp.linspace(0.1, 1.0, rows)
    alone = mc_score_target(energy, obs, a_tau, sigma, noise, 0.5)
    target, value, grad = mc_score_target_and_energy_at(
        energy, obs, a_tau, sigma, noise, 0.5, action=final
    )
    np.testing.assert_allclose(target, alone, rtol=1e-6, atol=1e-7)
    expected_value, expected_grad = energy_and_grad(energy, obs, final)
    np.testing.assert_allclose(value, expected_value, rtol=1e-6)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-6, atol=1e-7)
