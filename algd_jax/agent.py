"""The ALGD learner: one immutable state pytree and one jitted update (SPEC §5).

    state = create_agent(config, obs_dim, action_low, action_high, seed)
    state, metrics = update_many(state, batch)      # U fused updates, batch leaves [U, B, ...]
    actions = select_action(state, obs, key)        # [B, ds] -> [B, da], inside the action box

`update_with_noise` is the pure single update with every random draw passed in explicitly;
it is what the parity checks against the authors' implementation run. The other entry points
draw that noise from the state's PRNG key. All of them are free of host work and can be
`vmap`-ed over a leading axis of independent seeds.
"""

from __future__ import annotations

from functools import lru_cache, partial
from typing import Any, NamedTuple

import flax.struct as struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training.train_state import TrainState

from algd_jax.compile_options import tuned_jit
from algd_jax.config import AgentConfig
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
from algd_jax.networks import CriticEnsemble, ScoreNet, cost_critic, reward_critic
from algd_jax.score_target import mc_score_target_and_energy_at

Batch = dict[str, jax.Array]
Metrics = dict[str, jax.Array]

BATCH_KEYS = ("obs", "action", "reward", "cost", "next_obs", "mask_r", "mask_c")


class CriticTrainState(TrainState):
    """A critic's online parameters and optimiser plus its Polyak-averaged target copy."""

    target_params: Any = None


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
    config: AgentConfig = struct.field(pytree_node=False)


class UpdateNoise(NamedTuple):
    """Every random draw of one update (B rows, N samples, K steps, da action dims)."""

    critic_init: jax.Array  # [B, da] start of the next-action chain (TD targets)
    critic_steps: jax.Array  # [K, B, da]
    actor_init: jax.Array  # [B, da] start of the trajectory chain (actor step)
    actor_steps: jax.Array  # [K, B, da]
    actor_taus: jax.Array  # [B] int32 in [0, K)
    mc: jax.Array  # [B, N, da] eps_i of the Monte-Carlo score target


# ----------------------------------------------------------------------------- networks


def score_module(config: AgentConfig, action_dim: int) -> ScoreNet:
    return ScoreNet(
        action_dim=action_dim,
        num_steps=config.diffusion_steps,
        hidden=config.score_hidden,
        embed_dim=config.embed_dim,
    )


def critic_module(config: AgentConfig) -> CriticEnsemble:
    return reward_critic(config.critic_hidden)


def cost_critic_module(config: AgentConfig) -> CriticEnsemble:
    return cost_critic(config.ensemble_size, config.critic_hidden)


def multiplier_value(config: AgentConfig, param: jax.Array) -> jax.Array:
    """lambda from its stored parameter."""
    return jnp.exp(param) if config.multiplier == "adam" else param


def _multiplier_tx(config: AgentConfig) -> optax.GradientTransformation:
    if config.multiplier == "adam":
        return optax.adam(config.multiplier_lr)
    # Projected ascent on lambda is plain gradient descent on lambda * (h - qc) followed by
    # clipping at zero (done in the update).
    return optax.sgd(config.multiplier_lr)


@lru_cache(maxsize=64)
def _static_parts(config: AgentConfig, action_dim: int) -> tuple[Any, ...]:
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
        _multiplier_tx(config),
    )


def create_agent(
    config: AgentConfig, obs_dim: int, action_low: np.ndarray, action_high: np.ndarray, seed: int
) -> AgentState:
    """A freshly initialised agent for observations `[obs_dim]` and actions in
    `[action_low, action_high]` (each `[da]`)."""
    config.validate()
    action_low = np.asarray(action_low, np.float32)
    action_high = np.asarray(action_high, np.float32)
    if action_low.shape != action_high.shape or action_low.ndim != 1:
        raise ValueError("action_low and action_high must be 1-D arrays of equal length")
    if not np.all(np.isfinite(action_low) & np.isfinite(action_high) & (action_high > action_low)):
        raise ValueError("the action space must be a bounded box with high > low")
    action_dim = action_low.shape[0]
    key = jax.random.key(seed)
    key, k_actor, k_critic, k_cost = jax.random.split(key, 4)
    obs = jnp.zeros((1, obs_dim), jnp.float32)
    act = jnp.zeros((1, action_dim), jnp.float32)
    actor_net, critic_net, cost_net, actor_tx, critic_tx, cost_tx, multiplier_tx = _static_parts(
        config, action_dim
    )
    actor_params = actor_net.init(k_actor, obs, act, jnp.zeros((1,), jnp.int32))
    critic_params = critic_net.init(k_critic, obs, act)
    cost_params = cost_net.init(k_cost, obs, act)
    # Targets must be distinct buffers from the online params, or donating the state
    # donates the same buffer twice.
    copy = partial(jax.tree.map, jnp.array)
    init_param = (
        np.log(config.init_multiplier) if config.multiplier == "adam" else config.init_multiplier
    )
    # Strong int32 step counters: Python ints would come back from jit as weak-typed
    # arrays, and the changed input signature would recompile the update once.
    # Each a distinct buffer, since the state is donated.
    step0 = partial(jnp.zeros, (), jnp.int32)

    def critic_state(net: CriticEnsemble, params: Any, tx: Any) -> CriticTrainState:
        return CriticTrainState.create(
            apply_fn=net.apply, params=params, target_params=copy(params), tx=tx
        ).replace(step=step0())

    return AgentState(
        actor=TrainState.create(apply_fn=actor_net.apply, params=actor_params, tx=actor_tx).replace(
            step=step0()
        ),
        critic=critic_state(critic_net, critic_params, critic_tx),
        cost_critic=critic_state(cost_net, cost_params, cost_tx),
        multiplier=TrainState.create(
            apply_fn=None,
            params={"value": jnp.asarray(init_param, jnp.float32)},
            tx=multiplier_tx,
        ).replace(step=step0()),
        step=step0(),
        key=key,
        action_scale=jnp.asarray((action_high - action_low) / 2.0),
        action_bias=jnp.asarray((action_high + action_low) / 2.0),
        config=config,
    )


def stack_states(states: list[AgentState]) -> AgentState:
    """Stack agents of one config (e.g. several seeds) along a new leading axis, for
    `jax.vmap` of the update over seeds. The static parts are taken from the first."""
    treedef = jax.tree.structure(states[0])
    columns = zip(*(jax.tree.leaves(s) for s in states), strict=True)
    return jax.tree.unflatten(treedef, [jnp.stack(col) for col in columns])


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


def proposal_sigma(config: AgentConfig) -> np.ndarray:
    """sigma_tau `[K]` of the Monte-Carlo proposal N(a_tau, sigma_tau^2 I)."""
    if config.ddpm:
        return ddpm_sigma(ddpm_schedule(config.diffusion_steps))
    return ve_schedule(config.diffusion_steps, config.sigma_min, config.sigma_max).sigmas


@tuned_jit(static_argnames="deterministic")
def select_action(
    state: AgentState, obs: jax.Array, key: jax.Array, deterministic: bool = False
) -> jax.Array:
    """Actions `[B, da]` for observations `[B, ds]`. Deterministic: start at 0, no noise."""
    batch, action_dim = obs.shape[0], state.action_scale.shape[0]
    if deterministic:
        init = jnp.zeros((batch, action_dim), obs.dtype)
        steps = jnp.zeros((state.config.diffusion_steps, batch, action_dim), obs.dtype)
    else:
        init, steps = draw_chain_noise(key, batch, action_dim, state.config.diffusion_steps)
    return policy_chain(state, state.actor.params, obs, init, steps).a0


# ----------------------------------------------------------------------------- update


def uniform_steps(key: jax.Array, batch: int, num_steps: int) -> jax.Array:
    """`[B]` int32 diffusion steps, uniform on {0, ..., K-1}."""
    u = jax.random.uniform(key, (batch,))
    return jnp.minimum((u * num_steps).astype(jnp.int32), num_steps - 1)


def draw_update_noise(
    key: jax.Array, config: AgentConfig, batch: int, action_dim: int
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
    """TD step of the double-Q reward critic and of the cost ensemble."""
    config = state.config
    next_action = policy_chain(
        state, state.actor.params, batch["next_obs"], noise.critic_init, noise.critic_steps
    ).a0
    next_action = jax.lax.stop_gradient(next_action)
    critic, cost = state.critic, state.cost_critic

    q_next = jnp.min(critic.apply_fn(critic.target_params, batch["next_obs"], next_action), 0)
    target_q = batch["reward"] + config.gamma * batch["mask_r"] * q_next
    qc_next = cost.apply_fn(cost.target_params, batch["next_obs"], next_action)
    target_qc = batch["cost"] + config.cost_gamma * batch["mask_c"] * qc_next

    def critic_loss(params):
        q = critic.apply_fn(params, batch["obs"], batch["action"])  # [2, B]
        per_member = jnp.mean((q - target_q) ** 2, axis=1)
        return jnp.sum(per_member), per_member

    def cost_loss(params):
        qc = cost.apply_fn(params, batch["obs"], batch["action"])  # [M, B]
        return jnp.mean((qc - target_qc) ** 2)

    (q_loss, q_members), q_grads = jax.value_and_grad(critic_loss, has_aux=True)(critic.params)
    qc_loss, qc_grads = jax.value_and_grad(cost_loss)(cost.params)
    metrics = {
        "critic_loss": q_loss,
        "q1_mse": q_members[0],
        "q2_mse": q_members[1],
        "cost_critic_loss": qc_loss,
        "target_qc": jnp.mean(target_qc),
    }
    return critic.apply_gradients(grads=q_grads), cost.apply_gradients(grads=qc_grads), metrics


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
    config = state.config
    qc = state.cost_critic.apply_fn(cost_params, batch["obs"], batch["action"])
    risk = jax.lax.stop_gradient(qc_risk(qc, config.kappa))

    def loss_fn(params):
        lam = multiplier_value(config, params["value"])
        return jnp.mean(lam * (config.cost_budget - risk))

    loss, grad = jax.value_and_grad(loss_fn)(state.multiplier.params)
    new = state.multiplier.apply_gradients(grads=grad)
    if config.multiplier == "projected":
        new = new.replace(params={"value": jnp.maximum(new.params["value"], 0.0)})
    metrics = {
        "lambda_loss": loss,
        "qc_risk": jnp.mean(risk),
        "violation": jnp.mean(risk) - config.cost_budget,
        "multiplier": multiplier_value(config, new.params["value"]),
    }
    return new, metrics


def _polyak(critic: CriticTrainState, rate: float, apply: jax.Array) -> CriticTrainState:
    def mix(target, online):
        return jnp.where(apply, (1.0 - rate) * target + rate * online, target)

    return critic.replace(target_params=jax.tree.map(mix, critic.target_params, critic.params))


def update_with_noise(
    state: AgentState, batch: Batch, noise: UpdateNoise, index: jax.Array | int = 0
) -> tuple[AgentState, Metrics]:
    """One ALGD update with explicit noise, in the order of SPEC §5.

    `batch` leaves are `[B, ...]` float32 (`reward`, `cost`, `mask_r`, `mask_c` are `[B]`);
    `index` is the position of this update inside its group of U (Polyak on even indices).
    Metrics are scalars, left on the device.
    """
    config = state.config
    critic, cost, metrics = critic_step(state, batch, noise)

    (_, actor_metrics), actor_grads = jax.value_and_grad(
        lambda p: actor_loss_fn(state, p, critic.params, cost.params, batch["obs"], noise),
        has_aux=True,
    )(state.actor.params)
    actor = state.actor.apply_gradients(grads=actor_grads)
    metrics.update(actor_metrics)

    multiplier, lam_metrics = _multiplier_step(state, cost.params, batch)
    metrics.update(lam_metrics)

    polyak_now = jnp.asarray(index) % 2 == 0
    critic = _polyak(critic, config.polyak, polyak_now)
    cost = _polyak(cost, config.polyak, polyak_now)
    new_state = state.replace(
        actor=actor, critic=critic, cost_critic=cost, multiplier=multiplier, step=state.step + 1
    )
    return new_state, metrics


def _update_from_key(
    state: AgentState, batch: Batch, index: jax.Array
) -> tuple[AgentState, Metrics]:
    key, noise_key = jax.random.split(state.key)
    batch_size = batch["obs"].shape[0]
    noise = draw_update_noise(noise_key, state.config, batch_size, state.action_scale.shape[0])
    return update_with_noise(state.replace(key=key), batch, noise, index)


@tuned_jit(donate_argnums=0)
def update(
    state: AgentState, batch: Batch, index: jax.Array | int = 0
) -> tuple[AgentState, Metrics]:
    """One jitted update, noise from the state's key. Batch leaves `[B, ...]`."""
    return _update_from_key(state, batch, jnp.asarray(index))


def _update_many(state: AgentState, batch: Batch) -> tuple[AgentState, Metrics]:
    num_updates = batch["obs"].shape[0]

    def body(carry, inputs):
        index, minibatch = inputs
        return _update_from_key(carry, minibatch, index)

    return jax.lax.scan(body, state, (jnp.arange(num_updates), batch))


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
