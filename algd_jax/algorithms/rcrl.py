"""RCRL, reachability-constrained RL with Hamilton-Jacobi feasibility (Yu, Ma, Li and Chen,
ICML 2022; the ALGD paper's "HJ" baseline), top to bottom in one file.

SAC whose constraint is state-wise: a feasibility critic Q_h(s, a) learns the discounted
*maximum* future constraint violation by the reachability backup

    y_h = (1 - gamma_h) h(s) + gamma_h max(h(s), Q_h'(s', a'))     (non-terminal)
    y_h = h(s)                                                      (terminal)

with `h(s) = c(s) - c_bar` (c_bar: the per-step cost level equivalent to the task's budget),
and a multiplier network lambda(s) = softplus(f(s)) >= 0 enforces `Q_h(s, pi(s)) <= 0` state
by state. Actor: `mean[alpha log pi - min Q] + mean[sg(lambda(s)) Q_h(s, a_pi)]`, every
`policy_delay`-th update (with the temperature and the targets); lambda(s): ascent on
`mean[lambda(s) sg(clip(Q_h(s, a_pi), -10, 100))]` every `multiplier_interval`-th update.
M feasibility heads, each with its own target, aggregated by the mean.

Every learning rate decays linearly to its end value (the official `PolynomialDecay`s) over
`lr_decay_updates` updates (official: 2e6), or, unset, over the run's planned updates, which
the loop hands over through `observe`.

Registered as `rcrl`. Its multiplier is a function of the state, so it is logged as
`multiplier_state_mean` (the batch mean of lambda(s)), and its constraint value as
`feasibility_value` (the batch mean of Q_h(s, a_pi); <= 0 is feasible), not as `multiplier`
and `qc_risk`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax.training.train_state import TrainState

from algd_jax import sac
from algd_jax.algorithms.base import ActionSpace, Algorithm, LoopInfo, register
from algd_jax.critics import polyak, target_update_due
from algd_jax.networks import ACTIVATIONS, KERNEL_INITS
from algd_jax.options import (
    DISCOUNT,
    FINITE,
    FRACTION,
    POSITIVE,
    POSITIVE_INT,
    UNIT_INTERVAL,
    Range,
    check_ranges,
    ranged,
)
from algd_jax.types import Batch, Metrics

# ----------------------------------------------------------------------------- config


@dataclass(frozen=True)
class RCRLConfig:
    """Hyper-parameters of RCRL. Defaults: the official code
    (`mahaitongdae/Reachability_Constrained_RL`, `train_scripts/train_script.py`,
    `learners/sac.py`, `policy.py`), except gamma_h = 0.99 (the JAX ports'; official 1.0)
    and h(s) = c(s) - c_bar without the sign indicator (official: 20 sign(h)), so that the
    constraint is the task's own. The learning rates start at the official values and decay
    linearly to the official end values over the run."""

    ensemble_size: int = ranged(1, POSITIVE_INT)
    """M: feasibility heads, each with its own target, averaged (official: 1; the ALGD
    paper's comparison: 6)."""
    cost_level: float = 1.52
    """c_bar: the per-step cost at which the task's budget is met exactly (set from the
    task: h (1 - gamma_c) / (1 - gamma_c^T) on the speed tasks, C / T elsewhere)."""
    indicator: bool = False
    """Replace h(s) by its sign (official: yes)."""
    cost_scale: float = ranged(1.0, POSITIVE)
    """Factor on h(s) (official `cost_scale`: 20, with the indicator)."""
    feasibility_gamma: float = ranged(0.99, UNIT_INTERVAL)
    """gamma_h of the reachability backup (JAX ports: 0.99; official: 1.0)."""
    violation_clip_low: float = ranged(-10.0, FINITE)
    """Lower clip of Q_h in the multiplier loss (official: -10)."""
    violation_clip_high: float = ranged(100.0, FINITE)
    """Upper clip of Q_h in the multiplier loss (official: 100)."""
    policy_delay: int = ranged(4, POSITIVE_INT)
    """The actor, alpha and the targets move on every k-th update (official
    `delay_update`: 4)."""
    multiplier_interval: int = ranged(12, POSITIVE_INT)
    """lambda(s) moves on every k-th update (official `dual_ascent_interval`: 12)."""
    actor_lr: float = ranged(2e-5, POSITIVE)
    """Official policy lr: 2e-5 (decaying to 1e-6 there)."""
    critic_lr: float = ranged(1e-4, POSITIVE)
    """Official value lr: 1e-4 (decaying to 1e-6 there)."""
    cost_critic_lr: float = ranged(1e-4, POSITIVE)
    """Learning rate of the feasibility critic (official cost value lr: 1e-4)."""
    multiplier_lr: float = ranged(6e-7, POSITIVE)
    """Adam learning rate of the lambda(s) network (official: 6e-7, decaying to 1e-7)."""
    alpha_lr: float = ranged(8e-5, POSITIVE)
    """Adam learning rate of log alpha (official: 8e-5, decaying to 3e-6)."""
    lr_schedule: Literal["linear", "constant"] = "linear"
    """`linear`: every learning rate moves linearly from its value above to its `*_lr_end`
    over `lr_decay_updates` updates, then stays there (official: TensorFlow's
    `PolynomialDecay`, power 1, `train_script.py` `*_lr_schedule`, `policy.py`); `constant`:
    the values above throughout."""
    lr_decay_updates: int | None = ranged(2_000_000, Range(low=1, integer=True, allow_none=True))
    """Updates over which the rates decay (official: its run's `max_iter`, 2e6 learner
    iterations; each official schedule counts its own optimiser's steps, the policy's and
    alpha's max_iter / 4, lambda's max_iter / 12, the same fraction of the run; 2e6 is also
    the ALGD paper's MuJoCo run, 200k env steps at U = 10). Unset: the run's planned
    updates (the loop's `total_updates`, handed over by `observe`); a run whose
    `--total-steps` a resume raises then decays otherwise than one planned that long from
    the start, and the on-device loop, which gives no loop information, keeps the start
    values."""
    actor_lr_end: float = ranged(1e-6, POSITIVE)
    """End of the policy's decay (official: 1e-6)."""
    critic_lr_end: float = ranged(1e-6, POSITIVE)
    """End of the value networks' decay (official: 1e-6)."""
    cost_critic_lr_end: float = ranged(1e-6, POSITIVE)
    """End of the feasibility critic's decay (official cost value: 1e-6)."""
    multiplier_lr_end: float = ranged(1e-7, POSITIVE)
    """End of the lambda(s) network's decay (official: 1e-7)."""
    alpha_lr_end: float = ranged(3e-6, POSITIVE)
    """End of log alpha's decay (official: 3e-6)."""
    init_alpha: float = ranged(1.0, POSITIVE)
    """alpha_0 (official: log alpha starts at 0)."""
    auto_alpha: bool = True
    """Learn alpha toward the target entropy (official: yes)."""
    target_entropy: float | None = ranged(None, Range(allow_none=True))
    """Target entropy in nats (unset: -dim(A); official quadrotor: -2 = -dim(A))."""
    gamma: float = ranged(0.99, DISCOUNT)
    """Reward discount (official: 0.99)."""
    polyak: float = ranged(0.005, FRACTION)
    """Target averaging rate tau (official: 0.005)."""
    actor_hidden: int = ranged(256, POSITIVE_INT)
    """Width of the actor's hidden layers (official: 256, ELU)."""
    critic_hidden: int = ranged(256, POSITIVE_INT)
    """Width of the critics' hidden layers (official: 256, ELU)."""
    multiplier_hidden: int = ranged(256, POSITIVE_INT)
    """Width of the lambda(s) network's hidden layers (official: 256, ELU)."""
    max_grad_norm: float | None = ranged(10.0, Range(low=0.0, low_open=True, allow_none=True))
    """Global-norm clip of the critics' and the actor's gradients (official: 10)."""
    multiplier_grad_norm: float = ranged(3.0, POSITIVE)
    """Global-norm clip of the lambda(s) gradient (official: 3)."""
    activation: str = "elu"
    """Hidden activation of the actor and critics (official: ELU)."""
    kernel_init: str = "he_normal"
    """Weight init of the actor and critics (official: He normal)."""
    cost_activation: str = "elu"
    """Hidden activation of the feasibility critic (official: ELU)."""
    cost_kernel_init: str = "he_normal"
    """Weight init of the feasibility critic (official: He normal)."""
    log_std_min: float = ranged(-5.0, FINITE)
    """Lower clip of the actor's log-std (official: -5)."""
    log_std_max: float = ranged(1.0, FINITE)
    """Upper clip of the actor's log-std (official: 1)."""

    def validate(self) -> RCRLConfig:
        """Raise `ValueError` with one line for an impossible value."""
        problems = check_ranges(self)
        if problems:
            raise ValueError(problems[0])
        if not self.violation_clip_low < self.violation_clip_high:
            raise ValueError(
                f"--violation-clip-low ({self.violation_clip_low}) must be smaller than "
                f"--violation-clip-high ({self.violation_clip_high})"
            )
        if not self.log_std_min < self.log_std_max:
            raise ValueError(
                f"--log-std-min ({self.log_std_min}) must be smaller than --log-std-max "
                f"({self.log_std_max})"
            )
        if self.lr_schedule not in ("linear", "constant"):
            raise ValueError(f"--lr-schedule must be linear or constant, got {self.lr_schedule!r}")
        for name in ("activation", "cost_activation"):
            if getattr(self, name) not in ACTIVATIONS:
                raise ValueError(
                    f"--{name.replace('_', '-')} must be one of {', '.join(ACTIVATIONS)}"
                )
        for name in ("kernel_init", "cost_kernel_init"):
            if getattr(self, name) not in KERNEL_INITS:
                raise ValueError(
                    f"--{name.replace('_', '-')} must be one of {', '.join(KERNEL_INITS)}"
                )
        return self

    @property
    def cost_gamma(self) -> float:
        """The feasibility backup's discount (for the shared SAC pieces)."""
        return self.feasibility_gamma


# ----------------------------------------------------------------------------- pieces


class StateMultiplier(nn.Module):
    """lambda(s) = softplus(f(s)) `[...]` for `obs [..., ds]`: an ELU MLP with He-normal
    weights and zero biases (official `model.py`)."""

    hidden: int = 256

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        init = nn.initializers.he_normal()
        h = obs
        for i in range(2):
            h = nn.elu(nn.Dense(self.hidden, kernel_init=init, name=f"hidden_{i}")(h))
        return nn.softplus(nn.Dense(1, kernel_init=init, name="out")(h))[..., 0]


def constraint_signal(cost: jax.Array, config: RCRLConfig) -> jax.Array:
    """h(s) `[B]` from the step costs `[B]`: `scale * (c - c_bar)`, or `scale * sign(c -
    c_bar)` with the indicator (<= 0: the step is within the constraint)."""
    h = cost - config.cost_level
    if config.indicator:
        h = jnp.sign(h)
    return config.cost_scale * h


def feasibility_target(
    h: jax.Array, q_next: jax.Array, mask: jax.Array, gamma_h: float
) -> jax.Array:
    """The discounted reachability backup `[M, B]` from h(s) `[B]` and the target heads at
    the next state-action `q_next [M, B]`: `(1 - gamma_h) h + gamma_h max(h, Q_h')` where
    `mask` is 1 (the episode goes on), `h` where it is 0 (terminal)."""
    going_on = (1.0 - gamma_h) * h + gamma_h * jnp.maximum(h, q_next)
    return mask * going_on + (1.0 - mask) * h


@lru_cache(maxsize=64)
def _multiplier_parts(config: RCRLConfig) -> tuple[StateMultiplier, optax.GradientTransformation]:
    scheduled = config.lr_schedule != "constant"
    tx = sac.adam(config.multiplier_lr, config.multiplier_grad_norm, scheduled)
    return StateMultiplier(config.multiplier_hidden), tx


def scheduled_rates(config: RCRLConfig, step: jax.Array, horizon: jax.Array) -> dict[str, Any]:
    """The learning rate of each network at update `step` (`[]` each): linear from the
    start value to the end value over `horizon` updates (start values while it is 0)."""
    names = ("actor", "critic", "cost_critic", "multiplier", "alpha")
    return {
        name: sac.linear_decay(
            getattr(config, f"{name}_lr"), getattr(config, f"{name}_lr_end"), step, horizon
        )
        for name in names
    }


def _with_rates(state: sac.SACState) -> sac.SACState:
    """The state whose optimisers use this update's scheduled learning rates."""
    rates = scheduled_rates(state.config, state.step, state.extra["lr_horizon"])
    return state.replace(
        **{name: sac.set_learning_rate(getattr(state, name), rate) for name, rate in rates.items()}
    )


# ----------------------------------------------------------------------------- learner


def init(config: RCRLConfig, spec: ActionSpace, key: jax.Array) -> sac.SACState:
    """A fresh RCRL learner: the SAC core plus the lambda(s) network. `extra["lr_horizon"]`
    (int32 `[]`): the decay's horizon in updates (`lr_decay_updates`, or 0 until `observe`
    hands over the run's planned updates)."""
    config.validate()
    key, k_lam = jax.random.split(key)
    net, tx = _multiplier_parts(config)
    params = net.init(k_lam, jnp.zeros((1, spec.obs_dim), jnp.float32))
    multiplier = TrainState.create(apply_fn=net.apply, params=params, tx=tx).replace(
        step=jnp.zeros((), jnp.int32)
    )
    extra = {"lr_horizon": jnp.asarray(config.lr_decay_updates or 0, jnp.int32)}
    return sac.init_state(config, spec, key, multiplier, extra)


act = sac.act


def observe(state: sac.SACState, info: LoopInfo) -> sac.SACState:
    """The decay's horizon: the run's planned updates, unless `lr_decay_updates` is set."""
    if state.config.lr_decay_updates is not None:
        return state
    horizon = jnp.asarray(info.total_updates, jnp.int32)
    return state.replace(extra={**state.extra, "lr_horizon": horizon})


def update(state: sac.SACState, batch: Batch) -> tuple[sac.SACState, Metrics]:
    """One RCRL update on a `Batch` of `[B, ...]` float32 leaves; scalar metrics."""
    config = state.config
    if config.lr_schedule != "constant":
        state = _with_rates(state)
    state, noise = sac.split_noise(state, batch)

    next_action, next_log_prob = sac.policy_sample(
        state, state.actor.params, batch.next_obs, noise.next_action
    )
    next_action = jax.lax.stop_gradient(next_action)
    critic, metrics = sac.reward_critic_step(state, batch, next_action, next_log_prob)

    feas = state.cost_critic
    h = constraint_signal(batch.cost, config)
    q_next = feas.apply_fn(feas.target_params, batch.next_obs, next_action)  # [M, B]
    target = feasibility_target(h, q_next, batch.mask_c, config.feasibility_gamma)
    feas, feas_metrics = sac.cost_critic_step(state, batch, next_action, target)
    metrics["feasibility_critic_loss"] = feas_metrics["cost_critic_loss"]
    metrics["target_feasibility"] = feas_metrics["target_qc"]

    lam_net = state.multiplier
    lam_s = jax.lax.stop_gradient(lam_net.apply_fn(lam_net.params, batch.obs))  # [B]
    alpha = jax.lax.stop_gradient(sac.alpha_value(state))

    def actor_loss(params: Any) -> tuple[jax.Array, tuple[jax.Array, Metrics]]:
        action, log_prob = sac.policy_sample(state, params, batch.obs, noise.actor)
        q = jnp.min(critic.apply_fn(critic.params, batch.obs, action), axis=0)
        qh = jnp.mean(feas.apply_fn(feas.params, batch.obs, action), axis=0)
        loss = jnp.mean(alpha * log_prob - q) + jnp.mean(lam_s * qh)
        return loss, (log_prob, {"actor_q": jnp.mean(q)})

    actor_due = target_update_due(state.step, config.policy_delay)
    actor, log_prob, actor_metrics = sac.actor_step(state, actor_loss, actor_due)
    metrics.update(actor_metrics)
    target_entropy = sac.default_target_entropy(config.target_entropy, state.action_scale.shape[0])
    alpha_state, alpha_metrics = sac.temperature_step(state, log_prob, target_entropy, actor_due)
    metrics.update(alpha_metrics)

    # lambda(s): ascent where the policy's action is predicted infeasible (Q_h > 0)
    a_pi, _ = sac.policy_sample(state, state.actor.params, batch.obs, noise.actor)
    qh_pi = jnp.mean(feas.apply_fn(feas.params, batch.obs, jax.lax.stop_gradient(a_pi)), axis=0)
    violation = jax.lax.stop_gradient(
        jnp.clip(qh_pi, config.violation_clip_low, config.violation_clip_high)
    )

    def multiplier_loss(params: Any) -> jax.Array:
        return -jnp.mean(lam_net.apply_fn(params, batch.obs) * violation)

    lam_loss, grads = jax.value_and_grad(multiplier_loss)(lam_net.params)
    lam_due = target_update_due(state.step, config.multiplier_interval)
    multiplier = sac.keep_where(lam_due, lam_net.apply_gradients(grads=grads), lam_net)
    metrics.update(
        {
            "multiplier_loss": lam_loss,
            "multiplier_state_mean": jnp.mean(lam_s),
            "multiplier_state_max": jnp.max(lam_s),
            "feasibility_value": jnp.mean(qh_pi),
            "feasible_fraction": jnp.mean((qh_pi <= 0).astype(jnp.float32)),
            "actor_lr": (
                state.actor.opt_state.hyperparams["learning_rate"]
                if config.lr_schedule != "constant"
                else jnp.asarray(config.actor_lr, jnp.float32)
            ),
        }
    )

    new_state = state.replace(
        actor=actor,
        critic=polyak(critic, config.polyak, actor_due),
        cost_critic=polyak(feas, config.polyak, actor_due),
        alpha=alpha_state,
        multiplier=multiplier,
        step=state.step + 1,
    )
    return new_state, metrics


# ----------------------------------------------------------------------------- registry

METRIC_NAMES = tuple(
    sorted(
        (
            "actor_loss",
            "actor_lr",
            "actor_q",
            "alpha",
            "alpha_loss",
            "critic_loss",
            "entropy",
            "feasibility_critic_loss",
            "feasibility_value",
            "feasible_fraction",
            "multiplier_loss",
            "multiplier_state_max",
            "multiplier_state_mean",
            "q1_mse",
            "q2_mse",
            "target_feasibility",
        )
    )
)


def metric_names(config: RCRLConfig) -> tuple[str, ...]:
    """Names of the scalar metrics `update` reports (sorted)."""
    return METRIC_NAMES


def per_step_cost_level(spec: Any) -> float:
    """c_bar: the constant per-step cost whose episode total meets the task's limit, in
    the quantity the task is judged on (discounted: h (1 - gamma_c) / (1 - gamma_c^T);
    summed: C / T)."""
    from algd_jax.judging import cost_kind, cost_limit_of

    steps = int(spec.max_episode_steps)
    if cost_kind(spec) == "discounted_cost":
        gamma = float(spec.cost_gamma)
        horizon = (1.0 - gamma**steps) / (1.0 - gamma) if gamma < 1.0 else float(steps)
        return float(spec.cost_budget) / horizon
    return cost_limit_of(spec) / steps


def resolve(config: RCRLConfig, spec: Any) -> RCRLConfig:
    """`config` with the task's per-step cost level c_bar. A target
    entropy no policy on the task's action box reaches is refused (`ValueError`, one line)."""
    sac.check_target_entropy(config.target_entropy, spec)
    return dataclasses.replace(config, cost_level=per_step_cost_level(spec))


#: `--preset paper`: the ALGD paper's comparison (`sac.PAPER_VALUES`, `sac.PAPER_LOOP`).
PAPER_VALUES, PAPER_LOOP = sac.PAPER_VALUES, sac.PAPER_LOOP

register(
    Algorithm(
        name="rcrl",
        description="RCRL (HJ reachability): SAC with a feasibility critic and a state-wise "
        "multiplier network (Yu et al. 2022)",
        config_type=RCRLConfig,
        init=init,
        act=act,
        update=update,
        metric_names=metric_names,
        resolve=resolve,
        task_fields=("cost_level",),
        presets={"paper": PAPER_VALUES},
        loop_presets={"paper": PAPER_LOOP},
        observe=observe,
    )
)
