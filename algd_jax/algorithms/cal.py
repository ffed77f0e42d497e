"""CAL, Conservative Augmented Lagrangian (Wu et al., "Off-Policy Primal-Dual Safe
Reinforcement Learning", ICLR 2024), top to bottom in one file.

SAC with a cost-critic ensemble whose upper confidence bound `UCB_k = mean + k std` (ddof 1)
penalises the actor, with the penalty weight rectified once per batch:
`lambda~ = [lambda + c (mean_batch UCB_k(s, a_beta) - h)]_+` (the derivative of the
augmented term at the replay actions' bound). lambda: Adam on log lambda, driven by the same
bound at the replay actions against h. Per update, in CAL's order: reward critic, cost
ensemble, actor (with the updated critics), temperature, multiplier, targets (every
`target_update_every`-th update).

Registered as `cal`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

import jax
import jax.numpy as jnp

from algd_jax import multipliers, sac
from algd_jax.algorithms.base import ActionSpace, Algorithm, register, task_budget
from algd_jax.critics import polyak, target_update_due
from algd_jax.options import (
    DISCOUNT,
    FRACTION,
    NON_NEGATIVE,
    POSITIVE,
    POSITIVE_INT,
    Range,
    check_ranges,
    ranged,
)
from algd_jax.types import Batch, Metrics

# ----------------------------------------------------------------------------- config


@dataclass(frozen=True)
class CALConfig:
    """Hyper-parameters of CAL. Defaults: CAL's code (`ZifanWu/CAL`, `arguments.py` and
    `agent/cal.py`), except the batch size the loop sets (256, as ALGD). The README's
    per-task values (k, c, U, the max target) apply on its tasks (`--preset` of any name;
    a flag wins)."""

    ensemble_size: int = ranged(4, POSITIVE_INT)
    """M (CAL: E, `qc_ens_size`): cost critics. CAL's code: 4; its README: 8 on MuJoCo; the
    ALGD paper's comparison: 6 (`--preset paper`)."""
    ucb_k: float = ranged(0.5, NON_NEGATIVE)
    """k of UCB_k = mean + k std over the ensemble (CAL `--k`: 0.5; README: 0 on Humanoid).
    k > 0 needs M >= 2."""
    convexity: float = ranged(10.0, NON_NEGATIVE)
    """c, the augmentation coefficient of the rectified multiplier (CAL `--c`: 10; README:
    100 on Ant, 1000 on HalfCheetah and Humanoid)."""
    cost_budget: float = 151.989
    """h: budget on the discounted cost value (set from the task)."""
    cost_target: Literal["per-member", "max-subset"] = "per-member"
    """Cost TD target: `per-member` (each member from its own target member, CAL's
    default) or `max-subset` (every member from the max over `target_subset` target members
    drawn with replacement: CAL `--intrgt_max`, README: on for Humanoid)."""
    target_subset: int = ranged(4, POSITIVE_INT)
    """Members drawn for the `max-subset` target (CAL `--M`: 4; not the ensemble size)."""
    init_multiplier: float = ranged(0.6931, POSITIVE)
    """lambda_0 (CAL `agent/cal.py`: log lambda starts at log 0.6931)."""
    multiplier_lr: float = ranged(3e-4, POSITIVE)
    """Adam learning rate of log lambda (CAL `--lr`: 3e-4)."""
    actor_lr: float = ranged(3e-4, POSITIVE)
    """CAL `--lr`: 3e-4."""
    critic_lr: float = ranged(3e-4, POSITIVE)
    """CAL `--lr`: 3e-4."""
    cost_critic_lr: float = ranged(3e-4, POSITIVE)
    """CAL `--qc_lr`: 3e-4."""
    alpha_lr: float = ranged(3e-4, POSITIVE)
    """Adam learning rate of log alpha (CAL `--lr`: 3e-4)."""
    init_alpha: float = ranged(1.0, POSITIVE)
    """alpha_0 (CAL: log alpha starts at 0; its `--alpha 0.2` is unused)."""
    auto_alpha: bool = True
    """Learn alpha toward the target entropy (CAL: always)."""
    target_entropy: float | None = ranged(None, Range(allow_none=True))
    """Target entropy in nats (unset: -dim(A), CAL's)."""
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

    def validate(self) -> CALConfig:
        """Raise `ValueError` with one line for an impossible combination."""
        problems = check_ranges(self)
        if problems:
            raise ValueError(problems[0])
        if self.ucb_k > 0 and self.ensemble_size < 2:
            raise ValueError(
                f"--ucb-k {self.ucb_k} needs the ensemble's standard deviation: use "
                f"--ensemble-size 2 or more (got {self.ensemble_size}), or --ucb-k 0"
            )
        if self.cost_target not in ("per-member", "max-subset"):
            raise ValueError(
                f"--cost-target must be per-member or max-subset, got {self.cost_target!r}"
            )
        return self


# ----------------------------------------------------------------------------- pieces


def rectified_multiplier(
    multiplier: jax.Array, ucb_replay: jax.Array, budget: float, convexity: float
) -> jax.Array:
    """CAL's penalty weight `[lambda + c (mean(ucb_replay) - h)]_+` `[]`, from the bound at
    the replay actions `ucb_replay [B]` (CAL writes it `lambda - min(c mean(h - U), lambda)`,
    the same number)."""
    return jnp.maximum(multiplier + convexity * (jnp.mean(ucb_replay) - budget), 0.0)


def max_subset_target(
    qc_next: jax.Array,
    cost: jax.Array,
    mask: jax.Array,
    gamma: float,
    key: jax.Array,
    subset: int,
) -> jax.Array:
    """CAL's `intrgt_max` target `[B]`: `c + gamma mask max_{i in I} Qc'_i(s', a')` over
    `subset` members `I` drawn uniformly with replacement from `qc_next [M, B]`."""
    members = jax.random.randint(key, (subset,), 0, qc_next.shape[0])
    return cost + gamma * mask * jnp.max(qc_next[members], axis=0)


# ----------------------------------------------------------------------------- learner


def init(config: CALConfig, spec: ActionSpace, key: jax.Array) -> sac.SACState:
    """A fresh CAL learner (see `sac.init_state`); lambda starts at `init_multiplier`."""
    config.validate()
    multiplier = multipliers.create_multiplier(
        "adam",
        config.init_multiplier,
        multipliers.multiplier_tx("adam", config.multiplier_lr),
    )
    return sac.init_state(config, spec, key, multiplier)


act = sac.act


def update(state: sac.SACState, batch: Batch) -> tuple[sac.SACState, Metrics]:
    """One CAL update on a `Batch` of `[B, ...]` float32 leaves; scalar metrics."""
    config = state.config
    state, noise = sac.split_noise(state, batch)
    key, subset_key = jax.random.split(state.key)
    state = state.replace(key=key)

    # (1)-(2) critics, bootstrapping from a fresh next action (its gradient unused)
    next_action, next_log_prob = sac.policy_sample(
        state, state.actor.params, batch.next_obs, noise.next_action
    )
    next_action = jax.lax.stop_gradient(next_action)
    critic, metrics = sac.reward_critic_step(state, batch, next_action, next_log_prob)
    target = None
    if config.cost_target == "max-subset":
        cost = state.cost_critic
        qc_next = cost.apply_fn(cost.target_params, batch.next_obs, next_action)
        target = max_subset_target(
            qc_next, batch.cost, batch.mask_c, config.cost_gamma, subset_key, config.target_subset
        )
    cost, cost_metrics = sac.cost_critic_step(state, batch, next_action, target)
    metrics.update(cost_metrics)

    # (3) actor against the updated critics, penalised by lambda~ UCB_k(s, a_pi)
    lam = multipliers.value("adam", state.multiplier.params["value"])
    qc_replay = cost.apply_fn(cost.params, batch.obs, batch.action)  # [M, B]
    ucb_replay = jax.lax.stop_gradient(sac.ucb(qc_replay, config.ucb_k))
    lam_rect = jax.lax.stop_gradient(
        rectified_multiplier(lam, ucb_replay, config.cost_budget, config.convexity)
    )
    alpha = jax.lax.stop_gradient(sac.alpha_value(state))

    def actor_loss(params: Any) -> tuple[jax.Array, tuple[jax.Array, Metrics]]:
        action, log_prob = sac.policy_sample(state, params, batch.obs, noise.actor)
        q = jnp.min(critic.apply_fn(critic.params, batch.obs, action), axis=0)
        ucb_pi = sac.ucb(cost.apply_fn(cost.params, batch.obs, action), config.ucb_k)
        loss = jnp.mean(alpha * log_prob - q + lam_rect * ucb_pi)
        return loss, (log_prob, {"actor_q": jnp.mean(q), "actor_ucb": jnp.mean(ucb_pi)})

    actor, log_prob, actor_metrics = sac.actor_step(state, actor_loss)
    metrics.update(actor_metrics)

    # (4) temperature, (5) multiplier on mean UCB_k(s, a_beta) - h
    target_entropy = sac.default_target_entropy(config.target_entropy, state.action_scale.shape[0])
    alpha_state, alpha_metrics = sac.temperature_step(state, log_prob, target_entropy)
    metrics.update(alpha_metrics)
    multiplier, lambda_loss = multipliers.dual_step(
        "adam", state.multiplier, ucb_replay, config.cost_budget
    )
    metrics.update(
        {
            "lambda_loss": lambda_loss,
            "multiplier": multipliers.value("adam", multiplier.params["value"]),
            "rectified_multiplier": lam_rect,
            "qc_risk": jnp.mean(ucb_replay),
            "violation": jnp.mean(ucb_replay) - config.cost_budget,
        }
    )

    # (6) targets
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
            "actor_ucb",
            "lambda_loss",
            "multiplier",
            "qc_risk",
            "rectified_multiplier",
            "violation",
        )
    )
)


def metric_names(config: CALConfig) -> tuple[str, ...]:
    """Names of the scalar metrics `update` reports (sorted)."""
    return METRIC_NAMES


def resolve(config: CALConfig, spec: Any) -> CALConfig:
    """`config` with the task's critic budget h (for the config's cost discount)."""
    return dataclasses.replace(config, cost_budget=task_budget(spec, config.cost_gamma))


#: CAL's README, per task ("MuJoCo" commands): k, c, U and the max target.
README_OVERRIDES: dict[str, dict[str, Any]] = {
    "HalfCheetahVelocity": {"convexity": 1000.0, "loop.updates_per_step": 20},
    "AntVelocity": {"convexity": 100.0},
    "HumanoidVelocity": {"ucb_k": 0.0, "convexity": 1000.0, "cost_target": "max-subset"},
}


def task_preset(preset: str, spec: Any) -> dict[str, Any]:
    """CAL's README values on the tasks it names (every preset; a flag still wins)."""
    del preset
    return dict(README_OVERRIDES.get(spec.name, {}))


#: The ALGD paper's comparison (Appendix F.5, Table 4): M = 6, batch 256, U = 10.
PAPER_VALUES = {"ensemble_size": 6}
PAPER_LOOP = {"batch_size": 256, "updates_per_step": 10}

register(
    Algorithm(
        name="cal",
        description="CAL: SAC with a UCB cost ensemble and a rectified augmented-Lagrangian "
        "multiplier (Wu et al. 2024)",
        config_type=CALConfig,
        init=init,
        act=act,
        update=update,
        metric_names=metric_names,
        resolve=resolve,
        task_fields=("cost_budget",),
        presets={"paper": PAPER_VALUES},
        loop_presets={"paper": PAPER_LOOP},
        task_preset=task_preset,
    )
)
