"""Energies of the Boltzmann policy (SPEC §3).

    Qmin     = min(Q1, Q2)
    qc_risk  = mean_i Qc_i + kappa * std_i Qc_i          (unbiased std; 0 when M = 1)
    L        = -Qmin + lam (qc_risk - h)
    L_A      = -Qmin + (relu(lam + rho (qc_risk - h))^2 - lam^2) / (2 rho)

All quantities are per row, in units of return (reward or cost value). `lam` is a constant
inside the energy: no gradient flows into the multiplier from the actor.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

EnergyFn = Callable[[jax.Array, jax.Array], jax.Array]


def qc_risk(qc: jax.Array, kappa: float) -> jax.Array:
    """Risk-adjusted cost value from the ensemble `qc [M, ...]` -> `[...]`."""
    mean = jnp.mean(qc, axis=0)
    members = qc.shape[0]
    if members == 1 or kappa == 0.0:
        return mean
    var = jnp.sum((qc - mean) ** 2, axis=0) / (members - 1)
    # sqrt'(0) is infinite: keep the value exact but make the gradient finite (zero) where
    # all members agree exactly.
    positive = var > 0
    std = jnp.where(positive, jnp.sqrt(jnp.where(positive, var, 1.0)), 0.0)
    return mean + kappa * std


def lagrangian(q_min: jax.Array, risk: jax.Array, lam: jax.Array, budget: float) -> jax.Array:
    """Standard Lagrangian L = -Qmin + lam (qc_risk - h)."""
    return -q_min + lam * (risk - budget)


def augmented_lagrangian(
    q_min: jax.Array, risk: jax.Array, lam: jax.Array, budget: float, rho: float
) -> jax.Array:
    """Augmented Lagrangian L_A = -Qmin + (relu(lam + rho (qc_risk - h))^2 - lam^2) / (2 rho)."""
    return -q_min + (jax.nn.relu(lam + rho * (risk - budget)) ** 2 - lam**2) / (2.0 * rho)


def make_energy(
    critic_fn: Callable[[jax.Array, jax.Array], jax.Array],
    cost_fn: Callable[[jax.Array, jax.Array], jax.Array],
    lam: jax.Array,
    budget: float,
    rho: float,
    kappa: float,
    augmented: bool,
) -> EnergyFn:
    """Bind critics and multiplier into `energy(obs [B, ds], action [B, da]) -> [B]`.

    `critic_fn(obs, action) -> [2, B]`, `cost_fn(obs, action) -> [M, B]`.
    """
    lam = jax.lax.stop_gradient(lam)

    def energy(obs: jax.Array, action: jax.Array) -> jax.Array:
        q_min = jnp.min(critic_fn(obs, action), axis=0)
        risk = qc_risk(cost_fn(obs, action), kappa)
        if augmented:
            return augmented_lagrangian(q_min, risk, lam, budget, rho)
        return lagrangian(q_min, risk, lam, budget)

    return energy
