"""ALGD, Augmented Lagrangian-Guided Diffusion (SPEC §1-§8), top to bottom in one file.

    config = ALGDConfig(...)                               # hyper-parameters, variants
    state = init(config, spec, key)                        # the learner's state pytree
    actions = act(state, obs, key, deterministic)          # [B, ds] -> [B, da], in the box
    state, metrics = update(state, batch)                  # one update, `Batch` of [B, ...]

`update_with_noise` is the pure update with every random draw passed in explicitly; it is
what the parity checks against the authors' implementation run. `update` draws that noise
from the state's PRNG key. All of them are free of host work; the loops jit them, fuse U of
them in a `lax.scan` and map them over seeds (`algd_jax.programs`).

Registered as `algd` (VE-SDE policy, augmented Lagrangian L_A), `lgd` (plain Lagrangian L)
and `algd-ddpm` (DDPM policy class): one config type, the variant fixed by the entry.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal, NamedTuple

import flax.struct as struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training.train_state import TrainState

from algd_jax import multipliers
from algd_jax.algorithms.base import ActionSpace, Algorithm, register
from algd_jax.compile_options import tuned_jit
from algd_jax.critics import (
    CostTarget,
    CriticTrainState,
    create_critic,
    double_q_target,
    ensemble_cost_target,
    polyak,
    target_update_due,
    td_step,
)
from algd_jax.diffusion import (
    ChainResult,
    ddpm_chain,
    ddpm_schedule,
    ddpm_sigma,
    draw_chain_noise,
    ve_chain,
    ve_schedule,
)
from algd_jax.energy import EnergyFn, make_energy, qc_risk
from algd_jax.networks import PRECISIONS, CriticEnsemble, ScoreNet, cost_critic, reward_critic
from algd_jax.options import (
    DISCOUNT,
    FRACTION,
    NON_NEGATIVE,
    POSITIVE,
    POSITIVE_INT,
    ranged,
    require_ranges,
)
from algd_jax.score_target import mc_score_target_and_energy_at
from algd_jax.types import Batch, Metrics

# ----------------------------------------------------------------------------- config

AgentName = Literal["algd", "lgd", "algd-ddpm"]


@dataclass(frozen=True)
class ALGDConfig:
    """Hyper-parameters of one ALGD learner.

    Defaults are the authors' released implementation ("reference" column of the spec);
    the paper's variants are one switch each (see `paper_faithful`).
    """

    agent: AgentName = "algd"
    """Policy/energy variant: `algd` (VE-SDE, augmented Lagrangian), `lgd` (plain
    Lagrangian energy, the paper's unstable baseline), `algd-ddpm` (DDPM policy class)."""
    ensemble_size: int = ranged(4, POSITIVE_INT)
    """M: number of cost critics."""
    mc_samples: int = ranged(4, POSITIVE_INT)
    """N: Monte-Carlo samples of the score target."""
    diffusion_steps: int = ranged(5, POSITIVE_INT)
    """K: reverse diffusion steps."""
    beta: float = ranged(1.0, POSITIVE)
    """Boltzmann temperature of the energy-based policy."""
    rho: float = ranged(1.0, POSITIVE)
    """Augmentation strength of the augmented Lagrangian."""
    kappa: float = ranged(1.0, NON_NEGATIVE)
    """Risk weight: qc_risk = mean + kappa * std over the cost ensemble (paper: 0)."""
    cost_budget: float = ranged(151.989, NON_NEGATIVE)
    """h: budget on the discounted cost value Qc (units of cost)."""
    actor_loss: Literal["hybrid", "score"] = "hybrid"
    """`hybrid`: mean L_A(s, a_0) + score_loss_weight * score mse (reference);
    `score`: score-matching mse only (paper)."""
    score_loss_weight: float = ranged(0.1, NON_NEGATIVE)
    """Weight of the score-matching term in the hybrid actor loss."""
    multiplier: Literal["adam", "projected"] = "adam"
    """`adam`: Adam on log(lambda) (reference); `projected`: lambda <- max(0, lambda +
    multiplier_lr * (qc - h)) (paper)."""
    init_multiplier: float = ranged(0.6931, NON_NEGATIVE)
    """Initial lambda."""
    multiplier_lr: float = ranged(3e-4, POSITIVE)
    """Adam learning rate of log(lambda), or the ascent step size of the projected rule."""
    sigma_min: float = ranged(0.01, POSITIVE)
    """Smallest VE noise scale (paper table: 1e-4)."""
    sigma_max: float = ranged(1.0, POSITIVE)
    """Largest VE noise scale (paper table: 1e-1)."""
    actor_lr: float = ranged(3e-4, POSITIVE)
    critic_lr: float = ranged(3e-4, POSITIVE)
    cost_critic_lr: float = ranged(3e-4, POSITIVE)
    gamma: float = ranged(0.99, DISCOUNT)
    """Reward discount."""
    cost_gamma: float = ranged(0.99, DISCOUNT)
    """Cost discount."""
    polyak: float = ranged(0.005, FRACTION)
    """Target-network averaging rate."""
    target_update_every: int = ranged(2, POSITIVE_INT)
    """Polyak-average the targets on every k-th update (global update count; the first
    update moves them). The authors' code: 2 (even inner-loop indices, the same thing for
    an even U); the paper's Table 4: 5."""
    cost_target: CostTarget = "per-member"
    """Cost TD target: `per-member` (each member bootstraps from its own target member, the
    authors' code) or `shared` (all from the mean over target members, Alg. 1 line 15)."""
    critic_hidden: int = ranged(256, POSITIVE_INT)
    score_hidden: int = ranged(128, POSITIVE_INT)
    embed_dim: int = ranged(16, POSITIVE_INT)
    """Width of the diffusion-step embedding of the score net."""
    ddpm_guidance: float = ranged(0.05, NON_NEGATIVE)
    """Step length of the normalised score guidance in the DDPM sampler."""
    precision: Literal["f32", "bf16"] = "f32"
    """Matrix products of the score net and the critics: `f32`, or `bf16` (bfloat16 inputs,
    float32 accumulation; parameters, optimiser states, targets, the multiplier, energies,
    softmax weights and every reduction stay float32). Opt-in: whether bf16 is faster
    depends on the CPU's bfloat16 instructions (see the README's benchmark table)."""

    def validate(self) -> ALGDConfig:
        """Raise `ValueError` with one clear message if a value is impossible: a field out
        of its declared range, or options that do not fit together."""
        require_ranges(self)  # every field's declared range (`ranged` above)
        if self.diffusion_steps < 2 and self.agent != "algd-ddpm":
            raise ValueError(
                f"--diffusion-steps (K) must be >= 2 for the VE-SDE schedule, got "
                f"{self.diffusion_steps}"
            )
        if self.sigma_min >= self.sigma_max:
            raise ValueError(
                f"--sigma-min ({self.sigma_min}) must be smaller than --sigma-max "
                f"({self.sigma_max})"
            )
        if not self.init_multiplier > 0 and self.multiplier == "adam":
            raise ValueError(
                f"--init-multiplier must be > 0 with --multiplier adam (it is stored as "
                f"log lambda), got {self.init_multiplier!r}"
            )
        if self.agent not in ("algd", "lgd", "algd-ddpm"):
            raise ValueError(f"unknown agent {self.agent!r}; choose one of algd, lgd, algd-ddpm")
        if self.cost_target not in ("per-member", "shared"):
            raise ValueError(
                f"--cost-target must be per-member or shared, got {self.cost_target!r}"
            )
        if self.precision not in PRECISIONS:
            raise ValueError(
                f"--precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}"
            )
        if self.multiplier not in multipliers.RULES:
            raise ValueError(
                f"--multiplier must be one of {', '.join(multipliers.RULES)}, got "
                f"{self.multiplier!r}"
            )
        return self

    @property
    def augmented(self) -> bool:
        """True when the energy is the augmented Lagrangian L_A (all but `lgd`)."""
        return self.agent != "lgd"

    @property
    def ddpm(self) -> bool:
        return self.agent == "algd-ddpm"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def paper_faithful(config: ALGDConfig) -> ALGDConfig:
    """The paper's choices where they differ from the released code (SPEC §8)."""
    return dataclasses.replace(
        config,
        kappa=0.0,
        actor_loss="score",
        multiplier="projected",
        sigma_min=1e-4,
        sigma_max=1e-1,
    )


class AgentState(struct.PyTreeNode):
    """Everything the learner owns. `config` is static: changing it means recompiling.

    `multiplier.params["value"]` is log(lambda) with the reference Adam rule, lambda itself
    with the paper's projected ascent (see `multiplier_value`).
    """

    actor: TrainState
    critic: CriticTrainState
    cost_critic: CriticTrainState
    multiplier: TrainState
    step: jax.Array
    key: jax.Array
    action_scale: jax.Array
    action_bias: jax.Array
    config: ALGDConfig = struct.field(pytree_node=False)


class UpdateNoise(NamedTuple):
    """Every random draw of one update (B rows, N samples, K steps, da action dims)."""

    critic_init: jax.Array  # [B, da] start of the next-action chain (TD targets)
    critic_steps: jax.Array  # [K, B, da]
    actor_init: jax.Array  # [B, da] start of the trajectory chain (actor step)
    actor_steps: jax.Array  # [K, B, da]
    actor_taus: jax.Array  # [B] int32 in [0, K)
    mc: jax.Array  # [B, N, da] eps_i of the Monte-Carlo score target


# ----------------------------------------------------------------------------- networks


def score_module(config: ALGDConfig, action_dim: int) -> ScoreNet:
    return ScoreNet(
        action_dim=action_dim,
        num_steps=config.diffusion_steps,
        hidden=config.score_hidden,
        embed_dim=config.embed_dim,
        precision=config.precision,
    )


def critic_module(config: ALGDConfig) -> CriticEnsemble:
    return reward_critic(config.critic_hidden, config.precision)


def cost_critic_module(config: ALGDConfig) -> CriticEnsemble:
    return cost_critic(config.ensemble_size, config.critic_hidden, config.precision)


def multiplier_value(config: ALGDConfig, param: jax.Array) -> jax.Array:
    """lambda from its stored parameter."""
    return multipliers.value(config.multiplier, param)


@lru_cache(maxsize=64)
def _static_parts(config: ALGDConfig, action_dim: int) -> tuple[Any, ...]:
    """The non-array parts of an agent: its three modules and four optimisers.

    They are static fields of the state pytree (`apply_fn`, `tx`), compared by identity when
    a jitted function looks up its compiled programs. Building them once per
    `(config, action_dim)` makes agents with equal configs share one pytree structure, so a
    second agent (a new run, another seed, a restored checkpoint) reuses the compiled
    `update`/`update_many`/`select_action` instead of compiling them again.
    """
    return (
        score_module(config, action_dim),
        critic_module(config),
        cost_critic_module(config),
        optax.adam(config.actor_lr),
        optax.adam(config.critic_lr),
        optax.adam(config.cost_critic_lr),
        multipliers.multiplier_tx(config.multiplier, config.multiplier_lr),
    )


def init(config: ALGDConfig, spec: ActionSpace, key: jax.Array) -> AgentState:
    """A freshly initialised learner for `spec`'s observations `[obs_dim]` and action box
    `[action_low, action_high]` (each `[da]`); every random draw from `key`."""
    config.validate()
    action_low = np.asarray(spec.action_low, np.float32)
    action_high = np.asarray(spec.action_high, np.float32)
    if action_low.shape != action_high.shape or action_low.ndim != 1:
        raise ValueError("action_low and action_high must be 1-D arrays of equal length")
    if not np.all(np.isfinite(action_low) & np.isfinite(action_high) & (action_high > action_low)):
        raise ValueError("the action space must be a bounded box with high > low")
    action_dim = action_low.shape[0]
    key, k_actor, k_critic, k_cost = jax.random.split(key, 4)
    obs = jnp.zeros((1, spec.obs_dim), jnp.float32)
    act = jnp.zeros((1, action_dim), jnp.float32)
    actor_net, critic_net, cost_net, actor_tx, critic_tx, cost_tx, multiplier_tx = _static_parts(
        config, action_dim
    )
    actor_params = actor_net.init(k_actor, obs, act, jnp.zeros((1,), jnp.int32))
    # Strong int32 step counters: Python ints would come back from jit as weak-typed
    # arrays, and the changed input signature would recompile the update once.
    return AgentState(
        actor=TrainState.create(apply_fn=actor_net.apply, params=actor_params, tx=actor_tx).replace(
            step=jnp.zeros((), jnp.int32)
        ),
        critic=create_critic(critic_net, critic_net.init(k_critic, obs, act), critic_tx),
        cost_critic=create_critic(cost_net, cost_net.init(k_cost, obs, act), cost_tx),
        multiplier=multipliers.create_multiplier(
            config.multiplier, config.init_multiplier, multiplier_tx
        ),
        step=jnp.zeros((), jnp.int32),
        key=key,
        action_scale=jnp.asarray((action_high - action_low) / 2.0),
        action_bias=jnp.asarray((action_high + action_low) / 2.0),
        config=config,
    )


@dataclass(frozen=True)
class _Box:
    obs_dim: int
    act_dim: int
    action_low: tuple[float, ...]
    action_high: tuple[float, ...]


def create_agent(
    config: ALGDConfig, obs_dim: int, action_low: np.ndarray, action_high: np.ndarray, seed: int
) -> AgentState:
    """`init` for observations `[obs_dim]`, actions in `[action_low, action_high]` and the
    key `jax.random.key(seed)`."""
    low = tuple(float(x) for x in np.ravel(action_low))
    high = tuple(float(x) for x in np.ravel(action_high))
    if np.ndim(action_low) != 1 or np.shape(action_low) != np.shape(action_high):
        raise ValueError("action_low and action_high must be 1-D arrays of equal length")
    return init(config, _Box(obs_dim, len(low), low, high), jax.random.key(seed))


# ----------------------------------------------------------------------------- sampling


def policy_chain(
    state: AgentState,
    actor_params: Any,
    obs: jax.Array,
    init_noise: jax.Array,
    step_noise: jax.Array,
    taus: jax.Array | None = None,
) -> ChainResult:
    """Run the configured reverse chain with the given score-net parameters and noise."""
    config = state.config

    def net(o, a, k):
        return state.actor.apply_fn(actor_params, o, a, k)

    if config.ddpm:
        return ddpm_chain(
            net,
            obs,
            init_noise,
            step_noise,
            ddpm_schedule(config.diffusion_steps),
            state.action_scale,
            state.action_bias,
            config.ddpm_guidance,
            taus,
        )
    schedule = ve_schedule(config.diffusion_steps, config.sigma_min, config.sigma_max)
    return ve_chain(
        net, obs, init_noise, step_noise, schedule, state.action_scale, state.action_bias, taus
    )


def proposal_sigma(config: ALGDConfig) -> np.ndarray:
    """sigma_tau `[K]` of the Monte-Carlo proposal N(a_tau, sigma_tau^2 I)."""
    if config.ddpm:
        return ddpm_sigma(ddpm_schedule(config.diffusion_steps))
    return ve_schedule(config.diffusion_steps, config.sigma_min, config.sigma_max).sigmas


def act(
    state: AgentState, obs: jax.Array, key: jax.Array, deterministic: bool = False
) -> jax.Array:
    """Actions `[B, da]` for observations `[B, ds]`, inside the action box. Stochastic: the
    reverse chain from noise drawn from `key`; deterministic: from 0 without noise."""
    batch, action_dim = obs.shape[0], state.action_scale.shape[0]
    if deterministic:
        init = jnp.zeros((batch, action_dim), obs.dtype)
        steps = jnp.zeros((state.config.diffusion_steps, batch, action_dim), obs.dtype)
    else:
        init, steps = draw_chain_noise(key, batch, action_dim, state.config.diffusion_steps)
    return policy_chain(state, state.actor.params, obs, init, steps).a0


select_action = tuned_jit(act, static_argnames="deterministic")


# ----------------------------------------------------------------------------- update


def uniform_steps(key: jax.Array, batch: int, num_steps: int) -> jax.Array:
    """`[B]` int32 diffusion steps, uniform on {0, ..., K-1}."""
    u = jax.random.uniform(key, (batch,))
    return jnp.minimum((u * num_steps).astype(jnp.int32), num_steps - 1)


def draw_update_noise(
    key: jax.Array, config: ALGDConfig, batch: int, action_dim: int
) -> UpdateNoise:
    """All random draws of one update from one key.

    The normals of both chains and of the Monte-Carlo samples come from a single draw that is
    then cut into parts: each threefry draw is a rolled loop of small kernels on CPU, and a
    dozen of them cost about as much as a critic layer.
    """
    k_normal, k_tau = jax.random.split(key)
    steps, mc = config.diffusion_steps, config.mc_samples
    chain_size = (steps + 1) * batch * action_dim
    normal = jax.random.normal(k_normal, (2 * chain_size + batch * mc * action_dim,))
    critic_chain = normal[:chain_size].reshape(steps + 1, batch, action_dim)
    actor_chain = normal[chain_size : 2 * chain_size].reshape(steps + 1, batch, action_dim)
    return UpdateNoise(
        critic_init=critic_chain[0],
        critic_steps=critic_chain[1:],
        actor_init=actor_chain[0],
        actor_steps=actor_chain[1:],
        actor_taus=uniform_steps(k_tau, batch, steps),
        mc=normal[2 * chain_size :].reshape(batch, mc, action_dim),
    )


def critic_step(
    state: AgentState, batch: Batch, noise: UpdateNoise
) -> tuple[CriticTrainState, CriticTrainState, Metrics]:
    """TD step of the double-Q reward critic and of the cost ensemble, both bootstrapping
    from the current policy's next action."""
    config = state.config
    next_action = policy_chain(
        state, state.actor.params, batch.next_obs, noise.critic_init, noise.critic_steps
    ).a0
    next_action = jax.lax.stop_gradient(next_action)
    critic, cost = state.critic, state.cost_critic
    q_next = critic.apply_fn(critic.target_params, batch.next_obs, next_action)  # [2, B]
    target_q = double_q_target(q_next, batch.reward, batch.mask_r, config.gamma)
    qc_next = cost.apply_fn(cost.target_params, batch.next_obs, next_action)  # [M, B]
    target_qc = ensemble_cost_target(
        qc_next, batch.cost, batch.mask_c, config.cost_gamma, config.cost_target
    )
    critic, q_members = td_step(critic, batch.obs, batch.action, target_q, members="sum")
    cost, qc_members = td_step(cost, batch.obs, batch.action, target_qc, members="mean")
    metrics = {
        "critic_loss": jnp.sum(q_members),
        "q1_mse": q_members[0],
        "q2_mse": q_members[1],
        "cost_critic_loss": jnp.mean(qc_members),
        "target_qc": jnp.mean(target_qc),
    }
    return critic, cost, metrics


def state_energy(
    state: AgentState, critic_params: Any, cost_params: Any, budget: float | None = None
) -> EnergyFn:
    """The configured energy (L_A, or L for `lgd`) with the given critics and the state's
    current multiplier; `budget` overrides the config's h."""
    config = state.config
    return make_energy(
        lambda o, a: state.critic.apply_fn(critic_params, o, a),
        lambda o, a: state.cost_critic.apply_fn(cost_params, o, a),
        multiplier_value(config, state.multiplier.params["value"]),
        config.cost_budget if budget is None else budget,
        config.rho,
        config.kappa,
        config.augmented,
    )


def actor_loss_fn(
    state: AgentState,
    actor_params: Any,
    critic_params: Any,
    cost_params: Any,
    obs: jax.Array,
    noise: UpdateNoise,
) -> tuple[jax.Array, Metrics]:
    """Actor (score-net) loss with the given critics and the current multiplier."""
    config = state.config
    energy = state_energy(state, critic_params, cost_params)
    chain = policy_chain(
        state, actor_params, obs, noise.actor_init, noise.actor_steps, noise.actor_taus
    )
    sigma_tau = jnp.asarray(proposal_sigma(config))[noise.actor_taus]
    # The energy at the final action joins the Monte-Carlo samples in one critic evaluation.
    # Its action gradient, held fixed, is then chained through a_0 by hand: the surrogate
    # mean(<g, a_0>) has the gradient of mean L(s, a_0) with respect to the actor (critics and
    # multiplier are constants here), and the value is put back to mean L(s, a_0).
    phi_star, energy_a0, grad_a0 = mc_score_target_and_energy_at(
        energy,
        obs,
        jax.lax.stop_gradient(chain.a_tau),
        sigma_tau,
        noise.mc,
        config.beta,
        action=chain.a0,
    )
    phi, _ = state.actor.apply_fn(actor_params, obs, chain.a_tau, noise.actor_taus)
    score_mse = jnp.mean((phi - phi_star) ** 2)
    energy_mean = jnp.mean(energy_a0)
    surrogate = jnp.mean(jnp.sum(jax.lax.stop_gradient(grad_a0) * chain.a0, axis=-1))
    energy_term = surrogate - jax.lax.stop_gradient(surrogate) + energy_mean
    if config.actor_loss == "hybrid":
        loss = energy_term + config.score_loss_weight * score_mse
    else:
        loss = score_mse
    metrics = {
        "actor_loss": loss,
        "actor_energy": energy_mean,
        "score_mse": score_mse,
        "score_target_norm": jnp.mean(jnp.linalg.norm(phi_star, axis=-1)),
    }
    return loss, metrics


def _multiplier_step(
    state: AgentState, cost_params: Any, batch: Batch
) -> tuple[TrainState, Metrics]:
    """The dual step, driven by the updated cost ensemble's risk at the replay actions."""
    config = state.config
    qc = state.cost_critic.apply_fn(cost_params, batch.obs, batch.action)
    risk = qc_risk(qc, config.kappa)
    new, loss = multipliers.dual_step(config.multiplier, state.multiplier, risk, config.cost_budget)
    metrics = {
        "lambda_loss": loss,
        "qc_risk": jnp.mean(risk),
        "violation": jnp.mean(risk) - config.cost_budget,
        "multiplier": multiplier_value(config, new.params["value"]),
    }
    return new, metrics


def update_with_noise(
    state: AgentState, batch: Batch, noise: UpdateNoise
) -> tuple[AgentState, Metrics]:
    """One ALGD update with explicit noise, in the order of SPEC §5.

    `batch` leaves are `[B, ...]` float32. The targets move when this update's global index
    (`state.step`, the updates done before it) is a multiple of `target_update_every`.
    Metrics are scalars, left on the device.
    """
    config = state.config
    critic, cost, metrics = critic_step(state, batch, noise)

    (_, actor_metrics), actor_grads = jax.value_and_grad(
        lambda p: actor_loss_fn(state, p, critic.params, cost.params, batch.obs, noise),
        has_aux=True,
    )(state.actor.params)
    actor = state.actor.apply_gradients(grads=actor_grads)
    metrics.update(actor_metrics)

    multiplier, lam_metrics = _multiplier_step(state, cost.params, batch)
    metrics.update(lam_metrics)

    due = target_update_due(state.step, config.target_update_every)
    critic = polyak(critic, config.polyak, due)
    cost = polyak(cost, config.polyak, due)
    new_state = state.replace(
        actor=actor, critic=critic, cost_critic=cost, multiplier=multiplier, step=state.step + 1
    )
    return new_state, metrics


def update_from_key(state: AgentState, batch: Batch) -> tuple[AgentState, Metrics]:
    """One update, its noise drawn from the state's key (the registry's `update`)."""
    key, noise_key = jax.random.split(state.key)
    batch_size = batch.obs.shape[0]
    noise = draw_update_noise(noise_key, state.config, batch_size, state.action_scale.shape[0])
    return update_with_noise(state.replace(key=key), batch, noise)


update = tuned_jit(update_from_key, donate_argnums=0)
update.__doc__ = "One jitted update (state donated), noise from the state's key."


def _update_many(state: AgentState, batch: Batch) -> tuple[AgentState, Metrics]:
    return jax.lax.scan(update_from_key, state, batch)


update_many = tuned_jit(_update_many, donate_argnums=0)
update_many.__doc__ = """U updates as one `lax.scan` (state donated).

Batch leaves `[U, B, ...]`; metrics come back stacked `[U]` and stay on the device."""


@tuned_jit
def sample_trajectory(
    state: AgentState, obs: jax.Array, key: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Trajectory sampling for the actor step: `(a_0, a_tau, tau)` for `obs [B, ds]`, with
    `tau [B] ~ Uniform{0..K-1}` and `a_tau` the action right after reverse step tau."""
    batch, action_dim = obs.shape[0], state.action_scale.shape[0]
    k_noise, k_tau = jax.random.split(key)
    init, steps = draw_chain_noise(k_noise, batch, action_dim, state.config.diffusion_steps)
    taus = uniform_steps(k_tau, batch, state.config.diffusion_steps)
    chain = policy_chain(state, state.actor.params, obs, init, steps, taus)
    return chain.a0, chain.a_tau, taus


# ----------------------------------------------------------------------------- registry

METRIC_NAMES = (
    "actor_energy",
    "actor_loss",
    "cost_critic_loss",
    "critic_loss",
    "lambda_loss",
    "multiplier",
    "q1_mse",
    "q2_mse",
    "qc_risk",
    "score_mse",
    "score_target_norm",
    "target_qc",
    "violation",
)


def metric_names(config: ALGDConfig) -> tuple[str, ...]:
    """Names of the scalar metrics `update` reports (sorted)."""
    return METRIC_NAMES


def resolve(config: ALGDConfig, spec: Any) -> ALGDConfig:
    """`config` with the task's critic budget h (re-derived for the config's cost discount
    when the task's limit is episodic)."""
    from algd_jax.algorithms.base import task_budget

    return dataclasses.replace(config, cost_budget=task_budget(spec, config.cost_gamma))


#: Every value the paper states where the authors' released code (the defaults) differs:
#: M = N = 6 (Tables 2 and 5), targets every 5th update (Table 4), sigma in [1e-4, 0.1],
#: kappa = 0, the projected multiplier rule and the score-matching actor loss (SPEC §8).
PAPER_VALUES = {
    "ensemble_size": 6,
    "mc_samples": 6,
    "target_update_every": 5,
    "sigma_min": 1e-4,
    "sigma_max": 1e-1,
    "kappa": 0.0,
    "multiplier": "projected",
    "actor_loss": "score",
}

_VARIANTS = {
    "algd": "ALGD: VE-SDE diffusion policy guided by the augmented Lagrangian L_A (default)",
    "lgd": "LGD: the same policy guided by the plain Lagrangian L (the paper's unstable baseline)",
    "algd-ddpm": "ALGD with a DDPM policy class instead of the VE-SDE",
}
for _name, _description in _VARIANTS.items():
    register(
        Algorithm(
            name=_name,
            description=_description,
            config_type=ALGDConfig,
            init=init,
            act=act,
            update=update_from_key,
            metric_names=metric_names,
            resolve=resolve,
            fixed={"agent": _name},
            task_fields=("cost_budget",),
            presets={"authors-code": {}, "paper": PAPER_VALUES},
        )
    )
