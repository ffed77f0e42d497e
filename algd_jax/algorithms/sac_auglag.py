"""SAC-AugLag: SAC whose actor minimises the ALGD paper's augmented Lagrangian (eq. 9) per
sample, top to bottom in one file.

The ALGD paper names this baseline without a source; following its definition of L_A, the
actor loss is

    mean_B [ alpha log pi(a|s) - min_j Q_j(s, a)
             + ([lam + rho (Qc(s, a) - h)]_+^2 - lam^2) / (2 rho) ]

with `a ~ pi(.|s)` reparameterised and Qc the ensemble mean, so each sample's penalty
gradient is `[lam + rho (Qc - h)]_+ grad Qc`, zero where the sample is feasible enough.
Critics as CAL's (twin soft-Q critic, each cost member from its own target); lambda by
ALGD's dual step on the ensemble mean at the replay actions (Adam on log lambda, as ALGD's
code, or the paper's projected ascent).

Registered as `sac-auglag`.
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
    POSITIVE,
    POSITIVE_INT,
    check_ranges,
    ranged,
)
from algd_jax.types import Batch, Metrics

# ----------------------------------------------------------------------------- config


@dataclass(frozen=True)
class SACAugLagConfig(sac.SACOptions):
    """Hyper-parameters of SAC-AugLag: the SAC core's options (`sac.SACOptions`, CAL's
    defaults: the harness the paper's baselines share) and these. Defaults: the ALGD
    paper's L_A with rho = 1 (Table 4) and ALGD's dual step and learning rate (its released
    code)."""

    ensemble_size: int = ranged(6, POSITIVE_INT)
    """M: cost critics, averaged in the penalty (the ALGD paper's comparison, Appendix
    F.5: 6)."""
    rho: float = ranged(1.0, POSITIVE)
    """Augmentation strength rho of L_A (ALGD Table 4: 1.0)."""
    cost_budget: float = 151.989
    """h: budget on the discounted cost value (set from the task)."""
    multiplier: Literal["adam", "projected"] = "adam"
    """`adam`: Adam on log lambda (ALGD's released code); `projected`: lambda <- max(0,
    lambda + multiplier_lr (mean Qc - h)) (ALGD paper, Alg. 1 line 21)."""
    init_multiplier: float = ranged(0.6931, POSITIVE)
    """lambda_0 (ALGD's code: 0.6931)."""
    multiplier_lr: float = ranged(3e-4, POSITIVE)
    """Learning rate of the dual step (ALGD's code: 3e-4)."""

    def validate(self) -> SACAugLagConfig:
        """Raise `ValueError` with one line for an impossible value."""
        problems = check_ranges(self)
        if problems:
            raise ValueError(problems[0])
        if self.multiplier not in ("adam", "projected"):
            raise ValueError(f"--multiplier must be adam or projected, got {self.multiplier!r}")
        return self


# ----------------------------------------------------------------------------- pieces


def augmented_penalty(qc: jax.Array, multiplier: jax.Array, budget: float, rho: float) -> jax.Array:
    """The augmented term of L_A per sample, `([lam + rho (qc - h)]_+^2 - lam^2) / (2 rho)`
    (ALGD paper eq. 9), same shape as `qc`; its derivative in qc is `[lam + rho (qc - h)]_+`."""
    shifted = jnp.maximum(multiplier + rho * (qc - budget), 0.0)
    return (shifted**2 - multiplier**2) / (2.0 * rho)


# ----------------------------------------------------------------------------- learner


def init(config: SACAugLagConfig, spec: ActionSpace, key: jax.Array) -> sac.SACState:
    """A fresh SAC-AugLag learner (see `sac.init_state`)."""
    config.validate()
    multiplier = multipliers.create_multiplier(
        config.multiplier,
        config.init_multiplier,
        multipliers.multiplier_tx(config.multiplier, config.multiplier_lr),
    )
    return sac.init_state(config, spec, key, multiplier)


act = sac.act


def update(state: sac.SACState, batch: Batch) -> tuple[sac.SACState, Metrics]:
    """One SAC-AugLag update on a `Batch` of `[B, ...]` float32 leaves; scalar metrics."""
    config = state.config
    state, noise = sac.split_noise(state, batch)

    next_action, next_log_prob = sac.policy_sample(
        state, state.actor.params, batch.next_obs, noise.next_action
    )
    next_action = jax.lax.stop_gradient(next_action)
    critic, metrics = sac.reward_critic_step(state, batch, next_action, next_log_prob)
    cost, cost_metrics = sac.cost_critic_step(state, batch, next_action)
    metrics.update(cost_metrics)

    lam = jax.lax.stop_gradient(
        multipliers.value(config.multiplier, state.multiplier.params["value"])
    )
    alpha = jax.lax.stop_gradient(sac.alpha_value(state))

    def actor_loss(params: Any) -> tuple[jax.Array, tuple[jax.Array, Metrics]]:
        action, log_prob = sac.policy_sample(state, params, batch.obs, noise.actor)
        q = jnp.min(critic.apply_fn(critic.params, batch.obs, action), axis=0)
        qc = jnp.mean(cost.apply_fn(cost.params, batch.obs, action), axis=0)  # [B]
        penalty = augmented_penalty(qc, lam, config.cost_budget, config.rho)
        loss = jnp.mean(alpha * log_prob - q + penalty)
        active = lam + config.rho * (qc - config.cost_budget) > 0
        aux = {
            "actor_q": jnp.mean(q),
            "penalty": jnp.mean(penalty),
            "penalty_active": jnp.mean(active.astype(jnp.float32)),
        }
        return loss, (log_prob, aux)

    actor, log_prob, actor_metrics = sac.actor_step(state, actor_loss)
    metrics.update(actor_metrics)

    target_entropy = sac.default_target_entropy(config.target_entropy, state.action_scale.shape[0])
    alpha_state, alpha_metrics = sac.temperature_step(state, log_prob, target_entropy)
    metrics.update(alpha_metrics)

    qc_replay = jnp.mean(cost.apply_fn(cost.params, batch.obs, batch.action), axis=0)
    multiplier, lambda_loss = multipliers.dual_step(
        config.multiplier, state.multiplier, qc_replay, config.cost_budget
    )
    metrics.update(
        {
            "lambda_loss": lambda_loss,
            "multiplier": multipliers.value(config.multiplier, multiplier.params["value"]),
            "qc_risk": jnp.mean(qc_replay),
            "violation": jnp.mean(qc_replay) - config.cost_budget,
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
            "lambda_loss",
            "multiplier",
            "penalty",
            "penalty_active",
            "qc_risk",
            "violation",
        )
    )
)


def metric_names(config: SACAugLagConfig) -> tuple[str, ...]:
    """Names of the scalar metrics `update` reports (sorted)."""
    return METRIC_NAMES


def resolve(config: SACAugLagConfig, spec: Any) -> SACAugLagConfig:
    """`config` with the task's critic budget h (for the config's cost discount). A target
    entropy no policy on the task's action box reaches is refused (`ValueError`, one line)."""
    sac.check_target_entropy(config.target_entropy, spec)
    return dataclasses.replace(config, cost_budget=task_budget(spec, config.cost_gamma))


#: `--preset paper`: the ALGD paper's comparison (`sac.PAPER_VALUES`, `sac.PAPER_LOOP`).
PAPER_VALUES, PAPER_LOOP = sac.PAPER_VALUES, sac.PAPER_LOOP

register(
    Algorithm(
        name="sac-auglag",
        description="SAC-AugLag: SAC with the augmented Lagrangian L_A per sample in the actor "
        "loss (the ALGD paper's baseline)",
        config_type=SACAugLagConfig,
        init=init,
        act=act,
        update=update,
        metric_names=metric_names,
        resolve=resolve,
        task_fields=("cost_budget",),
        presets={"paper": PAPER_VALUES},
        loop_presets={"paper": PAPER_LOOP},
    )
)
