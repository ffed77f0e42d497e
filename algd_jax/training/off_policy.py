"""The off-policy loop: host environment stepping, replay, fused updates on a seed axis
(SPEC §7), inside the run lifecycle every loop shares (`training.lifecycle`).

One env step, for S seeds at once:
    actions = programs.act(states, obs, keys, step)     # one compiled call, [S, da]
    envs[k].step(actions[k]) for each seed -> replay.add(...)
    if learning: states, sums = programs.train(states, sums, replay.sample_block(U, B))
The S x U updates of one env step are one compiled call on an `[S, U, B, ...]` block; their
metrics are summed on the device and read back once per epoch, when the rows are logged.

Everything the loop carries from one step to the next, besides the learner states, the
replay and the environments, is one explicit pytree, `LoopState`, with a leading seed axis;
a checkpoint saves its per-seed slice whole.

Exact resume. Every random stream is a pure function of the seed and a counter
(`training.streams`): the train env is reset with a seed derived from (seed, episode
index), the acting noise from (seed, env step), evaluation envs from (seed, epoch,
episode), replay indices from (seed, env step). A checkpoint holds the learner, the replay
rows and the loop state, including the actions taken so far in the current episode;
resuming resets the env with that episode's seed and replays those actions, which restores
the simulator state exactly (the simulators are deterministic on one machine; the resumed
observation is checked against the saved one). A checkpoint can therefore be taken at any
env step, at epoch ends and on Ctrl-C.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import flax.struct as struct
import gymnasium
import jax
import jax.numpy as jnp
import numpy as np

from algd_jax.envs import TaskSpec, make_env
from algd_jax.memory import check_update_memory
from algd_jax.programs import (
    Programs,
    new_state,
    new_sums,
    programs,
    resolve_seed_axis,
    stack,
    unstack,
)
from algd_jax.replay import ReplayBuffer, replay_bytes, row_bytes
from algd_jax.rollouts import EPISODE_FIELDS, EpisodeStats, cost_of
from algd_jax.train_config import RunError, TrainConfig, resolve_hparams, resolve_task
from algd_jax.training.episodes import loop_info, push_episode
from algd_jax.training.epoch_row import (
    NonFiniteLoss,
    epoch_row,
    nonfinite_parts,
    progress_columns,
)
from algd_jax.training.evaluation import evaluate_seeds
from algd_jax.training.lifecycle import RunLifecycle, TrainResult, available_memory, human_bytes
from algd_jax.training.streams import (
    ACT_STREAM,
    REPLAY_STREAM,
    TRAIN_ENV_STREAM,
    stream_seed,
    uniform_actions,
)

LOOP_NAME = "off-policy"


class LoopState(struct.PyTreeNode):
    """What the loop carries between env steps, for S seeds (leading axis `[S]` on every
    leaf; the counters are equal across seeds). Host leaves are numpy arrays, updated in
    place by the loop; `sums` lives on the device.

    `episode`, `epoch_totals` and `last_episode` hold (return, summed cost, discounted
    cost, length) in the order of `rollouts.EPISODE_FIELDS`; NaN marks "none yet".
    """

    seed: np.ndarray  # [S] int64
    env_step: np.ndarray  # [S] int64
    update_count: np.ndarray  # [S] int64
    epoch_index: np.ndarray  # [S] int64, epochs completed
    epoch_updates: np.ndarray  # [S] int64, updates since the epoch began
    wall_time: np.ndarray  # [S] float64, seconds of training before this session
    episode_index: np.ndarray  # [S] int64, training episodes completed
    episode: np.ndarray  # [S, 4] float64, totals of the current episode
    discount: np.ndarray  # [S] float64, gamma_c ** length
    actions: np.ndarray  # [S, T, da] float32, the current episode's actions (for resume)
    obs: np.ndarray  # [S, ds] float32, the current observation
    epoch_episodes: np.ndarray  # [S] int64, episodes ended in this epoch
    epoch_totals: np.ndarray  # [S, 4] float64, their summed totals
    last_episode: np.ndarray  # [S, 4] float64, the last ended episode
    best_eval_return: np.ndarray  # [S] float64, best feasible evaluation return
    # the last W finished training episodes, oldest first (W = Algorithm.episode_window;
    # filled: the last min(episode_index, W)); see `push_episode` and `loop_info`. Stored
    # max(W, 1) wide: a checkpoint cannot hold an empty array.
    window_costs: np.ndarray  # [S, max(W, 1)] float64, undiscounted episode costs
    window_discounted_costs: np.ndarray  # [S, max(W, 1)] float64, discounted episode costs
    window_returns: np.ndarray  # [S, max(W, 1)] float64, episode returns
    act_key: jax.Array  # [S] PRNG keys of the acting noise
    sums: dict[str, Any]  # [S] device accumulators of the update metrics

    @classmethod
    def create(
        cls,
        seeds: list[int],
        spec: TaskSpec,
        metric_names: tuple[str, ...],
        episode_window: int = 0,
    ) -> LoopState:
        num = len(seeds)
        zeros = lambda *shape: np.zeros((num, *shape), np.int64)  # noqa: E731
        nan = lambda *shape: np.full((num, *shape), np.nan)  # noqa: E731
        return cls(
            seed=np.asarray(seeds, np.int64),
            env_step=zeros(),
            update_count=zeros(),
            epoch_index=zeros(),
            epoch_updates=zeros(),
            wall_time=np.zeros(num),
            episode_index=zeros(),
            episode=np.zeros((num, 4)),
            discount=np.ones(num),
            # one spare row: an env that runs past its time limit is caught, not overrun
            actions=np.zeros((num, spec.max_episode_steps + 1, spec.act_dim), np.float32),
            obs=np.zeros((num, spec.obs_dim), np.float32),
            epoch_episodes=zeros(),
            epoch_totals=np.zeros((num, 4)),
            last_episode=nan(4),
            best_eval_return=nan(),
            window_costs=np.zeros((num, max(episode_window, 1))),
            window_discounted_costs=np.zeros((num, max(episode_window, 1))),
            window_returns=np.zeros((num, max(episode_window, 1))),
            act_key=jnp.stack([jax.random.key(stream_seed(s, ACT_STREAM)) for s in seeds]),
            sums=new_sums(metric_names, num),
        )


class PhaseClock:
    """Optional wall-time accounting of the loop's phases (for `benchmarks.loop`).

    Phases: `action`, `env_step` (all S envs), `replay_add`, `replay_sample`, `update`,
    `episode_end`, `epoch_end`. Timing blocks on the action and on the updated states, so
    that the asynchronously dispatched update is charged to `update`, not to the next
    action. Phases are counted from the first updating env step on (`steady`); before it
    they go to `warmup`.
    """

    PHASES = (
        "action",
        "env_step",
        "replay_add",
        "replay_sample",
        "update",
        "episode_end",
        "epoch_end",
    )

    def __init__(self) -> None:
        self.steady = False
        self.steady_start = math.nan
        self.seconds = {b: dict.fromkeys(self.PHASES, 0.0) for b in ("warmup", "steady")}
        self.calls = dict.fromkeys(self.PHASES, 0)

    def start_steady(self) -> None:
        if not self.steady:
            self.steady = True
            self.steady_start = time.perf_counter()

    @contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        bucket = "steady" if self.steady else "warmup"
        self.seconds[bucket][phase] += time.perf_counter() - start
        if self.steady:
            self.calls[phase] += 1


@contextmanager
def _untimed(_phase: str) -> Iterator[None]:
    yield


def planned_updates(config: TrainConfig) -> int:
    """Updates a run of `config.total_steps` env steps does: U after every env step from
    the first one at which both warm-ups are over."""
    first = max(config.initial_steps, config.learning_starts, 1)
    return max(config.total_steps - first + 1, 0) * config.updates_per_step


class OffPolicyLoop:
    """The off-policy loop of one run of S seeds: environments, learner states, replay; the
    run's files through a `RunLifecycle`.

    Build with `OffPolicyLoop(config)`; `config.resume` selects continuing a run directory.
    `run()` trains to `config.total_steps` and returns a `TrainResult`; it raises
    `RunError` subclasses for everything a user should see as one line.
    """

    def __init__(
        self, config: TrainConfig, run_root: Path = Path("runs"), clock: PhaseClock | None = None
    ) -> None:
        # the one validation pass, also for configs built without the command line
        config = config.with_hparams().validate()
        self.clock = clock
        self.config = config
        self.algorithm = config.algorithm
        if self.algorithm.kind != "off-policy":
            raise RunError(
                f"{self.algorithm.name} is an {self.algorithm.kind} algorithm; this loop trains "
                f"off-policy algorithms from a replay buffer (--list-algos)"
            )
        if config.loop != "host" or config.num_envs != 1:
            raise RunError(
                "the off-policy host loop steps one env per seed (--loop host, --num-envs 1); "
                "use python -m experiments.run, which picks the loop --loop names"
                if config.loop != "host"
                else f"--num-envs {config.num_envs}: the off-policy host loop steps one env "
                f"per seed; drop --num-envs, or train a JAX task with --loop device"
            )
        self.spec = resolve_task(config)
        self.hparams = resolve_hparams(config, self.spec)
        self.seeds = config.seed_list
        spec, num = self.spec, len(self.seeds)
        self.metric_names = tuple(sorted(self.algorithm.metric_names(self.hparams)))
        self.columns = progress_columns(self.metric_names)
        self.lifecycle = RunLifecycle(config, spec, self.hparams, self.columns, LOOP_NAME, run_root)
        self.run_dir, self.run_dirs = self.lifecycle.run_dir, self.lifecycle.run_dirs
        self.cost_kind = self.lifecycle.cost_kind
        self.replay_bytes = replay_bytes(num, config.replay_size, spec.obs_dim, spec.act_dim)
        _check_memory(self.replay_bytes, num, config.replay_size, spec)
        check_update_memory(
            self.algorithm,
            self.hparams,
            spec,
            config.batch_size,
            num,
            resolve_seed_axis(config.seed_axis) == "vmap",
            self.replay_bytes,
        )
        self.envs = [self._make_env() for _ in self.seeds]
        self.eval_envs = [self._make_env() for _ in self.seeds] if config.eval_episodes else []
        self.programs: Programs = programs(
            self.algorithm.act,
            self.algorithm.update,
            resolve_seed_axis(config.seed_axis),
            self.algorithm.observe,
        )
        self.uniform_warmup = self.algorithm.warmup_acting(self.hparams) == "uniform"
        self.states = stack([new_state(self.algorithm, self.hparams, spec, s) for s in self.seeds])
        self.replay = ReplayBuffer(
            capacity=config.replay_size,
            obs_dim=spec.obs_dim,
            act_dim=spec.act_dim,
            seeds=self.seeds,
            stream=REPLAY_STREAM,
            truncation_ends_bootstrap=config.truncation_ends_bootstrap,
            cost_mask=config.cost_mask,
        )
        self.window = self.algorithm.episode_window(self.hparams)
        self.loop = LoopState.create(self.seeds, spec, self.metric_names, self.window)
        self.lifecycle.open(self._fresh, self._restore)
        self.config = self.lifecycle.config

    # -- set-up ---------------------------------------------------------------------------

    @property
    def episodes(self) -> EpisodeStats:
        """The current training episode's totals, as views of the loop state."""
        return EpisodeStats(self.loop.episode, self.loop.discount, self.spec.cost_gamma)

    @property
    def env_step(self) -> int:
        return int(self.loop.env_step[0])

    def _make_env(self) -> gymnasium.Env:
        try:
            return make_env(
                self.config.task, self.config.cost_limit, paper_setting=self.config.paper_setting
            )
        except (ValueError, ImportError) as err:
            raise RunError(str(err)) from None

    def _fresh(self) -> None:
        for k in range(len(self.seeds)):
            self._reset(k)

    def _reset(self, k: int) -> None:
        """Start seed k's next training episode."""
        seed = stream_seed(self.seeds[k], TRAIN_ENV_STREAM, int(self.loop.episode_index[k]))
        obs, _ = self.envs[k].reset(seed=seed)
        self.loop.obs[k] = np.asarray(obs, np.float32)
        self.episodes.reset(k)

    # -- checkpoints ----------------------------------------------------------------------

    def _save(self) -> None:
        self.loop.wall_time[:] = self.lifecycle.checkpoint_wall()
        loop = self.loop.replace(sums=jax.device_get(self.loop.sums))
        self.lifecycle.save(
            self.env_step,
            state=lambda k: unstack(self.states, k),
            loop=lambda k: unstack(loop, k),
            replay=self.replay.state_dict,
        )

    def _restore(self, step: int) -> int:
        """Load every seed's checkpoint at `step` and bring its simulator back (reads only);
        returns the epochs completed at `step`."""
        template_state = unstack(self.states, 0)
        template_loop = unstack(self.loop.replace(sums=jax.device_get(self.loop.sums)), 0)
        states, loops = [], []
        for k in range(len(self.seeds)):
            state, loop, arrays = self.lifecycle.read_checkpoint(
                k, step, template_state, template_loop, with_replay=True
            )
            assert loop is not None and arrays is not None
            if int(loop.seed) != self.seeds[k] or int(loop.env_step) != step:
                raise RunError(
                    f"--resume {self.run_dirs[k]}: its checkpoint at step {step} belongs to "
                    f"seed {int(loop.seed)} at step {int(loop.env_step)}",
                    exit_code=1,
                )
            try:
                self.replay.load(k, arrays, ptr=step % self.replay.capacity)
            except ValueError as err:
                raise RunError(
                    f"--resume {self.run_dirs[k]}: checkpoint at step {step} does not fit this "
                    f"run ({err})",
                    exit_code=1,
                ) from None
            states.append(state)
            loops.append(loop)
        self.states = stack(states)
        host = jax.tree.map(
            lambda *xs: np.stack(xs), *[lp.replace(sums=None, act_key=None) for lp in loops]
        )
        self.loop = host.replace(
            act_key=jnp.stack([lp.act_key for lp in loops]),
            sums=jax.tree.map(
                lambda *xs: jnp.stack([jnp.asarray(x) for x in xs]), *[lp.sums for lp in loops]
            ),
        )
        self.lifecycle.wall_before = float(self.loop.wall_time[0])
        # Bring each simulator back to where the checkpoint left it: same reset seed, same
        # actions. Deterministic simulators reproduce the exact state.
        for k in range(len(self.seeds)):
            saved_obs = self.loop.obs[k].copy()
            seed = stream_seed(self.seeds[k], TRAIN_ENV_STREAM, int(self.loop.episode_index[k]))
            obs, _ = self.envs[k].reset(seed=seed)
            for action in self.loop.actions[k, : int(self.loop.episode[k, 3])]:
                obs, *_ = self.envs[k].step(action)
            if not np.array_equal(np.asarray(obs, np.float32), saved_obs):
                raise RunError(
                    f"--resume {self.run_dirs[k]}: replaying the current episode did not "
                    f"reproduce the saved observation; the environment is not deterministic "
                    f"on this machine",
                    exit_code=1,
                )
        return int(self.loop.epoch_index[0])

    # -- the loop -------------------------------------------------------------------------

    def run(self) -> TrainResult:
        """Train until `config.total_steps` env steps; see the module docstring."""
        cfg, loop, replay = self.config, self.loop, self.replay
        self.lifecycle.session_start = time.perf_counter()
        self.lifecycle.refuse_if_done()
        display = self.lifecycle.open_display(self.env_step, self._memory_line())
        self.display = display
        if not np.isnan(loop.last_episode[0, 0]):  # a resumed run shows where it left off
            display.status(
                episode_return=float(loop.last_episode[0, 0]),
                episode_cost=float(loop.last_episode[0, EPISODE_FIELDS.index(self.cost_kind)]),
            )
        last_rows: list[dict[str, float] | None] = [None] * len(self.seeds)
        num = len(self.seeds)
        timer = (time.perf_counter(), self.env_step, int(loop.epoch_updates[0]))
        phase = self.clock if self.clock is not None else _untimed
        with self.lifecycle.guard(lambda: self.env_step) as interrupted:
            while self.env_step < cfg.total_steps:
                if interrupted:
                    raise self.lifecycle.interrupt(self.env_step, self._save)
                step = self.env_step
                with phase("action"):
                    actions = self._act(step)
                self._check_actions(actions, f"at env step {step + 1}")
                next_obs = np.empty_like(loop.obs)
                reward, cost = np.empty(num), np.empty(num)
                ends, truncs = np.zeros(num, bool), np.zeros(num, bool)
                done = np.zeros(num, bool)
                with phase("env_step"):
                    for k, env in enumerate(self.envs):
                        obs_k, r, terminated, truncated, info = env.step(actions[k])
                        next_obs[k] = obs_k
                        reward[k], cost[k] = float(r), cost_of(info)
                        # a step that ends the reward's bootstrap while the episode goes on
                        # (a goal reached on the paper's navigation tasks) is stored as one
                        ends[k] = bool(terminated) or bool(info.get("bootstrap_end", False))
                        truncs[k] = bool(truncated)
                        done[k] = bool(terminated or truncated)
                        self._record(k, actions[k], reward[k], cost[k])
                with phase("replay_add"):
                    replay.add(loop.obs, actions, reward, cost, next_obs, ends, truncs)
                loop.env_step[:] += 1
                if self.env_step >= cfg.initial_steps and len(replay) >= cfg.learning_starts:
                    with phase("replay_sample"):
                        batch = replay.sample_block(
                            cfg.updates_per_step, cfg.batch_size, self.env_step
                        )
                    with phase("update"):
                        self.states, sums = self.programs.train(
                            self.states,
                            loop.sums,
                            batch,
                            int(loop.update_count[0]),
                            self.env_step,
                            loop_info(loop, planned_updates(cfg), self.window),
                        )
                        if self.clock is not None:
                            jax.block_until_ready(self.states)
                    self.loop = loop = loop.replace(sums=sums)
                    loop.update_count[:] += cfg.updates_per_step
                    loop.epoch_updates[:] += cfg.updates_per_step
                with phase("episode_end"):
                    for k in range(num):
                        if done[k]:
                            self._end_episode(k)
                        else:
                            loop.obs[k] = next_obs[k]
                display.step()
                if self.env_step % cfg.epoch_steps == 0 or self.env_step == cfg.total_steps:
                    elapsed = time.perf_counter() - timer[0]
                    speed = (
                        (self.env_step - timer[1]) / elapsed,
                        (int(loop.epoch_updates[0]) - timer[2]) / elapsed,
                    )
                    with phase("epoch_end"):
                        last_rows = self._end_epoch(speed)
                    loop = self.loop
                    timer = (time.perf_counter(), self.env_step, 0)
                if self.clock is not None and int(loop.update_count[0]) > 0:
                    self.clock.start_steady()
        return self.lifecycle.finish(self.env_step, last_rows)

    def _act(self, step: int) -> np.ndarray:
        """The actions `[S, da]` of env step `step` (0-based): uniform in the box during the
        warm-up of an algorithm that asks for it, the policy's otherwise."""
        if self.uniform_warmup and step < self.config.initial_steps:
            return uniform_actions(self.seeds, step, self.spec)
        loop = self.loop
        return np.asarray(self.programs.act(self.states, loop.obs, loop.act_key, step, False))

    def _memory_line(self) -> str:
        spec, num = self.spec, len(self.seeds)
        return (
            f"replay: {num} seed{'s' if num > 1 else ''} x {self.config.replay_size} "
            f"transitions x {row_bytes(spec.obs_dim, spec.act_dim)} B = "
            f"{human_bytes(self.replay_bytes)} at most"
        )

    def _record(self, k: int, action: np.ndarray, reward: float, cost: float) -> None:
        loop = self.loop
        length = int(loop.episode[k, 3])
        if length >= loop.actions.shape[1]:
            raise RunError(
                f"the {self.config.task} env ran past its time limit of "
                f"{self.spec.max_episode_steps} steps without ending the episode",
                exit_code=1,
            )
        loop.actions[k, length] = action
        self.episodes.record(k, reward, cost)

    def _end_episode(self, k: int) -> None:
        loop = self.loop
        loop.epoch_episodes[k] += 1
        loop.epoch_totals[k] += loop.episode[k]
        loop.last_episode[k] = loop.episode[k]
        push_episode(loop, k, loop.episode[k], self.window)
        if k == 0:
            self.display.status(
                episode_return=float(loop.episode[k, 0]),
                episode_cost=float(loop.episode[k, EPISODE_FIELDS.index(self.cost_kind)]),
            )
        loop.episode_index[k] += 1
        self._reset(k)

    def _check_finite(self, sums: dict[str, Any]) -> None:
        bad = [
            (int(v[k]), name, k)
            for name, v in sums["first_bad"].items()
            for k in range(len(self.seeds))
            if int(v[k]) >= 0
        ]
        if not bad:
            return
        index, name, k = min(bad)
        step = int(sums["first_bad_step"][name][k])
        raise NonFiniteLoss(
            f"non-finite {name}{self.lifecycle.of_seed(k)} at update {index} (after env step "
            f"{step}); training stopped. {self.lifecycle.last_good()}"
        )

    def _check_actions(self, actions: np.ndarray, where: str) -> None:
        """Stop on a non-finite action `[S, da]` (a diverged policy) the way a non-finite
        loss stops: one `NonFiniteLoss` line naming the loss if one is non-finite, else the
        action, the parameters that diverged and the last good checkpoint."""
        if np.isfinite(actions).all():
            return
        self._check_finite(jax.device_get(self.loop.sums))
        bad = int(np.flatnonzero(~np.isfinite(actions).all(axis=1))[0])
        raise NonFiniteLoss(
            f"non-finite action{self.lifecycle.of_seed(bad)} {where}{self._nonfinite_state(bad)}; "
            f"training stopped. {self.lifecycle.last_good()}"
        )

    def _nonfinite_state(self, k: int) -> str:
        """Which parts of seed k's learner state hold non-finite numbers, and the last update."""
        parts = nonfinite_parts(unstack(self.states, k))
        if not parts:
            return ""
        updates = int(self.loop.update_count[k])
        return (
            f": the {' and '.join(parts)} parameters became non-finite within updates "
            f"{max(updates - self.config.updates_per_step, 0)}-{updates - 1} (a learning rate "
            f"too large?)"
        )

    def _evaluate(self) -> list[dict[str, float] | None]:
        """`eval_episodes` deterministic episodes per seed, the seeds in lockstep."""
        zero_keys = self.loop.act_key

        def act(obs: np.ndarray) -> np.ndarray:
            actions = np.asarray(self.programs.act(self.states, obs, zero_keys, 0, True))
            self._check_actions(actions, f"in the evaluation after env step {self.env_step}")
            return actions

        return evaluate_seeds(
            self.eval_envs,
            act,
            self.seeds,
            int(self.loop.epoch_index[0]),
            self.config.eval_episodes,
            self.spec.cost_gamma,
        )

    def _end_epoch(self, speed: tuple[float, float]) -> list[dict[str, float] | None]:
        """Evaluate, log one row per seed, save checkpoints; the only device sync of the
        epoch."""
        loop = self.loop
        sums = jax.device_get(loop.sums)
        self._check_finite(sums)
        evals = self._evaluate()
        loop.epoch_index[:] += 1
        wall = self.lifecycle.wall()
        rows: list[dict[str, float] | None] = []
        best: list[int] = []
        for k in range(len(self.seeds)):
            count = int(sums["count"][k])
            row, is_feasible = epoch_row(
                epoch=int(loop.epoch_index[k]),
                env_steps=self.env_step,
                updates=int(loop.update_count[k]),
                episodes=int(loop.episode_index[k]),
                train_totals=loop.epoch_totals[k],
                train_count=int(loop.epoch_episodes[k]),
                evaluation=evals[k],
                spec=self.spec,
                metrics={
                    name: float(sums["sum"][name][k]) / count if count else math.nan
                    for name in self.metric_names
                },
                speed=speed,
                wall=wall,
            )
            self.lifecycle.write_row(k, row)
            rows.append(row)
            previous = loop.best_eval_return[k]
            if is_feasible and (np.isnan(previous) or row["eval/return"] > previous):
                loop.best_eval_return[k] = row["eval/return"]
                best.append(k)
        first = rows[0]
        assert first is not None
        self.display.status(
            multiplier=first.get("train/multiplier"),
            eval_return=first["eval/return"],
            eval_cost=first[f"eval/{self.cost_kind}"],
        )
        # Start the next epoch's accumulators before saving, so the checkpoint describes
        # the state right after this epoch.
        self.loop = loop.replace(sums=new_sums(self.metric_names, len(self.seeds)))
        self.loop.epoch_episodes[:] = 0
        self.loop.epoch_totals[:] = 0.0
        self.loop.epoch_updates[:] = 0
        for k in best:
            self.lifecycle.save_best(k, self.env_step, unstack(self.states, k))
        self._save()
        return rows


def _check_memory(needed: int, num: int, capacity: int, spec: TaskSpec) -> None:
    available = available_memory()
    if available is None or needed <= 0.9 * available:
        return
    fits = int(0.9 * available / (num * row_bytes(spec.obs_dim, spec.act_dim)))
    raise RunError(
        f"the replay needs {human_bytes(needed)} ({num} seed{'s' if num > 1 else ''} x "
        f"{capacity} transitions x {row_bytes(spec.obs_dim, spec.act_dim)} B) but this machine "
        f"has {human_bytes(available)} available; lower --replay-size (at most {fits} fits)"
    )
