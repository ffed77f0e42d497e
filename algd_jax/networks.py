"""Flax networks of ALGD (SPEC §1).

* `ScoreNet`: phi_theta(s, a, k), a 3-layer ReLU MLP on concat[s, a, emb(k)] with two linear
  heads: the score head (used by every variant) and the eps head (DDPM variant only).
* `CriticEnsemble`: M independent 2-hidden-layer MLPs evaluated as one module whose
  parameters carry a leading member axis (`nn.vmap`), used both for the double-Q reward
  critic (M = 2, ReLU, Xavier init) and for the cost-critic ensemble (SiLU, scaled normal).
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

Initializer = Callable[..., jax.Array]


def scaled_normal_init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
    """N(0, (1 / (2 sqrt(fan_in)))^2) for a (fan_in, fan_out) kernel: the cost-critic init."""
    fan_in = shape[-2]
    return jax.random.normal(key, shape, dtype) / (2.0 * jnp.sqrt(jnp.asarray(fan_in, dtype)))


# SiLU whose backward pass keeps only the pre-activation and recomputes the sigmoid. Saving
# the sigmoid instead (autodiff's default) costs a separate pass that writes it out and a
# second that reads it back to form x * sigmoid(x); the Monte-Carlo target's
# [members, N * B, hidden] arrays do not fit in the caches, so those passes over memory,
# not the exp, are what SiLU costs there (7 % of the update at M = N = 6 on the 2-vCPU CPU).
silu_recomputed = jax.checkpoint(nn.silu)

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": nn.relu,
    "silu": silu_recomputed,
}
KERNEL_INITS: dict[str, Initializer] = {
    "xavier_uniform": nn.initializers.xavier_uniform(),
    "scaled_normal": scaled_normal_init,
}


class ScoreNet(nn.Module):
    """phi_theta(s, a, k).

    Inputs: `obs [..., ds]`, `action [..., da]` (squashed for the score head, the latent for
    the DDPM eps head), `step [...]` int in [0, K). Returns `(score, eps)`, each `[..., da]`.
    """

    action_dim: int
    num_steps: int
    hidden: int = 128
    embed_dim: int = 16

    @nn.compact
    def __call__(
        self, obs: jax.Array, action: jax.Array, step: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        emb = nn.Embed(
            self.num_steps,
            self.embed_dim,
            embedding_init=nn.initializers.normal(stddev=1.0),
            name="time_embedding",
        )(step)
        emb = jnp.broadcast_to(emb, (*obs.shape[:-1], self.embed_dim))
        h = jnp.concatenate([obs, action, emb], axis=-1)
        dense = lambda n, name: nn.Dense(  # noqa: E731
            n,
            kernel_init=nn.initializers.xavier_uniform(),
            bias_init=nn.initializers.zeros,
            name=name,
        )
        for i in range(3):
            h = nn.relu(dense(self.hidden, f"hidden_{i}")(h))
        score = dense(self.action_dim, "score_head")(h)
        eps = dense(self.action_dim, "eps_head")(h)
        return score, eps


class CriticMLP(nn.Module):
    """One Q(s, a): Dense-act-Dense-act-Dense(1). Returns `[...]` (trailing 1 dropped)."""

    hidden: int = 256
    activation: str = "relu"
    kernel_init: str = "xavier_uniform"

    @nn.compact
    def __call__(self, obs: jax.Array, action: jax.Array) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        init = KERNEL_INITS[self.kernel_init]
        h = jnp.concatenate([obs, action], axis=-1)
        for i in range(2):
            h = act(
                nn.Dense(
                    self.hidden,
                    kernel_init=init,
                    bias_init=nn.initializers.zeros,
                    name=f"hidden_{i}",
                )(h)
            )
        q = nn.Dense(1, kernel_init=init, bias_init=nn.initializers.zeros, name="out")(h)
        return q[..., 0]


class CriticEnsemble(nn.Module):
    """`members` independent critics as one vmapped module.

    Parameters have a leading member axis `[members, ...]`; inputs are shared. Returns
    `[members, ...batch]`.
    """

    members: int
    hidden: int = 256
    activation: str = "relu"
    kernel_init: str = "xavier_uniform"

    @nn.compact
    def __call__(self, obs: jax.Array, action: jax.Array) -> jax.Array:
        ensemble = nn.vmap(
            CriticMLP,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            in_axes=0,
            out_axes=0,
            axis_size=self.members,
        )
        # The inputs are broadcast to a member axis (a view, not a copy, inside jit) so that
        # every layer is one batched matrix product [members, rows, ...] in the member-major
        # layout of the parameters. Shared (unbatched) inputs make XLA merge the first layer
        # into one [rows, members * hidden] product whose output it then transposes, in the
        # forward and in every backward pass.
        obs = jnp.broadcast_to(obs, (self.members, *obs.shape))
        action = jnp.broadcast_to(action, (self.members, *action.shape))
        return ensemble(self.hidden, self.activation, self.kernel_init, name="members")(obs, action)


def reward_critic(hidden: int) -> CriticEnsemble:
    """Double-Q reward critic: 2 ReLU MLPs, Xavier-uniform weights."""
    return CriticEnsemble(members=2, hidden=hidden, activation="relu", kernel_init="xavier_uniform")


def cost_critic(members: int, hidden: int) -> CriticEnsemble:
    """Cost-critic ensemble: M SiLU MLPs, N(0, (1/(2 sqrt(fan_in)))^2) weights."""
    return CriticEnsemble(
        members=members, hidden=hidden, activation="silu", kernel_init="scaled_normal"
    )
