"""The training loop: host-side environment stepping, replay, fused updates, evaluation,
logging and checkpoints (SPEC §7).

One env step:
    action = select_action(state, obs)            # one jitted call, the only per-step sync
    env.step(action) -> replay.add(...)
    if learning: state, sums = train_step(state, sums, replay.sample_block(U, B))
The U updates of one env step are one jitted call on a `[U, B, ...]` block; their metrics
are summed on the device and read back once per epoch, when the row is logged.

Exact resume. Every random stream is a pure function of the seed and a counter: the train
env is reset with a seed derived from (seed, episode index), the acting noise from (seed,
env step), evaluation envs from (seed, epoch, episode), and the replay sampler's numpy
generator state is saved. A checkpoint holds the agent, the replay buffer, the counters and
the actions taken so far in the current episode; resuming resets the env with that
episode's seed and replays those actions, which restores the simulator state exactly (the
simulators are deterministic on one machine; the resumed observation is checked against the
saved one). A checkpoint can therefore be taken at any env step, at epoch ends and on Ctrl-C.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import platform
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import flax
import gymnasium
import jax
import jax.numpy as jnp
import numpy as np

from algd_jax.agent import AgentState, create_agent, select_action, update_many
from algd_jax.checkpointing import Checkpointer
from algd_jax.compile_options import tuned_jit
from algd_jax.config import AgentConfig
from algd_jax.envs import TaskSpec, make_env
from algd_jax.logging_utils import TIMING_PREFIX, Display, ProgressLog
from algd_jax.replay import ReplayBuffer
from algd_jax.train_config import (
    RunError,
    TrainConfig,
    resolve_agent_config,
    resolve_task,
)

# Independent random streams derived from the run seed (see `stream_seed`).
TRAIN_ENV_STREAM, EVAL_ENV_STREAM, REPLAY_STREAM, ACT_STREAM = 0, 1, 2, 3

#: Columns of progress.csv before the per-update metrics (which follow, sorted).
EPISODE_COLUMNS = (
    "train/episode_return",
    "train/episode_cost",
    "train/episode_discounted_cost",
    "train/episode_length",
    "eval/return",
    "eval/cost",
    "eval/discounted_cost",
    "eval/length",
    "eval/feasible",
)
TIMING_COLUMNS = ("time/env_steps_per_s", "time/updates_per_s", "time/wall_s")


class NonFiniteLoss(RunError):
    """A loss became NaN or infinite; training stops and keeps its last good checkpoint."""

    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=1)


class Interrupted(RunError):
    """Ctrl-C (SIGINT) or SIGTERM: a checkpoint was saved, the run can be resumed."""

    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=130)


def stream_seed(seed: int, stream: int, *counters: int) -> int:
    """A 32-bit seed for one random stream of the run, e.g. (seed, TRAIN_ENV_STREAM, k)."""
    return int(np.random.SeedSequence([seed, stream, *counters]).generate_state(1)[0])


# -- jitted pieces (module level, so every run in a process shares the compiled code) ---


@tuned_jit(static_argnames="deterministic")
def _act(
    state: AgentState, obs: jax.Array, key: jax.Array, step: jax.Array, deterministic: bool
) -> jax.Array:
    """One env action `[da]` for one observation `[ds]`; the noise key is (key, step)."""
    return select_action(state, obs[None], jax.random.fold_in(key, step), deterministic)[0]


def _new_sums(names: list[str]) -> dict[str, Any]:
    """Device-side epoch accumulators of the update metrics."""
    return {
        "sum": {k: jnp.zeros((), jnp.float32) for k in names},
        "count": jnp.zeros((), jnp.int32),
        # global index of the first update whose metric was not finite (-1: none yet),
        # and the env step after which it ran
        "first_bad": {k: jnp.full((), -1, jnp.int32) for k in names},
        "first_bad_step": {k: jnp.full((), -1, jnp.int32) for k in names},
    }


@tuned_jit(donate_argnums=(0, 1))
def _train_step(
    state: AgentState,
    sums: dict[str, Any],
    batch: dict[str, jax.Array],
    first_update: jax.Array,
    env_step: jax.Array,
) -> tuple[AgentState, dict[str, Any]]:
    """U fused updates (`batch` leaves `[U, B, ...]`) plus on-device metric accumulation.

    `first_update` is the global index of the first of the U updates, `env_step` the env
    step they follow; both only label a non-finite metric.
    """
    state, metrics = update_many(state, batch)
    num = batch["obs"].shape[0]
    index = first_update + jnp.arange(num, dtype=jnp.int32)
    new = {"sum": {}, "count": sums["count"] + num, "first_bad": {}, "first_bad_step": {}}
    for key, values in metrics.items():
        bad = ~jnp.isfinite(values)
        seen = sums["first_bad"][key] >= 0
        fresh = ~seen & bad.any()
        new["first_bad"][key] = jnp.where(fresh, index[jnp.argmax(bad)], sums["first_bad"][key])
        new["first_bad_step"][key] = jnp.where(fresh, env_step, sums["first_bad_step"][key])
        new["sum"][key] = sums["sum"][key] + jnp.sum(values)
    return state, new


def new_agent(agent_config: AgentConfig, spec: TaskSpec, seed: int) -> AgentState:
    """A freshly initialised agent for the task, every leaf a strongly typed JAX array.

    flax's `TrainState.create` leaves `step` a Python int, which JAX treats as weakly typed;
    a state restored from a checkpoint has strongly typed leaves. Fixing the types here
    keeps one compiled program for fresh, updated and restored states (weak types are part
    of jit's cache key) and gives checkpoint templates the leaf types they restore.
    """
    state = create_agent(
        agent_config, spec.obs_dim, np.asarray(spec.action_low), np.asarray(spec.action_high), seed
    )

    def strong(leaf: Any) -> jax.Array:
        leaf = jnp.asarray(leaf)
        return jnp.asarray(leaf, dtype=leaf.dtype)

    return jax.tree.map(strong, state)


# -- host-side bookkeeping ------------------------------------------------------------


@dataclass
class Episode:
    """The running totals of the current training episode, and its actions (for resume)."""

    seed: int
    ret: float = 0.0
    cost: float = 0.0
    discounted_cost: float = 0.0
    discount: float = 1.0
    length: int = 0
    actions: list[list[float]] = field(default_factory=list)

    def record(self, action: np.ndarray, reward: float, cost: float, cost_gamma: float) -> None:
        self.ret += reward
        self.cost += cost
        self.discounted_cost += self.discount * cost
        self.discount *= cost_gamma
        self.length += 1
        self.actions.append(action.tolist())

    def summary(self) -> dict[str, float]:
        return {
            "return": self.ret,
            "cost": self.cost,
            "discounted_cost": self.discounted_cost,
            "length": float(self.length),
        }


def _mean(values: list[dict[str, float]], key: str) -> float:
    return float(np.mean([v[key] for v in values])) if values else math.nan


def run_episode(
    env: gymnasium.Env,
    state: AgentState,
    seed: int,
    cost_gamma: float,
    frames: list[np.ndarray] | None = None,
) -> dict[str, float]:
    """One deterministic episode (noise-free sampler) from `env.reset(seed=seed)`.

    Returns return, summed cost, discounted cost (`sum_t cost_gamma**t c_t`) and length.
    Appends `env.render()` frames to `frames` when given.
    """
    episode = Episode(seed=seed)
    obs, _ = env.reset(seed=seed)
    key = jax.random.key(0)  # unused by the deterministic sampler
    while True:
        if frames is not None:
            frames.append(env.render())
        action = np.asarray(_act(state, np.asarray(obs, np.float32), key, 0, deterministic=True))
        obs, reward, terminated, truncated, info = env.step(action)
        episode.record(action, float(reward), float(info["cost"]), cost_gamma)
        if terminated or truncated:
            return episode.summary()


def feasible(spec: TaskSpec, summary: dict[str, float]) -> bool:
    """Whether an evaluation's cost is within the task's limit (the quantity the task
    reports: discounted cost against h, or summed cost against C)."""
    if spec.eval_cost == "discounted":
        return summary["discounted_cost"] <= spec.cost_budget
    assert spec.episode_cost_limit is not None
    return summary["cost"] <= spec.episode_cost_limit


def cost_limit_of(spec: TaskSpec) -> float:
    """The limit evaluation compares with (see `feasible`)."""
    if spec.eval_cost == "discounted":
        return spec.cost_budget
    assert spec.episode_cost_limit is not None
    return spec.episode_cost_limit


@contextmanager
def _catch_interrupts() -> Iterator[list[int]]:
    """Turn the first SIGINT/SIGTERM into a flag the loop polls between env steps; a second
    one interrupts at once (without a checkpoint)."""
    flag: list[int] = []

    def handler(signum: int, _frame: Any) -> None:
        if flag:
            raise KeyboardInterrupt
        flag.append(signum)
        print(
            "\nstopping: saving a checkpoint after this env step (press Ctrl-C again to "
            "quit without saving)",
            file=sys.stderr,
            flush=True,
        )

    try:
        previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread: leave signals alone
        yield flag
        return
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


# -- run directory ----------------------------------------------------------------------


def default_run_dir(config: TrainConfig, root: Path = Path("runs")) -> Path:
    """`runs/<agent>-<task>/seed<k>-<timestamp>/`, with a suffix if that already exists."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = root / f"{config.algo.agent}-{config.task}" / f"seed{config.seed}-{stamp}"
    candidate, n = base, 1
    while candidate.exists():
        candidate = base.with_name(f"{base.name}-{n}")
        n += 1
    return candidate


def _check_new_run_dir(path: Path) -> None:
    """Refuse a run directory that already holds something: never overwrite a run."""
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise RunError(
            f"--run-dir {path} already exists; choose a new directory or continue that run "
            f"with --resume {path}"
        )


def write_config(
    run_dir: Path, config: TrainConfig, agent_config: AgentConfig, spec: TaskSpec
) -> None:
    """The resolved configuration of the run, as `run_dir/config.json`."""
    data = {
        "config": config.to_dict(),
        "agent_config": agent_config.to_dict(),
        "task_spec": dataclasses.asdict(spec),
        "versions": {
            "python": platform.python_version(),
            "jax": jax.__version__,
            "flax": flax.__version__,
            "numpy": np.__version__,
        },
        "created": dt.datetime.now().isoformat(timespec="seconds"),
    }
    tmp = run_dir / "config.json.tmp"
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(run_dir / "config.json")


# -- the trainer ------------------------------------------------------------------------


@dataclass
class TrainResult:
    """What a finished `train` call reports."""

    run_dir: Path
    env_steps: int
    last_row: dict[str, float] | None
    cost_column: str
    """The progress column the cost limit applies to (`eval/cost` or `eval/discounted_cost`)."""
    cost_limit: float


class Trainer:
    """Owns one run: environments, agent, replay, logs and checkpoints.

    Build with `Trainer(config)`; `config.resume` selects continuing a run directory.
    `run()` trains to `config.total_steps` and returns a `TrainResult`; it raises
    `RunError` subclasses for everything a user should see as one line.
    """

    def __init__(self, config: TrainConfig, run_root: Path = Path("runs")) -> None:
        self.config = config
        self.spec = resolve_task(config)
        self.agent_config = resolve_agent_config(config, self.spec)
        spec = self.spec
        # the episode cost that the task's limit applies to, for the terminal display
        self.cost_kind = "discounted_cost" if spec.eval_cost == "discounted" else "cost"
        if config.resume is None:
            # checked before the slow set-up below, created only once that succeeded
            self.run_dir = config.run_dir or default_run_dir(config, run_root)
            _check_new_run_dir(self.run_dir)
        self.env = self._make_env()
        self.eval_env = self._make_env() if config.eval_episodes > 0 else None
        self.state = new_agent(self.agent_config, spec, config.seed)
        self.replay = ReplayBuffer(
            capacity=config.replay_size,
            obs_dim=spec.obs_dim,
            act_dim=spec.act_dim,
            seed=stream_seed(config.seed, REPLAY_STREAM),
            truncation_ends_bootstrap=config.truncation_ends_bootstrap,
            cost_mask=config.cost_mask,
        )
        self.act_key = jax.random.key(stream_seed(config.seed, ACT_STREAM))
        example = self.replay_block_example()
        shapes = jax.eval_shape(update_many, self.state, example)[1]
        self.metric_names = sorted(shapes)
        self.columns = [
            "epoch",
            "env_steps",
            "updates",
            "episodes",
            *EPISODE_COLUMNS,
            *(f"train/{k}" for k in self.metric_names),
            *TIMING_COLUMNS,
        ]

        # loop counters (all saved in checkpoints)
        self.env_step = 0
        self.episode_index = 0
        self.update_count = 0
        self.epoch_index = 0
        self.wall_before = 0.0  # seconds spent in earlier sessions of this run
        self.best_eval_return: float | None = None
        self.epoch_episodes: list[dict[str, float]] = []
        self.epoch_updates = 0  # updates since the current epoch began
        self.epoch_start_step = 0  # env step at which the current epoch began
        self.sums = _new_sums(self.metric_names)
        self.last_episode: dict[str, float] | None = None
        self.last_saved_step = -1

        if config.resume is not None:
            self.run_dir = Path(config.resume)
            self.checkpointer = Checkpointer(self.run_dir, keep=config.keep_checkpoints)
            try:
                self._restore()
            except BaseException:
                self.checkpointer.close()
                raise
            # record a raised --total-steps; `resume` itself is not part of the run's config
            saved = dataclasses.replace(config, resume=None)
            write_config(self.run_dir, saved, self.agent_config, spec)
            resume_step: int | None = self.env_step
        else:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            config = dataclasses.replace(config, run_dir=self.run_dir)
            self.config = config
            write_config(self.run_dir, config, self.agent_config, spec)
            self.checkpointer = Checkpointer(self.run_dir, keep=config.keep_checkpoints)
            self.episode = Episode(seed=stream_seed(config.seed, TRAIN_ENV_STREAM, 0))
            self.obs = self._reset(self.episode.seed)
            resume_step = None
        self.log = ProgressLog(self.run_dir, self.columns, resume_step=resume_step)

    # -- environment helpers ----------------------------------------------------------

    def _make_env(self) -> gymnasium.Env:
        try:
            return make_env(
                self.config.task, self.config.cost_limit, paper_setting=self.config.paper_setting
            )
        except (ValueError, ImportError) as err:
            raise RunError(str(err)) from None

    def _reset(self, seed: int) -> np.ndarray:
        obs, _ = self.env.reset(seed=seed)
        return np.asarray(obs, np.float32)

    def replay_block_example(self) -> dict[str, jax.ShapeDtypeStruct]:
        """Shapes of one `[U, B, ...]` batch (for tracing the update without data)."""
        u, b, ds, da = (
            self.config.updates_per_step,
            self.config.batch_size,
            self.spec.obs_dim,
            self.spec.act_dim,
        )
        f32 = jnp.float32
        shapes = {"obs": (u, b, ds), "action": (u, b, da), "next_obs": (u, b, ds)}
        for key in ("reward", "cost", "mask_r", "mask_c"):
            shapes[key] = (u, b)
        return {k: jax.ShapeDtypeStruct(v, f32) for k, v in shapes.items()}

    # -- checkpoint state ---------------------------------------------------------------

    def _loop_state(self) -> dict[str, Any]:
        sums = jax.device_get(self.sums)
        episode = dataclasses.asdict(self.episode)
        return {
            "format": 1,
            "env_step": self.env_step,
            "episode_index": self.episode_index,
            "update_count": self.update_count,
            "epoch_index": self.epoch_index,
            "wall_time": self.wall_before + (time.perf_counter() - self.session_start),
            "best_eval_return": self.best_eval_return,
            "episode": episode,
            "obs": self.obs.tolist(),
            "last_episode": self.last_episode,
            "epoch": {
                "episodes": self.epoch_episodes,
                "updates": self.epoch_updates,
                "start_step": self.epoch_start_step,
            },
            "sums": jax.tree.map(lambda x: x.item(), sums),  # exact: f32 -> float -> f32
            "replay": self.replay.meta(),
        }

    def _save(self) -> Path:
        path = self.checkpointer.save(
            self.env_step, self.state, self._loop_state(), self.replay.state_dict()
        )
        self.last_saved_step = self.env_step
        return path

    def _restore(self) -> None:
        steps = self.checkpointer.steps("last")
        if not steps:
            raise RunError(
                f"--resume {self.run_dir}: no checkpoint to resume from (the run stopped "
                f"before its first epoch ended)"
            )
        self.state, arrays, loop = self.checkpointer.restore(self.state)
        assert arrays is not None
        try:
            self.replay.load(arrays, loop["replay"])
            self.env_step = int(loop["env_step"])
            self.episode_index = int(loop["episode_index"])
            self.update_count = int(loop["update_count"])
            self.epoch_index = int(loop["epoch_index"])
            self.wall_before = float(loop["wall_time"])
            self.best_eval_return = loop["best_eval_return"]
            self.last_episode = loop["last_episode"]
            self.epoch_episodes = list(loop["epoch"]["episodes"])
            self.epoch_updates = int(loop["epoch"]["updates"])
            self.epoch_start_step = int(loop["epoch"]["start_step"])
            self.sums = jax.tree.map(
                lambda zero, value: jnp.asarray(value, zero.dtype), self.sums, loop["sums"]
            )
            self.episode = Episode(**loop["episode"])
            saved_obs = np.asarray(loop["obs"], np.float32)
        except (KeyError, TypeError, ValueError) as err:
            raise RunError(
                f"--resume {self.run_dir}: checkpoint at step {self.env_step} is incomplete "
                f"({err})",
                exit_code=1,
            ) from None
        self.last_saved_step = self.env_step
        # Bring the simulator back to where the checkpoint left it: same reset seed, same
        # actions. Deterministic simulators reproduce the exact state.
        obs = self._reset(self.episode.seed)
        for action in self.episode.actions:
            obs, *_ = self.env.step(np.asarray(action, np.float32))
        self.obs = np.asarray(obs, np.float32)
        if not np.array_equal(self.obs, saved_obs):
            raise RunError(
                f"--resume {self.run_dir}: replaying the current episode did not reproduce the "
                f"saved observation; the environment is not deterministic on this machine",
                exit_code=1,
            )

    # -- the loop -------------------------------------------------------------------------

    def run(self) -> TrainResult:
        """Train until `config.total_steps` env steps; see the module docstring."""
        cfg = self.config
        self.session_start = time.perf_counter()
        if self.env_step >= cfg.total_steps:
            self.log.close()
            self.checkpointer.close()
            raise RunError(
                f"run {self.run_dir} already has {self.env_step} env steps (--total-steps "
                f"{cfg.total_steps}); raise --total-steps to continue it",
                exit_code=0,
            )
        epoch_timer = time.perf_counter()
        epoch_timer_step, epoch_timer_updates = self.env_step, self.epoch_updates
        display = Display(
            cfg.progress, total=cfg.total_steps, initial=self.env_step, cost_kind=self.cost_kind
        )
        self.display = display
        if self.last_episode is not None:  # a resumed run shows where it left off
            display.status(
                episode_return=self.last_episode["return"],
                episode_cost=self.last_episode[self.cost_kind],
            )
        last_row: dict[str, float] | None = None
        cost_gamma = self.agent_config.cost_gamma
        env, replay = self.env, self.replay
        try:
            with _catch_interrupts() as interrupted:
                while self.env_step < cfg.total_steps:
                    if interrupted:
                        raise self._interrupt()
                    action = np.asarray(
                        _act(self.state, self.obs, self.act_key, self.env_step, False)
                    )
                    if not np.isfinite(action).all():
                        # a diverged policy: name the loss now rather than feed the simulator
                        self._check_finite(jax.device_get(self.sums))
                        raise NonFiniteLoss(
                            f"non-finite action at env step {self.env_step + 1}; training "
                            f"stopped. {self._last_good()}"
                        )
                    next_obs, reward, terminated, truncated, info = env.step(action)
                    next_obs = np.asarray(next_obs, np.float32)
                    cost = float(info["cost"])
                    replay.add(self.obs, action, reward, cost, next_obs, terminated, truncated)
                    self.episode.record(action, float(reward), cost, cost_gamma)
                    self.env_step += 1
                    if self.env_step >= cfg.initial_steps and len(replay) >= cfg.learning_starts:
                        batch = replay.sample_block(cfg.updates_per_step, cfg.batch_size)
                        self.state, self.sums = _train_step(
                            self.state, self.sums, batch, self.update_count, self.env_step
                        )
                        self.update_count += cfg.updates_per_step
                        self.epoch_updates += cfg.updates_per_step
                    if terminated or truncated:
                        self._end_episode()
                    else:
                        self.obs = next_obs
                    display.step()
                    if self.env_step % cfg.epoch_steps == 0 or self.env_step == cfg.total_steps:
                        elapsed = time.perf_counter() - epoch_timer
                        speed = (
                            (self.env_step - epoch_timer_step) / elapsed,
                            (self.epoch_updates - epoch_timer_updates) / elapsed,
                        )
                        last_row = self._end_epoch(speed)
                        epoch_timer = time.perf_counter()
                        epoch_timer_step, epoch_timer_updates = self.env_step, 0
        except KeyboardInterrupt:
            raise RunError(
                f"interrupted without saving; the last checkpoint is step "
                f"{self.last_saved_step if self.last_saved_step >= 0 else 'none'} in "
                f"{self.run_dir}",
                exit_code=130,
            ) from None
        finally:
            display.close()
            self.log.close()
            self.checkpointer.close()
        return TrainResult(
            self.run_dir,
            self.env_step,
            last_row,
            f"eval/{self.cost_kind}",
            cost_limit_of(self.spec),
        )

    def _end_episode(self) -> None:
        summary = self.episode.summary()
        self.epoch_episodes.append(summary)
        self.last_episode = summary
        self.display.status(episode_return=summary["return"], episode_cost=summary[self.cost_kind])
        self.episode_index += 1
        self.episode = Episode(
            seed=stream_seed(self.config.seed, TRAIN_ENV_STREAM, self.episode_index)
        )
        self.obs = self._reset(self.episode.seed)

    def _interrupt(self) -> Interrupted:
        if self.env_step == 0:
            return Interrupted("interrupted before the first env step; nothing to save")
        if self.last_saved_step != self.env_step:
            self._save()
        return Interrupted(
            f"interrupted at env step {self.env_step}; checkpoint saved. Continue with: "
            f"python -m experiments.run --resume {self.run_dir}"
        )

    def _check_finite(self, sums: dict[str, Any]) -> None:
        bad = {k: int(v) for k, v in sums["first_bad"].items() if int(v) >= 0}
        if not bad:
            return
        name = min(bad, key=lambda k: (bad[k], k))
        step = int(sums["first_bad_step"][name])
        raise NonFiniteLoss(
            f"non-finite {name} at update {bad[name]} (after env step {step}); training "
            f"stopped. {self._last_good()}"
        )

    def _last_good(self) -> str:
        last = (
            f"step {self.last_saved_step} in {self.checkpointer.root / 'last'}"
            if self.last_saved_step >= 0
            else "none yet"
        )
        return f"Last good checkpoint: {last}; logs kept in {self.run_dir}"

    def _end_epoch(self, speed: tuple[float, float]) -> dict[str, float]:
        """Evaluate, log one row, save checkpoints; the only device sync of the epoch."""
        cfg, spec = self.config, self.spec
        sums = jax.device_get(self.sums)
        self._check_finite(sums)
        count = int(sums["count"])
        metrics = {
            f"train/{k}": float(sums["sum"][k]) / count if count else math.nan
            for k in self.metric_names
        }
        evals = []
        if self.eval_env is not None:
            for j in range(cfg.eval_episodes):
                seed = stream_seed(cfg.seed, EVAL_ENV_STREAM, self.epoch_index, j)
                evals.append(
                    run_episode(self.eval_env, self.state, seed, self.agent_config.cost_gamma)
                )
        eval_summary = {k: _mean(evals, k) for k in ("return", "cost", "discounted_cost", "length")}
        is_feasible = bool(evals) and feasible(spec, eval_summary)
        self.epoch_index += 1
        wall = self.wall_before + (time.perf_counter() - self.session_start)
        eps = self.epoch_episodes
        row: dict[str, float] = {
            "epoch": self.epoch_index,
            "env_steps": self.env_step,
            "updates": self.update_count,
            "episodes": self.episode_index,
            "train/episode_return": _mean(eps, "return"),
            "train/episode_cost": _mean(eps, "cost"),
            "train/episode_discounted_cost": _mean(eps, "discounted_cost"),
            "train/episode_length": _mean(eps, "length"),
            "eval/return": eval_summary["return"],
            "eval/cost": eval_summary["cost"],
            "eval/discounted_cost": eval_summary["discounted_cost"],
            "eval/length": eval_summary["length"],
            "eval/feasible": float(is_feasible) if evals else math.nan,
            **metrics,
            "time/env_steps_per_s": speed[0],
            "time/updates_per_s": speed[1],
            "time/wall_s": wall,
        }
        self.log.write(row)
        self.display.epoch(row)
        self.display.status(
            multiplier=metrics.get("train/multiplier"),
            eval_return=eval_summary["return"],
            eval_cost=eval_summary[self.cost_kind],
        )
        # Start the next epoch's accumulators before saving, so the checkpoint describes
        # the state right after this epoch.
        self.sums = _new_sums(self.metric_names)
        self.epoch_episodes = []
        self.epoch_updates = 0
        self.epoch_start_step = self.env_step
        if is_feasible and (
            self.best_eval_return is None or eval_summary["return"] > self.best_eval_return
        ):
            self.best_eval_return = eval_summary["return"]
            self.checkpointer.save(
                self.env_step,
                self.state,
                {"env_step": self.env_step, "eval": eval_summary},
                which="best",
            )
        self._save()
        return row


def timing_free(row: dict[str, str]) -> dict[str, str]:
    """A progress.csv row without its machine-speed columns (for comparing runs)."""
    return {k: v for k, v in row.items() if not k.startswith(TIMING_PREFIX)}


def train(config: TrainConfig, run_root: Path = Path("runs")) -> TrainResult:
    """Run (or, with `config.resume`, continue) one training run; see `Trainer`."""
    return Trainer(config, run_root=run_root).run()
