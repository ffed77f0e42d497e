"""Types shared by every algorithm and the loops that train them."""

from __future__ import annotations

from typing import NamedTuple

import jax

#: Scalar training metrics of one update, by name; they stay on the device.
Metrics = dict[str, jax.Array]


class Batch(NamedTuple):
    """A batch of transitions, float32, with leading shape `[B]` (one update), `[U, B]`
    (a fused block) or `[S, U, B]` (one block per seed).

    `mask_r` / `mask_c` are the bootstrap masks of the reward and cost TD targets (1: the
    target bootstraps from `next_obs`, 0: the transition ended that return).
    """

    obs: jax.Array  # [..., ds]
    action: jax.Array  # [..., da], in the env's action units
    reward: jax.Array  # [...]
    cost: jax.Array  # [...], cost units per step
    next_obs: jax.Array  # [..., ds]
    mask_r: jax.Array  # [...]
    mask_c: jax.Array  # [...]


def batch_shapes(
    obs_dim: int, act_dim: int, leading: tuple[int, ...], dtype: object = None
) -> Batch:
    """`jax.ShapeDtypeStruct`s of a batch with the given leading shape (for tracing)."""
    import jax.numpy as jnp

    dtype = jnp.float32 if dtype is None else dtype

    def shape(*trailing: int) -> jax.ShapeDtypeStruct:
        return jax.ShapeDtypeStruct((*leading, *trailing), dtype)

    return Batch(shape(obs_dim), shape(act_dim), shape(), shape(), shape(obs_dim), shape(), shape())
