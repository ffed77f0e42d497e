"""Reverse-diffusion samplers (SPEC §2) against straightforward numpy loops."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algd_jax.algorithms.algd import ALGDConfig, create_agent, sample_trajectory, select_action
from algd_jax.diffusion import ddpm_chain, ddpm_schedule, ve_chain, ve_schedule

B, DS, DA, K = 4, 3, 2, 5
RNG = np.random.default_rng(0)
W_S = RNG.normal(size=(DS, DA)) * 0.3
W_A = RNG.normal(size=(DA, DA)) * 0.5
W_K = RNG.normal(size=(K, DA)) * 0.2


def toy_net(obs, action, step):
    """A fixed smooth stand-in for the score net: (score, eps) depend on s, a and k."""
    score = jnp.tanh(obs @ W_S + action @ W_A + W_K[step])
    return score, 0.5 * score + 0.1 * action


def np_net(obs, action, step):
    score = np.tanh(obs @ W_S + action @ W_A + W_K[step])
    return score, 0.5 * score + 0.1 * action


SCALE = np.array([2.0, 0.5], np.float32)
BIAS = np.array([0.5, -0.25], np.float32)
OBS = RNG.normal(size=(B, DS)).astype(np.float32)
INIT = RNG.normal(size=(B, DA)).astype(np.float32)
STEPS = RNG.normal(size=(K, B, DA)).astype(np.float32)


def np_squash(x):
    return np.tanh(x) * SCALE + BIAS


def test_ve_schedule_geometric():
    s = ve_schedule(K, 0.01, 1.0)
    np.testing.assert_allclose(s.sigmas, [0.01, 0.01 * 10**0.5, 0.1, 10**-0.5, 1.0], rtol=1e-6)
    np.testing.assert_allclose(np.cumsum(s.dsig2), s.sigma2, rtol=1e-6)


def test_ve_chain_matches_numpy_loop_and_records_a_tau():
    schedule = ve_schedule(K, 0.01, 1.0)
    taus = np.array([0, 1, 3, 4])
    out = ve_chain(toy_net, OBS, INIT, STEPS, schedule, SCALE, BIAS, jnp.asarray(taus))
    x = schedule.sigmas[-1] * INIT.astype(np.float64)
    recorded = {}
    for k in reversed(range(K)):
        x = x + schedule.dsig2[k] * np_net(OBS, np_squash(x), k)[0]
        if k > 0:
            x = x + np.sqrt(schedule.dsig2[k]) * STEPS[k]
        recorded[k] = np_squash(x)
    np.testing.assert_allclose(out.a0, np_squash(x), rtol=1e-5, atol=1e-6)
    expected_tau = np.stack([recorded[t][i] for i, t in enumerate(taus)])
    np.testing.assert_allclose(out.a_tau, expected_tau, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out.a_tau[0], out.a0[0])  # tau = 0 is the final action
    np.testing.assert_allclose(out.latents[-1], x, rtol=1e-5, atol=1e-6)
    # Actions stay inside the box [bias - scale, bias + scale].
    assert np.all(np.abs(np.asarray(out.a0) - BIAS) <= SCALE)


def test_ddpm_chain_matches_numpy_loop():
    s = ddpm_schedule(K)
    np.testing.assert_allclose(s.abar, np.cumprod(1 - np.linspace(1e-4, 0.02, K)), rtol=1e-6)
    out = ddpm_chain(toy_net, OBS, INIT, STEPS, s, SCALE, BIAS, 0.05)
    x = INIT.astype(np.float64)
    for t in reversed(range(K)):
        eps = np_net(OBS, x, t)[1]
        score = np_net(OBS, np_squash(x), t)[0]
        beta, abar, abar_prev = s.betas[t], s.abar[t], s.abar_prev[t]
        x0 = (x - np.sqrt(1 - abar) * eps) / np.sqrt(abar + 1e-8)
        mean = (
            np.sqrt(abar_prev) * beta / (1 - abar + 1e-8) * x0
            + np.sqrt(1 - beta) * (1 - abar_prev) / (1 - abar + 1e-8) * x
        )
        mean = mean + 0.05 * score / (np.linalg.norm(score, axis=-1, keepdims=True) + 1e-8)
        x = mean + (
            np.sqrt(beta * (1 - abar_prev) / (1 - abar + 1e-8) + 1e-8) * STEPS[t] if t > 0 else 0.0
        )
    np.testing.assert_allclose(out.a0, np_squash(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("agent", ["algd", "algd-ddpm"])
def test_agent_samplers(agent):
    config = ALGDConfig(agent=agent, diffusion_steps=3, critic_hidden=16, score_hidden=16)
    state = create_agent(config, DS, -2 * np.ones(DA), np.ones(DA), 0)
    obs = jnp.asarray(OBS)
    det = select_action(state, obs, jax.random.key(0), deterministic=True)
    # Deterministic sampling = the chain with every noise term zeroed.
    from algd_jax.algorithms.algd import policy_chain

    zero = policy_chain(
        state, state.actor.params, obs, jnp.zeros((B, DA)), jnp.zeros((3, B, DA))
    ).a0
    np.testing.assert_allclose(det, zero, rtol=1e-6)
    a0, a_tau, tau = sample_trajectory(state, obs, jax.random.key(1))
    assert a0.shape == a_tau.shape == (B, DA) and tau.shape == (B,)
    assert np.all((np.asarray(tau) >= 0) & (np.asarray(tau) < 3))
    for a in (det, a0, a_tau):
        assert np.all((np.asarray(a) >= -2) & (np.asarray(a) <= 1))
    same = sample_trajectory(state, obs, jax.random.key(1))
    np.testing.assert_array_equal(a0, same[0])
