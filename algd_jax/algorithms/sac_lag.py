"""SAC-Lag: SAC with a Lagrangian cost penalty in the actor loss, top to bottom in one file.

    actor loss = mean_B [ alpha log pi(a|s) - min_j Q_j(s, a) + lam Qc(s, a) ]  (/ (1 + lam))

with `a ~ pi(.|s)` reparameterised and Qc the mean of the cost ensemble (one critic by
default). Two drivers of lambda (`--lambda-driver`):

* `critic` (default): like ALGD's and CAL's, the cost critic at the replay actions against
  the budget h, every update (Adam on log lambda, ALGD's rule and learning rate), so that a
  comparison with ALGD changes the policy class and nothing else.
* `episode-cost`: OmniSafe's SACLag (`omnisafe/algorithms/off_policy/sac_lag.py`): the mean
  of the last W finished episodes' costs against the task's limit (the judged cost:
  discounted against h on the speed tasks, undiscounted against C elsewhere), one step per
  env step once `warmup_epochs` epochs are done. The loop hands the episode window over
  (`observe`); `--preset omnisafe` sets all of OmniSafe's values.

Registered as `sac-lag`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

import jax
import jax.numpy as jnp

from algd_jax import multipliers, sac
from algd_jax.algorithms.base import (
    ActionSpace,
    Algorithm,
    LoopInfo,
    register,
    task_budget,
    window_mean,
)
from algd_jax.critics import polyak, target_update_due
from algd_jax.options import (
    DISCOUNT,
    FRACTION,
    NON_NEGATIVE,
    NON_NEGATIVE_INT,
    POSITIVE,
    POSITIVE_INT,
    Range,
    check_ranges,
    ranged,
)
from algd_jax.types import Batch, Metrics

# ----------------------------------------------------------------------------- config


@dataclass(frozen=True)
class SACLagConfig:
    """Hyper-parameters of SAC-Lag. Defaults: the shared harness of the ALGD paper's
    baselines (CAL's code, `ZifanWu/CAL`, with k = 0 and no rectification) and ALGD's
    multiplier rule; `--preset omnisafe`: OmniSafe's `configs/off-policy/SACLag.yaml`."""

    ensemble_size: int = ranged(1, POSITIVE_INT)
    """M: cost critics, averaged (OmniSafe: one; the ALGD paper's comparison: 6)."""
    lambda_driver: Literal["critic", "episode-cost"] = "critic"
    """What drives lambda: `critic` (mean Qc at replay actions against h, every update) or
    `episode-cost` (mean of the last `episode_window` episode costs against the task's
    limit, every env step after `warmup_epochs`: OmniSafe)."""
    multiplier: Literal["adam", "projected", "adam-clamped"] = "adam"
    """`adam`: Adam on log lambda (ALGD's code, CAL); `projected`: SGD on lambda clipped at
    0 (ALGD paper); `adam-clamped`: Adam on lambda clipped at 0 (OmniSafe's `Lagrange`)."""
    init_multiplier: float = ranged(0.6931, NON_NEGATIVE)
    """lambda_0 (ALGD's code, CAL: 0.6931; OmniSafe: 0.001). > 0 with `adam`."""
    multiplier_lr: float = ranged(3e-4, POSITIVE)
    """Learning rate of the dual step (ALGD's code, CAL: 3e-4; OmniSafe: 1e-5)."""
    episode_window: int = ranged(10, POSITIVE_INT)
    """W: finished episodes averaged by the `episode-cost` driver (OmniSafe
    `window_lens`: 10)."""
    warmup_epochs: int = ranged(0, NON_NEGATIVE_INT)
    """Epochs before the `episode-cost` driver moves lambda (OmniSafe: 100)."""
    cost_budget: float = 151.989
    """h: budget on the discounted cost value (set from the task)."""
    episode_cost_limit: float = 151.989
    """The limit of the judged episode cost (h on the speed tasks, C elsewhere; set from
    the task)."""
    episode_cost: Literal["sum", "discounted"] = "discounted"
    """Which episode cost the `episode-cost` driver averages (set from the task)."""
    normalize_actor_loss: bool = False
    """Divide the actor loss by 1 + lambda (OmniSafe: yes)."""
    policy_delay: int = ranged(1, POSITIVE_INT)
    """The actor and alpha move on every k-th update (CAL: 1; OmniSafe: 2)."""
    cost_next_action: Literal["sample", "mean"] = "sample"
    """Next action of the cost target: a policy sample (CAL) or `tanh(mean)` (OmniSafe's
    DDPG-style cost critic)."""
    warmup_acting: Literal["policy", "uniform"] = "policy"
    """How the loop acts during `--initial-steps`: the untrained policy (CAL, ALGD) or
    uniform random actions (OmniSafe)."""
    actor_lr: float = ranged(3e-4, POSITIVE)
    """CAL `--lr`, OmniSafe: 3e-4."""
    critic_lr: float = ranged(3e-4, POSITIVE)
    """CAL `--lr`, OmniSafe: 3e-4."""
    cost_critic_lr: float = ranged(3e-4, POSITIVE)
    """CAL `--qc_lr`, OmniSafe: 3e-4."""
    alpha_lr: float = ranged(3e-4, POSITIVE)
    """Adam learning rate of log alpha (CAL: 3e-4)."""
    init_alpha: float = ranged(1.0, POSITIVE)
    """alpha_0 (CAL: 1; OmniSafe: 0.2, fixed)."""
    auto_alpha: bool = True
    """Learn alpha toward the target entropy (CAL: yes; OmniSafe: no)."""
    target_entropy: float | None = ranged(None, Range(allow_none=True))
    """Target entropy in nats (unset: -dim(A))."""
    gamma: float = ranged(0.99, DISCOUNT)
    """Reward discount (CAL, OmniSafe: 0.99)."""
    cost_gamma: float = ranged(0.99, DISCOUNT)
    """Cost discount (CAL, OmniSafe: 0.99)."""
    polyak: float = ranged(0.005, FRACTION)
    """Target averaging rate tau (CAL, OmniSafe: 0.005)."""
    target_update_every: int = ranged(2, POSITIVE_INT)
    """Targets move on every k-th update (CAL: 2; OmniSafe: after each delayed actor step,
    i.e. 2)."""
    actor_hidden: int = ranged(256, POSITIVE_INT)
    """Width of the actor's hidden layers (CAL, OmniSafe: 256)."""
    critic_hidden: int = ranged(256, POSITIVE_INT)
    """Width of every critic's hidden layers (CAL, OmniSafe: 256)."""
    max_grad_norm: float | None = ranged(None, Range(low=0.0, low_open=True, allow_none=True))
    """Clip each network's gradient to this global norm (CAL: none; OmniSafe: 40)."""

    def validate(self) -> SACLagConfig:
        """Raise `ValueError` with one line for an impossible value."""
        problems = check_ranges(self)
        if problems:
            raise ValueError(problems[0])
        if self.multiplier not in multipliers.RULES:
            raise ValueError(
                f"--multiplier must be one of {', '.join(multipliers.RULES)}, got "
                f"{self.multiplier!r}"
            )
        if self.multiplier == "adam" and not self.init_multiplier > 0:
            raise ValueError(
                f"--init-multiplier must be > 0 with --multiplier adam (it is stored as log "
                f"lambda), got {self.init_multiplier!r}"
            )
        return self


# ----------------------------------------------------------------------------- pieces


def lagrangian_actor_loss(
    log_prob: jax.Array,
    q: jax.Array,
    qc: jax.Array,
    alpha: jax.Array,
    multiplier: jax.Array,
    normalize: bool,
) -> jax.Array:
    """`mean(alpha log pi - q + lam qc)`, divided by `1 + lam` when `normalize` (OmniSafe);
    every argument `[B]` except the scalars alpha and lam."""
    loss = jnp.mean(alpha * log_prob - q + multiplier * qc)
    return loss / (1.0 + multiplier) if normalize else loss


def episode_dual_step(
    config: SACLagConfig, multiplier: Any, info: LoopInfo
) -> tuple[Any, jax.Array, jax.Array]:
    """OmniSafe's lambda step from the loop's episode window: `(multiplier, J_c, moved)`.

    `J_c` is the mean over the filled window of the configured episode cost; the step is
    taken only once `warmup_epochs` epochs are complete and an episode has finished."""
    costs = info.episode_costs if config.episode_cost == "sum" else info.episode_discounted_costs
    signal = window_mean(costs, info.episode_count)
    moved = (info.epoch >= config.warmup_epochs) & (info.episode_count > 0)
    stepped, _ = multipliers.dual_step(
        config.multiplier, multiplier, signal, config.episode_cost_limit
    )
    return sac.keep_where(moved, stepped, multiplier), signal, moved


# ----------------------------------------------------------------------------- learner


def init(config: SACLagConfig, spec: ActionSpace, key: jax.Array) -> sac.SACState:
    """A fresh SAC-Lag learner (see `sac.init_state`)."""
    config.validate()
    multiplier = multipliers.create_multiplier(
        config.multiplier,
        config.init_multiplier,
        multipliers.multiplier_tx(config.multiplier, config.multiplier_lr),
    )
    return sac.init_state(config, spec, key, multiplier)


act = sac.act


def observe(state: sac.SACState, info: LoopInfo) -> sac.SACState:
    """The `episode-cost` driver's lambda step (once per env step, before the updates)."""
    config = state.config
    if config.lambda_driver != "episode-cost":
        return state
    multiplier, signal, _ = episode_dual_step(config, state.multiplier, info)
    return state.replace(multiplier=multiplier, dual_signal=signal)


def update(state: sac.SACState, batch: Batch) -> tuple[sac.SACState, Metrics]:
    """One SAC-Lag update on a `Batch` of `[B, ...]` float32 leaves; scalar metrics."""
    config = state.config
    state, noise = sac.split_noise(state, batch)

    next_action, next_log_prob = sac.policy_sample(
        state, state.actor.params, batch.next_obs, noise.next_action
    )
    next_action = jax.lax.stop_gradient(next_action)
    critic, metrics = sac.reward_critic_step(state, batch, next_action, next_log_prob)
    cost_action = next_action
    if config.cost_next_action == "mean":
        mean, _ = state.actor.apply_fn(state.actor.params, batch.next_obs)
        cost_action = sac.deterministic_action(mean, state.action_scale, state.action_bias)
    cost, cost_metrics = sac.cost_critic_step(state, batch, cost_action)
    metrics.update(cost_metrics)

    lam = jax.lax.stop_gradient(
        multipliers.value(config.multiplier, state.multiplier.params["value"])
    )
    alpha = jax.lax.stop_gradient(sac.alpha_value(state))

    def actor_loss(params: Any) -> tuple[jax.Array, tuple[jax.Array, Metrics]]:
        action, log_prob = sac.policy_sample(state, params, batch.obs, noise.actor)
        q = jnp.min(critic.apply_fn(critic.params, batch.obs, action), axis=0)
        qc = jnp.mean(cost.apply_fn(cost.params, batch.obs, action), axis=0)
        loss = lagrangian_actor_loss(log_prob, q, qc, alpha, lam, config.normalize_actor_loss)
        return loss, (log_prob, {"actor_q": jnp.mean(q), "actor_qc": jnp.mean(qc)})

    actor_due = target_update_due(state.step, config.policy_delay)
    actor, log_prob, actor_metrics = sac.actor_step(state, actor_loss, actor_due)
    metrics.update(actor_metrics)
    target_entropy = sac.default_target_entropy(config.target_entropy, state.action_scale.shape[0])
    alpha_state, alpha_metrics = sac.temperature_step(state, log_prob, target_entropy, actor_due)
    metrics.update(alpha_metrics)

    qc_replay = jnp.mean(cost.apply_fn(cost.params, batch.obs, batch.action), axis=0)
    multiplier = state.multiplier
    lambda_loss = jnp.zeros(())
    if config.lambda_driver == "critic":
        multiplier, lambda_loss = multipliers.dual_step(
            config.multiplier, state.multiplier, qc_replay, config.cost_budget
        )
    metrics.update(
        {
            "lambda_loss": lambda_loss,
            "multiplier": multipliers.value(config.multiplier, multiplier.params["value"]),
            "qc_risk": jnp.mean(qc_replay),
            "violation": jnp.mean(qc_replay) - config.cost_budget,
            "episode_cost_signal": state.dual_signal,
        }
    )

    due = target_update_due(state.step, config.target_update_every)
    new_state = state.replace(
        actor=actor,
        critic=polyak(critic, config.polyak, due),
        cost_critic=polyak(cost, config.polyak, due),
        alpha=alpha_state,
        multiplier=multiplier,
        step=state.step + 1,
    )
    return new_state, metrics


# ----------------------------------------------------------------------------- registry

METRIC_NAMES = tuple(
    sorted(
        (
            *sac.CORE_METRICS,
            "actor_q",
            "actor_qc",
            "episode_cost_signal",
            "lambda_loss",
            "multiplier",
            "qc_risk",
            "violation",
        )
    )
)


def metric_names(config: SACLagConfig) -> tuple[str, ...]:
    """Names of the scalar metrics `update` reports (sorted). `qc_risk` and `violation`
    are the cost critic's at the replay actions (what the `critic` driver uses);
    `episode_cost_signal` is the window mean the `episode-cost` driver uses (0 with the
    `critic` driver)."""
    return METRIC_NAMES


def resolve(config: SACLagConfig, spec: Any) -> SACLagConfig:
    """`config` with the task's critic budget h and its judged episode cost and limit."""
    from algd_jax.judging import cost_kind, cost_limit_of

    return dataclasses.replace(
        config,
        cost_budget=task_budget(spec, config.cost_gamma),
        episode_cost_limit=cost_limit_of(spec),
        episode_cost="discounted" if cost_kind(spec) == "discounted_cost" else "sum",
    )


def episode_window(config: SACLagConfig) -> int:
    """W for the loop: the window of the `episode-cost` driver, none otherwise."""
    return config.episode_window if config.lambda_driver == "episode-cost" else 0


def warmup_acting(config: SACLagConfig) -> Literal["policy", "uniform"]:
    return config.warmup_acting


#: OmniSafe's `configs/off-policy/SACLag.yaml`: fixed alpha 0.2, lambda from the mean of the
#: last 10 episode costs (Adam on lambda, clamped at 0, lambda_0 0.001, lr 1e-5) after 100
#: warm-up epochs, actor loss / (1 + lambda), policy delay 2, deterministic next action in
#: the cost target, gradient clip 40; the loop: U = 1, batch 256, uniform random actions
#: for the first 10,000 steps, 2000-step epochs.
OMNISAFE_VALUES = {
    "lambda_driver": "episode-cost",
    "multiplier": "adam-clamped",
    "init_multiplier": 0.001,
    "multiplier_lr": 1e-5,
    "episode_window": 10,
    "warmup_epochs": 100,
    "normalize_actor_loss": True,
    "policy_delay": 2,
    "cost_next_action": "mean",
    "warmup_acting": "uniform",
    "auto_alpha": False,
    "init_alpha": 0.2,
    "max_grad_norm": 40.0,
}
OMNISAFE_LOOP = {
    "updates_per_step": 1,
    "batch_size": 256,
    "initial_steps": 10_000,
    "epoch_steps": 2000,
}
#: The ALGD paper's comparison (Appendix F.5, Table 4): M = 6, batch 256, U = 10.
PAPER_VALUES = {"ensemble_size": 6}
PAPER_LOOP = {"batch_size": 256, "updates_per_step": 10}

register(
    Algorithm(
        name="sac-lag",
        description="SAC-Lag: SAC with a Lagrangian cost penalty; lambda from the cost critic "
        "(default) or from recent episode costs (--preset omnisafe)",
        config_type=SACLagConfig,
        init=init,
        act=act,
        update=update,
        metric_names=metric_names,
        resolve=resolve,
        task_fields=("cost_budget", "episode_cost_limit", "episode_cost"),
        presets={"paper": PAPER_VALUES, "omnisafe": OMNISAFE_VALUES},
        loop_presets={"paper": PAPER_LOOP, "omnisafe": OMNISAFE_LOOP},
        observe=observe,
        warmup_acting=warmup_acting,
        episode_window=episode_window,
    )
)
