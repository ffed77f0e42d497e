"""The soft actor-critic core shared by the SAC-family baselines (SAC-Lag, SAC-AugLag, CAL,
RCRL): a tanh-Gaussian actor with its log-probability, the twin-Q target with the entropy
term, the automatic temperature, and the learner state they share.

The cost-critic ensemble, its TD targets and Polyak averaging are those of ALGD
(`algd_jax.critics`), the multiplier rules those of `algd_jax.multipliers`: an algorithm
module combines these pieces with its own cost statistic, actor penalty and dual step.

Shapes: `B` batch rows, `da` action dims, `M` cost-critic members. Actions inside the task's
box `[low, high]` are `a = scale * tanh(u) + bias` with `scale = (high - low) / 2` and
`bias = (high + low) / 2`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple

import flax.linen as nn
import flax.struct as struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training.train_state import TrainState

from algd_jax.critics import CriticTrainState, create_critic, ensemble_cost_target, td_step
from algd_jax.networks import ACTIVATIONS, KERNEL_INITS, CriticEnsemble, bias_init
from algd_jax.options import DISCOUNT, FRACTION, POSITIVE, POSITIVE_INT, Range, ranged
from algd_jax.types import Batch, Metrics

#: Inside the log of the tanh Jacobian, as CAL's and SAC's reference code (keeps log pi
#: finite where tanh saturates).
TANH_EPS = 1e-6
LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


# ----------------------------------------------------------------------------- options


@dataclass(frozen=True)
class SACOptions:
    """The options of the SAC core that CAL, SAC-AugLag and SAC-Lag share (their configs
    subclass this and add their own), with the defaults of CAL's code (`ZifanWu/CAL`,
    `arguments.py` and `agent/cal.py`), the harness the ALGD paper's baselines share.
    OmniSafe's SACLag has the same values except those its preset sets (`sac_lag.py`,
    `OMNISAFE_VALUES`). RCRL's defaults and schedule differ, so it declares its own."""

    actor_lr: float = ranged(3e-4, POSITIVE)
    """Adam learning rate of the actor (CAL `--lr`: 3e-4)."""
    critic_lr: float = ranged(3e-4, POSITIVE)
    """Adam learning rate of the twin reward critic (CAL `--lr`: 3e-4)."""
    cost_critic_lr: float = ranged(3e-4, POSITIVE)
    """Adam learning rate of the cost critics (CAL `--qc_lr`: 3e-4)."""
    alpha_lr: float = ranged(3e-4, POSITIVE)
    """Adam learning rate of log alpha (CAL `--lr`: 3e-4)."""
    init_alpha: float = ranged(1.0, POSITIVE)
    """alpha_0 (CAL: log alpha starts at 0; its `--alpha 0.2` is unused)."""
    auto_alpha: bool = True
    """Learn alpha toward the target entropy (CAL: always)."""
    target_entropy: float | None = ranged(None, Range(allow_none=True))
    """Target entropy in nats, below the largest entropy of the task's action box (unset:
    -dim(A), CAL's)."""
    gamma: float = ranged(0.99, DISCOUNT)
    """Reward discount (CAL `--gamma`: 0.99)."""
    cost_gamma: float = ranged(0.99, DISCOUNT)
    """Cost discount (CAL `--safety_gamma`: 0.99)."""
    polyak: float = ranged(0.005, FRACTION)
    """Target averaging rate tau (CAL `--tau`: 0.005)."""
    target_update_every: int = ranged(2, POSITIVE_INT)
    """Targets move on every k-th update (CAL `critic_target_update_frequency`: 2)."""
    actor_hidden: int = ranged(256, POSITIVE_INT)
    """Width of the actor's two hidden layers (CAL `--hidden_size`: 256)."""
    critic_hidden: int = ranged(256, POSITIVE_INT)
    """Width of every critic's two hidden layers (CAL `--hidden_size`: 256)."""
    max_grad_norm: float | None = ranged(None, Range(low=0.0, low_open=True, allow_none=True))
    """Clip each network's gradient to this global norm (CAL: none)."""


# ----------------------------------------------------------------------------- actor


class TanhGaussianActor(nn.Module):
    """pi(. | s): an MLP `obs [..., ds] -> hidden -> hidden` with a linear mean head and a
    linear log-std head, each `[..., da]`; log-std clipped to `[log_std_min, log_std_max]`.

    CAL: ReLU, Xavier-uniform weights, zero biases, log-std in [-20, 2]; OmniSafe: the
    same with PyTorch's kaiming-uniform weights and biases (`networks.bias_init`); RCRL:
    ELU, He-normal, log-std in [-5, 1].
    """

    action_dim: int
    hidden: int = 256
    activation: str = "relu"
    kernel_init: str = "xavier_uniform"
    log_std_min: float = -20.0
    log_std_max: float = 2.0

    @nn.compact
    def __call__(self, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        act, init = ACTIVATIONS[self.activation], KERNEL_INITS[self.kernel_init]

        def layer(width: int, name: str, x: jax.Array) -> jax.Array:
            bias = bias_init(self.kernel_init, x.shape[-1])
            return nn.Dense(width, kernel_init=init, bias_init=bias, name=name)(x)

        h = obs
        for i in range(2):
            h = act(layer(self.hidden, f"hidden_{i}", h))
        mean = layer(self.action_dim, "mean", h)
        log_std = layer(self.action_dim, "log_std", h)
        return mean, jnp.clip(log_std, self.log_std_min, self.log_std_max)


def tanh_gaussian_sample(
    mean: jax.Array, log_std: jax.Array, noise: jax.Array, scale: jax.Array, bias: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """A reparameterised action and its log-density.

    `u = mean + exp(log_std) * noise` (noise ~ N(0, I), all `[..., da]`), `a = scale *
    tanh(u) + bias`; returns `(a [..., da], log pi(a) [...])` with the change of variables
    `log pi(a) = sum_j [log N(u_j; mean_j, std_j) - log(scale_j (1 - tanh(u_j)^2) + eps)]`
    (nats; eps = `TANH_EPS`).
    """
    u = mean + jnp.exp(log_std) * noise
    y = jnp.tanh(u)
    gauss = -0.5 * noise**2 - log_std - LOG_SQRT_2PI
    log_prob = jnp.sum(gauss - jnp.log(scale * (1.0 - y**2) + TANH_EPS), axis=-1)
    return scale * y + bias, log_prob


def deterministic_action(mean: jax.Array, scale: jax.Array, bias: jax.Array) -> jax.Array:
    """The evaluation action `scale * tanh(mean) + bias` `[..., da]`."""
    return scale * jnp.tanh(mean) + bias


# ----------------------------------------------------------------------------- critics


def soft_q_target(
    q_next: jax.Array,
    log_prob_next: jax.Array,
    reward: jax.Array,
    mask: jax.Array,
    gamma: float,
    alpha: jax.Array,
) -> jax.Array:
    """SAC's twin-Q target `r + gamma * mask * (min_j Q'_j(s', a') - alpha log pi(a'|s'))`
    from `q_next [2, B]` and `log_prob_next [B]`; `[B]`."""
    return reward + gamma * mask * (jnp.min(q_next, axis=0) - alpha * log_prob_next)


def ucb(qc: jax.Array, k: float) -> jax.Array:
    """`mean + k * std` over the member axis of `qc [M, ...]`, std with Bessel's
    correction (ddof = 1, as CAL's `torch.std_mean`); std = 0 for one member. `[...]`."""
    mean = jnp.mean(qc, axis=0)
    if qc.shape[0] < 2 or k == 0:
        return mean
    return mean + k * jnp.std(qc, axis=0, ddof=1)


# ----------------------------------------------------------------------------- temperature


def temperature_loss(log_alpha: jax.Array, log_prob: jax.Array, target_entropy: float) -> jax.Array:
    """`alpha * mean(stop_grad(-log pi - target_entropy))` (CAL's form; its gradient with
    respect to log alpha is alpha * (entropy estimate - target)): descent lowers alpha while
    the policy's entropy exceeds the target and raises it below."""
    gap = jax.lax.stop_gradient(-log_prob - target_entropy)
    return jnp.exp(log_alpha) * jnp.mean(gap)


def default_target_entropy(target_entropy: float | None, action_dim: int) -> float:
    """The configured target entropy, or -dim(A) (SAC's heuristic) when unset."""
    return -float(action_dim) if target_entropy is None else float(target_entropy)


def check_target_entropy(target_entropy: float | None, spec: Any) -> None:
    """Raise `ValueError` (one line) for a target entropy no policy on `spec`'s action box
    can reach: the largest differential entropy of any distribution on the box is that of
    the uniform one, `sum_j log(high_j - low_j)` nats, and a target at or above it would
    raise the temperature without bound."""
    if target_entropy is None:
        return
    low, high = check_box(spec)
    ceiling = float(np.sum(np.log(high - low)))
    if target_entropy >= ceiling:
        raise ValueError(
            f"--target-entropy {target_entropy} is not below the largest entropy a policy on "
            f"this task's action box can have ({ceiling:.4g} nats, the uniform distribution): "
            f"alpha would grow without bound; use a smaller value (unset: -dim(A) = "
            f"{-low.shape[0]})"
        )


# ----------------------------------------------------------------------------- state


class SACState(struct.PyTreeNode):
    """Everything a SAC-family learner owns. `config` is static.

    `alpha.params["log_alpha"]` is log alpha (fixed when the config's `auto_alpha` is
    off); `multiplier` is a scalar multiplier (`multipliers`) or, for RCRL, the state-wise
    multiplier network. `cost_critic` is the cost ensemble (RCRL: the feasibility ensemble).
    `dual_signal` float32 `[]`: the constraint signal of the last dual step that `observe`
    took from the loop (SAC-Lag's mean recent episode cost; 0 otherwise). `extra`: a dict
    of the arrays one algorithm keeps besides these (SAC-Lag's cost normaliser, CAL's
    update-cap counters, RCRL's learning-rate horizon; `{}` for none), checkpointed with
    the rest.
    """

    actor: TrainState
    critic: CriticTrainState
    cost_critic: CriticTrainState
    alpha: TrainState
    multiplier: TrainState
    step: jax.Array
    key: jax.Array
    action_scale: jax.Array
    action_bias: jax.Array
    dual_signal: jax.Array
    extra: dict[str, Any]
    config: Any = struct.field(pytree_node=False)


class Parts(NamedTuple):
    """The static (non-array) parts of a SAC-family learner: modules and optimisers."""

    actor: TanhGaussianActor
    critic: CriticEnsemble
    cost_critic: CriticEnsemble
    actor_tx: optax.GradientTransformation
    critic_tx: optax.GradientTransformation
    cost_tx: optax.GradientTransformation
    alpha_tx: optax.GradientTransformation


def adam(
    lr: float, max_grad_norm: float | None = None, scheduled: bool = False
) -> optax.GradientTransformation:
    """Adam, after clipping the gradient's global norm when `max_grad_norm` is set. With
    `scheduled`, the learning rate is a leaf of the optimiser state, starting at `lr`, that
    `set_learning_rate` replaces (for schedules that depend on loop information)."""

    def make(learning_rate: Any) -> optax.GradientTransformation:
        if max_grad_norm is None:
            return optax.adam(learning_rate)
        return optax.chain(optax.clip_by_global_norm(max_grad_norm), optax.adam(learning_rate))

    return optax.inject_hyperparams(make)(learning_rate=lr) if scheduled else make(lr)


def set_learning_rate(train_state: Any, lr: jax.Array) -> Any:
    """`train_state` whose (`adam(..., scheduled=True)`) optimiser uses `lr` from its next
    step on."""
    opt = train_state.opt_state
    hyper = {**opt.hyperparams, "learning_rate": jnp.asarray(lr, jnp.float32)}
    return train_state.replace(opt_state=opt._replace(hyperparams=hyper))


def linear_decay(start: float, end: float, step: jax.Array, horizon: jax.Array) -> jax.Array:
    """`start + (end - start) min(step / horizon, 1)`, float32 `[]` (TensorFlow's
    `PolynomialDecay` of power 1 without cycling); `start` while `horizon` is 0 (unknown)."""
    fraction = jnp.where(
        horizon > 0, jnp.minimum(step / jnp.maximum(horizon, 1).astype(jnp.float32), 1.0), 0.0
    )
    return jnp.asarray(start + (end - start) * fraction, jnp.float32)


@lru_cache(maxsize=64)
def parts(config: Any, action_dim: int) -> Parts:
    """Modules and optimisers of a learner, built once per `(config, action_dim)` so that
    states of equal configs share one pytree structure (one compiled program).

    Reads the config fields every SAC-family config has: `actor_hidden`, `critic_hidden`,
    `ensemble_size`, `actor_lr`, `critic_lr`, `cost_critic_lr`, `alpha_lr`,
    `max_grad_norm`, and optionally `activation` and `kernel_init` (actor and reward critic;
    default ReLU, Xavier-uniform), `cost_activation` and `cost_kernel_init` (cost ensemble;
    default SiLU, scaled normal, as CAL's), `log_std_min/max` and `lr_schedule` (`linear`:
    every optimiser's learning rate is a state leaf, see `set_learning_rate`).
    """
    activation = getattr(config, "activation", "relu")
    kernel_init = getattr(config, "kernel_init", "xavier_uniform")
    clip = config.max_grad_norm
    scheduled = getattr(config, "lr_schedule", "constant") != "constant"
    actor = TanhGaussianActor(
        action_dim=action_dim,
        hidden=config.actor_hidden,
        activation=activation,
        kernel_init=kernel_init,
        log_std_min=getattr(config, "log_std_min", -20.0),
        log_std_max=getattr(config, "log_std_max", 2.0),
    )
    return Parts(
        actor=actor,
        critic=CriticEnsemble(
            members=2, hidden=config.critic_hidden, activation=activation, kernel_init=kernel_init
        ),
        cost_critic=CriticEnsemble(
            members=config.ensemble_size,
            hidden=config.critic_hidden,
            activation=getattr(config, "cost_activation", "silu"),
            kernel_init=getattr(config, "cost_kernel_init", "scaled_normal"),
        ),
        actor_tx=adam(config.actor_lr, clip, scheduled),
        critic_tx=adam(config.critic_lr, clip, scheduled),
        cost_tx=adam(config.cost_critic_lr, clip, scheduled),
        alpha_tx=adam(config.alpha_lr, None, scheduled),
    )


def check_box(spec: Any) -> tuple[np.ndarray, np.ndarray]:
    """The action box `(low [da], high [da])` of a task, checked bounded with high > low."""
    low = np.asarray(spec.action_low, np.float32)
    high = np.asarray(spec.action_high, np.float32)
    if low.shape != high.shape or low.ndim != 1:
        raise ValueError("action_low and action_high must be 1-D arrays of equal length")
    if not np.all(np.isfinite(low) & np.isfinite(high) & (high > low)):
        raise ValueError("the action space must be a bounded box with high > low")
    return low, high


def init_state(
    config: Any,
    spec: Any,
    key: jax.Array,
    multiplier: TrainState,
    extra: dict[str, Any] | None = None,
) -> SACState:
    """A fresh learner for `spec`'s observations `[obs_dim]` and action box; every random
    draw from `key`. `multiplier` is the algorithm's own dual state, `extra` its other
    arrays (`SACState.extra`). log alpha starts at `log(config.init_alpha)`."""
    low, high = check_box(spec)
    action_dim = low.shape[0]
    p = parts(config, action_dim)
    key, k_actor, k_critic, k_cost = jax.random.split(key, 4)
    obs = jnp.zeros((1, spec.obs_dim), jnp.float32)
    act = jnp.zeros((1, action_dim), jnp.float32)
    actor = TrainState.create(
        apply_fn=p.actor.apply, params=p.actor.init(k_actor, obs), tx=p.actor_tx
    ).replace(step=jnp.zeros((), jnp.int32))
    alpha = TrainState.create(
        apply_fn=None,
        params={"log_alpha": jnp.asarray(np.log(config.init_alpha), jnp.float32)},
        tx=p.alpha_tx,
    ).replace(step=jnp.zeros((), jnp.int32))
    return SACState(
        actor=actor,
        critic=create_critic(p.critic, p.critic.init(k_critic, obs, act), p.critic_tx),
        cost_critic=create_critic(p.cost_critic, p.cost_critic.init(k_cost, obs, act), p.cost_tx),
        alpha=alpha,
        multiplier=multiplier,
        step=jnp.zeros((), jnp.int32),
        key=key,
        action_scale=jnp.asarray((high - low) / 2.0),
        action_bias=jnp.asarray((high + low) / 2.0),
        dual_signal=jnp.zeros((), jnp.float32),
        extra={} if extra is None else extra,
        config=config,
    )


def alpha_value(state: SACState) -> jax.Array:
    """alpha = exp(log alpha), float32 `[]`."""
    return jnp.exp(state.alpha.params["log_alpha"])


# ----------------------------------------------------------------------------- acting


def policy_sample(
    state: SACState, actor_params: Any, obs: jax.Array, noise: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """`(a [B, da], log pi(a|s) [B])` for `obs [B, ds]` and standard-normal `noise [B, da]`."""
    mean, log_std = state.actor.apply_fn(actor_params, obs)
    return tanh_gaussian_sample(mean, log_std, noise, state.action_scale, state.action_bias)


def act(state: SACState, obs: jax.Array, key: jax.Array, deterministic: bool = False) -> jax.Array:
    """Actions `[B, da]` for `obs [B, ds]`, inside the box: `scale * tanh(mean) + bias` when
    deterministic, a sample with noise from `key` otherwise."""
    mean, log_std = state.actor.apply_fn(state.actor.params, obs)
    if deterministic:
        return deterministic_action(mean, state.action_scale, state.action_bias)
    noise = jax.random.normal(key, mean.shape, mean.dtype)
    return tanh_gaussian_sample(mean, log_std, noise, state.action_scale, state.action_bias)[0]


# ----------------------------------------------------------------------------- update pieces


class Noise(NamedTuple):
    """The random draws of one update: the next action's and the actor's, each `[B, da]`."""

    next_action: jax.Array
    actor: jax.Array


def split_noise(state: SACState, batch: Batch) -> tuple[SACState, Noise]:
    """The state with its key advanced, and this update's noise (one draw, cut in two)."""
    key, sub = jax.random.split(state.key)
    rows, action_dim = batch.obs.shape[0], state.action_scale.shape[0]
    normal = jax.random.normal(sub, (2, rows, action_dim))
    return state.replace(key=key), Noise(normal[0], normal[1])


def reward_critic_step(
    state: SACState, batch: Batch, next_action: jax.Array, next_log_prob: jax.Array
) -> tuple[CriticTrainState, Metrics]:
    """One TD step of the twin reward critic on SAC's soft target (alpha held fixed)."""
    config, critic = state.config, state.critic
    q_next = critic.apply_fn(critic.target_params, batch.next_obs, next_action)  # [2, B]
    alpha = jax.lax.stop_gradient(alpha_value(state))
    target = soft_q_target(q_next, next_log_prob, batch.reward, batch.mask_r, config.gamma, alpha)
    critic, per_member = td_step(critic, batch.obs, batch.action, target, members="sum")
    metrics = {
        "critic_loss": jnp.sum(per_member),
        "q1_mse": per_member[0],
        "q2_mse": per_member[1],
    }
    return critic, metrics


def cost_critic_step(
    state: SACState, batch: Batch, next_action: jax.Array, target: jax.Array | None = None
) -> tuple[CriticTrainState, Metrics]:
    """One TD step of the cost ensemble, each member on `c + gamma_c * mask_c *
    Qc'_i(s', a')` (its own target member, no entropy term), or on a given `target`
    (`[B]` or `[M, B]`)."""
    config, cost = state.config, state.cost_critic
    if target is None:
        qc_next = cost.apply_fn(cost.target_params, batch.next_obs, next_action)  # [M, B]
        target = ensemble_cost_target(qc_next, batch.cost, batch.mask_c, config.cost_gamma)
    cost, per_member = td_step(cost, batch.obs, batch.action, target, members="mean")
    return cost, {"cost_critic_loss": jnp.mean(per_member), "target_qc": jnp.mean(target)}


def actor_step(
    state: SACState,
    loss_fn: Callable[[Any], tuple[jax.Array, tuple[jax.Array, Metrics]]],
    due: jax.Array | bool = True,
) -> tuple[TrainState, jax.Array, Metrics]:
    """One gradient step of the actor on `loss_fn(actor_params) -> (loss, (log_prob [B],
    metrics))`, kept only where `due` (a traced bool: policy delays). Returns the new actor
    state, the detached log-probabilities of the actor's sample and the metrics (with
    `actor_loss` and `entropy`, the estimate `-mean log pi`)."""
    (loss, (log_prob, metrics)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.actor.params
    )
    actor = keep_where(due, state.actor.apply_gradients(grads=grads), state.actor)
    metrics = {**metrics, "actor_loss": loss, "entropy": -jnp.mean(log_prob)}
    return actor, jax.lax.stop_gradient(log_prob), metrics


def temperature_step(
    state: SACState, log_prob: jax.Array, target_entropy: float, due: jax.Array | bool = True
) -> tuple[TrainState, Metrics]:
    """One Adam step of log alpha on `temperature_loss` (skipped when the config's
    `auto_alpha` is off, or where `due` is false)."""
    if not state.config.auto_alpha:
        return state.alpha, {"alpha": alpha_value(state), "alpha_loss": jnp.zeros(())}
    loss, grads = jax.value_and_grad(
        lambda p: temperature_loss(p["log_alpha"], log_prob, target_entropy)
    )(state.alpha.params)
    alpha = keep_where(due, state.alpha.apply_gradients(grads=grads), state.alpha)
    return alpha, {"alpha": jnp.exp(alpha.params["log_alpha"]), "alpha_loss": loss}


def keep_where(due: jax.Array | bool, new: Any, old: Any) -> Any:
    """`new` where `due` holds, else `old` (leaf by leaf; `due` a traced bool)."""
    if due is True:
        return new
    return jax.tree.map(lambda a, b: jnp.where(due, a, b), new, old)


#: `--preset paper` of every SAC-family baseline: the ALGD paper's comparison setting
#: (Appendix F.5: every baseline with the same M = 6 cost critics; Table 4: batch 256,
#: U = 10 updates per env step).
PAPER_VALUES: dict[str, Any] = {"ensemble_size": 6}
PAPER_LOOP: dict[str, Any] = {"batch_size": 256, "updates_per_step": 10}

#: Metrics every SAC-family update reports (each algorithm adds its own).
CORE_METRICS = (
    "actor_loss",
    "alpha",
    "alpha_loss",
    "cost_critic_loss",
    "critic_loss",
    "entropy",
    "q1_mse",
    "q2_mse",
    "target_qc",
)
