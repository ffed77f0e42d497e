"""Rollouts of host vector environments for on-policy learners: S seeds x E environments.

Each seed steps its E environments as one gymnasium `SyncVectorEnv` (gymnasium 0.29: an
environment whose episode ends is reset inside the same `step`; the step's own observation
and info then sit in `info["final_observation"]` / `info["final_info"]`). One rollout is T
steps of every environment of every seed:

    collector = VectorCollector(make_env, seeds, num_envs=E, rollout_steps=T, spec=spec,
                                programs=on_policy_programs(algorithm.on_policy, axis))
    states = collector.start(states)                       # reset, push the first observations
    states, rollout, finished = collector.collect(states)  # T steps -> Rollout of [S, T, E, ...]
    states, metrics = collector.programs.update(states, rollout, info)

Per env step the learners act (push the final observations of the episodes that ended and
the new observations into the learners' statistics, act), then the S vector envs are stepped
on the host, one after the other. An algorithm with a `HostActor` (PPO-Lag) acts in numpy,
one actor per seed built at the rollout's start, its statistics written back into the state
at the end: no compiled call per env step, which on a CPU costs several times the numpy
arithmetic of a small policy. Without one, each env step is one compiled call for all seeds
(`OnPolicyPrograms.step`); `host_acting=False` selects that path for any algorithm. The
values of every row of a rollout (the observations acted on, the final observations, the
observations after the last step) come from one call at its end (`OnPolicyPrograms.values`):
the learner does not change during a rollout.

Exact resume. Every random draw is a pure function of the run seed and a counter: episode k
of environment i of seed s is reset with `episode_seed(s, i, k)` (`EpisodeSeeds`, so the
vector env's own auto-reset draws the same seed), the acting noise of env step t is
`fold_in(key(seed), t)`. The collector's whole state (`CollectorState`: the step counter,
every environment's episode index, the actions of its current episode, its current raw and
normalised observation and its running episode totals) is a pytree of numpy arrays that a
checkpoint holds; `restore` resets each environment with its episode's seed and replays the
episode's actions, which brings a deterministic simulator back exactly (the observation is
checked against the saved one). A checkpoint is taken between two `collect` calls.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol

import flax.struct as struct
import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
from gymnasium.vector import SyncVectorEnv

from algd_jax.algorithms.base import HostActor, Rollout, bootstrap_values
from algd_jax.programs import Acted, Observed, OnPolicyPrograms, stack, unstack
from algd_jax.rollouts import EPISODE_FIELDS, EpisodeStats, cost_of

# The run's random streams (`algd_jax.training.streams`, the off-policy loop's), with the
# environment index as an extra counter.
from algd_jax.training.streams import ACT_STREAM, TRAIN_ENV_STREAM, stream_seed

Clock = Callable[[str], AbstractContextManager[None]]


class TaskShape(Protocol):
    """What the collector needs to know of a task (a `TaskSpec` satisfies it)."""

    obs_dim: int
    act_dim: int
    action_low: tuple[float, ...]
    action_high: tuple[float, ...]
    max_episode_steps: int
    cost_gamma: float


class CollectorRestoreError(ValueError):
    """A saved collector state that does not fit this collector or does not bring the
    environments back; the message is one line."""


def episode_seed(seed: int, env_index: int, episode: int) -> int:
    """The reset seed of episode `episode` (0-based) of environment `env_index` of a run
    seed."""
    return stream_seed(seed, TRAIN_ENV_STREAM, env_index, episode)


class EpisodeSeeds(gymnasium.Wrapper):
    """Environment `env_index` of run seed `seed`: a `reset()` without a seed starts episode
    `next_episode` from `episode_seed(seed, env_index, next_episode)` and counts it, so the
    vector env's auto-reset is deterministic; a reset with a seed is passed through."""

    def __init__(self, env: gymnasium.Env, seed: int, env_index: int) -> None:
        super().__init__(env)
        self.run_seed, self.env_index = int(seed), int(env_index)
        self.next_episode = 0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        if seed is None:
            seed = episode_seed(self.run_seed, self.env_index, self.next_episode)
            self.next_episode += 1
        return self.env.reset(seed=seed, options=options)


class CollectorState(struct.PyTreeNode):
    """Everything the collector carries from one rollout to the next, for S seeds x E
    environments; every leaf a numpy array with a leading seed axis (a checkpoint holds a
    seed's slice). Episode totals are (return, summed cost, discounted cost, length) in the
    order of `rollouts.EPISODE_FIELDS`; the discounted cost uses the task's gamma_c.

    Restoring it (`VectorCollector.restore`) together with the learners' states the
    checkpoint holds continues the run exactly as if it had not stopped.
    """

    seed: np.ndarray  # [S] int64, the run seeds
    step: np.ndarray  # [S] int64, vector env steps taken (each of the E envs took this many)
    episode_index: np.ndarray  # [S, E] int64, the current episode of each env (0-based)
    totals: np.ndarray  # [S, E, 4] float64, the current episode's totals so far
    discount: np.ndarray  # [S, E] float64, gamma_c ** (its length)
    actions: np.ndarray  # [S, E, L + 1, da] float32, its actions so far (replayed on resume)
    obs: np.ndarray  # [S, E, ds] float32, the current raw observation
    obs_n: np.ndarray  # [S, E, ds] float32, the same normalised (what the policy acts on)

    @property
    def env_steps(self) -> np.ndarray:
        """`[S]` int64: environment steps taken by each seed (step x E)."""
        return self.step * self.episode_index.shape[1]


def _seeded_env(make_env: Callable[[], gymnasium.Env], seed: int, index: int) -> gymnasium.Env:
    return EpisodeSeeds(make_env(), seed, index)


@contextmanager
def untimed(_phase: str) -> Iterator[None]:
    """The `Clock` that times nothing."""
    yield


def make_vector_envs(
    make_env: Callable[[], gymnasium.Env], seeds: Sequence[int], num_envs: int
) -> list[SyncVectorEnv]:
    """One `SyncVectorEnv` of `num_envs` environments per run seed, environment i of seed s
    wrapped in `EpisodeSeeds(env, s, i)`; observations are not copied by the vector env
    (the collector copies them into its own float32 arrays)."""
    return [
        SyncVectorEnv(
            [functools.partial(_seeded_env, make_env, int(s), i) for i in range(num_envs)],
            copy=False,
        )
        for s in seeds
    ]


_bootstrap_all = jax.jit(jax.vmap(bootstrap_values))


class _CompiledActing:
    """Acting for one rollout through the compiled per-step programs (`OnPolicyPrograms`):
    one call per env step for all seeds."""

    def __init__(self, programs: OnPolicyPrograms, states: Any) -> None:
        self.programs, self.states = programs, states

    def act(self, obs_n: np.ndarray, noise: Any) -> Acted:
        return self.programs.act(self.states, obs_n, noise)

    def step(
        self, obs: np.ndarray, noise: Any, final_obs: np.ndarray | None, final_mask: Any
    ) -> Acted:
        self.states, acted = self.programs.step(self.states, obs, noise, final_obs, final_mask)
        return acted

    def observe(self, obs: np.ndarray, final_obs: np.ndarray, final_mask: np.ndarray) -> Observed:
        self.states, observed = self.programs.observe(self.states, obs, final_obs, final_mask)
        return observed

    def finish(self) -> Any:
        return self.states


class _HostActing:
    """Acting for one rollout through the algorithm's `HostActor`s, one per seed, built
    from the seeds' states at the start; `finish` writes their statistics back. No
    compiled call per env step."""

    def __init__(
        self, make: Callable[[Any], HostActor], states: Any, num_seeds: int, act_dim: int
    ) -> None:
        self.states, self.act_dim = states, act_dim
        self.actors = [make(unstack(states, k)) for k in range(num_seeds)]

    @staticmethod
    def _seed_noise(noise: Any) -> Callable[[int], Any]:
        """Seed k's slice of one step's noise pytree (`[S, E, ...]` leaves)."""
        leaves, treedef = jax.tree.flatten(noise)
        if treedef.num_nodes == 1:  # one array (PPO-Lag's): no pytree to rebuild
            return leaves[0].__getitem__
        return lambda k: jax.tree.unflatten(treedef, [leaf[k] for leaf in leaves])

    def _act_into(self, acted: Acted, noise: Any) -> Acted:
        noise_of = self._seed_noise(noise)
        for k, actor in enumerate(self.actors):
            acted.env_action[k], acted.raw_action[k], acted.log_prob[k] = actor.act(
                acted.obs_n[k], noise_of(k)
            )
        return acted

    def _new_acted(self, obs_n: np.ndarray, final_obs_n: np.ndarray) -> Acted:
        shape = obs_n.shape[:2]
        return Acted(
            env_action=np.empty((*shape, self.act_dim), np.float32),
            raw_action=np.empty((*shape, self.act_dim), np.float32),
            log_prob=np.empty(shape, np.float32),
            obs_n=obs_n,
            final_obs_n=final_obs_n,
        )

    def act(self, obs_n: np.ndarray, noise: Any) -> Acted:
        acted = self._new_acted(np.array(obs_n, np.float32), np.zeros_like(obs_n))
        return self._act_into(acted, noise)

    def step(
        self, obs: np.ndarray, noise: Any, final_obs: np.ndarray | None, final_mask: Any
    ) -> Acted:
        observed = self.observe(obs, final_obs, final_mask)
        acted = self._new_acted(observed.obs_n, observed.final_obs_n)
        return self._act_into(acted, noise)

    def observe(
        self, obs: np.ndarray, final_obs: np.ndarray | None, final_mask: np.ndarray | None
    ) -> Observed:
        obs_n = np.empty(obs.shape, np.float32)
        final_n = np.zeros(obs.shape, np.float32)
        for k, actor in enumerate(self.actors):
            if final_obs is None or final_mask is None or not final_mask[k].any():
                obs_n[k], _ = actor.observe(obs[k], None, None)
            else:
                obs_n[k], final_n[k] = actor.observe(obs[k], final_obs[k], final_mask[k])
        return Observed(obs_n, final_n)

    def finish(self) -> Any:
        return stack(
            [actor.write_back(unstack(self.states, k)) for k, actor in enumerate(self.actors)]
        )


class VectorCollector:
    """Collects T-step rollouts of S seeds x E environments for an on-policy learner.

    Args:
        make_env: builds one environment of the task (gymnasium API, `info["cost"]` per
            step, e.g. `lambda: algd_jax.envs.make_env(task, cost_limit)`); called S x E
            times.
        seeds: the run seeds, one per learner state of the stacked `states`.
        num_envs: E, environments per seed.
        rollout_steps: T, steps of every environment per `collect`.
        spec: the task's dimensions, action box, time limit L and cost discount gamma_c.
        programs: the compiled programs of the learner (`on_policy_programs`).
        clock: optional `clock(phase)` context manager timing the phases `act` (the
            compiled per-step calls and their results' transfer), `env_step` (the vector
            envs), `record` (the host bookkeeping) and `values` (the one call per rollout
            that values every row); for `benchmarks.loop`.
    """

    def __init__(
        self,
        make_env: Callable[[], gymnasium.Env],
        seeds: Sequence[int],
        num_envs: int,
        rollout_steps: int,
        spec: TaskShape,
        programs: OnPolicyPrograms,
        clock: Clock | None = None,
        host_acting: bool = True,
    ) -> None:
        if num_envs < 1 or rollout_steps < 1 or not seeds:
            raise ValueError("a collector needs at least one seed, one env and one step")
        self.seeds = [int(s) for s in seeds]
        self.num_envs, self.rollout_steps = int(num_envs), int(rollout_steps)
        self.spec, self.programs = spec, programs
        self.host_actor = programs.parts.host_actor if host_acting else None
        self.clock: Clock = clock if clock is not None else untimed
        self.vecs = make_vector_envs(make_env, self.seeds, self.num_envs)
        self.keys = jnp.stack([jax.random.key(stream_seed(s, ACT_STREAM)) for s in self.seeds])
        self.state: CollectorState | None = None

    # -- state ----------------------------------------------------------------------------

    def _empty_state(self) -> CollectorState:
        num, envs, spec = len(self.seeds), self.num_envs, self.spec
        return CollectorState(
            seed=np.asarray(self.seeds, np.int64),
            step=np.zeros(num, np.int64),
            episode_index=np.zeros((num, envs), np.int64),
            totals=np.zeros((num, envs, 4)),
            discount=np.ones((num, envs)),
            # one spare row: an env that runs past its time limit is caught, not overrun
            actions=np.zeros((num, envs, spec.max_episode_steps + 1, spec.act_dim), np.float32),
            obs=np.zeros((num, envs, spec.obs_dim), np.float32),
            obs_n=np.zeros((num, envs, spec.obs_dim), np.float32),
        )

    def start(self, states: Any) -> Any:
        """Reset every environment into its first episode and push the observations into
        the learners' statistics; returns the updated stacked `states`."""
        state = self._empty_state()
        for k, vec in enumerate(self.vecs):
            for env in vec.envs:
                env.next_episode = 0
            obs, _ = vec.reset()
            state.obs[k] = np.asarray(obs, np.float32)
        no_final = np.zeros_like(state.obs)
        acting = self._acting(states)
        observed = acting.observe(state.obs, no_final, np.zeros(state.episode_index.shape, bool))
        state.obs_n[:] = observed.obs_n
        self.state = state
        return acting.finish()

    def _acting(self, states: Any) -> _CompiledActing | _HostActing:
        """How this rollout acts: the algorithm's `HostActor`s where it has one (and
        `host_acting`), else the compiled per-step programs."""
        if self.host_actor is not None:
            return _HostActing(self.host_actor, states, len(self.seeds), self.spec.act_dim)
        return _CompiledActing(self.programs, states)

    def restore(self, saved: CollectorState) -> None:
        """Continue from a saved `CollectorState` (with the learner states saved with it):
        reset each environment with its current episode's seed and replay that episode's
        actions. Raises `CollectorRestoreError` when the state belongs to other seeds or
        shapes, or when the replay does not reproduce the saved observation."""
        template = self._empty_state()
        saved = jax.tree.map(np.array, saved)  # own copies: the collector writes in place
        for name in CollectorState.__dataclass_fields__:
            want, got = getattr(template, name), getattr(saved, name)
            if got.shape != want.shape:
                raise CollectorRestoreError(
                    f"the saved collector state's {name} has shape {got.shape}, this run needs "
                    f"{want.shape} (seeds, --num-envs or the task differ)"
                )
        if list(saved.seed) != self.seeds:
            raise CollectorRestoreError(
                f"the saved collector state belongs to seeds {list(saved.seed)}, not {self.seeds}"
            )
        for k, vec in enumerate(self.vecs):
            for i, env in enumerate(vec.envs):
                env.next_episode = int(saved.episode_index[k, i])
                obs, _ = env.reset()
                length = int(saved.totals[k, i, 3])
                for action in saved.actions[k, i, :length]:
                    obs, *_ = env.step(action)
                if not np.array_equal(np.asarray(obs, np.float32), saved.obs[k, i]):
                    raise CollectorRestoreError(
                        f"replaying episode {env.next_episode - 1} of env {i} of seed "
                        f"{self.seeds[k]} ({length} steps) did not reproduce the saved "
                        f"observation; the environment is not deterministic on this machine"
                    )
        self.state = saved

    # -- one rollout ----------------------------------------------------------------------

    def collect(self, states: Any) -> tuple[Any, Rollout, list[np.ndarray]]:
        """T steps of every environment of every seed with the learners `states` acting.

        Returns `(states, rollout, finished)`: the states with the observation statistics
        of the rollout pushed; a `Rollout` of numpy/JAX arrays `[S, T, E, ...]` (float32;
        bool `terminated`/`truncated`), its `next_value_*` bootstrapped from the final
        observation of each truncated episode and from the observation after the last
        step; and per seed the episodes that finished during the rollout, `[n_k, 4]`
        float64 rows of (return, cost, discounted cost, length) in the order they finished
        (by step, then env index).
        """
        if self.state is None:
            raise RuntimeError("call start() or restore() before collect()")
        st, spec, programs, clock = self.state, self.spec, self.programs, self.clock
        num, envs, steps = len(self.seeds), self.num_envs, self.rollout_steps
        ds, da = spec.obs_dim, spec.act_dim
        f32 = lambda *shape: np.zeros((num, steps, envs, *shape), np.float32)  # noqa: E731
        obs_buf, final_buf, raw_buf, logp = f32(ds), f32(ds), f32(da), f32()
        reward, cost = f32(), f32()
        terminated = np.zeros((num, steps, envs), bool)
        truncated = np.zeros((num, steps, envs), bool)
        stats = EpisodeStats(st.totals.reshape(-1, 4), st.discount.reshape(-1), spec.cost_gamma)
        finished: list[list[np.ndarray]] = [[] for _ in range(num)]
        next_obs = np.empty_like(st.obs)
        final_obs = np.zeros_like(st.obs)
        final_mask = np.zeros((num, envs), bool)
        limit = st.actions.shape[2]

        with clock("act"):
            # the acting draws of the whole rollout in one call, those of env step c from
            # fold_in(key(seed), c)
            counters = st.step[0] + np.arange(steps)
            noise = programs.noise(states, self.keys, counters, envs)
            at = lambda t: jax.tree.map(lambda x: x[:, t], noise)  # noqa: E731
            acting = self._acting(states)
            acted = acting.act(st.obs_n, at(0))
        for t in range(steps):
            with clock("record"):
                obs_buf[:, t] = acted.obs_n
                raw_buf[:, t], logp[:, t] = acted.raw_action, acted.log_prob
                actions = acted.env_action
                final_mask[:] = False
            for k, vec in enumerate(self.vecs):
                with clock("env_step"):
                    obs_k, reward_k, term_k, trunc_k, infos = vec.step(actions[k])
                with clock("record"):
                    next_obs[k] = obs_k
                    reward[k, t], terminated[k, t], truncated[k, t] = reward_k, term_k, trunc_k
                    for i in range(envs):
                        done = bool(term_k[i] or trunc_k[i])
                        row = k * envs + i
                        length = int(st.totals[k, i, 3])
                        if length >= limit:
                            raise RuntimeError(
                                f"env {i} of seed {self.seeds[k]} ran past its time limit of "
                                f"{spec.max_episode_steps} steps without ending the episode"
                            )
                        st.actions[k, i, length] = actions[k, i]
                        c = _step_cost(infos, i, done)
                        cost[k, t, i] = c
                        stats.record(row, float(reward_k[i]), c)
                        if done:
                            final_obs[k, i] = infos["final_observation"][i]
                            final_mask[k, i] = True
                            finished[k].append(st.totals[k, i].copy())
                            stats.reset(row)
                            st.episode_index[k, i] += 1
            with clock("record"):
                st.step[:] += 1
                st.obs[:] = next_obs
                ended = bool(final_mask.any())
            with clock("act"):
                if t + 1 < steps:
                    finals = (final_obs, final_mask) if ended else (None, None)
                    acted = acting.step(next_obs, at(t + 1), *finals)
                    latest: Acted | Observed = acted
                else:
                    latest = acting.observe(next_obs, final_obs, final_mask)
            with clock("record"):
                st.obs_n[:] = latest.obs_n
                if ended:
                    final_buf[:, t] = latest.final_obs_n
        with clock("act"):
            states = acting.finish()

        with clock("values"):
            # every value of the rollout in one call: the rows acted on, the final
            # observations (read where truncated), the observations after the last step
            rows = np.concatenate(
                [
                    obs_buf.reshape(num, steps * envs, ds),
                    final_buf.reshape(num, steps * envs, ds),
                    st.obs_n,
                ],
                axis=1,
            )
            all_r, all_c = programs.values(states, rows)
            cut = steps * envs
            shape = (num, steps, envs)
            v_r, final_r = all_r[:, :cut].reshape(shape), all_r[:, cut : 2 * cut].reshape(shape)
            v_c, final_c = all_c[:, :cut].reshape(shape), all_c[:, cut : 2 * cut].reshape(shape)
            last_v = (all_r[:, 2 * cut :], all_c[:, 2 * cut :])

        with clock("record"):
            next_r = _bootstrap_all(v_r, last_v[0], final_r, truncated)
            next_c = _bootstrap_all(v_c, last_v[1], final_c, truncated)
            rollout = Rollout(
                obs=obs_buf,
                raw_action=raw_buf,
                log_prob=logp,
                value_r=v_r,
                value_c=v_c,
                reward=reward,
                cost=cost,
                next_value_r=np.asarray(next_r),
                next_value_c=np.asarray(next_c),
                terminated=terminated,
                truncated=truncated,
            )
            done_rows = [
                np.asarray(f, np.float64).reshape(-1, len(EPISODE_FIELDS)) for f in finished
            ]
        return states, rollout, done_rows

    def close(self) -> None:
        for vec in self.vecs:
            vec.close()


def _step_cost(infos: dict[str, Any], index: int, done: bool) -> float:
    """Env `index`'s cost of this vector step: from its `final_info` when its episode ended
    (the vector env replaced its info by the reset's), else from the batched `info["cost"]`."""
    if done:
        return cost_of(infos["final_info"][index])
    if "cost" not in infos or not infos["_cost"][index]:
        raise KeyError(f"env {index} did not report info['cost'] on this step")
    return float(infos["cost"][index])


def env_step_rate(
    make_env: Callable[[], gymnasium.Env],
    seeds: Sequence[int],
    num_envs: int,
    spec: TaskShape,
    steps: int,
    seed: int = 0,
) -> dict[str, float]:
    """The env-only stepping rate of the collector's vector envs (S = len(seeds) of
    `num_envs` each, built and reset the same way), under a fixed random policy: actions
    uniform in the box, drawn before the clock starts from `numpy` seeded with `seed`.

    Steps every vector env `steps` times. Returns `env_steps` (S x E x steps), `seconds`
    (wall time of the stepping alone) and `env_steps_per_s`.
    """
    vecs = make_vector_envs(make_env, seeds, num_envs)
    try:
        for vec in vecs:
            vec.reset()
        low = np.asarray(spec.action_low, np.float32)
        high = np.asarray(spec.action_high, np.float32)
        rng = np.random.default_rng(seed)
        actions = rng.uniform(low, high, size=(steps, len(vecs), num_envs, spec.act_dim))
        actions = actions.astype(np.float32)
        start = time.perf_counter()
        for t in range(steps):
            for k, vec in enumerate(vecs):
                vec.step(actions[t, k])
        seconds = time.perf_counter() - start
    finally:
        for vec in vecs:
            vec.close()
    env_steps = float(steps * len(vecs) * num_envs)
    return {"env_steps": env_steps, "seconds": seconds, "env_steps_per_s": env_steps / seconds}
