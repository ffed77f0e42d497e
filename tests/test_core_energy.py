"""Energies L and L_A (SPEC §3) and the paper's properties of the augmented Lagrangian."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algd_jax.energy import augmented_lagrangian, lagrangian, make_energy, qc_risk
from algd_jax.networks import cost_critic, reward_critic

DS, DA = 3, 2


@pytest.fixture(scope="module")
def critics():
    """Small random reward critic (2) and cost ensemble (3) with their apply functions."""
    obs = jnp.zeros((1, DS))
    act = jnp.zeros((1, DA))
    q_net, c_net = reward_critic(16), cost_critic(3, 16)
    q_params = q_net.init(jax.random.key(0), obs, act)
    c_params = c_net.init(jax.random.key(1), obs, act)
    return (lambda o, a: q_net.apply(q_params, o, a)), (lambda o, a: c_net.apply(c_params, o, a))


def test_qc_risk_mean_plus_unbiased_std():
    qc = jnp.array([[1.0, 2.0], [3.0, 2.0], [5.0, 2.0]])
    np.testing.assert_allclose(qc_risk(qc, 1.0), [3.0 + 2.0, 2.0])
    np.testing.assert_allclose(qc_risk(qc, 0.5), [3.0 + 1.0, 2.0])
    np.testing.assert_allclose(qc_risk(qc[:1], 1.0), qc[0])  # M = 1: no std term
    # Equal members: finite gradient (sqrt at 0 guarded).
    grad = jax.grad(lambda x: qc_risk(jnp.stack([x, x]), 1.0))(1.5)
    assert np.isfinite(grad) and grad == pytest.approx(1.0)


def test_la_equals_l_when_multiplier_zero_and_constraint_satisfied():
    q_min = jnp.array([1.0, -2.0, 0.5])
    risk = jnp.array([0.1, 0.5, 0.9])
    budget = 1.0
    np.testing.assert_allclose(
        augmented_lagrangian(q_min, risk, 0.0, budget, 2.0), lagrangian(q_min, risk, 0.0, budget)
    )


@pytest.mark.parametrize("lam", [0.0, 0.3, 2.0])
@pytest.mark.parametrize("rho", [0.5, 1.0, 4.0])
def test_la_equals_l_at_complementary_slackness(lam, rho):
    q_min = jnp.array([1.0, -2.0])
    budget = 0.7
    risk = jnp.full((2,), budget)  # qc = h: lam (qc - h) = 0 for every lam
    np.testing.assert_allclose(
        augmented_lagrangian(q_min, risk, lam, budget, rho),
        lagrangian(q_min, risk, lam, budget),
        atol=1e-7,
    )
    # Gradients in qc agree there too: both are lam.
    d_la = jax.grad(lambda r: augmented_lagrangian(0.0, r, lam, budget, rho))(budget)
    d_l = jax.grad(lambda r: lagrangian(0.0, r, lam, budget))(budget)
    assert float(d_la) == pytest.approx(float(d_l))


def test_inactive_side_la_ignores_cost(critics):
    """Where lam + rho (qc - h) <= 0 the cost critic has no pull: grad_a L_A = -grad_a Qmin."""
    q_fn, c_fn = critics
    obs = jax.random.normal(jax.random.key(2), (6, DS))
    act = jax.random.normal(jax.random.key(3), (6, DA))
    lam, rho = 0.5, 1.0
    risk = qc_risk(c_fn(obs, act), 1.0)
    budget = float(jnp.max(risk)) + lam / rho + 1.0  # inactive on every row
    energy = make_energy(q_fn, c_fn, jnp.asarray(lam), budget, rho, 1.0, augmented=True)
    grad = jax.grad(lambda a: jnp.sum(energy(obs, a)))(act)
    grad_q = jax.grad(lambda a: -jnp.sum(jnp.min(q_fn(obs, a), 0)))(act)
    np.testing.assert_allclose(grad, grad_q, rtol=1e-5, atol=1e-7)
    value = energy(obs, act)
    np.testing.assert_allclose(value, -jnp.min(q_fn(obs, act), 0) - lam**2 / (2 * rho), rtol=1e-6)


@pytest.mark.parametrize("kappa", [0.0, 1.0])
def test_hessian_identity_theorem_3_2a(critics, kappa):
    """Active side: Hess L_A - Hess L = rho g g^T + rho (qc - h) H_qc (g = grad_a qc_risk)."""
    q_fn, c_fn = critics
    obs = jax.random.normal(jax.random.key(4), (1, DS))
    act = jax.random.normal(jax.random.key(5), (DA,))
    lam, rho = 0.4, 2.5
    risk_fn = lambda a: qc_risk(c_fn(obs, a[None]), kappa)[0]  # noqa: E731
    budget = float(risk_fn(act)) - 0.3  # constraint violated: active side
    energies = {
        aug: make_energy(q_fn, c_fn, jnp.asarray(lam), budget, rho, kappa, augmented=aug)
        for aug in (True, False)
    }
    hess = {aug: jax.hessian(lambda a, f=f: f(obs, a[None])[0])(act) for aug, f in energies.items()}
    g = jax.grad(risk_fn)(act)
    h_qc = jax.hessian(risk_fn)(act)
    expected = rho * jnp.outer(g, g) + rho * (risk_fn(act) - budget) * h_qc
    np.testing.assert_allclose(hess[True] - hess[False], expected, rtol=1e-4, atol=1e-6)
    # The curvature added is not trivially zero.
    assert float(jnp.max(jnp.abs(expected))) > 1e-4


def test_lagrangian_gradient_of_lambda_is_blocked(critics):
    q_fn, c_fn = critics
    obs, act = jnp.ones((2, DS)), jnp.zeros((2, DA))

    def total(lam):
        return jnp.sum(make_energy(q_fn, c_fn, lam, 0.0, 1.0, 1.0, augmented=True)(obs, act))

    assert float(jax.grad(total)(0.5)) == 0.0
