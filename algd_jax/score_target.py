"""Monte-Carlo score target phi* of the Boltzmann policy (SPEC §4; paper eqs. 11, 47-48).

For each row (s, a_tau, tau) and N draws eps_i ~ N(0, I):

    a0_i = a_tau + sigma_tau eps_i,   E_i = -L(s, a0_i) / beta,   w = softmax(E),
    phi* = -(sum_i w_i grad_a L(s, a0_i)) / beta

The softmax subtracts max E first (log-sum-exp form), so energies of 1e6 stay finite.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from algd_jax.energy import EnergyFn


def energy_and_grad(
    energy: EnergyFn, obs: jax.Array, action: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Per-row energy `[B]` and its action gradient `[B, da]`.

    Rows are independent, so one vector-Jacobian product with a ones cotangent gives every
    row's gradient in a single backward pass.
    """
    value, vjp = jax.vjp(lambda a: energy(obs, a), action)
    (grad,) = vjp(jnp.ones_like(value))
    return value, grad


def mc_score_target(
    energy: EnergyFn,
    obs: jax.Array,
    a_tau: jax.Array,
    sigma_tau: jax.Array,
    noise: jax.Array,
    beta: float,
) -> jax.Array:
    """phi* `[B, da]` (no gradient) from `obs [B, ds]`, `a_tau [B, da]`, `sigma_tau [B]`,
    `noise [B, N, da]`."""
    a0 = a_tau[:, None, :] + sigma_tau[:, None, None] * noise
    values, grads = jax.vmap(lambda a: energy_and_grad(energy, obs, a), in_axes=1, out_axes=1)(
        a0
    )  # [B, N], [B, N, da]
    weights = jax.nn.softmax(-values / beta, axis=1)
    target = -jnp.sum(weights[..., None] * grads, axis=1) / beta
    return jax.lax.stop_gradient(target)
