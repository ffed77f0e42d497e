"""Critic pieces shared by the ALGD family and the SAC-family baselines.

A critic is a `CriticEnsemble` (leading member axis: 2 for the double-Q reward critic, M for
the cost ensemble) held in a `CriticTrainState` with its Polyak-averaged target copy. This
module holds what every off-policy learner does with one: build it, form TD targets, take a
TD step, and average the target.
"""

from __future__ import annotations

from typing import Any, Literal

import jax
import jax.numpy as jnp
import optax
from flax.training.train_state import TrainState

from algd_jax.networks import CriticEnsemble

#: How the cost ensemble's members bootstrap: each from its own target member (the
#: authors' code and CAL), or all from the mean over target members (ALGD paper, Alg. 1
#: line 15).
CostTarget = Literal["per-member", "shared"]


class CriticTrainState(TrainState):
    """A critic's online parameters and optimiser plus its Polyak-averaged target copy."""

    target_params: Any = None


def create_critic(
    net: CriticEnsemble, params: Any, tx: optax.GradientTransformation
) -> CriticTrainState:
    """A critic state whose target starts equal to (but in buffers distinct from) `params`.

    Distinct buffers matter because the state is donated to the update: donating one
    buffer twice is an error. The step counter is a strong int32, so that fresh and updated
    states have one jit signature.
    """
    return CriticTrainState.create(
        apply_fn=net.apply,
        params=params,
        target_params=jax.tree.map(jnp.array, params),
        tx=tx,
    ).replace(step=jnp.zeros((), jnp.int32))


def double_q_target(
    q_next: jax.Array, reward: jax.Array, mask: jax.Array, gamma: float
) -> jax.Array:
    """`r + gamma * mask * min_j Q'_j(s', a')` from target values `q_next [2, B]`; `[B]`."""
    return reward + gamma * mask * jnp.min(q_next, axis=0)


def ensemble_cost_target(
    qc_next: jax.Array,
    cost: jax.Array,
    mask: jax.Array,
    gamma: float,
    mode: CostTarget = "per-member",
) -> jax.Array:
    """Cost TD targets `[M, B]` from target values `qc_next [M, B]`.

    `per-member`: `c + gamma * mask * Qc'_i(s', a')` for member i; `shared`: every member
    regresses on `c + gamma * mask * mean_i Qc'_i(s', a')`.
    """
    if mode == "shared":
        qc_next = jnp.broadcast_to(jnp.mean(qc_next, axis=0, keepdims=True), qc_next.shape)
    elif mode != "per-member":
        raise ValueError(f"unknown cost target {mode!r}; choose per-member or shared")
    return cost + gamma * mask * qc_next


def td_step(
    critic: CriticTrainState,
    obs: jax.Array,
    action: jax.Array,
    target: jax.Array,
    members: Literal["sum", "mean"] = "sum",
) -> tuple[CriticTrainState, jax.Array]:
    """One gradient step on the squared TD error of every member.

    `target` is `[B]` (one target for all members) or `[members, B]`. Each member's loss is
    its mean over the batch; the minimised loss is their sum (the double-Q critic, as the
    authors' code) or their mean (the cost ensemble, as the authors' code). Returns the new
    state and the per-member losses `[members]`.
    """
    target = jax.lax.stop_gradient(target)

    def loss_fn(params: Any) -> tuple[jax.Array, jax.Array]:
        q = critic.apply_fn(params, obs, action)  # [members, B]
        per_member = jnp.mean((q - target) ** 2, axis=1)
        total = jnp.sum(per_member) if members == "sum" else jnp.mean(per_member)
        return total, per_member

    (_, per_member), grads = jax.value_and_grad(loss_fn, has_aux=True)(critic.params)
    return critic.apply_gradients(grads=grads), per_member


def polyak(critic: CriticTrainState, rate: float, apply: jax.Array | bool) -> CriticTrainState:
    """`target <- (1 - rate) target + rate online` where `apply` (a traced bool) holds."""

    def mix(target: jax.Array, online: jax.Array) -> jax.Array:
        return jnp.where(apply, (1.0 - rate) * target + rate * online, target)

    return critic.replace(target_params=jax.tree.map(mix, critic.target_params, critic.params))


def target_update_due(update_index: jax.Array, every: int) -> jax.Array:
    """Whether the update with 0-based global index `update_index` moves the targets: every
    `every`-th update, starting with the first."""
    return update_index % every == 0
