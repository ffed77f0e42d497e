"""Monte-Carlo score target phi* of the Boltzmann policy (SPEC §4; paper eqs. 11, 47-48).

For each row (s, a_tau, tau) and N draws eps_i ~ N(0, I):

    a0_i = a_tau + sigma_tau eps_i,   E_i = -L(s, a0_i) / beta,   w = softmax(E),
    phi* = -(sum_i w_i grad_a L(s, a0_i)) / beta

The softmax subtracts max E first (log-sum-exp form), so energies of 1e6 stay finite.

The B x N samples are evaluated as one flat batch of B * N rows, so that every critic layer is
one matrix product over all samples (a vmap over the N axis gives the same numbers but leaves
XLA a [N, B] layout that it copies around the products).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from algd_jax.energy import EnergyFn


def energy_and_grad(
    energy: EnergyFn, obs: jax.Array, action: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Per-row energy `[R]` and its action gradient `[R, da]` for `obs [R, ds]`,
    `action [R, da]`.

    Rows are independent, so one vector-Jacobian product with a ones cotangent gives every
    row's gradient in a single backward pass.
    """
    value, vjp = jax.vjp(lambda a: energy(obs, a), action)
    (grad,) = vjp(jnp.ones_like(value))
    return value, grad


def proposal_samples(a_tau: jax.Array, sigma_tau: jax.Array, noise: jax.Array) -> jax.Array:
    """a0_i = a_tau + sigma_tau eps_i: `[B, N, da]` from `a_tau [B, da]`, `sigma_tau [B]`,
    `noise [B, N, da]`."""
    return a_tau[:, None, :] + sigma_tau[:, None, None] * noise


def target_from_samples(values: jax.Array, grads: jax.Array, beta: float) -> jax.Array:
    """phi* `[B, da]` from the energies `[B, N]` and action gradients `[B, N, da]` of the
    samples (self-normalised weights in log-sum-exp form; no gradient)."""
    weights = jax.nn.softmax(-values / beta, axis=1)
    target = -jnp.sum(weights[..., None] * grads, axis=1) / beta
    return jax.lax.stop_gradient(target)


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
    phi_star, _, _ = mc_score_target_and_energy_at(energy, obs, a_tau, sigma_tau, noise, beta)
    return phi_star


def mc_score_target_and_energy_at(
    energy: EnergyFn,
    obs: jax.Array,
    a_tau: jax.Array,
    sigma_tau: jax.Array,
    noise: jax.Array,
    beta: float,
    action: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array | None, jax.Array | None]:
    """phi* `[B, da]` and, when `action [B, da]` is given, the energy `[B]` and its action
    gradient `[B, da]` at `(obs, action)`, all from one batched critic evaluation.

    The actor step needs L_A and grad_a L_A at the chain's final action as well as the
    N samples' values and gradients. Appending those B rows to the B * N sample rows makes it
    one set of larger matrix products instead of two.
    """
    batch, samples, action_dim = noise.shape
    a0 = proposal_samples(a_tau, sigma_tau, noise).reshape(batch * samples, action_dim)
    obs_rows = jnp.broadcast_to(obs[:, None, :], (batch, samples, obs.shape[-1]))
    obs_rows = obs_rows.reshape(batch * samples, obs.shape[-1])
    if action is not None:
        a0 = jnp.concatenate([a0, jax.lax.stop_gradient(action)], axis=0)
        obs_rows = jnp.concatenate([obs_rows, obs], axis=0)
    values, grads = energy_and_grad(energy, obs_rows, a0)
    cut = batch * samples
    phi_star = target_from_samples(
        values[:cut].reshape(batch, samples), grads[:cut].reshape(batch, samples, action_dim), beta
    )
    if action is None:
        return phi_star, None, None
    return phi_star, values[cut:], grads[cut:]
