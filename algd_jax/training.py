"""The host training loop: environment stepping, replay, fused updates on a seed axis,
evaluation, logs and checkpoints (SPEC §7).

One env step, for S seeds at once:
    actions = programs.act(states, obs, keys, step)     # one compiled call, [S, da]
    envs[k].step(actions[k]) for each seed -> replay.add(...)
    if learning: states, sums = programs.train(states, sums, replay.sample_block(U, B))
The S x U updates of one env step are one compiled call on an `[S, U, B, ...]` block; their
metrics are summed on the device and read back once per epoch, when the rows are logged.

Everything the loop carries from one step to the next, besides the learner states, the
replay and the environments, is one explicit pytree, `LoopState`, with a leading seed axis;
a checkpoint saves its per-seed slice whole.

Exact resume. Every random stream is a pure function of the seed and a counter: the train
env is reset with a seed derived from (seed, episode index), the acting noise from (seed,
env step), evaluation envs from (seed, epoch, episode), replay indices from (seed, env
step). A checkpoint holds the learner, the replay rows and the loop state, including the
actions taken so far in the current episode; resuming resets the env with that episode's
seed and replays those actions, which restores the simulator state exactly (the
simulators are deterministic on one machine; the resumed observation is checked against
the saved one). A checkpoint can therefore be taken at any env step, at epoch ends and on
Ctrl-C.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import math
import os
import platform
import shlex
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import flax
import flax.struct as struct
import gymnasium
import jax
import jax.numpy as jnp
import numpy as np

from algd_jax.algorithms import Algorithm
from algd_jax.algorithms.base import LoopInfo
from algd_jax.checkpointing import Checkpointer
from algd_jax.envs import TaskSpec, make_env
from algd_jax.faults import (
    deferred_interrupts,
    is_out_of_memory,
    oom_reason,
    require_writable,
    write_fault,
)
from algd_jax.judging import cost_kind, cost_limit_of, feasible
from algd_jax.logging_utils import (
    TIMING_PREFIX,
    Display,
    LogBehindCheckpoint,
    ProgressLog,
    ResumePlan,
    plan_resume,
)
from algd_jax.memory import check_update_memory
from algd_jax.programs import Programs, new_sums, programs, resolve_seed_axis, stack, unstack
from algd_jax.replay import ReplayBuffer, replay_bytes, row_bytes
from algd_jax.rollouts import EPISODE_FIELDS, EpisodeStats, cost_of, mean_of, run_episodes
from algd_jax.train_config import (
    EXIT_ALREADY_DONE,
    FINISHED_FILE,
    GROUP_FILE,
    RESUMABLE_OVERRIDES,
    RunError,
    TrainConfig,
    resolve_hparams,
    resolve_task,
)

# Independent random streams derived from the run seed (see `stream_seed`).
TRAIN_ENV_STREAM, EVAL_ENV_STREAM, REPLAY_STREAM, ACT_STREAM = 0, 1, 2, 3
#: Uniform warm-up actions (`Algorithm.warmup_acting == "uniform"`), from (seed, env step).
UNIFORM_ACT_STREAM = 4
#: Version of the checkpoint layout this loop writes and reads (3: the episode window).
CHECKPOINT_FORMAT = 3

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


def new_state(algorithm: Algorithm, hparams: Any, spec: TaskSpec, seed: int) -> Any:
    """A freshly initialised learner for one seed, every leaf a strongly typed JAX array.

    Python scalars inside a state (flax's `TrainState.create` leaves `step` an int) are
    weakly typed for JAX, a restored state's leaves are not, and weak types are part of
    jit's cache key: fixing them here keeps one compiled program for fresh, updated and
    restored states.
    """
    state = algorithm.init(hparams, spec, jax.random.key(seed))

    def strong(leaf: Any) -> jax.Array:
        leaf = jnp.asarray(leaf)
        return jnp.asarray(leaf, dtype=leaf.dtype)

    return jax.tree.map(strong, state)


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


def push_episode(loop: LoopState, k: int, totals: np.ndarray, window: int) -> None:
    """Append seed k's finished episode (totals in `EPISODE_FIELDS` order) to its episode
    window of length `window`, dropping the oldest (in place; nothing when `window` is 0)."""
    if window == 0:
        return
    for window, value in (
        (loop.window_costs, totals[1]),
        (loop.window_discounted_costs, totals[2]),
        (loop.window_returns, totals[0]),
    ):
        window[k, :-1] = window[k, 1:]
        window[k, -1] = value


def planned_updates(config: TrainConfig) -> int:
    """Updates a run of `config.total_steps` env steps does: U after every env step from
    the first one at which both warm-ups are over."""
    first = max(config.initial_steps, config.learning_starts, 1)
    return max(config.total_steps - first + 1, 0) * config.updates_per_step


def loop_info(loop: LoopState, total_updates: int, window: int) -> LoopInfo:
    """The `LoopInfo` of every seed (leading axis `[S]`, episode windows `[S, window]`), as
    device arrays."""
    start = loop.window_costs.shape[1] - window
    i32 = lambda x: jnp.asarray(np.asarray(x, np.int32))  # noqa: E731
    f32 = lambda x: jnp.asarray(np.asarray(x, np.float32))  # noqa: E731
    return LoopInfo(
        env_step=i32(loop.env_step),
        epoch=i32(loop.epoch_index),
        update_step=i32(loop.update_count),
        total_updates=i32(np.full(loop.env_step.shape, total_updates)),
        episode_costs=f32(loop.window_costs[:, start:]),
        episode_discounted_costs=f32(loop.window_discounted_costs[:, start:]),
        episode_returns=f32(loop.window_returns[:, start:]),
        episode_count=i32(loop.episode_index),
    )


def uniform_actions(seeds: list[int], step: int, spec: TaskSpec) -> np.ndarray:
    """Uniform random actions `[S, da]` in the task's box for env step `step` (0-based),
    each from its seed and the step (so a resumed run draws the same ones)."""
    low = np.asarray(spec.action_low, np.float32)
    high = np.asarray(spec.action_high, np.float32)
    return np.stack(
        [
            np.random.default_rng(stream_seed(s, UNIFORM_ACT_STREAM, step))
            .uniform(low, high)
            .astype(np.float32)
            for s in seeds
        ]
    )


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


# -- run directories ----------------------------------------------------------------------


def default_run_dir(config: TrainConfig, root: Path = Path("runs")) -> Path:
    """`runs/<algo>-<task>/seed<k>-<timestamp>/` (several seeds: `seeds<a>-<b>-...-`),
    with a suffix if that already exists."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    seeds = config.seed_list
    label = f"seed{seeds[0]}" if config.seeds is None else "seeds" + "-".join(map(str, seeds))
    base = root / f"{config.algo}-{config.task}" / f"{label}-{stamp}"
    candidate, n = base, 1
    while candidate.exists():
        candidate = base.with_name(f"{base.name}-{n}")
        n += 1
    return candidate


def seed_dirs(root: Path, config: TrainConfig) -> list[Path]:
    """The run directory of each seed: `root` itself for one `--seed`, `root/seed<k>/` for
    `--seeds`."""
    if config.seeds is None:
        return [root]
    return [root / f"seed{s}" for s in config.seeds]


def _check_new_run_dir(path: Path) -> None:
    """Refuse a run directory that already holds something: never overwrite a run."""
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise RunError(
            f"--run-dir {path} already exists; choose a new directory or continue that run "
            f"with --resume {path}"
        )


def config_values(config: TrainConfig, hparams: Any, spec: TaskSpec, seed: int) -> dict[str, Any]:
    """Everything that decides one seed's numbers (not the run's length, paths, terminal
    output or how many other seeds train beside it), flattened to `name: value`."""
    data = config.to_dict()
    for key in (*RESUMABLE_OVERRIDES, "seeds"):
        data.pop(key, None)
    # the options' values are in `hparams`, however they were chosen
    for key in ("hparams", "preset", "list_tasks", "list_algos"):
        data.pop(key, None)
    data["seed"] = seed
    values = {f"config.{k}": v for k, v in data.items()}
    values.update({f"algorithm.{k}": v for k, v in dataclasses.asdict(hparams).items()})
    values.update({f"task.{k}": v for k, v in dataclasses.asdict(spec).items()})
    return json.loads(json.dumps(values, default=str))


def _field_defaults(config: TrainConfig, hparams: Any) -> dict[str, Any]:
    """The default of every `config_values` key that has one (dataclass field defaults)."""
    out: dict[str, Any] = {}
    for prefix, cls in (("config", TrainConfig), ("algorithm", type(hparams))):
        for f in dataclasses.fields(cls):
            if f.default is not dataclasses.MISSING:
                out[f"{prefix}.{f.name}"] = json.loads(json.dumps(f.default, default=str))
    return out


def config_digest(values: dict[str, Any]) -> str:
    """A digest of `config_values`, stored with each checkpoint."""
    blob = json.dumps(values, sort_keys=True, default=str)
    return hashlib.blake2b(blob.encode(), digest_size=16).hexdigest()


def _check_writable(path: Path) -> None:
    """Refuse a run directory that cannot be created, before any slow set-up: probe the
    nearest existing ancestor with a temporary directory (removed at once)."""
    import tempfile

    ancestor = path.absolute()
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise RunError(f"--run-dir {path}: {ancestor} is a file, not a directory")
    try:
        os.rmdir(tempfile.mkdtemp(dir=ancestor, prefix=".algd-probe-"))
    except OSError as err:
        raise RunError(
            f"--run-dir {path}: cannot create a directory in {ancestor} "
            f"({err.strerror or type(err).__name__}); choose a writable place"
        ) from None


def _versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "jax": jax.__version__,
        "flax": flax.__version__,
        "numpy": np.__version__,
    }


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def write_config(
    run_dir: Path, config: TrainConfig, hparams: Any, spec: TaskSpec, created: str | None = None
) -> None:
    """The resolved configuration of one seed's run, as `run_dir/config.json`."""
    _write_json(
        run_dir / "config.json",
        {
            "config": config.to_dict(),
            "algo": config.algo,
            "agent_config": dataclasses.asdict(hparams),
            "task_spec": dataclasses.asdict(spec),
            "versions": _versions(),
            "created": created or dt.datetime.now().isoformat(timespec="seconds"),
        },
    )


# -- the trainer ------------------------------------------------------------------------


@dataclass
class TrainResult:
    """What a finished `train` call reports (one entry per seed in `run_dirs`/`last_rows`)."""

    run_dir: Path
    run_dirs: list[Path]
    seeds: list[int]
    env_steps: int
    last_rows: list[dict[str, float] | None]
    cost_column: str
    """The progress column the cost limit applies to (`eval/cost` or `eval/discounted_cost`)."""
    cost_limit: float

    @property
    def last_row(self) -> dict[str, float] | None:
        return self.last_rows[0]


class Trainer:
    """The host shell of one run of S seeds: environments, learner states, replay, logs and
    checkpoints.

    Build with `Trainer(config)`; `config.resume` selects continuing a run directory.
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
        self.spec = resolve_task(config)
        self.hparams = resolve_hparams(config, self.spec)
        self.seeds = config.seed_list
        spec, num = self.spec, len(self.seeds)
        # the episode cost that the task's limit applies to, for the terminal display
        self.cost_kind = cost_kind(spec)
        if config.resume is None:
            # checked before the slow set-up below, created only once that succeeded
            self.run_dir = config.run_dir or default_run_dir(config, run_root)
            _check_new_run_dir(self.run_dir)
            _check_writable(self.run_dir)
        else:
            self.run_dir = Path(config.resume)
        self.run_dirs = seed_dirs(self.run_dir, config)
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
        self.metric_names = tuple(sorted(self.algorithm.metric_names(self.hparams)))
        self.columns = [
            "epoch",
            "env_steps",
            "updates",
            "episodes",
            *EPISODE_COLUMNS,
            *(f"train/{k}" for k in self.metric_names),
            *TIMING_COLUMNS,
        ]
        self.values = [config_values(config, self.hparams, spec, s) for s in self.seeds]
        self.window = self.algorithm.episode_window(self.hparams)
        self.loop = LoopState.create(self.seeds, spec, self.metric_names, self.window)
        self.last_saved_step = -1
        self.refusal: RunError | None = None
        self.checkpointers = [Checkpointer(d, keep=config.keep_checkpoints) for d in self.run_dirs]
        created, existed = False, self.run_dir.exists()
        try:
            if config.resume is not None:
                # Everything that can refuse is checked before anything is written.
                plans = self._restore_with_logs()
                if self.env_step >= config.total_steps:
                    self.refusal = RunError(
                        f"run {self.run_dir} already has {self.env_step} env steps "
                        f"(--total-steps {config.total_steps}); raise --total-steps to continue it",
                        exit_code=EXIT_ALREADY_DONE,
                    )
                    self.logs = []
                    return
                epochs = int(self.loop.epoch_index[0])
                plans = [plan_resume(d, self.columns, self.env_step, epochs) for d in self.run_dirs]
                for d in dict.fromkeys([self.run_dir, *self.run_dirs]):
                    require_writable(d, "--resume")
                # The repair completes or does not start: a signal meanwhile waits for it.
                with deferred_interrupts() as pending:
                    self._repair_for_resume(plans)
                if pending:
                    self._close()
                    raise Interrupted(
                        f"interrupted during start-up, after the run's files were made ready to "
                        f"continue from env step {self.env_step} (nothing else was written); "
                        f"continue with: python -m experiments.run --resume "
                        f"{shlex.quote(str(self.run_dir))}"
                    )
            else:
                for k in range(num):
                    self._reset(k)
                created = True
                self._create_dirs()
                self.logs = [ProgressLog(d, self.columns) for d in self.run_dirs]
        except BaseException:
            self._close_checkpointers()
            if created:  # a new run that failed to start leaves nothing behind
                import shutil

                for d in self.run_dirs if existed else [self.run_dir]:
                    shutil.rmtree(d, ignore_errors=True)
                if existed:
                    (self.run_dir / GROUP_FILE).unlink(missing_ok=True)
            raise

    def _repair_for_resume(self, plans: list[ResumePlan]) -> None:
        """Make the run's files continue from the restored checkpoint: drop the checkpoints
        made after it, note the resume in config.json, cut progress.csv back to it."""
        for plan in plans:
            for line in plan.messages():
                print(line, file=sys.stderr, flush=True)
        for d, checkpointer in zip(self.run_dirs, self.checkpointers, strict=True):
            for which in ("last", "best"):
                removed = checkpointer.remove_after(self.env_step, which)
                if removed:
                    print(
                        f"{d}: removing the {which} checkpoint(s) at env steps "
                        f"{removed}, made after the one resumed; training repeats them",
                        file=sys.stderr,
                        flush=True,
                    )
        self._record_resume()
        self.logs = [
            ProgressLog(d, self.columns, resume=plan, resume_step=self.env_step)
            for d, plan in zip(self.run_dirs, plans, strict=True)
        ]

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

    def _create_dirs(self) -> None:
        config = dataclasses.replace(self.config, run_dir=self.run_dir)
        self.config = config
        self.run_dir.mkdir(parents=True, exist_ok=True)
        created = dt.datetime.now().isoformat(timespec="seconds")
        if config.seeds is not None:
            _write_json(
                self.run_dir / GROUP_FILE,
                {"config": config.to_dict(), "seeds": list(config.seeds), "created": created},
            )
        for seed, run_dir in zip(self.seeds, self.run_dirs, strict=True):
            run_dir.mkdir(parents=True, exist_ok=True)
            one = dataclasses.replace(config, seed=seed, seeds=None, run_dir=run_dir)
            write_config(run_dir, one, self.hparams, self.spec, created)

    def _reset(self, k: int) -> None:
        """Start seed k's next training episode."""
        seed = stream_seed(self.seeds[k], TRAIN_ENV_STREAM, int(self.loop.episode_index[k]))
        obs, _ = self.envs[k].reset(seed=seed)
        self.loop.obs[k] = np.asarray(obs, np.float32)
        self.episodes.reset(k)

    # -- checkpoints ----------------------------------------------------------------------

    def _meta(self, k: int) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "env_step": self.env_step,
            "config_digest": config_digest(self.values[k]),
            "config": self.values[k],
        }

    def _record_resume(self) -> None:
        """Note a resume that trains in each config.json (and group.json): the new
        --total-steps and an appended `resumes` entry; the creation time stays."""
        record = {
            "at": dt.datetime.now().isoformat(timespec="seconds"),
            "from_env_step": self.env_step,
            "total_steps": self.config.total_steps,
        }
        paths = [d / "config.json" for d in self.run_dirs]
        if self.config.seeds is not None:
            paths.append(self.run_dir / GROUP_FILE)
        for path in paths:
            data = json.loads(path.read_text())
            data["config"]["total_steps"] = self.config.total_steps
            data.setdefault("resumes", []).append(record)
            _write_json(path, data)

    def _check_config(self, k: int, meta: dict[str, Any], step: int) -> None:
        """Refuse a checkpoint made under another configuration than config.json says.

        A field the checkpoint does not know (added by a later version) counts as unchanged
        while it holds its default value."""
        if meta.get("config_digest") == config_digest(self.values[k]):
            return
        saved = meta.get("config", {})
        ours = self.values[k]
        defaults = _field_defaults(self.config, self.hparams)
        changed = sorted(
            n
            for n in set(saved) | set(ours)
            if saved.get(n) != ours.get(n)
            and not (n not in saved and n in defaults and ours.get(n) == defaults[n])
        )
        if not changed:
            return
        shown = ", ".join(
            f"{n.split('.', 1)[1]} {saved.get(n)!r} -> {ours.get(n)!r}" for n in changed[:4]
        )
        more = f" and {len(changed) - 4} more" if len(changed) > 4 else ""
        raise RunError(
            f"--resume {self.run_dirs[k]}: its config.json does not match the configuration its "
            f"checkpoint at step {step} was trained with ({shown}{more}); restore the original "
            f"config.json",
            exit_code=2,
        )

    def _save(self) -> None:
        self.loop.wall_time[:] = self._wall()
        self.session_start = time.perf_counter()
        loop = self.loop.replace(sums=jax.device_get(self.loop.sums))
        for k, checkpointer in enumerate(self.checkpointers):
            with self._writing(k, "last"):
                checkpointer.save(
                    self.env_step,
                    unstack(self.states, k),
                    self._meta(k),
                    loop=unstack(loop, k),
                    replay=self.replay.state_dict(k),
                )
        self.last_saved_step = self.env_step

    @contextmanager
    def _writing(self, k: int, which: str | None) -> Iterator[None]:
        """A write of seed k's checkpoint (`which`) or progress row (None): a failure (a
        full disk) stops the run with one line; a partial checkpoint is removed, so the
        last good one and the log (cut back on resume) stay consistent."""
        try:
            yield
        except Exception as err:
            run_dir = self.run_dirs[k]
            if which is None:
                what = f"{run_dir / 'progress.csv'}"
            else:
                what = f"the checkpoint at env step {self.env_step} in {run_dir}"
                import shutil

                step = str(self.env_step)
                for partial in (self.checkpointers[k].root / which).glob(f"{step}*"):
                    if partial.name == step or partial.name.startswith(step + "."):
                        shutil.rmtree(partial, ignore_errors=True)
            last = self.last_saved_step if self.last_saved_step >= 0 else None
            fix = (
                f"training stopped at env step {self.env_step}; free space, then continue from "
                f"step {last} with --resume {shlex.quote(str(self.run_dir))}"
                if last is not None
                else "training stopped before its first checkpoint; free space and start again"
            )
            raise write_fault(err, what, fix) from None

    def _resume_steps(self) -> list[int]:
        """Env steps at which every seed has a checkpoint, newest first."""
        common = None
        for d, checkpointer in zip(self.run_dirs, self.checkpointers, strict=True):
            steps = set(checkpointer.steps("last"))
            if not steps:
                raise RunError(
                    f"--resume {d}: no checkpoint to resume from (the run stopped before its "
                    f"first epoch ended)"
                )
            common = steps if common is None else common & steps
        if not common:
            raise RunError(
                f"--resume {self.run_dir}: its seeds have no checkpoint at a common env step; "
                f"resume each seed directory on its own"
            )
        return sorted(common, reverse=True)

    def _restore(self, step: int) -> None:
        """Load every seed's checkpoint at `step` and bring its simulator back (reads only)."""
        template_state = unstack(self.states, 0)
        template_loop = unstack(self.loop.replace(sums=jax.device_get(self.loop.sums)), 0)
        states, loops = [], []
        for k, checkpointer in enumerate(self.checkpointers):
            meta = checkpointer.read_meta("last", step)
            if meta.get("format") != CHECKPOINT_FORMAT:
                raise RunError(
                    f"--resume {self.run_dirs[k]}: its checkpoints were written by another "
                    f"version of algd-jax (format {meta.get('format')}, this version reads "
                    f"{CHECKPOINT_FORMAT}); resume it with the version that started it",
                    exit_code=1,
                )
            self._check_config(k, meta, step)
            state, loop, arrays, _ = checkpointer.restore(
                template_state, step=step, loop_template=template_loop
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
        self.last_saved_step = step
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

    def _restore_with_logs(self) -> list[ResumePlan]:
        """Restore the newest checkpoint whose epochs progress.csv holds whole, with the
        plan of each seed's log. A checkpoint whose last row was torn by a crash mid-write
        gives way to the one before it (said on the terminal)."""
        steps = self._resume_steps()
        for i, step in enumerate(steps):
            self._restore(step)
            epochs = int(self.loop.epoch_index[0])
            try:
                return [plan_resume(d, self.columns, step, epochs) for d in self.run_dirs]
            except LogBehindCheckpoint as err:
                if not err.torn or i + 1 == len(steps):
                    raise
                print(
                    f"{err.path}: the row of the checkpoint at env step {step} was torn by a "
                    f"crash; resuming from the checkpoint at env step {steps[i + 1]} instead",
                    file=sys.stderr,
                    flush=True,
                )
        raise AssertionError("unreachable")

    def _close_checkpointers(self) -> None:
        for checkpointer in self.checkpointers:
            checkpointer.close()

    # -- the loop -------------------------------------------------------------------------

    def _wall(self) -> float:
        return float(self.loop.wall_time[0]) + (time.perf_counter() - self.session_start)

    def run(self) -> TrainResult:
        """Train until `config.total_steps` env steps; see the module docstring."""
        cfg, loop, replay = self.config, self.loop, self.replay
        self.session_start = time.perf_counter()
        if self.refusal is not None:
            self._close()
            # already at --total-steps: a run stopped between its last checkpoint and its
            # marker gets the marker; one that has it is left exactly as it is
            if (
                self.refusal.exit_code == EXIT_ALREADY_DONE
                and not (self.run_dir / FINISHED_FILE).exists()
            ):
                self._mark_finished()
            raise self.refusal
        display = Display(
            cfg.progress,
            total=cfg.total_steps,
            initial=self.env_step,
            cost_kind=self.cost_kind,
            seeds=self.seeds,
        )
        self.display = display
        if cfg.progress != "off":
            display.message(self._memory_line())
        if not np.isnan(loop.last_episode[0, 0]):  # a resumed run shows where it left off
            display.status(
                episode_return=float(loop.last_episode[0, 0]),
                episode_cost=float(loop.last_episode[0, EPISODE_FIELDS.index(self.cost_kind)]),
            )
        last_rows: list[dict[str, float] | None] = [None] * len(self.seeds)
        num = len(self.seeds)
        timer = (time.perf_counter(), self.env_step, int(loop.epoch_updates[0]))
        phase = self.clock if self.clock is not None else _untimed
        try:
            with _catch_interrupts() as interrupted:
                while self.env_step < cfg.total_steps:
                    if interrupted:
                        raise self._interrupt()
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
                            # a step that ends the reward's bootstrap while the episode goes
                            # on (a goal reached on the paper's navigation tasks) is stored
                            # as one
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
        except Exception as err:
            if not is_out_of_memory(err):
                raise
            raise RunError(
                f"out of memory at env step {self.env_step} ({oom_reason(err)}); training "
                f"stopped. {self._last_good()}; lower --batch-size or the algorithm's sizes",
                exit_code=1,
            ) from None
        except KeyboardInterrupt:
            last = self.last_saved_step if self.last_saved_step >= 0 else "none"
            raise RunError(
                f"interrupted without saving; the last checkpoint is step {last} in {self.run_dir}",
                exit_code=130,
            ) from None
        finally:
            display.close()
            self._close()
        self._mark_finished()
        return TrainResult(
            self.run_dir,
            self.run_dirs,
            self.seeds,
            self.env_step,
            last_rows,
            f"eval/{self.cost_kind}",
            cost_limit_of(self.spec),
        )

    def _mark_finished(self) -> None:
        """Say in each seed's directory (and a multi-seed run's root) that the run reached
        `--total-steps`: `finished.json`, written atomically last, so a sweep knows a run
        that stopped anywhere before it from one that completed."""
        marker = {
            "env_steps": self.env_step,
            "total_steps": self.config.total_steps,
            "seeds": self.seeds,
            "finished": dt.datetime.now().isoformat(timespec="seconds"),
        }
        roots = [self.run_dir] if self.run_dirs != [self.run_dir] else []
        for d in [*self.run_dirs, *roots]:
            _write_json(d / FINISHED_FILE, marker)

    def _act(self, step: int) -> np.ndarray:
        """The actions `[S, da]` of env step `step` (0-based): uniform in the box during the
        warm-up of an algorithm that asks for it, the policy's otherwise."""
        if self.uniform_warmup and step < self.config.initial_steps:
            return uniform_actions(self.seeds, step, self.spec)
        loop = self.loop
        return np.asarray(self.programs.act(self.states, loop.obs, loop.act_key, step, False))

    def _close(self) -> None:
        for log in getattr(self, "logs", []):
            log.close()
        self._close_checkpointers()

    def _memory_line(self) -> str:
        spec, num = self.spec, len(self.seeds)
        return (
            f"replay: {num} seed{'s' if num > 1 else ''} x {self.config.replay_size} "
            f"transitions x {row_bytes(spec.obs_dim, spec.act_dim)} B = "
            f"{_human(self.replay_bytes)} at most"
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

    def _interrupt(self) -> Interrupted:
        if self.env_step == 0:
            return Interrupted("interrupted before the first env step; nothing to save")
        if self.last_saved_step != self.env_step:
            self._save()
        return Interrupted(
            f"interrupted at env step {self.env_step}; checkpoint saved. Continue with: "
            f"python -m experiments.run --resume {shlex.quote(str(self.run_dir))}"
        )

    def _of_seed(self, k: int) -> str:
        return f" in seed {self.seeds[k]}" if len(self.seeds) > 1 else ""

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
            f"non-finite {name}{self._of_seed(k)} at update {index} (after env step {step}); "
            f"training stopped. {self._last_good()}"
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
            f"non-finite action{self._of_seed(bad)} {where}{self._nonfinite_state(bad)}; "
            f"training stopped. {self._last_good()}"
        )

    def _nonfinite_state(self, k: int) -> str:
        """Which parts of seed k's learner state hold non-finite numbers, and the last update."""
        state = jax.device_get(unstack(self.states, k))
        parts = []
        for f in dataclasses.fields(state):
            if not f.metadata.get("pytree_node", True):
                continue
            leaves = [
                x
                for x in jax.tree.leaves(getattr(state, f.name))
                # jax's issubdtype: numpy's fails on the PRNG key leaves
                if hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, np.floating)
            ]
            if any(not np.isfinite(x).all() for x in leaves):
                parts.append(f.name)
        if not parts:
            return ""
        updates = int(self.loop.update_count[k])
        return (
            f": the {' and '.join(parts)} parameters became non-finite within updates "
            f"{max(updates - self.config.updates_per_step, 0)}-{updates - 1} (a learning rate "
            f"too large?)"
        )

    def _last_good(self) -> str:
        where = self.checkpointers[0].root / "last"
        if len(self.run_dirs) > 1:
            where = self.run_dir / "seed*" / "checkpoints" / "last"
        last = (
            f"step {self.last_saved_step} in {where}" if self.last_saved_step >= 0 else "none yet"
        )
        return f"Last good checkpoint: {last}; logs kept in {self.run_dir}"

    def _evaluate(self) -> list[list[dict[str, float]]]:
        """`eval_episodes` deterministic episodes per seed, the seeds in lockstep."""
        if not self.eval_envs:
            return [[] for _ in self.seeds]
        epoch = int(self.loop.epoch_index[0])
        zero_keys = self.loop.act_key

        def act(obs: np.ndarray) -> np.ndarray:
            actions = np.asarray(self.programs.act(self.states, obs, zero_keys, 0, True))
            self._check_actions(actions, f"in the evaluation after env step {self.env_step}")
            return actions

        per_seed: list[list[dict[str, float]]] = [[] for _ in self.seeds]
        for j in range(self.config.eval_episodes):
            seeds = [stream_seed(s, EVAL_ENV_STREAM, epoch, j) for s in self.seeds]
            for k, summary in enumerate(
                run_episodes(self.eval_envs, act, seeds, self.spec.cost_gamma)
            ):
                per_seed[k].append(summary)
        return per_seed

    def _end_epoch(self, speed: tuple[float, float]) -> list[dict[str, float] | None]:
        """Evaluate, log one row per seed, save checkpoints; the only device sync of the
        epoch."""
        loop, spec = self.loop, self.spec
        sums = jax.device_get(loop.sums)
        self._check_finite(sums)
        evals = self._evaluate()
        loop.epoch_index[:] += 1
        wall = self._wall()
        rows: list[dict[str, float] | None] = []
        best: list[int] = []
        for k in range(len(self.seeds)):
            count = int(sums["count"][k])
            metrics = {
                f"train/{name}": float(sums["sum"][name][k]) / count if count else math.nan
                for name in self.metric_names
            }
            n_eps = int(loop.epoch_episodes[k])
            train = loop.epoch_totals[k] / n_eps if n_eps else np.full(4, np.nan)
            summary = {key: mean_of(evals[k], key) for key in EPISODE_FIELDS}
            is_feasible = bool(evals[k]) and feasible(spec, summary)
            row: dict[str, float] = {
                "epoch": int(loop.epoch_index[k]),
                "env_steps": self.env_step,
                "updates": int(loop.update_count[k]),
                "episodes": int(loop.episode_index[k]),
                "train/episode_return": float(train[0]),
                "train/episode_cost": float(train[1]),
                "train/episode_discounted_cost": float(train[2]),
                "train/episode_length": float(train[3]),
                "eval/return": summary["return"],
                "eval/cost": summary["cost"],
                "eval/discounted_cost": summary["discounted_cost"],
                "eval/length": summary["length"],
                "eval/feasible": float(is_feasible) if evals[k] else math.nan,
                **metrics,
                "time/env_steps_per_s": speed[0],
                "time/updates_per_s": speed[1],
                "time/wall_s": wall,
            }
            with self._writing(k, None):
                self.logs[k].write(row)
            self.display.epoch(row, self.seeds[k])
            rows.append(row)
            previous = loop.best_eval_return[k]
            if is_feasible and (np.isnan(previous) or summary["return"] > previous):
                loop.best_eval_return[k] = summary["return"]
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
            with self._writing(k, "best"):
                self.checkpointers[k].save(
                    self.env_step, unstack(self.states, k), self._meta(k), which="best"
                )
        self._save()
        return rows


def _human(num_bytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if num_bytes < 1024 or unit == "TiB":
            return f"{num_bytes:.1f} {unit}"
        num_bytes /= 1024
    return f"{num_bytes:.1f} TiB"


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux `MemAvailable`), or None."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _check_memory(needed: int, num: int, capacity: int, spec: TaskSpec) -> None:
    available = available_memory()
    if available is None or needed <= 0.9 * available:
        return
    fits = int(0.9 * available / (num * row_bytes(spec.obs_dim, spec.act_dim)))
    raise RunError(
        f"the replay needs {_human(needed)} ({num} seed{'s' if num > 1 else ''} x {capacity} "
        f"transitions x {row_bytes(spec.obs_dim, spec.act_dim)} B) but this machine has "
        f"{_human(available)} available; lower --replay-size (at most {fits} fits)"
    )


def timing_free(row: dict[str, str]) -> dict[str, str]:
    """A progress.csv row without its machine-speed columns (for comparing runs)."""
    return {k: v for k, v in row.items() if not k.startswith(TIMING_PREFIX)}


def train(config: TrainConfig, run_root: Path = Path("runs")) -> TrainResult:
    """Run (or, with `config.resume`, continue) one training run; see `Trainer`."""
    return Trainer(config, run_root=run_root).run()
