"""CAL, Conservative Augmented Lagrangian (Wu et al., "Off-Policy Primal-Dual Safe
Reinforcement Learning", ICLR 2024), top to bottom in one file.

SAC with a cost-critic ensemble whose upper confidence bound `UCB_k = mean + k std` (ddof 1)
penalises the actor, with the penalty weight rectified once per batch:
`lambda~ = [lambda + c (mean_batch UCB_k(s, a_beta) - h)]_+` (the derivative of the
augmented term at the replay actions' bound). lambda: Adam on log lambda, driven by the same
bound at the replay actions against h. Per update, in CAL's order: reward critic, cost
ensemble, actor (with the updated critics), temperature, multiplier, targets (every
`target_update_every`-th update).

CAL's training loop skips a step's U updates while the epoch's updates exceed
`max_updates_per_step` (5) per env step since updates began, which gives about 5 updates per
step in the first epoch. Here `observe` keeps those counters from the loop's information and
flags a call to skip; `update` then leaves the state as it is (`update_applied` = 0).

Registered as `cal`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

import jax
import jax.numpy as jnp

from algd_jax import multipliers, sac
from algd_jax.algorithms.base import ActionSpace, Algorithm, LoopInfo, register, task_budget
from algd_jax.critics import polyak, target_update_due
from algd_jax.options import (
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
class CALConfig(sac.SACOptions):
    """Hyper-parameters of CAL: the SAC core's options (`sac.SACOptions`: learning rates,
    temperature, discounts, tau, widths, gradient clip; CAL's defaults) and CAL's own
    below. Defaults: CAL's code (`ZifanWu/CAL`, `arguments.py` and `agent/cal.py`), except
    the batch size the loop sets (256, as ALGD). The README's per-task values (k, c, U, the
    max target) apply on its tasks (`--preset` of any name; a flag wins)."""

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
    max_updates_per_step: int | None = ranged(5, Range(low=1, integer=True, allow_none=True))
    """The first-epoch cap (CAL `--max_train_repeat_per_step`: 5, `main.py`
    `train_policy_repeats`): a step's U updates are skipped while the updates applied since
    the loop's epoch began exceed this many per env step since updates began; with U = 10
    that is every other step of the first updating epoch, with U = 20 (HalfCheetah) the
    first three. Needs the loop's information: the on-device loop gives none and never
    caps. Unset: no cap."""

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


def update_cap_skips(
    applied_in_epoch: jax.Array, steps_since_start: jax.Array, cap: int | None
) -> jax.Array:
    """CAL's guard: skip this step's updates when the updates applied in the epoch so far
    exceed `cap` per env step since updates began (`train_step > cap * total_step`); bool."""
    if cap is None:
        return jnp.zeros((), bool)
    return applied_in_epoch > cap * steps_since_start


# ----------------------------------------------------------------------------- learner


def init(config: CALConfig, spec: ActionSpace, key: jax.Array) -> sac.SACState:
    """A fresh CAL learner (see `sac.init_state`); lambda starts at `init_multiplier`.

    `extra` holds the cap's counters (int32 `[]`: the env step of the first update call, -1
    before it; the loop's epoch at the last call and the update count when it began), the
    skip flag of the current call (bool `[]`) and the metrics of the last applied update
    (what a skipped call reports)."""
    config.validate()
    multiplier = multipliers.create_multiplier(
        "adam",
        config.init_multiplier,
        multipliers.multiplier_tx("adam", config.multiplier_lr),
    )
    i32 = lambda v: jnp.asarray(v, jnp.int32)  # noqa: E731
    extra = {
        "first_env_step": i32(-1),
        "epoch": i32(-1),
        "epoch_start_update": i32(0),
        "skip": jnp.zeros((), bool),
        "last_metrics": {name: jnp.zeros((), jnp.float32) for name in METRIC_NAMES},
    }
    return sac.init_state(config, spec, key, multiplier, extra)


act = sac.act


def observe(state: sac.SACState, info: LoopInfo) -> sac.SACState:
    """Before a call's U updates: CAL's update cap from the loop's env step and epoch."""
    extra = state.extra
    first = jnp.where(extra["first_env_step"] < 0, info.env_step, extra["first_env_step"])
    new_epoch = info.epoch != extra["epoch"]
    epoch_start = jnp.where(new_epoch, state.step, extra["epoch_start_update"])
    skip = update_cap_skips(
        state.step - epoch_start, info.env_step - first, state.config.max_updates_per_step
    )
    extra = {
        **extra,
        "first_env_step": first,
        "epoch": jnp.asarray(info.epoch, jnp.int32),
        "epoch_start_update": epoch_start,
        "skip": skip,
    }
    return state.replace(extra=extra)


def update(state: sac.SACState, batch: Batch) -> tuple[sac.SACState, Metrics]:
    """One CAL update on a `Batch` of `[B, ...]` float32 leaves; scalar metrics. A call that
    `observe` flagged (the update cap) returns the state unchanged and the last applied
    update's metrics, with `update_applied` 0."""
    if state.config.max_updates_per_step is None:
        return _update(state, batch)

    def skipped(state: sac.SACState, batch: Batch) -> tuple[sac.SACState, Metrics]:
        del batch
        return state, {**state.extra["last_metrics"], "update_applied": jnp.zeros(())}

    return jax.lax.cond(state.extra["skip"], skipped, _update, state, batch)


def _update(state: sac.SACState, batch: Batch) -> tuple[sac.SACState, Metrics]:
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
    metrics = {name: metrics[name] for name in METRIC_NAMES}
    new_state = state.replace(
        actor=actor,
        critic=polyak(critic, config.polyak, due),
        cost_critic=polyak(cost, config.polyak, due),
        alpha=alpha_state,
        multiplier=multiplier,
        step=state.step + 1,
        extra={**state.extra, "last_metrics": metrics},
    )
    return new_state, {**metrics, "update_applied": jnp.ones(())}


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
    """Names of the scalar metrics `update` reports (sorted). `update_applied` is 1, or 0 for
    an update the cap skipped (its other metrics then repeat the last applied update's)."""
    return tuple(sorted((*METRIC_NAMES, "update_applied")))


def resolve(config: CALConfig, spec: Any) -> CALConfig:
    """`config` with the task's critic budget h (for the config's cost discount). A target
    entropy no policy on the task's action box reaches is refused (`ValueError`, one line)."""
    sac.check_target_entropy(config.target_entropy, spec)
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


#: `--preset paper`: the ALGD paper's comparison (`sac.PAPER_VALUES`, `sac.PAPER_LOOP`).
PAPER_VALUES, PAPER_LOOP = sac.PAPER_VALUES, sac.PAPER_LOOP

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
        observe=observe,
    )
)
