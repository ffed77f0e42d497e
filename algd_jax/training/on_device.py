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
* `OnDeviceLoop` (`experiments.run --loop device`): any JAX-native task, epoch by epoch:
  each epoch (`--epoch-steps` env steps per seed) is one compiled call ending with
  `--eval-episodes` deterministic episodes run on the device; between calls the shared
  run lifecycle (`training.lifecycle`) writes one `progress.csv` / TensorBoard row per seed
  and the checkpoints. A checkpoint holds the agent and the whole carry (envs, replay ring,
  keys), so `--resume` continues exactly; epoch n's iteration keys are
  `split(fold_in(key, n))`.

How the two loops sample (so their numbers are not bitwise equal): the host loop's replay
draws each seed's `[U, B]` row indices with numpy from SeedSequence(seed, stream, env
step) and acts with keys folded from the seed's acting stream; this loop draws indices with
`jax.random.randint` from the seed's loop key (uniform with replacement over the filled
rows, like the host's), acts with keys split from the same key, and resets the envs from
keys folded from it. Both warm up as the algorithm's `warmup_acting` says (the bandit
trainer: uniform actions on the box).

Every random draw comes from `jax.random.key(seed)` of its seed: the learner's own key
(`init`, hence initialisation and update noise) and, for the loop, the same key folded with
`LOOP_STREAM` (the evaluation episodes: folded with `EVAL_STREAM`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

import flax.struct as struct
import jax
import jax.numpy as jnp
import numpy as np

from algd_jax.algorithms import Algorithm, get_algorithm
from algd_jax.algorithms.algd import ALGDConfig
from algd_jax.algorithms.base import LoopInfo
from algd_jax.compile_options import tuned_jit
from algd_jax.envs import TaskSpec, get_task
from algd_jax.envs.toy import DEFAULT_BANDIT, TwoModeBandit
from algd_jax.programs import SeedAxis, fused, over_seeds, seed_axis_options, stack, unstack
from algd_jax.train_config import RunError, TrainConfig
from algd_jax.training.lifecycle import TrainResult
from algd_jax.types import Batch

#: Stream id folded into a seed's key for the loop's own draws, so that they never coincide
#: with the agent's key (`jax.random.key(seed)`, split by the algorithm's `init`).
LOOP_STREAM = 0x70C
#: Stream id of the evaluation episodes' reset keys (`OnDeviceLoop`).
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
            f"{', '.join(JAX_TASKS)} (drop --loop device to train it with the host loop)"
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
    iterations_per_epoch: int = 0
    """Iterations of one epoch (for `LoopInfo.epoch`; 0: a run without epochs)."""
    total_updates: int = 0
    """Updates the run plans in all (`LoopInfo.total_updates`)."""


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
    updates: jax.Array  # [] int32, updates done so far
    episodes: jax.Array  # [] int32, training episodes ended so far


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
            updates=carry.updates,
            episodes=carry.episodes + jnp.sum(done, dtype=jnp.int32),
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
            updates=jnp.zeros((), jnp.int32),
            episodes=jnp.zeros((), jnp.int32),
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
        agent = self.algorithm.observe(carry.agent, self.info(carry))
        agent, metrics = self.many(agent, self._batch(carry.ring, index))
        carry = carry._replace(agent=agent, updates=carry.updates + sched.updates_per_iteration)
        return carry, self.measure(agent, k_eval, metrics)

    def info(self, carry: Carry) -> LoopInfo:
        """The `LoopInfo` of one seed before an iteration's updates: its counters (epochs
        counted in `Schedule.iterations_per_epoch`); no episode window (the on-device loop
        keeps none, so it refuses algorithms that need one)."""
        sched = self.schedule
        iterations = carry.updates // sched.updates_per_iteration
        epoch = iterations // max(sched.iterations_per_epoch, 1)
        empty = jnp.zeros((0,), jnp.float32)
        return LoopInfo(
            env_step=carry.count,
            epoch=epoch if sched.iterations_per_epoch else jnp.zeros((), jnp.int32),
            update_step=carry.updates,
            total_updates=jnp.asarray(sched.total_updates, jnp.int32),
            episode_costs=empty,
            episode_discounted_costs=empty,
            episode_returns=empty,
            episode_count=carry.episodes,
        )

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
            total_updates=self.iterations * self.updates_per_iteration,
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
    program = tuned_jit(over_seeds(one, seed_axis, 2), extra_options=seed_axis_options(seed_axis))
    states, traces = program(states, keys)
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

LOOP_NAME = "on-device"


class DeviceLoopState(struct.PyTreeNode):
    """What an on-device run carries between epochs besides the learner, for one seed (or,
    stacked, S seeds): the loop's carry without its agent, the key the epochs' keys are
    folded from, and the host's counters. A checkpoint holds it whole, so a resumed run
    continues with exactly the numbers of an uninterrupted one."""

    carry: Carry  # `agent` is None: the learner is saved as the checkpoint's agent
    key: jax.Array  # the seed's iteration key (epoch n's keys: split(fold_in(key, n)))
    epoch: jax.Array  # int64 [], epochs completed
    best_eval_return: jax.Array  # float64 [], best feasible evaluation return (NaN: none)
    wall_time: jax.Array  # float64 [], seconds of training before this session


class OnDeviceLoop:
    """The on-device loop of one run of S seeds (`--loop device`), for tasks written in
    JAX: each epoch (`--epoch-steps` env steps per seed, E = `--num-envs` envs stepped
    together, U = `--updates-per-step` updates per iteration) is one compiled call for all
    seeds, ending with `--eval-episodes` deterministic episodes on the device; between
    calls the run lifecycle writes the rows and the checkpoints the host loops write.

    The warm-up (`--initial-steps`, acted as the algorithm's `warmup_acting` says) runs
    before the first epoch; updates start right after it, so `--learning-starts` must not
    exceed it. `--replay-size` is the device ring's capacity per seed.
    """

    def __init__(self, config: TrainConfig, run_root: Path = Path("runs")) -> None:
        from algd_jax.memory import check_update_memory
        from algd_jax.programs import new_state, resolve_seed_axis
        from algd_jax.train_config import resolve_hparams, resolve_task
        from algd_jax.training.epoch_row import progress_columns
        from algd_jax.training.lifecycle import RunLifecycle

        config = config.with_hparams().validate()
        algorithm = config.algorithm
        if algorithm.kind != "off-policy":
            raise RunError(
                f"{algorithm.name} is an {algorithm.kind} algorithm; the on-device loop trains "
                f"off-policy algorithms (drop --loop device)"
            )
        spec = resolve_task(config)
        try:
            task = jax_task(config.task)
        except ValueError as err:
            raise RunError(f"--loop device: {err}") from None
        hparams = resolve_hparams(config, spec)
        if algorithm.episode_window(hparams):
            raise RunError(
                f"--loop device: {algorithm.name} with these options drives its multiplier by "
                f"recent episode costs, a window the on-device loop does not keep; train it "
                f"with the host loop (drop --loop device)"
            )
        schedule = device_schedule(config, algorithm.warmup_acting(hparams))
        self.config, self.algorithm, self.spec, self.hparams = config, algorithm, spec, hparams
        self.seeds = config.seed_list
        self.schedule = schedule
        self.epochs = (config.total_steps - config.initial_steps) // config.epoch_steps
        self.metric_names = tuple(sorted(algorithm.metric_names(hparams)))
        self.columns = progress_columns(self.metric_names)
        self.lifecycle = RunLifecycle(config, spec, hparams, self.columns, LOOP_NAME, run_root)
        self.run_dir, self.run_dirs = self.lifecycle.run_dir, self.lifecycle.run_dirs
        num = len(self.seeds)
        ring_bytes = num * config.replay_size * 4 * (2 * spec.obs_dim + spec.act_dim + 4)
        axis = resolve_seed_axis(config.seed_axis)
        check_update_memory(
            algorithm, hparams, spec, config.batch_size, num, axis == "vmap", ring_bytes
        )
        loop = Loop(algorithm, task, spec, schedule, lambda a, k, m: metric_means(m))
        self.loop = loop
        episodes = config.eval_episodes

        def epoch(carry: Carry, keys: jax.Array, eval_key: jax.Array) -> tuple[Carry, Any]:
            zero = (jnp.zeros_like(carry.ended), jnp.zeros_like(carry.ended_count))
            carry = carry._replace(ended=zero[0], ended_count=zero[1])
            carry, traces = jax.lax.scan(loop.iterate, carry, keys)
            evaluation = loop.evaluate(carry.agent, eval_key, episodes) if episodes else {}
            ended = {"totals": carry.ended, "count": carry.ended_count}
            return carry, (jax.tree.map(jnp.mean, traces), evaluation, ended)

        extra = seed_axis_options(axis)
        self.start_program = tuned_jit(over_seeds(loop.start, axis, 2), extra_options=extra)
        self.epoch_program = tuned_jit(
            over_seeds(epoch, axis, 3), donate_argnums=0, extra_options=extra
        )
        self.agents = stack([new_state(algorithm, hparams, spec, s) for s in self.seeds])
        self.loop_keys = jnp.stack(
            [jax.random.fold_in(jax.random.key(s), LOOP_STREAM) for s in self.seeds]
        )
        self.eval_root = [jax.random.fold_in(jax.random.key(s), EVAL_STREAM) for s in self.seeds]
        self.carry: Carry | None = None
        self.key: jax.Array | None = None
        self.epochs_done = 0
        self.best = np.full(num, np.nan)
        self.rows: list[list[dict[str, float]]] = [[] for _ in self.seeds]
        self.env_steps_per_s = math.nan
        self.compile_s = math.nan
        self.lifecycle.open(self._fresh, self._restore)
        self.config = self.lifecycle.config

    @property
    def env_step(self) -> int:
        return self.config.initial_steps + self.epochs_done * self.config.epoch_steps

    def _fresh(self) -> None:
        began = time.perf_counter()
        self.carry, self.key = self.start_program(self.agents, self.loop_keys)
        jax.block_until_ready(self.carry)
        self.compile_s = time.perf_counter() - began

    def _loop_state(self) -> DeviceLoopState:
        assert self.carry is not None and self.key is not None
        num = len(self.seeds)
        return DeviceLoopState(
            carry=self.carry._replace(agent=None),
            key=self.key,
            epoch=np.full(num, self.epochs_done, np.int64),
            best_eval_return=self.best.copy(),
            wall_time=np.full(num, self.lifecycle.checkpoint_wall()),
        )

    def _save(self) -> None:
        assert self.carry is not None
        state = self._loop_state()
        self.lifecycle.save(
            self.env_step,
            state=lambda k: unstack(self.carry.agent, k),
            loop=lambda k: unstack(state, k),
        )

    def _restore(self, step: int) -> int:
        """Load every seed's checkpoint at `step` (reads only); returns its epochs."""
        carry, key = jax.eval_shape(self.start_program, self.agents, self.loop_keys)
        num = len(self.seeds)
        template = DeviceLoopState(
            carry=jax.tree.map(_zeros, carry._replace(agent=None)),
            key=_zeros(key),
            epoch=np.zeros(num, np.int64),
            best_eval_return=np.zeros(num),
            wall_time=np.zeros(num),
        )
        template_loop = unstack(template, 0)
        template_state = unstack(self.agents, 0)
        agents, loops = [], []
        for k in range(num):
            state, loop, _ = self.lifecycle.read_checkpoint(
                k, step, template_state, template_loop, with_replay=False
            )
            epochs = int(loop.epoch)
            if self.config.initial_steps + epochs * self.config.epoch_steps != step:
                raise RunError(
                    f"--resume {self.run_dirs[k]}: its checkpoint at step {step} holds "
                    f"{epochs} epochs, which do not fit this run's --initial-steps and "
                    f"--epoch-steps",
                    exit_code=1,
                )
            agents.append(state)
            loops.append(loop)
        stacked = stack(loops)
        self.carry = stacked.carry._replace(agent=stack(agents))
        self.key = stacked.key
        self.epochs_done = int(np.asarray(stacked.epoch)[0])
        self.best = np.asarray(stacked.best_eval_return, np.float64).copy()
        self.lifecycle.wall_before = float(np.asarray(stacked.wall_time)[0])
        return self.epochs_done

    def run(self) -> TrainResult:
        """Train until `--total-steps` env steps per seed, one compiled call per epoch."""
        from algd_jax.training.epoch_row import NonFiniteLoss, epoch_row, first_nonfinite

        cfg, life = self.config, self.lifecycle
        life.session_start = time.perf_counter()
        life.refuse_if_done()
        display = life.open_display(self.env_step)
        per_epoch = cfg.epoch_steps // cfg.num_envs
        updates_per_epoch = per_epoch * cfg.updates_per_step
        last_rows: list[dict[str, float] | None] = [None] * len(self.seeds)
        measured_steps, measured_time = 0, 0.0
        first_call = True
        with life.guard(lambda: self.env_step, "this epoch") as interrupted:
            while self.epochs_done < self.epochs:
                if interrupted:
                    raise life.interrupt(self.env_step, self._save)
                n = self.epochs_done
                eval_keys = jnp.stack([jax.random.fold_in(k, n) for k in self.eval_root])
                keys = _epoch_keys(self.key, n, per_epoch)
                tick = time.perf_counter()
                self.carry, outputs = self.epoch_program(self.carry, keys, eval_keys)
                means, evaluation, ended = jax.device_get(outputs)
                took = time.perf_counter() - tick
                if first_call:
                    first_call = False
                else:
                    measured_steps += cfg.epoch_steps * len(self.seeds)
                    measured_time += took
                self.epochs_done += 1
                env_steps = self.env_step
                bad = first_nonfinite({m: means[f"train/{m}"] for m in self.metric_names})
                if bad is not None:
                    name, k = bad
                    raise NonFiniteLoss(
                        f"non-finite {name}{life.of_seed(k)} in the epoch ending at env step "
                        f"{env_steps}; training stopped. {life.last_good()}"
                    )
                episodes = np.asarray(jax.device_get(self.carry.episodes))
                wall = life.wall()
                best = []
                for k in range(len(self.seeds)):
                    summary = (
                        {key: float(v[k]) for key, v in evaluation.items()} if evaluation else None
                    )
                    row, is_feasible = epoch_row(
                        epoch=self.epochs_done,
                        env_steps=env_steps,
                        updates=self.epochs_done * updates_per_epoch,
                        episodes=int(episodes[k]),
                        train_totals=np.asarray(ended["totals"][k], np.float64),
                        train_count=int(ended["count"][k]),
                        evaluation=summary,
                        spec=self.spec,
                        metrics={m: float(means[f"train/{m}"][k]) for m in self.metric_names},
                        speed=(cfg.epoch_steps / took, updates_per_epoch / took),
                        wall=wall,
                    )
                    life.write_row(k, row)
                    self.rows[k].append(row)
                    last_rows[k] = row
                    previous = self.best[k]
                    if is_feasible and (np.isnan(previous) or row["eval/return"] > previous):
                        self.best[k] = row["eval/return"]
                        best.append(k)
                top = last_rows[0]
                assert top is not None
                display.step(cfg.epoch_steps)
                display.status(
                    multiplier=top.get("train/multiplier"),
                    eval_return=top["eval/return"],
                    eval_cost=top[f"eval/{life.cost_kind}"],
                )
                for k in best:
                    life.save_best(k, env_steps, unstack(self.carry.agent, k))
                self._save()
        if measured_time > 0:
            self.env_steps_per_s = measured_steps / measured_time
        return life.finish(self.env_step, last_rows)


@functools.partial(jax.jit, static_argnums=2)
def _epoch_keys(keys: jax.Array, epoch: int, count: int) -> jax.Array:
    """The `[S, count]` iteration keys of epoch `epoch` (0-based) from the seeds' keys `[S]`."""
    return jax.vmap(lambda k: jax.random.split(jax.random.fold_in(k, epoch), count))(keys)


def _zeros(leaf: Any) -> jax.Array:
    """A zero device array of `leaf`'s shape and dtype (PRNG keys: keys of zero data)."""
    if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        return jax.random.wrap_key_data(jnp.zeros((*leaf.shape, 2), jnp.uint32))
    return jnp.zeros(leaf.shape, leaf.dtype)


def device_schedule(config: TrainConfig, warmup: Literal["uniform", "policy"]) -> Schedule:
    """The on-device loop's schedule from a run's configuration; one-line `RunError`s for
    counts that do not fit it."""
    num = config.num_envs
    for name in ("initial_steps", "epoch_steps"):
        if getattr(config, name) % num:
            raise RunError(
                f"--{name.replace('_', '-')} {getattr(config, name)} is not a multiple of "
                f"--num-envs {num}: the on-device loop steps its {num} envs together"
            )
    span = config.total_steps - config.initial_steps
    if span <= 0 or span % config.epoch_steps:
        raise RunError(
            f"--total-steps {config.total_steps} minus --initial-steps {config.initial_steps} "
            f"must be a positive multiple of --epoch-steps {config.epoch_steps} (the on-device "
            f"loop's epochs follow its warm-up)"
        )
    if config.learning_starts > config.initial_steps:
        raise RunError(
            f"--learning-starts {config.learning_starts} exceeds --initial-steps "
            f"{config.initial_steps}: the on-device loop updates right after its warm-up; "
            f"lower --learning-starts or raise --initial-steps"
        )
    # (--learning-starts >= --batch-size >= 1 and the checks above make the warm-up at
    # least one step of every env)
    per_epoch = config.epoch_steps // num
    return Schedule(
        num_envs=num,
        warmup_iterations=config.initial_steps // num,
        updates_per_iteration=config.updates_per_step,
        batch_size=config.batch_size,
        replay_size=config.replay_size,
        warmup=warmup,
        truncation_ends_bootstrap=config.truncation_ends_bootstrap,
        cost_mask=config.cost_mask,
        iterations_per_epoch=per_epoch,
        total_updates=(span // config.epoch_steps) * per_epoch * config.updates_per_step,
    )
