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
  (`observe`); `--preset omnisafe` sets all of OmniSafe's values, among them its cost
  normalisation (the costs the cost critic learns from, standardised by running
  statistics kept in the state and clipped at 5; the episode costs that drive lambda and
  that the loop logs stay raw) and PyTorch's kaiming-uniform initialisation.

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
from algd_jax.networks import ACTIVATIONS, KERNEL_INITS
from algd_jax.options import (
    NON_NEGATIVE,
    NON_NEGATIVE_INT,
    POSITIVE,
    POSITIVE_INT,
    check_ranges,
    ranged,
)
from algd_jax.types import Batch, Metrics

# ----------------------------------------------------------------------------- config


@dataclass(frozen=True)
class SACLagConfig(sac.SACOptions):
    """Hyper-parameters of SAC-Lag: the SAC core's options (`sac.SACOptions`) and these.
    Defaults: the shared harness of the ALGD paper's baselines (CAL's code, `ZifanWu/CAL`,
    with k = 0 and no rectification) and ALGD's multiplier rule; `--preset omnisafe`:
    OmniSafe's `configs/off-policy/SACLag.yaml` (`OMNISAFE_VALUES`; it keeps CAL's
    learning rates 3e-4, discounts 0.99, tau 0.005 every second update and 256 units)."""

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
    activation: str = "relu"
    """Hidden activation of the actor and the reward critic (CAL, OmniSafe: ReLU)."""
    kernel_init: str = "xavier_uniform"
    """Weight init of the actor and the reward critic (CAL: Xavier uniform, zero biases;
    OmniSafe `weight_initialization_mode`: `kaiming_uniform`, PyTorch's
    `kaiming_uniform_(a=sqrt(5))` with `nn.Linear`'s default biases, `utils/model.py`)."""
    cost_activation: str = "silu"
    """Hidden activation of the cost critics (CAL's ensemble: SiLU; OmniSafe's cost critic is
    built like its reward critic: ReLU)."""
    cost_kernel_init: str = "scaled_normal"
    """Weight init of the cost critics (CAL: N(0, 1 / (4 fan_in)); OmniSafe:
    `kaiming_uniform`)."""
    cost_normalize: bool = False
    """Standardise the costs the cost critic learns from by running statistics (OmniSafe
    `cost_normalize`: True, `envs/wrapper.py` `CostNormalize`, `common/normalizer.py`):
    `clip((c - mean) / max(std, 0.01), +-cost_normalize_clip)`, raw while at most one
    cost has been seen. The statistics (count, mean, sum of squares) live in the state.
    They are pushed from every replay batch the update sees (OmniSafe pushes each env
    step's cost in its env wrapper and stores the normalised cost in the replay; the
    replay here stores raw costs, so every batch is normalised with the statistics of the
    moment). Needs `--lambda-driver episode-cost` (the critic driver compares Qc with h in
    raw cost units)."""
    cost_normalize_clip: float = ranged(5.0, POSITIVE)
    """Clip of the standardised cost (OmniSafe's `Normalizer(clip=5)` for costs)."""

    def validate(self) -> SACLagConfig:
        """Raise `ValueError` with one line for an impossible value."""
        problems = check_ranges(self)
        if problems:
            raise ValueError(problems[0])
        for name in ("activation", "cost_activation"):
            if getattr(self, name) not in ACTIVATIONS:
                raise ValueError(
                    f"--{name.replace('_', '-')} must be one of {', '.join(ACTIVATIONS)}, "
                    f"got {getattr(self, name)!r}"
                )
        for name in ("kernel_init", "cost_kernel_init"):
            if getattr(self, name) not in KERNEL_INITS:
                raise ValueError(
                    f"--{name.replace('_', '-')} must be one of {', '.join(KERNEL_INITS)}, "
                    f"got {getattr(self, name)!r}"
                )
        if self.cost_normalize and self.lambda_driver == "critic":
            raise ValueError(
                "--cost-normalize needs --lambda-driver episode-cost (the critic driver "
                "compares the cost critic with the budget h in raw cost units); drop "
                "--cost-normalize or set --lambda-driver episode-cost"
            )
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


#: Floor of the normaliser's standard deviation (OmniSafe's `Normalizer`: 1e-2).
NORMALIZER_MIN_STD = 1e-2


def empty_normalizer() -> dict[str, jax.Array]:
    """Running statistics of no values: float32 `[]` count, mean and sum of squared
    deviations (counts of batches of B stay exact in float32 up to B * 2^24 values)."""
    return {name: jnp.zeros((), jnp.float32) for name in ("count", "mean", "sumsq")}


def normalizer_push(stats: dict[str, jax.Array], values: jax.Array) -> dict[str, jax.Array]:
    """`stats` with `values [B]` added (Chan, Golub and LeVeque's pairwise update, as
    OmniSafe's `Normalizer._push`)."""
    n = jnp.asarray(values.size, jnp.float32)
    mean_b = jnp.mean(values)
    sumsq_b = jnp.sum((values - mean_b) ** 2)
    count = stats["count"] + n
    delta = mean_b - stats["mean"]
    return {
        "count": count,
        "mean": stats["mean"] + delta * n / count,
        "sumsq": stats["sumsq"] + sumsq_b + delta**2 * stats["count"] * n / count,
    }


def normalizer_std(stats: dict[str, jax.Array]) -> jax.Array:
    """The sample standard deviation (ddof 1) of the values seen, at least 1e-2."""
    var = stats["sumsq"] / jnp.maximum(stats["count"] - 1.0, 1.0)
    return jnp.maximum(jnp.sqrt(var), NORMALIZER_MIN_STD)


def normalize_costs(stats: dict[str, jax.Array], values: jax.Array, clip: float) -> jax.Array:
    """`clip((values - mean) / std, -clip, clip)`; `values` unchanged while the statistics
    hold at most one value (OmniSafe's `Normalizer.normalize`)."""
    scaled = jnp.clip((values - stats["mean"]) / normalizer_std(stats), -clip, clip)
    return jnp.where(stats["count"] > 1, scaled, values)


# ----------------------------------------------------------------------------- learner


def init(config: SACLagConfig, spec: ActionSpace, key: jax.Array) -> sac.SACState:
    """A fresh SAC-Lag learner (see `sac.init_state`); `extra["cost_norm"]` holds the cost
    normaliser's statistics (`empty_normalizer`; untouched without `cost_normalize`)."""
    config.validate()
    multiplier = multipliers.create_multiplier(
        config.multiplier,
        config.init_multiplier,
        multipliers.multiplier_tx(config.multiplier, config.multiplier_lr),
    )
    return sac.init_state(config, spec, key, multiplier, {"cost_norm": empty_normalizer()})


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
    extra, cost_batch = state.extra, batch
    if config.cost_normalize:
        stats = normalizer_push(state.extra["cost_norm"], batch.cost)
        cost_batch = batch._replace(
            cost=normalize_costs(stats, batch.cost, config.cost_normalize_clip)
        )
        extra = {**extra, "cost_norm": stats}
        metrics.update({"cost_norm_mean": stats["mean"], "cost_norm_std": normalizer_std(stats)})
    cost, cost_metrics = sac.cost_critic_step(state, cost_batch, cost_action)
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
        extra=extra,
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
    are the cost critic's at the replay actions (what the `critic` driver uses; in
    normalised cost units with `cost_normalize`); `episode_cost_signal` is the window mean
    the `episode-cost` driver uses (0 with the `critic` driver); `cost_norm_mean` and
    `cost_norm_std`, with `cost_normalize`, the normaliser's statistics."""
    if config.cost_normalize:
        return tuple(sorted((*METRIC_NAMES, "cost_norm_mean", "cost_norm_std")))
    return METRIC_NAMES


def resolve(config: SACLagConfig, spec: Any) -> SACLagConfig:
    """`config` with the task's critic budget h and its judged episode cost and limit. A target
    entropy no policy on the task's action box reaches is refused (`ValueError`, one line)."""
    from algd_jax.judging import cost_kind, cost_limit_of

    sac.check_target_entropy(config.target_entropy, spec)
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
#: the cost target, gradient clip 40, cost normalisation (clip 5), kaiming-uniform init and
#: one ReLU cost critic like the reward critics; the loop: U = 1, batch 256, uniform random
#: actions for the first 10,000 steps, 2000-step epochs.
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
    "cost_normalize": True,
    "cost_normalize_clip": 5.0,
    "kernel_init": "kaiming_uniform",
    "cost_activation": "relu",
    "cost_kernel_init": "kaiming_uniform",
}
OMNISAFE_LOOP = {
    "updates_per_step": 1,
    "batch_size": 256,
    "initial_steps": 10_000,
    "epoch_steps": 2000,
}
#: `--preset paper`: the ALGD paper's comparison (`sac.PAPER_VALUES`, `sac.PAPER_LOOP`).
PAPER_VALUES, PAPER_LOOP = sac.PAPER_VALUES, sac.PAPER_LOOP

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
