"""The interface every algorithm implements, and the registry that names them.

An algorithm is a typed, frozen config dataclass plus pure functions over its own immutable
state pytree (the config travels inside the state as a static field):

    state = algorithm.init(config, spec, key)                  # spec: obs_dim, action box
    action = algorithm.act(state, obs, key, deterministic)     # obs [B, ds] -> [B, da]
    state, metrics = algorithm.update(state, batch)            # off-policy: batch leaves [B, ...]

An on-policy algorithm (`kind="on-policy"`, PPO-Lag) learns from rollouts instead of replay
batches: it has no `update` and carries its rollout functions in `Algorithm.on_policy` (an
`OnPolicyParts`, contract below). Off-policy algorithms implement nothing new.

Nothing here knows of loops, seeds, environments or files: the loops (`algd_jax.programs`)
jit these functions, fuse U updates in one `lax.scan` and map them over a seed axis.

The contract between the loop and an algorithm
----------------------------------------------
* Static: the config (a frozen dataclass of hashable plain values) is a static field of
  the state pytree (`struct.field(pytree_node=False)`), and so are `apply_fn`/`tx` of its
  train states. Two states of equal configs must share one pytree structure (build the
  modules and optimisers once per config, e.g. with `lru_cache`), so a new run, another
  seed or a restored checkpoint reuses the compiled programs. Every array leaf is a strongly
  typed JAX array (int32 step counters, float32 parameters).
* Donated: the loop donates the stacked states (and its metric sums) to the fused program;
  `update` and `observe` must return new states and never alias an input buffer twice (a
  target network starts as a copy of, not the same buffer as, its online network).
* Metrics: `update` returns a flat dict of float32 scalars `[]` named exactly
  `metric_names(config)`; the loop averages each over an epoch and writes it as the
  progress.csv / TensorBoard column `train/<name>`. Names that keep one meaning across
  algorithms: `critic_loss`, `cost_critic_loss`, `actor_loss`, `multiplier` (the scalar
  lambda), `qc_risk` (the cost statistic the multiplier is driven by), `violation`
  (`qc_risk - h`). A quantity of another kind gets a name of its own (RCRL's state-wise
  multiplier `multiplier_state_mean`, its feasibility value `feasibility_value`).
* Randomness: every draw comes from keys in the state (`update`) or passed in (`act`).
* Loop information (`LoopInfo`): once per fused call, before its U updates, inside the
  same compiled program, the loop calls `observe(state, info)`; an algorithm keeps what its
  `update` needs from it in its state. `info` is per seed (the loop maps over seeds).
* Acting during the warm-up (`--initial-steps`): `warmup_acting(config)` is `policy` (the
  untrained policy, ALGD and CAL) or `uniform` (uniform random actions in the box,
  OmniSafe); the loop draws uniform actions from the seed and the env step (exact resume).

The on-policy contract (`OnPolicyParts`)
---------------------------------------
Per seed, E environments (the loop's `--num-envs`) are stepped together for T steps (one
rollout of `rollout_size(config)` = T * E env steps; both static: the rollout arrays have
fixed shapes, so one compiled program serves every rollout), then one update phase learns
from the whole rollout. The loop (`algd_jax.training.on_policy`, through
`algd_jax.programs.OnPolicyPrograms` and `algd_jax.vector_rollouts`) calls, per seed (S
seeds are mapped like every other program):

    state, obs_n = normalize_observation(state, obs, mask)   # raw obs [E, ds], mask [E] or None
    noise = acting_noise(state, key, E)                      # the draws of one step's actions
    env_action, extras = rollout_act(state, obs_n, noise)    # [E, da], RolloutExtras of [E]
    v_r, v_c = values(state, obs_n)                          # [E] each, for bootstraps
    state, metrics = update_rollout(state, rollout, info)    # Rollout of [T, E, ...]

* `normalize_observation` is the only function that changes the state while acting: it
  pushes the rows of `obs` where `mask` (all rows when None) into the running statistics
  the state keeps and returns every row normalised with the updated statistics. The loop
  pushes every observation once, when the environment returns it: for the environments an
  episode ended in, first the episode's final observation (masked to those rows), then the
  observations the step returned (the reset ones there), as OmniSafe's `ObsNormalize`
  does. `rollout_act` and `values` read the state and never change it; so do `act`
  (evaluation: raw observations, the statistics frozen) and `update_rollout` (the
  statistics are not learned from).
* Every random draw of acting is `acting_noise`'s, from `key` only; `rollout_act` is
  deterministic given it. The loop derives the key of env step t from the seed alone,
  `fold_in(key(seed), t)`, so a seed's rollout does not depend on the other seeds, and
  draws a whole rollout's noise in one call (random-number generation is a large share of
  a small per-step program on a CPU).
* `Rollout` holds what the policy acted on (normalised observations), what it drew
  (`RolloutExtras`), what the environments returned and the bootstrap values
  `next_value_*` (the value of the next observation; of the final observation for a
  truncated episode; of the observation after the last step at the rollout's end; read
  nowhere an episode terminated). Every leaf is `[T, E]` or `[T, E, d]`, float32 (bool for
  `terminated` and `truncated`).
* `update_rollout` is one whole update phase (every epoch and minibatch, the multiplier
  step); the loop compiles it once, maps it over the seeds and donates the stacked states.
  `info` is the seed's `LoopInfo`: its episode window (`episode_window(config)` = W wide)
  holds the last W episodes the loop finished, in the order they finished, and
  `total_updates` is the number of update phases (rollouts) the run plans. Metrics: a flat
  dict of float32 scalars named `metric_names(config)`, one row per update phase.
* `host_actor` (optional) does what `normalize_observation` and `rollout_act` do, for one
  seed and one rollout, in numpy: the collector then acts with no compiled call per env
  step (`HostActor`). Its results equal the compiled functions' up to float32 rounding,
  and depend only on the seed's own state, observations and draws.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, Protocol

import flax.struct as struct
import jax
import jax.numpy as jnp
import numpy as np

from algd_jax.types import Batch, Metrics


class ActionSpace(Protocol):
    """What `init` needs to know of a task (a `TaskSpec` satisfies it)."""

    obs_dim: int
    act_dim: int
    action_low: tuple[float, ...]
    action_high: tuple[float, ...]


class LoopInfo(struct.PyTreeNode):
    """What the loop tells an algorithm besides the replay batch, for one seed.

    Attributes (device arrays):
        env_step: int32 `[]`, environment steps taken so far by this seed.
        epoch: int32 `[]`, completed epochs.
        update_step: int32 `[]`, gradient updates done before this fused call.
        total_updates: int32 `[]`, updates the run plans in all (for decaying schedules;
            it grows when a resume raises `--total-steps`).
        episode_costs: float32 `[W]`, undiscounted costs `sum_t c_t` of the last W finished
            training episodes, oldest first (only the last `min(episode_count, W)` are
            filled; the rest are 0).
        episode_discounted_costs: float32 `[W]`, their discounted costs
            `sum_t gamma_c**t c_t` (what the speed tasks' budget h applies to).
        episode_returns: float32 `[W]`, their returns.
        episode_count: int32 `[]`, finished training episodes so far.
    """

    env_step: jax.Array
    epoch: jax.Array
    update_step: jax.Array
    total_updates: jax.Array
    episode_costs: jax.Array
    episode_discounted_costs: jax.Array
    episode_returns: jax.Array
    episode_count: jax.Array


def window_mean(values: jax.Array, count: jax.Array) -> jax.Array:
    """The mean over the filled part of an episode window `values [W]` (the last
    `min(count, W)` entries); 0 when no episode has finished or W = 0. float32 `[]`."""
    width = values.shape[-1]
    if width == 0:
        return jnp.zeros((), jnp.float32)
    filled = jnp.minimum(count, width)
    mask = jnp.arange(width) >= width - filled
    total = jnp.sum(jnp.where(mask, values, 0.0), axis=-1)
    return jnp.where(filled > 0, total / jnp.maximum(filled, 1), 0.0).astype(jnp.float32)


class RolloutExtras(NamedTuple):
    """What an on-policy `rollout_act` returns besides the env actions, for B observations."""

    raw_action: jax.Array  # float32 [B, da]: the policy's draw, before the map into the box
    log_prob: jax.Array  # float32 [B]: its log-density under the acting policy (nats)
    value_r: jax.Array  # float32 [B]: V_r of the observation (reward units)
    value_c: jax.Array  # float32 [B]: V_c of the observation (cost units)


class Rollout(NamedTuple):
    """One rollout of T steps of E environments of one seed, as the loop collects it.

    `obs[t]` is the normalised observation the policy acted on at step t
    (`normalize_observation`'s output), `reward[t]`/`cost[t]` what that step returned.
    `next_value_*[t]` is the value of the observation after step t: that of step t + 1, the
    episode's final observation's where `truncated[t]`, V(s_T) at t = T - 1 (the rollout's
    cut); it is ignored where `terminated[t]`.
    """

    obs: jax.Array  # float32 [T, E, ds]
    raw_action: jax.Array  # float32 [T, E, da]
    log_prob: jax.Array  # float32 [T, E]
    value_r: jax.Array  # float32 [T, E]
    value_c: jax.Array  # float32 [T, E]
    reward: jax.Array  # float32 [T, E]
    cost: jax.Array  # float32 [T, E]
    next_value_r: jax.Array  # float32 [T, E]
    next_value_c: jax.Array  # float32 [T, E]
    terminated: jax.Array  # bool [T, E]
    truncated: jax.Array  # bool [T, E]


def bootstrap_values(
    values: jax.Array, last_values: jax.Array, final_values: jax.Array, truncated: jax.Array
) -> jax.Array:
    """`next_values [T, E]` of a `Rollout`: the value of step t + 1 (`values [T, E]`), of the
    observation after the last step at t = T - 1 (`last_values [E]`), and the value of the
    episode's final observation (`final_values [T, E]`, read where `truncated [T, E]`)."""
    following = jnp.concatenate([values[1:], last_values[None]], axis=0)
    return jnp.where(truncated.astype(bool), final_values, following)


@dataclass(frozen=True)
class OnPolicyParts:
    """The functions an on-policy algorithm adds (see the module's on-policy contract).

    Attributes:
        normalize_observation: `(state, obs [B, ds], mask [B] | None) -> (state, obs_n
            [B, ds])`: push the rows of raw `obs` where `mask` into the state's running
            statistics, then normalise every row with the updated statistics.
        acting_noise: `(state, key, B) -> noise`, the random draws (a pytree of float32
            `[B, ...]`) `rollout_act` needs to act on B observations, from `key` only; B is
            static.
        rollout_act: `(state, obs_n [B, ds], noise) -> (env_action [B, da] in the box,
            RolloutExtras of [B, ...])`, deterministic given `noise`; the state unchanged.
        values: `(state, obs_n [B, ds]) -> (V_r [B], V_c [B])`, the bootstrap values of
            normalised observations; the state unchanged.
        update_rollout: `(state, Rollout of [T, E, ...], LoopInfo) -> (state, metrics)`,
            one update phase; scalar float32 metrics named `metric_names(config)`.
        rollout_size: `config -> T * E`, the env steps of one rollout per seed, all its E
            envs together (static; the loop's `--num-envs` sets E and must divide it).
        host_actor: optional `state -> HostActor` for one seed's state (no seed axis): the
            same acting as `normalize_observation` and `rollout_act`, in numpy on the host,
            for one rollout. When given, the collector acts through it, with no compiled
            call per env step (a small program's dispatch costs more than the simulator's
            step on a CPU); `None`: the compiled per-step programs act.
    """

    normalize_observation: Callable[[Any, jax.Array, jax.Array | None], tuple[Any, jax.Array]]
    acting_noise: Callable[[Any, jax.Array, int], Any]
    rollout_act: Callable[[Any, jax.Array, Any], tuple[jax.Array, RolloutExtras]]
    values: Callable[[Any, jax.Array], tuple[jax.Array, jax.Array]]
    update_rollout: Callable[[Any, Rollout, LoopInfo], tuple[Any, Metrics]]
    rollout_size: Callable[[Any], int]
    host_actor: Callable[[Any], HostActor] | None = None


class HostActor(Protocol):
    """One seed's acting during one rollout, on the host (`OnPolicyParts.host_actor`).

    Built from the seed's learner state at the start of a rollout; the learner does not
    change during it except for its observation statistics, which the actor keeps and
    `write_back` returns into the state at the rollout's end. Equal, up to float32
    rounding, to the compiled `normalize_observation` and `rollout_act`; deterministic.
    """

    def observe(
        self, obs: np.ndarray, final_obs: np.ndarray | None, final_mask: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Push the final observations `final_obs [E, ds]` (rows where `final_mask [E]`)
        and normalise them, then push `obs [E, ds]` and normalise it; returns `(obs_n,
        final_obs_n)`, float32 `[E, ds]` each (`final_obs_n` 0 without final observations)."""
        ...

    def act(self, obs_n: np.ndarray, noise: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`rollout_act` on normalised `obs_n [E, ds]` with the draws `noise` (the seed's
        slice of `acting_noise`'s pytree): `(env_action [E, da], raw_action [E, da],
        log_prob [E])`, float32."""
        ...

    def write_back(self, state: Any) -> Any:
        """`state` (the seed's, the one it was built from) with the statistics pushed."""
        ...


def no_observe(state: Any, info: LoopInfo) -> Any:
    """The default `observe`: the loop's information is not used."""
    del info
    return state


def policy_warmup(config: Any) -> Literal["policy", "uniform"]:
    """The default `warmup_acting`: the untrained policy acts during the warm-up."""
    del config
    return "policy"


def no_window(config: Any) -> int:
    """The default `episode_window`: the loop keeps no episode window."""
    del config
    return 0


def no_task_preset(preset: str, spec: Any) -> dict[str, Any]:
    """The default `task_preset`: no option depends on the task."""
    del preset, spec
    return {}


@dataclass(frozen=True)
class Algorithm:
    """One registered learner.

    Attributes:
        name: registry name (`--algo NAME`).
        description: one line for `--list-algos`.
        config_type: its frozen config dataclass; every field a hashable plain value.
        init: `(config, spec, key) -> state`.
        act: `(state, obs [B, ds], key, deterministic) -> actions [B, da]`, inside the box
            (raw observations; what evaluation and `experiments.evaluate` call).
        update: `(state, Batch of [B, ...]) -> (state, metrics)`; scalar metrics. None for
            an on-policy entry, which learns through `on_policy.update_rollout`.
        metric_names: `config -> names` of the metrics `update` returns.
        fixed: config values this entry sets and the command line does not offer (e.g.
            the variant of a family that shares one config type).
        task_fields: config fields the loop fills in from the task (e.g. the cost budget
            h); `resolve` does that.
        resolve: `(config, spec) -> config` with the task-dependent fields filled in.
        kind: `off-policy` learners train from a replay buffer in the host loop;
            `on-policy` ones (PPO-Lag) learn from rollouts of vector environments.
        on_policy: the rollout functions of an `on-policy` entry (required there, absent
            for an `off-policy` one).
        presets: named sets of option values (`--preset NAME`); the config's own defaults
            are the preset `defaults`.
        loop_presets: for a preset name, the loop (`TrainConfig`) values it sets too (batch
            size, U, warm-up steps), applied after the task's presets.
        task_preset: `(preset, spec) -> option values` that depend on the task (CAL's
            per-task overrides), applied over `presets`; a flag the user sets still wins.
            Keys are config fields, or loop fields prefixed `loop.`.
        observe: `(state, LoopInfo) -> state`, pure; called once per fused call, before its
            U updates (default: identity).
        warmup_acting: `config -> "policy" | "uniform"` (default: policy).
        episode_window: `config -> W`, the number of finished episodes the loop keeps for
            `LoopInfo` (default 0).
    """

    name: str
    description: str
    config_type: type
    init: Callable[[Any, ActionSpace, jax.Array], Any]
    act: Callable[[Any, jax.Array, jax.Array, bool], jax.Array]
    update: Callable[[Any, Batch], tuple[Any, Metrics]] | None
    metric_names: Callable[[Any], tuple[str, ...]]
    resolve: Callable[[Any, Any], Any]
    fixed: Mapping[str, Any] = field(default_factory=dict)
    task_fields: tuple[str, ...] = ()
    kind: Literal["off-policy", "on-policy"] = "off-policy"
    presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    loop_presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    task_preset: Callable[[str, Any], dict[str, Any]] = no_task_preset
    observe: Callable[[Any, LoopInfo], Any] = no_observe
    warmup_acting: Callable[[Any], Literal["policy", "uniform"]] = policy_warmup
    episode_window: Callable[[Any], int] = no_window
    on_policy: OnPolicyParts | None = None

    def __post_init__(self) -> None:
        # The loop picks its shape by `kind`; an entry whose parts do not match it would fail
        # deep inside a run, so say it at registration.
        if self.kind == "on-policy" and (self.on_policy is None or self.update is not None):
            raise ValueError(
                f"algorithm {self.name!r}: an on-policy entry needs on_policy=OnPolicyParts(...) "
                f"and update=None (it learns from rollouts, not replay batches)"
            )
        if self.kind == "off-policy" and (self.on_policy is not None or self.update is None):
            raise ValueError(
                f"algorithm {self.name!r}: an off-policy entry needs an update function and "
                f"no on_policy parts"
            )

    def default_config(self, **overrides: Any) -> Any:
        """The entry's config with its fixed values and `overrides` applied."""
        return self.config_type(**{**dict(self.fixed), **overrides})

    def preset_names(self) -> list[str]:
        """`defaults` (the config's own defaults) and the entry's named presets."""
        return ["defaults", *self.presets]

    def preset_config(self, name: str) -> Any:
        """The entry's config with the values of preset `name`."""
        if name == "defaults":
            return self.default_config()
        if name not in self.presets:
            raise ValueError(
                f"unknown preset {name!r} for {self.name}; choose one of "
                f"{', '.join(self.preset_names())}"
            )
        return self.default_config(**self.presets[name])

    def option_names(self) -> tuple[str, ...]:
        """Config fields a user may set (the command-line flags of this algorithm)."""
        hidden = set(self.fixed) | set(self.task_fields)
        return tuple(f.name for f in dataclasses.fields(self.config_type) if f.name not in hidden)


_REGISTRY: dict[str, Algorithm] = {}


class UnknownAlgorithmError(ValueError):
    """An algorithm name that is not registered; the message suggests the closest ones."""


def register(algorithm: Algorithm) -> Algorithm:
    """Add an algorithm under its name (an existing name is an error)."""
    if algorithm.name in _REGISTRY:
        raise ValueError(f"algorithm {algorithm.name!r} is already registered")
    _REGISTRY[algorithm.name] = algorithm
    return algorithm


def unregister(name: str) -> None:
    """Remove an algorithm (for tests that register throw-away learners)."""
    _REGISTRY.pop(name, None)


def list_algorithms() -> list[str]:
    """Every registered name, in registration order."""
    return list(_REGISTRY)


def get_algorithm(name: str) -> Algorithm:
    """The algorithm registered as `name`; `UnknownAlgorithmError` names the closest."""
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.4)
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        raise UnknownAlgorithmError(
            f"unknown algorithm {name!r}; {hint}--list-algos prints all of them "
            f"({', '.join(_REGISTRY)})"
        ) from None


def task_budget(spec: Any, cost_gamma: float) -> float:
    """h for a cost critic discounted by `cost_gamma`: the task's budget, re-derived from
    its episodic limit when the discount differs from the one the registry used."""
    from algd_jax.envs.spec import episodic_limit_to_budget

    if spec.episode_cost_limit is None or cost_gamma == spec.cost_gamma:
        return float(spec.cost_budget)
    return episodic_limit_to_budget(spec.episode_cost_limit, spec.max_episode_steps, cost_gamma)
