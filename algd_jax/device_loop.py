"""Training entirely on the device, for tasks written in JAX (``ToyTwoModeBandit``,
``DiffDriveCircle``), through the same algorithm interface as the host loop.

One per-seed program, written once, drives a registered algorithm's `act` and `update` (U
updates fused in one `lax.scan`, `algd_jax.programs.fused`) on E copies of a JAX-native
task, with a ring-buffer replay that lives on the device::

    reset E envs; warm-up: `warmup_iterations` x E steps acted uniformly on the action box
    (or by the untrained policy) fill the replay
    for each iteration (lax.scan):
        a ~ pi(. | obs)                E stochastic actions, one per env
        env step (vmap over the E envs), replay <- (obs, a, r, c, obs', terminated,
        truncated); envs that ended are reset (auto-reset, time limit T of the task)
        U fused updates on [U, B] rows drawn uniformly from the replay
        a measurement of the iteration (task-specific, see below)

and the whole program is mapped over seeds (`programs.over_seeds`: `vmap` or `map`), so S
seeds are one compiled program (purejaxrl's style). Two drivers use it:

* `train_bandit`: the two-mode bandit (`envs.toy`), every iteration measuring the policy
  on fresh draws (E_pi[r], E_pi[c], lane masses), the whole run one compiled call. Its
  numbers are those of the bandit learner this module replaced (same keys, same draws).
* `train_on_device`: any JAX-native task, epoch by epoch: each epoch (`epoch_steps` env
  steps per seed) is one compiled call ending with `eval_episodes` deterministic episodes
  run on the device; between calls the host writes one `progress.csv` / TensorBoard row
  per seed (the host loop's columns), saves the agent as an orbax checkpoint (`last`, and
  `best` for the best feasible evaluation) and `config.json`, so `experiments.evaluate`,
  `experiments.plot` and `experiments.landscape` read these runs like host-loop runs. The
  on-device loop does not resume: its checkpoints hold the agent only.

How the two loops sample (so their numbers are not bitwise equal): the host loop's replay
draws each seed's `[U, B]` row indices with numpy from SeedSequence(seed, stream, env
step) and acts with keys folded from the seed's acting stream; this loop draws indices with
`jax.random.randint` from the seed's loop key (uniform with replacement over the filled
rows, like the host's), acts with keys split from the same key, and resets the envs from
keys folded from it. By default it warms up with uniform actions on the box (the host
loop: the untrained diffusion policy for `--initial-steps`); `warmup="policy"` acts with
the policy instead.

Every random draw comes from `jax.random.key(seed)` of its seed: the learner's own key
(`init`, hence initialisation and update noise) and, for the loop, the same key folded with
`LOOP_STREAM` (the evaluation episodes: folded with `EVAL_STREAM`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from algd_jax.algorithms import Algorithm, get_algorithm
from algd_jax.algorithms.algd import ALGDConfig
from algd_jax.compile_options import tuned_jit
from algd_jax.envs import TaskSpec, get_task
from algd_jax.envs.toy import DEFAULT_BANDIT, TwoModeBandit
from algd_jax.programs import SeedAxis, fused, over_seeds, stack, unstack
from algd_jax.types import Batch

#: Stream id folded into a seed's key for the loop's own draws, so that they never coincide
#: with the agent's key (`jax.random.key(seed)`, split by the algorithm's `init`).
LOOP_STREAM = 0x70C
#: Stream id of the evaluation episodes' reset keys (`train_on_device`).
EVAL_STREAM = 0x70E
#: Tags folded into a step's acting key for the resets of the envs that ended at that step,
#: and into the loop key for the first resets.
_RESET_TAG, _FIRST_RESET_TAG = 0x5E7, 0x5E8

#: Per-iteration traces returned by `train_bandit`, each `[S, T]` (seeds x iterations).
TRACE_KEYS = (
    "return",  # E_pi[r(a)] of the stochastic policy after the iteration's updates
    "cost",  # E_pi[c(a)], expected per-step cost (cost units)
    "violation",  # max(0, E_pi[c] - h), the paper's Figure 2 violation
    "fast_mass",  # P_pi(a > t): mass in the fast lane
    "safe_mass",  # P_pi(|a - a_L| < s / 2): mass near the safe-lane peak
    "edge_mass",  # P_pi(|a| > 0.95): mass at the tanh-saturated box edges
    "eval_action",  # the deterministic sampler's action (x = 0, no noise): the loop's eval
    "eval_return",  # r(eval_action)
    "eval_cost",  # c(eval_action)
    "multiplier",  # lambda after the iteration's updates
    "replay_cost",  # mean Qc risk of the replay actions the multiplier step saw
    "critic_loss",  # double-Q TD loss (mean over the iteration's U updates)
    "cost_critic_loss",  # cost-ensemble TD loss
    "score_target_norm",  # mean |phi*| of the Monte-Carlo score target
)


# ----------------------------------------------------------------------------- tasks


class JaxTask(NamedTuple):
    """A task written in JAX: pure functions of one (unbatched) env.

    `reset(key) -> (env_state, obs [ds])`;
    `step(env_state, action [da]) -> (env_state, obs [ds], reward [], cost [], terminated [])`
    with float32 observations, reward and cost, a bool `terminated`. The time limit is the
    task spec's `max_episode_steps`, applied by the loop (truncation).
    """

    name: str
    reset: Callable[[jax.Array], tuple[Any, jax.Array]]
    step: Callable[[Any, jax.Array], tuple[Any, jax.Array, jax.Array, jax.Array, jax.Array]]


def bandit_task(bandit: TwoModeBandit = DEFAULT_BANDIT) -> JaxTask:
    """The two-mode bandit: one constant state `[0.]`, every step terminates."""

    def reset(key: jax.Array) -> tuple[Any, jax.Array]:
        return (), jnp.zeros((1,), jnp.float32)

    def step(state: Any, action: jax.Array) -> tuple[Any, ...]:
        a = action[None]
        reward, cost = bandit.reward(a, jnp)[0], bandit.cost(a, jnp)[0]
        return state, jnp.zeros((1,), jnp.float32), reward, cost, jnp.ones((), bool)

    return JaxTask("ToyTwoModeBandit", reset, step)


def diffdrive_task() -> JaxTask:
    """`DiffDriveCircle` (`algd_jax.envs.diffdrive`)."""
    from algd_jax.envs import diffdrive

    def step(state: Any, action: jax.Array) -> tuple[Any, ...]:
        out = diffdrive.step(state, action)
        return out.state, out.obs, out.reward, out.cost, out.terminated

    return JaxTask(diffdrive.TASK_NAME, diffdrive.reset, step)


#: Registered tasks that have a JAX implementation, by name.
JAX_TASKS: dict[str, Callable[[], JaxTask]] = {
    "ToyTwoModeBandit": bandit_task,
    "DiffDriveCircle": diffdrive_task,
}


def jax_task(name: str) -> JaxTask:
    """The JAX implementation of a registered task; `ValueError` for host-only tasks."""
    if name not in JAX_TASKS:
        raise ValueError(
            f"{name} has no JAX implementation; the on-device loop runs "
            f"{', '.join(JAX_TASKS)} (train other tasks with python -m experiments.run)"
        )
    return JAX_TASKS[name]()


# ----------------------------------------------------------------------------- the loop


@dataclass(frozen=True)
class Schedule:
    """What one iteration of the on-device loop does (counts per seed)."""

    num_envs: int
    """E: envs stepped in parallel; each iteration adds E transitions."""
    warmup_iterations: int
    """Iterations of warm-up acting (E transitions each) before the first update."""
    updates_per_iteration: int
    """U: fused updates after each iteration's env step."""
    batch_size: int
    """B: replay rows per update."""
    replay_size: int
    """Replay capacity in transitions (a ring: the oldest are overwritten)."""
    warmup: Literal["uniform", "policy"] = "uniform"
    """Warm-up actions: uniform on the action box, or the untrained stochastic policy."""
    truncation_ends_bootstrap: bool = False
    """Also zero the masks on time-limit truncation (as the host loop's option)."""
    cost_mask: Literal["same", "none"] = "same"
    """Cost TD mask: the reward mask, or 1 everywhere."""


class Ring(NamedTuple):
    """The device replay `[cap, ...]` float32 (`terminated`, `truncated`: 0 or 1)."""

    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    cost: jax.Array
    next_obs: jax.Array
    terminated: jax.Array
    truncated: jax.Array


class Carry(NamedTuple):
    """One seed's loop state between iterations."""

    agent: Any
    ring: Ring
    count: jax.Array  # [] int32, transitions written so far
    env: Any  # the E envs' states (leading axis E)
    obs: jax.Array  # [E, ds]
    episode: jax.Array  # [E, 4] running (return, cost, discounted cost, length)
    discount: jax.Array  # [E] gamma_c ** length
    ended: jax.Array  # [4] totals of the episodes ended since `reset_ended`
    ended_count: jax.Array  # [] int32, their number


class Loop:
    """The per-seed functions of the on-device loop for one algorithm, task and schedule.

    `measure(agent, key, metrics) -> dict` of scalars is called after each iteration's
    updates (metrics: the U updates' `[U]` metrics); its dict is that iteration's trace.
    """

    def __init__(
        self,
        algorithm: Algorithm,
        task: JaxTask,
        spec: TaskSpec,
        schedule: Schedule,
        measure: Callable[[Any, jax.Array, dict[str, jax.Array]], dict[str, jax.Array]],
    ) -> None:
        self.algorithm, self.task, self.spec, self.schedule = algorithm, task, spec, schedule
        self.measure = measure
        self.low = jnp.asarray(spec.action_low, jnp.float32)
        self.high = jnp.asarray(spec.action_high, jnp.float32)
        self.many = fused(algorithm.update)

    # -- env steps and replay -----------------------------------------------------------

    def _resets(self, key: jax.Array) -> tuple[Any, jax.Array]:
        return jax.vmap(self.task.reset)(jax.random.split(key, self.schedule.num_envs))

    def _env_step(self, carry: Carry, actions: jax.Array, reset_key: jax.Array) -> Carry:
        """Step the E envs with `actions [E, da]`, store the transitions, auto-reset."""
        cap, num = self.schedule.replay_size, self.schedule.num_envs
        env, next_obs, reward, cost, terminated = jax.vmap(self.task.step)(carry.env, actions)
        length = carry.episode[:, 3] + 1
        truncated = (length >= self.spec.max_episode_steps) & ~terminated
        index = (carry.count + jnp.arange(num)) % cap
        f32 = lambda x: x.astype(jnp.float32)  # noqa: E731
        ring = Ring(
            obs=carry.ring.obs.at[index].set(carry.obs),
            action=carry.ring.action.at[index].set(actions),
            reward=carry.ring.reward.at[index].set(reward),
            cost=carry.ring.cost.at[index].set(cost),
            next_obs=carry.ring.next_obs.at[index].set(next_obs),
            terminated=carry.ring.terminated.at[index].set(f32(terminated)),
            truncated=carry.ring.truncated.at[index].set(f32(truncated)),
        )
        step_totals = jnp.stack(
            [reward, cost, carry.discount * cost, jnp.ones_like(reward)], axis=-1
        )
        episode = carry.episode + step_totals
        done = terminated | truncated
        fresh_env, fresh_obs = self._resets(reset_key)
        pick = lambda new, old: jnp.where(  # noqa: E731
            done.reshape(done.shape + (1,) * (new.ndim - 1)), new, old
        )
        return Carry(
            agent=carry.agent,
            ring=ring,
            count=carry.count + num,
            env=jax.tree.map(pick, fresh_env, env),
            obs=pick(fresh_obs, next_obs),
            episode=jnp.where(done[:, None], 0.0, episode),
            discount=jnp.where(done, 1.0, carry.discount * self.spec.cost_gamma),
            ended=carry.ended + jnp.sum(jnp.where(done[:, None], episode, 0.0), axis=0),
            ended_count=carry.ended_count + jnp.sum(done, dtype=jnp.int32),
        )

    def _batch(self, ring: Ring, index: jax.Array) -> Batch:
        ends = ring.terminated[index]
        if self.schedule.truncation_ends_bootstrap:
            ends = jnp.maximum(ends, ring.truncated[index])
        mask_r = 1.0 - ends
        mask_c = mask_r if self.schedule.cost_mask == "same" else jnp.ones_like(mask_r)
        return Batch(
            obs=ring.obs[index],
            action=ring.action[index],
            reward=ring.reward[index],
            cost=ring.cost[index],
            next_obs=ring.next_obs[index],
            mask_r=mask_r,
            mask_c=mask_c,
        )

    # -- the program --------------------------------------------------------------------

    def start(self, agent: Any, key: jax.Array) -> tuple[Carry, jax.Array]:
        """Empty replay, first resets, warm-up; returns the carry and the key left for the
        iterations."""
        sched, ds, da = self.schedule, self.spec.obs_dim, self.spec.act_dim
        cap = sched.replay_size
        zeros = lambda *shape: jnp.zeros((cap, *shape), jnp.float32)  # noqa: E731
        ring = Ring(zeros(ds), zeros(da), zeros(), zeros(), zeros(ds), zeros(), zeros())
        env, obs = self._resets(jax.random.fold_in(key, _FIRST_RESET_TAG))
        num = sched.num_envs
        carry = Carry(
            agent=agent,
            ring=ring,
            count=jnp.zeros((), jnp.int32),
            env=env,
            obs=obs,
            episode=jnp.zeros((num, 4), jnp.float32),
            discount=jnp.ones((num,), jnp.float32),
            ended=jnp.zeros((4,), jnp.float32),
            ended_count=jnp.zeros((), jnp.int32),
        )

        def warm(carry: Carry, step_key: jax.Array) -> tuple[Carry, None]:
            if sched.warmup == "policy":
                actions = self.algorithm.act(carry.agent, carry.obs, step_key, False)
            else:
                actions = jax.random.uniform(step_key, (num, da), jnp.float32, self.low, self.high)
            reset_key = jax.random.fold_in(step_key, _RESET_TAG)
            return self._env_step(carry, actions, reset_key), None

        key, warm_key = jax.random.split(key)
        carry, _ = jax.lax.scan(warm, carry, jax.random.split(warm_key, sched.warmup_iterations))
        return carry, key

    def iterate(self, carry: Carry, step_key: jax.Array) -> tuple[Carry, dict[str, jax.Array]]:
        """One iteration: act, step, store, U updates, measure."""
        sched = self.schedule
        k_act, k_idx, k_eval = jax.random.split(step_key, 3)
        actions = self.algorithm.act(carry.agent, carry.obs, k_act, False)
        carry = self._env_step(carry, actions, jax.random.fold_in(k_act, _RESET_TAG))
        shape = (sched.updates_per_iteration, sched.batch_size)
        index = jax.random.randint(k_idx, shape, 0, jnp.minimum(carry.count, sched.replay_size))
        agent, metrics = self.many(carry.agent, self._batch(carry.ring, index))
        return carry._replace(agent=agent), self.measure(agent, k_eval, metrics)

    def evaluate(self, agent: Any, key: jax.Array, episodes: int) -> dict[str, jax.Array]:
        """`episodes` deterministic episodes in parallel (reset keys split from `key`), run
        to termination or the time limit; mean return, cost, discounted cost, length."""
        env, obs = jax.vmap(self.task.reset)(jax.random.split(key, episodes))
        gamma_c = self.spec.cost_gamma

        def body(c: tuple[Any, ...], _: None) -> tuple[tuple[Any, ...], None]:
            env, obs, alive, totals, discount = c
            actions = self.algorithm.act(agent, obs, key, True)
            env, obs, reward, cost, terminated = jax.vmap(self.task.step)(env, actions)
            step = jnp.stack([reward, cost, discount * cost, jnp.ones_like(reward)], -1)
            totals = totals + jnp.where(alive[:, None], step, 0.0)
            return (env, obs, alive & ~terminated, totals, discount * gamma_c), None

        start = (
            env,
            obs,
            jnp.ones((episodes,), bool),
            jnp.zeros((episodes, 4), jnp.float32),
            jnp.ones((episodes,), jnp.float32),
        )
        (_, _, _, totals, _), _ = jax.lax.scan(
            body, start, None, length=self.spec.max_episode_steps
        )
        means = jnp.mean(totals, axis=0)
        per_episode = {"return": means[0], "cost": means[1], "discounted_cost": means[2]}
        return {**per_episode, "length": means[3]}


def metric_means(metrics: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """The default measurement: each update metric's mean over the iteration's U updates."""
    return {f"train/{k}": jnp.mean(v) for k, v in metrics.items()}


# ----------------------------------------------------------------------------- the bandit


@dataclass(frozen=True)
class BanditRun:
    """Schedule of one bandit training run (all counts per seed)."""

    iterations: int = 400
    """T: acting iterations after the warm-up (each: `pulls` draws, then U updates)."""
    warmup_iterations: int = 16
    """Warm-up iterations of uniform actions on the box before the first update."""
    pulls: int = 16
    """Bandit draws per iteration (like parallel envs)."""
    updates_per_iteration: int = 4
    """U: agent updates per iteration (one fused `lax.scan`)."""
    batch_size: int = 64
    """B: replay rows per update."""
    replay_size: int = 16384
    """Replay capacity in draws. By default it holds the whole run, like the reference's
    1e6 buffer over its runs: a ring that forgets the early exploration lets the critics
    drift wherever the concentrated policy no longer acts. The price is the reference's
    own: the multiplier step sees the replay's average cost, which lags the policy's."""
    eval_samples: int = 128
    """Fresh policy draws per iteration to measure E_pi[r], E_pi[c] (measurement only)."""

    def schedule(self) -> Schedule:
        """The loop's schedule: `pulls` envs, uniform warm-up; one-step episodes, so every
        transition terminates and the critics regress Q = r(a), Qc = c(a)."""
        return Schedule(
            num_envs=self.pulls,
            warmup_iterations=self.warmup_iterations,
            updates_per_iteration=self.updates_per_iteration,
            batch_size=self.batch_size,
            replay_size=self.replay_size,
        )


def bandit_agent_config(
    agent: str = "algd", bandit: TwoModeBandit = DEFAULT_BANDIT, **overrides: Any
) -> ALGDConfig:
    """The agent used on the bandit: reference defaults (beta = 1, rho = 1, K = 5, N = 4,
    Adam lr 3e-4 for actor and multiplier, hybrid actor loss, kappa = 1) except

    * the paper's noise range sigma in [1e-4, 0.1] instead of the reference's [0.01, 1]:
      with sigma_max = 1 the first reverse step (dsig2 = 0.9) times score targets of
      magnitude ~30 throws the latent into tanh saturation and the Monte-Carlo proposals
      N(a_tau, 1) leave the box, where the critics extrapolate; every seed then ends at the
      edge a = +1 (cost 4, reward 0);
    * small networks (the task is 1-D): critics and score net 64 wide, M = 2 cost critics;
    * critic learning rates 1e-3, so that the short run is not critic-limited.

    `cost_budget` is the bandit's h; `overrides` replace any field.

    Why the bandit warms up with uniform actions: the reference acts with the untrained
    diffusion policy for its initial steps; with sigma_max = 0.1 that policy only covers
    |a| < 0.3, and critics extrapolate arbitrarily over the rest of the box.
    """
    values: dict[str, Any] = dict(
        agent=agent,
        cost_budget=bandit.budget,
        sigma_min=1e-4,
        sigma_max=0.1,
        critic_hidden=64,
        score_hidden=64,
        ensemble_size=2,
        critic_lr=1e-3,
        cost_critic_lr=1e-3,
    )
    values.update(overrides)
    return ALGDConfig(**values).validate()


def _act(algorithm: Algorithm, state: Any, key: jax.Array, count: int) -> jax.Array:
    """`count` stochastic actions `[count, 1]` for the bandit's single state s = [0]."""
    return algorithm.act(state, jnp.zeros((count, 1), jnp.float32), key, False)


def _measure(
    algorithm: Algorithm, state: Any, key: jax.Array, samples: int, bandit: TwoModeBandit
) -> dict[str, jax.Array]:
    """E_pi[r], E_pi[c] and lane masses of the policy from `samples` fresh draws (scalars)."""
    actions = _act(algorithm, state, key, samples)
    a = actions[:, 0]
    # the evaluation policy of the training loop: the deterministic sampler
    a_eval = algorithm.act(state, jnp.zeros((1, 1), jnp.float32), key, True)
    return {
        "eval_action": a_eval[0, 0],
        "eval_return": bandit.reward(a_eval, jnp)[0],
        "eval_cost": bandit.cost(a_eval, jnp)[0],
        "return": jnp.mean(bandit.reward(actions, jnp)),
        "cost": jnp.mean(bandit.cost(actions, jnp)),
        "fast_mass": jnp.mean(a > bandit.threshold),
        "safe_mass": jnp.mean(jnp.abs(a - bandit.safe_mode) < 0.5 * bandit.half_width),
        "edge_mass": jnp.mean(jnp.abs(a) > 0.95),
    }


def _bandit_loop(algorithm: Algorithm, run: BanditRun, bandit: TwoModeBandit) -> Loop:
    def measure(state: Any, key: jax.Array, metrics: dict[str, jax.Array]) -> dict[str, Any]:
        trace = _measure(algorithm, state, key, run.eval_samples, bandit)
        trace["violation"] = jnp.maximum(trace["cost"] - bandit.budget, 0.0)
        # the multiplier after the last of the U updates; a learner that logs its
        # quantities under other names (RCRL's state-wise multiplier and feasibility
        # value) is traced by those, one without a score target by NaN
        nan = jnp.full_like(metrics["critic_loss"], jnp.nan)
        multiplier = metrics.get("multiplier", metrics.get("multiplier_state_mean", nan))
        trace["multiplier"] = multiplier[-1]
        trace["replay_cost"] = jnp.mean(
            metrics.get("qc_risk", metrics.get("feasibility_value", nan))
        )
        cost_loss = metrics.get("cost_critic_loss", metrics.get("feasibility_critic_loss", nan))
        trace["cost_critic_loss"] = jnp.mean(cost_loss)
        for name in ("critic_loss", "score_target_norm"):
            trace[name] = jnp.mean(metrics.get(name, nan))
        return trace

    spec = dataclasses.replace(get_task("ToyTwoModeBandit"), cost_budget=bandit.budget)
    return Loop(algorithm, bandit_task(bandit), spec, run.schedule(), measure)


def _run_one(
    algorithm: Algorithm, state: Any, key: jax.Array, run: BanditRun, bandit: TwoModeBandit
) -> tuple[Any, dict[str, jax.Array]]:
    """One seed's whole bandit run: warm-up, then T iterations. Traces are `[T]` each."""
    loop = _bandit_loop(algorithm, run, bandit)
    carry, key = loop.start(state, key)
    carry, traces = jax.lax.scan(loop.iterate, carry, jax.random.split(key, run.iterations))
    return carry.agent, traces


def train_bandit(
    config: Any,
    seeds: list[int],
    run: BanditRun = BanditRun(),
    bandit: TwoModeBandit = DEFAULT_BANDIT,
    algo: str | None = None,
    seed_axis: SeedAxis = "vmap",
) -> tuple[Any, dict[str, np.ndarray]]:
    """Train one learner per seed on the bandit, all seeds in one compiled program.

    `algo` names the registered algorithm (default: the one `config.agent` names); it must
    report the metrics `multiplier`, `qc_risk`, `critic_loss`, `cost_critic_loss` and
    `score_target_norm`. Returns the stacked final states (leading axis S = len(seeds)) and
    the traces of `TRACE_KEYS`, each a numpy array `[S, T]` (seed, iteration).
    """
    if run.warmup_iterations * run.pulls < run.batch_size:
        raise ValueError("the warm-up must put at least one batch of draws in the replay")
    algorithm = get_algorithm(algo if algo is not None else config.agent)
    spec = get_task("ToyTwoModeBandit")
    states = stack([algorithm.init(config, spec, jax.random.key(s)) for s in seeds])
    keys = jnp.stack([jax.random.fold_in(jax.random.key(s), LOOP_STREAM) for s in seeds])
    one = lambda st, k: _run_one(algorithm, st, k, run, bandit)  # noqa: E731
    states, traces = tuned_jit(over_seeds(one, seed_axis, 2))(states, keys)
    return states, {k: np.asarray(v) for k, v in traces.items()}


def policy_stats(
    states: Any,
    seeds: list[int],
    samples: int = 8192,
    bandit: TwoModeBandit = DEFAULT_BANDIT,
    algo: str = "algd",
) -> dict[str, np.ndarray]:
    """E_pi[r], E_pi[c] and lane masses of each seed's stochastic policy, `[S]` each, from
    `samples` draws (key: `jax.random.key(seed)` folded with `LOOP_STREAM + 1`)."""
    algorithm = get_algorithm(algo)
    keys = jnp.stack([jax.random.fold_in(jax.random.key(s), LOOP_STREAM + 1) for s in seeds])
    measure = lambda st, k: _measure(algorithm, st, k, samples, bandit)  # noqa: E731
    stats = tuned_jit(jax.vmap(measure))(states, keys)
    return {k: np.asarray(v) for k, v in stats.items()}


# ----------------------------------------------------------------------------- any task


@dataclass(frozen=True)
class DeviceRun:
    """Schedule of an on-device run of a JAX-native task (counts per seed)."""

    total_steps: int = 21_000
    """Env steps per seed: the warm-up, then whole epochs."""
    epoch_steps: int = 1000
    """Env steps per epoch after the warm-up: one compiled call, one evaluation, one
    progress.csv row (its `env_steps` counts the warm-up too)."""
    warmup_steps: int = 1000
    """Env steps acted before the first update (`warmup`)."""
    num_envs: int = 1
    """E: envs per seed stepped together (each iteration adds E env steps)."""
    updates_per_iteration: int = 10
    """U: updates per iteration (with E = 1: per env step, as the host loop's U)."""
    batch_size: int = 256
    replay_size: int | None = None
    """Replay capacity; None: the whole run (`total_steps`)."""
    eval_episodes: int = 4
    """Deterministic evaluation episodes per epoch (run in parallel on the device)."""
    warmup: Literal["uniform", "policy"] = "uniform"
    truncation_ends_bootstrap: bool = False
    cost_mask: Literal["same", "none"] | None = None
    """Cost TD mask; None: the task's preset."""
    keep_checkpoints: int | None = 3
    """Latest epoch checkpoints kept per seed (None: every epoch's, e.g. to draw landscapes
    over training)."""

    def validate(self) -> DeviceRun:
        for name in ("total_steps", "epoch_steps", "num_envs", "updates_per_iteration"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be a positive integer")
        for name in ("total_steps", "epoch_steps", "warmup_steps"):
            if getattr(self, name) % self.num_envs:
                raise ValueError(f"--{name.replace('_', '-')} must be a multiple of --num-envs")
        if (self.total_steps - self.warmup_steps) % self.epoch_steps or (
            self.total_steps <= self.warmup_steps
        ):
            raise ValueError(
                "--total-steps minus --warmup-steps must be a positive multiple of "
                "--epoch-steps (epochs follow the warm-up)"
            )
        if self.warmup_steps < 1 or self.eval_episodes < 1 or self.batch_size < 1:
            raise ValueError("--warmup-steps, --eval-episodes and --batch-size must be >= 1")
        return self


class DeviceResult(NamedTuple):
    """What `train_on_device` returns: final stacked agents `[S]`, per-seed rows."""

    agents: Any
    rows: list[list[dict[str, float]]]  # [S][epochs] progress rows
    run_dirs: list[Path] | None
    env_steps_per_s: float  # all seeds together, compiled epochs only
    compile_s: float


def _episode_row(totals: np.ndarray, count: int) -> dict[str, float]:
    names = ("return", "cost", "discounted_cost", "length")
    if count == 0:
        return {f"train/episode_{n}": math.nan for n in names}
    return {f"train/episode_{n}": float(v) / count for n, v in zip(names, totals, strict=True)}


def train_on_device(
    task_name: str,
    hparams: Any,
    seeds: list[int],
    run: DeviceRun = DeviceRun(),
    algo: str | None = None,
    seed_axis: SeedAxis = "vmap",
    run_dir: Path | None = None,
    cost_limit: float | None = None,
    log: Callable[[str], None] | None = None,
) -> DeviceResult:
    """Train one learner per seed on a JAX-native task with the on-device loop.

    `hparams`: the algorithm's config (its task fields, e.g. h, are filled in from the
    task). Each epoch is one compiled call over all seeds; with `run_dir` each seed writes
    `config.json`, `progress.csv`, `tb/` and agent checkpoints to `run_dir` (one seed) or
    `run_dir/seed<k>/` (several), like the host loop.
    """
    from algd_jax.judging import cost_limit_of, feasible
    from algd_jax.training import EPISODE_COLUMNS, TIMING_COLUMNS

    run = run.validate()
    algorithm = get_algorithm(algo if algo is not None else hparams.agent)
    spec = get_task(task_name, cost_limit)
    task = jax_task(task_name)
    hparams = algorithm.resolve(hparams, spec)
    schedule = Schedule(
        num_envs=run.num_envs,
        warmup_iterations=run.warmup_steps // run.num_envs,
        updates_per_iteration=run.updates_per_iteration,
        batch_size=run.batch_size,
        replay_size=run.replay_size or run.total_steps,
        warmup=run.warmup,
        truncation_ends_bootstrap=run.truncation_ends_bootstrap,
        cost_mask=run.cost_mask or spec.cost_mask,
    )
    loop = Loop(algorithm, task, spec, schedule, lambda a, k, m: metric_means(m))
    metric_names = tuple(sorted(algorithm.metric_names(hparams)))
    columns = [
        "epoch",
        "env_steps",
        "updates",
        "episodes",
        *EPISODE_COLUMNS,
        *(f"train/{k}" for k in metric_names),
        *TIMING_COLUMNS,
    ]
    writer = _RunWriter(run_dir, task_name, algorithm.name, seeds, hparams, spec, run, columns)

    def start(agent: Any, key: jax.Array) -> tuple[Carry, jax.Array]:
        return loop.start(agent, key)

    def epoch(carry: Carry, keys: jax.Array, eval_key: jax.Array) -> tuple[Carry, Any]:
        zero = (jnp.zeros_like(carry.ended), jnp.zeros_like(carry.ended_count))
        carry = carry._replace(ended=zero[0], ended_count=zero[1])
        carry, traces = jax.lax.scan(loop.iterate, carry, keys)
        evaluation = loop.evaluate(carry.agent, eval_key, run.eval_episodes)
        ended = {"totals": carry.ended, "count": carry.ended_count}
        return carry, (jax.tree.map(jnp.mean, traces), evaluation, ended)

    agents = stack([algorithm.init(hparams, spec, jax.random.key(s)) for s in seeds])
    loop_keys = jnp.stack([jax.random.fold_in(jax.random.key(s), LOOP_STREAM) for s in seeds])
    eval_root = [jax.random.fold_in(jax.random.key(s), EVAL_STREAM) for s in seeds]
    began = time.perf_counter()
    carry, keys = tuned_jit(over_seeds(start, seed_axis, 2))(agents, loop_keys)
    epoch_program = tuned_jit(over_seeds(epoch, seed_axis, 3), donate_argnums=0)

    # every epoch call has the same shapes (one compiled program): `per_epoch` iterations
    num, epochs = run.num_envs, (run.total_steps - run.warmup_steps) // run.epoch_steps
    per_epoch = run.epoch_steps // num
    all_keys = jax.vmap(lambda k: jax.random.split(k, epochs * per_epoch))(keys)  # [S, I]
    all_keys = all_keys.reshape(len(seeds), epochs, per_epoch)
    rows: list[list[dict[str, float]]] = [[] for _ in seeds]
    best = [-math.inf] * len(seeds)
    measured_steps, measured_time, compile_s = 0, 0.0, 0.0
    for n in range(epochs):
        env_steps = run.warmup_steps + (n + 1) * run.epoch_steps
        eval_keys = jnp.stack([jax.random.fold_in(k, n) for k in eval_root])
        tick = time.perf_counter()
        carry, outputs = epoch_program(carry, all_keys[:, n], eval_keys)
        means, evaluation, ended = jax.device_get(outputs)
        took = time.perf_counter() - tick
        if n == 0:
            compile_s = time.perf_counter() - began  # the first call compiles
        else:
            measured_steps += run.epoch_steps * len(seeds)
            measured_time += took
        bad = [k for k, v in means.items() if not np.all(np.isfinite(v))]
        if bad:
            writer.close()
            raise FloatingPointError(f"non-finite {bad[0]} in epoch {n + 1}; training stopped")
        for k in range(len(seeds)):
            summary = {key: float(evaluation[key][k]) for key in evaluation}
            is_feasible = feasible(spec, summary)
            count = int(ended["count"][k])
            row: dict[str, float] = {
                "epoch": n + 1,
                "env_steps": env_steps,
                "updates": (n + 1) * per_epoch * run.updates_per_iteration,
                "episodes": count,
                **_episode_row(np.asarray(ended["totals"][k]), count),
                "eval/return": summary["return"],
                "eval/cost": summary["cost"],
                "eval/discounted_cost": summary["discounted_cost"],
                "eval/length": summary["length"],
                "eval/feasible": float(is_feasible),
                **{key: float(v[k]) for key, v in means.items()},
                "time/env_steps_per_s": run.epoch_steps / took,
                "time/updates_per_s": per_epoch * run.updates_per_iteration / took,
                "time/wall_s": time.perf_counter() - began,
            }
            rows[k].append(row)
            better = is_feasible and summary["return"] > best[k]
            if better:
                best[k] = summary["return"]
            writer.epoch(k, row, carry.agent, env_steps, better)
        if log is not None:
            top = rows[0][-1]
            log(
                f"epoch {n + 1:>3}  steps {env_steps:>7}  eval return {top['eval/return']:8.2f}"
                f"  cost {top['eval/cost']:6.2f} (limit {cost_limit_of(spec):g})  lambda "
                f"{top.get('train/multiplier', math.nan):.3g}  "
                f"{top['time/env_steps_per_s'] * len(seeds):,.0f} env steps/s"
            )
    writer.close()
    speed = measured_steps / measured_time if measured_time > 0 else math.nan
    return DeviceResult(carry.agent, rows, writer.run_dirs, speed, compile_s)


class _RunWriter:
    """The files of an on-device run (or nothing, without a run directory)."""

    def __init__(
        self,
        root: Path | None,
        task: str,
        algo: str,
        seeds: list[int],
        hparams: Any,
        spec: TaskSpec,
        run: DeviceRun,
        columns: list[str],
    ) -> None:
        self.run_dirs: list[Path] | None = None
        if root is None:
            return
        from algd_jax.checkpointing import Checkpointer
        from algd_jax.logging_utils import ProgressLog
        from algd_jax.train_config import GROUP_FILE, TrainConfig, check_seeds
        from algd_jax.training import CHECKPOINT_FORMAT, write_config

        check_seeds(seeds)
        root = Path(root)
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            raise FileExistsError(f"--run-dir {root} already exists; choose a new directory")
        several = len(seeds) > 1
        self.run_dirs = [root / f"seed{s}" for s in seeds] if several else [root]
        options = {
            f.name: getattr(hparams, f.name)
            for f in dataclasses.fields(hparams)
            if f.name in get_algorithm(algo).option_names()
        }
        config = TrainConfig(
            task=task,
            algo=algo,
            seed=seeds[0],
            seeds=tuple(seeds) if several else None,
            total_steps=run.total_steps,
            initial_steps=run.warmup_steps,
            learning_starts=run.warmup_steps,
            updates_per_step=run.updates_per_iteration,
            batch_size=run.batch_size,
            replay_size=run.replay_size or run.total_steps,
            epoch_steps=run.epoch_steps,
            eval_episodes=run.eval_episodes,
            truncation_ends_bootstrap=run.truncation_ends_bootstrap,
            cost_mask=run.cost_mask or spec.cost_mask,
            run_dir=root,
            progress="off",
            hparams=get_algorithm(algo).default_config(**options),
        )
        root.mkdir(parents=True, exist_ok=True)
        device = {"loop": "device", **dataclasses.asdict(run)}
        if several:
            group = {"config": config.to_dict(), "seeds": list(seeds), "device_loop": device}
            (root / GROUP_FILE).write_text(json.dumps(group, indent=2) + "\n")
        self.logs, self.checkpointers = [], []
        for seed, path in zip(seeds, self.run_dirs, strict=True):
            path.mkdir(parents=True, exist_ok=True)
            one = dataclasses.replace(config, seed=seed, seeds=None, run_dir=path)
            write_config(path, one, hparams, spec)
            data = json.loads((path / "config.json").read_text())
            data["device_loop"] = device
            (path / "config.json").write_text(json.dumps(data, indent=2) + "\n")
            self.logs.append(ProgressLog(path, columns))
            self.checkpointers.append(Checkpointer(path, keep=run.keep_checkpoints))
        # what decides the numbers, for the record (these runs are not resumed)
        blob = json.dumps(
            {"config": config.to_dict(), "device_loop": device, "spec": dataclasses.asdict(spec)},
            sort_keys=True,
            default=str,
        )
        digest = hashlib.blake2b(blob.encode(), digest_size=16).hexdigest()
        self.meta = {"format": CHECKPOINT_FORMAT, "config": digest}

    def epoch(self, k: int, row: dict[str, float], agents: Any, step: int, best: bool) -> None:
        if self.run_dirs is None:
            return
        self.logs[k].write(row)
        agent = unstack(agents, k)
        meta = {**self.meta, "env_step": step, "loop": "device"}
        self.checkpointers[k].save(step, agent, meta)
        if best:
            self.checkpointers[k].save(step, agent, meta, which="best")

    def close(self) -> None:
        if self.run_dirs is None:
            return
        for log in self.logs:
            log.close()
        for checkpointer in self.checkpointers:
            checkpointer.close()
