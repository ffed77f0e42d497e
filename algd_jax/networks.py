"""Flax networks of ALGD (SPEC §1).

* `ScoreNet`: phi_theta(s, a, k), a 3-layer ReLU MLP on concat[s, a, emb(k)] with two linear
  heads: the score head (used by every variant) and the eps head (DDPM variant only).
* `CriticEnsemble`: M independent 2-hidden-layer MLPs evaluated as one module whose
  parameters carry a leading member axis (`nn.vmap`), used both for the double-Q reward
  critic (M = 2, ReLU, Xavier init) and for the cost-critic ensemble (SiLU, scaled normal).

Precision (`precision` of every module, the config's `--precision`):

* `f32` (default): `flax.linen.Dense`, float32 throughout.
* `bf16`: every matrix product (`MixedDense`, `bf16_matmul`) rounds its two inputs to
  bfloat16 and accumulates in float32 (`preferred_element_type=float32`), in the forward
  pass and in both products of its backward pass. Parameters (float32, the same tree as
  `f32`), bias adds, activations and everything outside the products stay float32.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import flax.linen as nn
import jax
import jax.numpy as jnp

Initializer = Callable[..., jax.Array]

#: Precision of the networks' matrix products.
Precision = Literal["f32", "bf16"]
PRECISIONS: tuple[str, ...] = ("f32", "bf16")


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
    "elu": nn.elu,  # RCRL's networks
}
KERNEL_INITS: dict[str, Initializer] = {
    "xavier_uniform": nn.initializers.xavier_uniform(),
    "scaled_normal": scaled_normal_init,
    "he_normal": nn.initializers.he_normal(),  # RCRL's networks
    # PyTorch's `kaiming_uniform_(w, a=sqrt(5))` (OmniSafe's default, and `nn.Linear`'s own):
    # gain^2 = 2 / (1 + 5) = 1/3, so U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    "kaiming_uniform": nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform"),
}


def bias_init(kernel_init: str, fan_in: int) -> Initializer:
    """The bias initialiser that goes with a kernel initialiser: zeros, except for
    `kaiming_uniform`, whose layers (OmniSafe's, built by `torch.nn.Linear`) keep
    PyTorch's default bias U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    if kernel_init != "kaiming_uniform":
        return nn.initializers.zeros
    bound = 1.0 / float(fan_in) ** 0.5

    def init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


# ----------------------------------------------------------------------------- bf16 products


def _dot_last(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """`x [..., k] @ kernel [k, n]` of bfloat16 inputs, accumulated and returned in float32."""
    return jax.lax.dot_general(
        x, kernel, (((x.ndim - 1,), (0,)), ((), ())), preferred_element_type=jnp.float32
    )


@jax.custom_vjp
def bf16_matmul(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """`x [..., k] @ kernel [k, n]` with bfloat16 inputs and float32 accumulation; float32
    in and out.

    The gradient is two more products of the same kind: `dx = bf16(g) @ bf16(kernel)^T` and
    `dkernel = bf16(x)^T @ bf16(g)` (rows of every leading axis summed inside the product),
    both accumulated in and returned as float32. Autodiff of a plain mixed-precision
    `dot_general` would instead multiply the float32 cotangent with the bfloat16 operand (a
    float32 product) and round the gradients to bfloat16. A custom VJP: reverse mode, and
    forward over reverse (`jax.hessian`, as in `algd_jax.landscape`), work; forward mode
    alone (`jax.jvp`, `jax.jacfwd`) does not.
    """
    return _dot_last(x.astype(jnp.bfloat16), kernel.astype(jnp.bfloat16))


def _bf16_matmul_fwd(x: jax.Array, kernel: jax.Array) -> tuple[jax.Array, Any]:
    x16, k16 = x.astype(jnp.bfloat16), kernel.astype(jnp.bfloat16)
    return _dot_last(x16, k16), (x16, k16)


def _bf16_matmul_bwd(saved: Any, g: jax.Array) -> tuple[jax.Array, jax.Array]:
    x16, k16 = saved
    g16 = g.astype(jnp.bfloat16)
    dx = jax.lax.dot_general(
        g16, k16, (((g.ndim - 1,), (1,)), ((), ())), preferred_element_type=jnp.float32
    )
    rows = x16.reshape(-1, x16.shape[-1])
    cotangent_rows = g16.reshape(-1, g16.shape[-1])
    dkernel = jax.lax.dot_general(
        rows, cotangent_rows, (((0,), (0,)), ((), ())), preferred_element_type=jnp.float32
    )
    return dx, dkernel


bf16_matmul.defvjp(_bf16_matmul_fwd, _bf16_matmul_bwd)


class MixedDense(nn.Module):
    """`nn.Dense` whose product is `bf16_matmul`: the same float32 parameters (`kernel`
    `[in, features]`, `bias` `[features]`, drawn in the same order from the same
    initialisers), bfloat16 inputs to the product, float32 accumulation, float32 bias add."""

    features: int
    kernel_init: Initializer = nn.initializers.lecun_normal()
    bias_init: Initializer = nn.initializers.zeros

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param("kernel", self.kernel_init, (x.shape[-1], self.features), jnp.float32)
        bias = self.param("bias", self.bias_init, (self.features,), jnp.float32)
        return bf16_matmul(x, kernel) + bias


def dense(
    features: int, precision: str, kernel_init: Initializer, bias_init: Initializer, name: str
) -> nn.Module:
    """A dense layer of the given precision: `nn.Dense` (f32) or `MixedDense` (bf16)."""
    if precision == "f32":
        return nn.Dense(features, kernel_init=kernel_init, bias_init=bias_init, name=name)
    if precision == "bf16":
        return MixedDense(features, kernel_init=kernel_init, bias_init=bias_init, name=name)
    raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")


class ScoreNet(nn.Module):
    """phi_theta(s, a, k).

    Inputs: `obs [..., ds]`, `action [..., da]` (squashed for the score head, the latent for
    the DDPM eps head), `step [...]` int in [0, K). Returns `(score, eps)`, each `[..., da]`.
    """

    action_dim: int
    num_steps: int
    hidden: int = 128
    embed_dim: int = 16
    precision: str = "f32"

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
        xavier, zeros = nn.initializers.xavier_uniform(), nn.initializers.zeros
        for i in range(3):
            h = nn.relu(dense(self.hidden, self.precision, xavier, zeros, f"hidden_{i}")(h))
        score = dense(self.action_dim, self.precision, xavier, zeros, "score_head")(h)
        eps = dense(self.action_dim, self.precision, xavier, zeros, "eps_head")(h)
        return score, eps


class CriticMLP(nn.Module):
    """One Q(s, a): Dense-act-Dense-act-Dense(1). Returns `[...]` (trailing 1 dropped)."""

    hidden: int = 256
    activation: str = "relu"
    kernel_init: str = "xavier_uniform"
    precision: str = "f32"

    @nn.compact
    def __call__(self, obs: jax.Array, action: jax.Array) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        init = KERNEL_INITS[self.kernel_init]
        h = jnp.concatenate([obs, action], axis=-1)
        for i in range(2):
            bias = bias_init(self.kernel_init, h.shape[-1])
            h = act(dense(self.hidden, self.precision, init, bias, f"hidden_{i}")(h))
        q = dense(1, self.precision, init, bias_init(self.kernel_init, h.shape[-1]), "out")(h)
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
    precision: str = "f32"

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
        members = ensemble(
            self.hidden, self.activation, self.kernel_init, self.precision, name="members"
        )
        return members(obs, action)


def reward_critic(hidden: int, precision: str = "f32") -> CriticEnsemble:
    """Double-Q reward critic: 2 ReLU MLPs, Xavier-uniform weights."""
    return CriticEnsemble(
        members=2,
        hidden=hidden,
        activation="relu",
        kernel_init="xavier_uniform",
        precision=precision,
    )


def cost_critic(members: int, hidden: int, precision: str = "f32") -> CriticEnsemble:
    """Cost-critic ensemble: M SiLU MLPs, N(0, (1/(2 sqrt(fan_in)))^2) weights."""
    return CriticEnsemble(
        members=members,
        hidden=hidden,
        activation="silu",
        kernel_init="scaled_normal",
        precision=precision,
    )
