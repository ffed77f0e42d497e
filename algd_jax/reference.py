"""Recompute a reference dump of the authors' implementation with our code.

A dump is an `.npz` in the format of `tests/data/algd_reference_halfcheetah_seed0.npz`
(weights, inputs, injected noise and outputs; settings in its `config_json`). `compare_dump`
rebuilds an agent from the stored weights, recomputes every `out.*`, `active.*` and `upd.*`
array from the stored inputs and noise, and reports the error of each quantity.

Error measure: `max_abs = max |ours - ref|` and `max_rel = max_abs / max |ref|` (the
norm-wise relative error in the max norm, which stays meaningful for entries near zero).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from algd_jax.algorithms.algd import (
    AgentState,
    ALGDConfig,
    UpdateNoise,
    actor_loss_fn,
    create_agent,
    critic_step,
    multiplier_value,
    policy_chain,
    proposal_sigma,
    state_energy,
    update_with_noise,
)
from algd_jax.energy import augmented_lagrangian, qc_risk
from algd_jax.interop import (
    cost_critic_params_from_torch,
    critic_params_from_torch,
    score_params_from_torch,
)
from algd_jax.score_target import mc_score_target
from algd_jax.types import Batch

OUTPUT_TOLERANCE = 1e-5
PARAMETER_TOLERANCE = 1e-4


class Comparison(NamedTuple):
    name: str
    max_abs: float
    max_rel: float
    tolerance: float

    @property
    def ok(self) -> bool:
        return bool(np.isfinite(self.max_rel) and self.max_rel <= self.tolerance)


def config_from_dump(dump: Mapping[str, np.ndarray]) -> tuple[ALGDConfig, int, int]:
    """`(ALGDConfig, obs_dim, action_dim)` from a dump's `config_json`."""
    raw = json.loads(str(dump["config_json"]))
    config = ALGDConfig(
        agent="algd",
        ensemble_size=int(raw["qc_ens_size"]),
        mc_samples=int(raw["score_mc_samples"]),
        diffusion_steps=int(raw["diffusion_steps_K"]),
        critic_hidden=int(raw["critic_hidden_size"]),
        score_hidden=int(raw["score_model_hidden_dim"]),
        rho=float(raw["rho"]),
        beta=float(raw["beta"]),
        gamma=float(raw["gamma"]),
        cost_gamma=float(raw["safety_gamma"]),
        polyak=float(raw["tau"]),
        actor_lr=float(raw["lr"]),
        critic_lr=float(raw["lr"]),
        cost_critic_lr=float(raw["qc_lr"]),
        multiplier_lr=float(raw.get("lambda_lr", raw["lr"])),
        cost_budget=float(raw.get("target_cost", raw["cost_lim"])),
        embed_dim=int(np.asarray(dump["policy.time_embedding.weight"]).shape[1]),
    )
    if "sigma_min" in raw:
        config = dataclasses.replace(
            config, sigma_min=float(raw["sigma_min"]), sigma_max=float(raw["sigma_max"])
        )
    return config, int(raw["state_dim"]), int(raw["action_dim"])


def agent_from_dump(dump: Mapping[str, np.ndarray], precision: str = "f32") -> AgentState:
    """An agent whose networks, targets and multiplier are the dump's pre-update ones
    (targets start equal to the online critics unless the dump stores them), computing with
    the given `precision` (`ALGDConfig.precision`; the dump's numbers are float32)."""
    config, obs_dim, action_dim = config_from_dump(dump)
    config = dataclasses.replace(config, precision=precision)
    scale = np.asarray(dump["action_scale"], np.float32)
    bias = np.asarray(dump["action_bias"], np.float32)
    state = create_agent(config, obs_dim, bias - scale, bias + scale, seed=0)
    arrays = dump
    critic = critic_params_from_torch(arrays)
    cost = cost_critic_params_from_torch(arrays)
    critic_target = (
        critic_params_from_torch(arrays, "critic_target")
        if "critic_target.linear1.weight" in arrays
        else critic
    )
    cost_target = (
        cost_critic_params_from_torch(arrays, "safety_critic_targets")
        if "safety_critic_targets.nn1.weight" in arrays
        else cost
    )
    copy = lambda tree: jax.tree.map(jnp.array, tree)  # noqa: E731 - distinct buffers
    log_lam = float(dump["log_lam"])
    return state.replace(
        actor=state.actor.replace(params=score_params_from_torch(arrays)),
        critic=state.critic.replace(params=critic, target_params=copy(critic_target)),
        cost_critic=state.cost_critic.replace(params=cost, target_params=copy(cost_target)),
        multiplier=state.multiplier.replace(params={"value": jnp.asarray(log_lam, jnp.float32)}),
        action_scale=jnp.asarray(scale),
        action_bias=jnp.asarray(bias),
    )


def _energy_parts(state: AgentState, obs, action, budget: float) -> dict[str, jax.Array]:
    config = state.config
    q = state.critic.apply_fn(state.critic.params, obs, action)
    qc = state.cost_critic.apply_fn(state.cost_critic.params, obs, action)
    q_min = jnp.min(q, axis=0)
    risk = qc_risk(qc, config.kappa)
    lam = multiplier_value(config, state.multiplier.params["value"])
    la = augmented_lagrangian(q_min, risk, lam, budget, config.rho)
    return {
        "Q1": q[0][:, None],
        "Q2": q[1][:, None],
        "QCs": qc[..., None],
        "Q_min": q_min[:, None],
        "qc_risk": risk[:, None],
        "LA": la[:, None],
    }


def _score_target(state: AgentState, obs, a_tau, tau, noise, budget: float) -> jax.Array:
    config = state.config
    energy = state_energy(state, state.critic.params, state.cost_critic.params, budget)
    sigma_tau = jnp.asarray(proposal_sigma(config))[tau]
    return mc_score_target(energy, obs, a_tau, sigma_tau, noise, config.beta)


#: Dump arrays `recompute` reads as int32 (the rest of `_INPUTS` as float32).
_INT_INPUTS = ("batch.tau", "batch.swt_taus", "upd.actor_taus")
_INPUTS = (
    "batch.state", "batch.action", "batch.a_tau", "batch.tau", "batch.mc_noise",
    "batch.psl_noise_xT", "batch.psl_noise_step", "batch.swt_noise_xT",
    "batch.swt_noise_step", "batch.swt_taus", "upd.reward", "upd.mask", "upd.state",
    "upd.action", "upd.next_state", "upd.critic_noise_xT", "upd.critic_noise_step",
    "upd.actor_noise_xT", "upd.actor_noise_step", "upd.actor_taus", "upd.actor_mc_noise",
)  # fmt: skip


def recompute(
    dump: Mapping[str, np.ndarray], precision: str = "f32", *, jit: bool = False
) -> dict[str, np.ndarray]:
    """Every comparable quantity of the dump, recomputed with our code (its matrix products in
    `precision`), keyed as in the dump.

    By default every operation runs eagerly, one at a time, as in the authors' PyTorch code
    (this is what `compare_dump` and the float32 parity checks use). `jit=True` compiles the
    whole recomputation as one program instead: much faster for a precision whose eager
    operations are not yet compiled in the process, but XLA may then fuse and reorder float
    operations, so its results differ from the eager ones by float32 rounding.
    """
    return _evaluate(*_prepare(dump, precision), jit=jit)


def recomputed_shapes(dump: Mapping[str, np.ndarray]) -> dict[str, tuple[int, ...]]:
    """The shape of every array `recompute` returns, found by tracing alone (no arithmetic,
    about a second): lets a malformed dump be refused before the recomputation."""
    return _traced_shapes(*_prepare(dump, "f32"))


def _evaluate(
    state: AgentState, inputs: dict[str, jax.Array], settings: _Settings, jit: bool
) -> dict[str, np.ndarray]:
    body = jax.jit(_recompute, static_argnums=2) if jit else _recompute
    return {k: np.asarray(v) for k, v in body(state, inputs, settings).items()}


def _traced_shapes(
    state: AgentState, inputs: dict[str, jax.Array], settings: _Settings
) -> dict[str, tuple[int, ...]]:
    out = jax.eval_shape(lambda s, x: _recompute(s, x, settings), state, inputs)
    return {k: tuple(v.shape) for k, v in out.items()}


def _prepare(
    dump: Mapping[str, np.ndarray], precision: str
) -> tuple[AgentState, dict[str, jax.Array], _Settings]:
    """`_recompute`'s arguments from a dump."""
    state = agent_from_dump(dump, precision)
    inputs = {
        k: jnp.asarray(np.asarray(dump[k], np.int32 if k in _INT_INPUTS else np.float32))
        for k in _INPUTS
    }
    settings = _Settings(
        budget=float(dump["target_cost"]),
        active_budget=float(dump["active.target_cost"]),
        safetygym=bool(json.loads(str(dump["config_json"])).get("safetygym", False)),
        updates_arg=int(dump["upd.updates_arg"]),
        loss_names=tuple(str(n) for n in dump["upd.losses_names"]),
    )
    return state, inputs, settings


class _Settings(NamedTuple):
    """The dump's scalar settings `_recompute` uses (hashable: static under `jit`)."""

    budget: float
    active_budget: float
    safetygym: bool
    updates_arg: int
    loss_names: tuple[str, ...]


def _recompute(
    state: AgentState, inputs: dict[str, jax.Array], settings: _Settings
) -> dict[str, jax.Array]:
    """`recompute`'s arrays from the dump's inputs (`inputs`, keyed as in the dump)."""
    x = inputs
    obs, action, a_tau, tau = x["batch.state"], x["batch.action"], x["batch.a_tau"], x["batch.tau"]
    ours: dict[str, Any] = {}
    budget = settings.budget
    for key, value in _energy_parts(state, obs, action, budget).items():
        ours[f"out.{key}"] = value
    ours["out.score_target_mc"] = _score_target(state, obs, a_tau, tau, x["batch.mc_noise"], budget)
    active_budget = settings.active_budget
    active = _energy_parts(state, obs, action, active_budget)
    for key in ("LA", "Q_min", "qc_risk"):
        ours[f"active.{key}"] = active[key]
    ours["active.score_target_mc"] = _score_target(
        state, obs, a_tau, tau, x["batch.mc_noise"], active_budget
    )
    ours["out.score"] = state.actor.apply_fn(state.actor.params, obs, a_tau, tau)[0]
    zeros = jnp.zeros_like(action)
    ours["out.sample_deterministic"] = policy_chain(
        state,
        state.actor.params,
        obs,
        zeros,
        jnp.zeros((state.config.diffusion_steps, *action.shape)),
    ).a0
    chain = policy_chain(
        state, state.actor.params, obs, x["batch.psl_noise_xT"], x["batch.psl_noise_step"]
    )
    ours["out.p_sample_loop"] = chain.a0
    ours["out.p_sample_loop_latents"] = chain.latents
    swt = policy_chain(
        state,
        state.actor.params,
        obs,
        x["batch.swt_noise_xT"],
        x["batch.swt_noise_step"],
        x["batch.swt_taus"],
    )
    ours["out.swt_a0"], ours["out.swt_a_tau"] = swt.a0, swt.a_tau
    ours["out.swt_taus"] = x["batch.swt_taus"]

    # One full update.
    reward = x["upd.reward"]
    mask = x["upd.mask"]
    batch = Batch(
        obs=x["upd.state"],
        action=x["upd.action"],
        reward=reward[:, 0],
        cost=reward[:, 1],
        next_obs=x["upd.next_state"],
        mask_r=mask,
        mask_c=jnp.ones_like(mask) if settings.safetygym else mask,
    )
    noise = UpdateNoise(
        x["upd.critic_noise_xT"],
        x["upd.critic_noise_step"],
        x["upd.actor_noise_xT"],
        x["upd.actor_noise_step"],
        x["upd.actor_taus"],
        x["upd.actor_mc_noise"],
    )
    critic, cost, _ = critic_step(state, batch, noise)
    grads = jax.grad(
        lambda p: actor_loss_fn(state, p, critic.params, cost.params, batch.obs, noise)[0]
    )(state.actor.params)
    # The authors' inner-loop index of this update decides whether their targets move; ours
    # is the global update count (`state.step`), equal to it for the first update.
    state = state.replace(step=jnp.asarray(settings.updates_arg, jnp.int32))
    new_state, metrics = update_with_noise(state, batch, noise)
    metric_of = {
        "critic_q1_mse": "q1_mse",
        "critic_q2_mse": "q2_mse",
        "safety_mse": "cost_critic_loss",
        "actor_LA_mean": "actor_energy",
        "score_mse": "score_mse",
        "lambda_loss": "lambda_loss",
    }
    ours["upd.losses"] = jnp.stack([metrics[metric_of[n]] for n in settings.loss_names])
    ours["upd.log_lam"] = new_state.multiplier.params["value"]
    _flatten_policy(ours, "upd.policy", new_state.actor.params)
    _flatten_policy(ours, "upd.policy_grad", grads, with_eps_head=False)
    _flatten_critic(ours, "upd.critic", new_state.critic.params)
    _flatten_critic(ours, "upd.critic_target", new_state.critic.target_params)
    _flatten_cost(ours, "upd.safety_critics", new_state.cost_critic.params)
    _flatten_cost(ours, "upd.safety_critic_targets", new_state.cost_critic.target_params)
    return ours


def _flatten_policy(out: dict, prefix: str, params: Any, with_eps_head: bool = True) -> None:
    p = params["params"]
    out[f"{prefix}.time_embedding.weight"] = p["time_embedding"]["embedding"]
    layers = [
        ("mlp.0", "hidden_0"),
        ("mlp.2", "hidden_1"),
        ("mlp.4", "hidden_2"),
        ("score_head", "score_head"),
    ]
    if with_eps_head:
        layers.append(("eps_head", "eps_head"))
    for theirs, ours in layers:
        out[f"{prefix}.{theirs}.weight"] = p[ours]["kernel"].T
        out[f"{prefix}.{theirs}.bias"] = p[ours]["bias"]


def _flatten_critic(out: dict, prefix: str, params: Any) -> None:
    members = params["params"]["members"]
    for m in range(2):
        for j, layer in enumerate(("hidden_0", "hidden_1", "out")):
            idx = 1 + 3 * m + j
            out[f"{prefix}.linear{idx}.weight"] = members[layer]["kernel"][m].T
            out[f"{prefix}.linear{idx}.bias"] = members[layer]["bias"][m]


def _flatten_cost(out: dict, prefix: str, params: Any) -> None:
    members = params["params"]["members"]
    for ours, theirs in (("hidden_0", "nn1"), ("hidden_1", "nn2"), ("out", "nn3")):
        out[f"{prefix}.{theirs}.weight"] = members[ours]["kernel"]
        out[f"{prefix}.{theirs}.bias"] = members[ours]["bias"]


def compare_dump(dump: Mapping[str, np.ndarray]) -> list[Comparison]:
    """One `Comparison` per `out.*`, `active.*` and `upd.*` array present in both.

    Raises `ValueError` naming the first array whose size is not what we compute, before
    any arithmetic."""
    compared = [n for n in dump if n.startswith(("out.", "active.", "upd."))]
    prepared = _prepare(dump, "f32")  # the agent is built once for both passes
    shapes = _traced_shapes(*prepared)
    for name in compared:
        if name in shapes and np.asarray(dump[name]).size != math.prod(shapes[name]):
            raise ValueError(
                f"{name} has shape {np.asarray(dump[name]).shape}, expected {shapes[name]}"
            )
    ours = _evaluate(*prepared, jit=False)
    rows = []
    for name in compared:
        if name not in ours:
            continue
        ref = np.asarray(dump[name], np.float64)
        mine = np.asarray(ours[name], np.float64).reshape(ref.shape)
        max_abs = float(np.max(np.abs(mine - ref))) if ref.size else 0.0
        scale = float(np.max(np.abs(ref))) if ref.size else 0.0
        max_rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else np.inf)
        is_param = name.startswith("upd.") and name not in ("upd.losses",)
        rows.append(
            Comparison(
                name, max_abs, max_rel, PARAMETER_TOLERANCE if is_param else OUTPUT_TOLERANCE
            )
        )
    return rows


def missing_quantities(dump: Mapping[str, np.ndarray], rows: list[Comparison]) -> list[str]:
    """Dump arrays that ought to be compared but have no row in `rows`."""
    compared = {r.name for r in rows}
    inputs = {
        "upd.state",
        "upd.action",
        "upd.reward",
        "upd.next_state",
        "upd.mask",
        "upd.updates_arg",
        "upd.losses_names",
        "active.target_cost",
    }
    return [
        k
        for k in dump
        if k.startswith(("out.", "active.", "upd."))
        and not k.startswith(
            (
                "upd.critic_noise",
                "upd.actor_noise",
                "upd.actor_taus",
                "upd.actor_mc_noise",
                "upd.last_log",
            )
        )
        and k not in inputs
        and k not in compared
    ]
