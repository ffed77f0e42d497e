"""The on-policy loop: S seeds x E host environments (one gymnasium vector env per seed),
a T-step rollout, then one compiled update phase for all seeds (OmniSafe's protocol), inside
the run lifecycle every loop shares (`training.lifecycle`).

One epoch, for S seeds at once:
    states, rollout, finished = collector.collect(states)    # T steps of E envs per seed
    push each finished episode into the seed's episode window (LoopInfo)
    states, metrics = programs.update(states, rollout, info)  # one compiled call
    evaluate, write one row per seed, save the checkpoints

An epoch is one rollout of the algorithm's rollout size (PPO-Lag: `--steps-per-epoch` env
steps per seed, summed over its `--num-envs` envs, so T = steps_per_epoch / E); the loop's
`--epoch-steps`, replay and warm-up options do not apply to it.

Exact resume. Checkpoints are taken at epoch ends (between two rollouts): the learner
(observation statistics included), the loop state with the collector's state (every env's
episode index, current observation, running totals and the actions of its current
episode) and the episode window. Resuming resets each env with its episode's seed and
replays those actions (`vector_rollouts.VectorCollector.restore`). A SIGINT or SIGTERM
stops at the end of the current rollout's update, after its checkpoint.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import flax.struct as struct
import gymnasium
import jax
import numpy as np

from algd_jax.envs import make_env
from algd_jax.memory import check_update_memory
from algd_jax.programs import (
    OnPolicyPrograms,
    new_state,
    on_policy_programs,
    programs,
    resolve_seed_axis,
    stack,
    unstack,
)
from algd_jax.rollouts import EPISODE_FIELDS
from algd_jax.train_config import RunError, TrainConfig, resolve_hparams, resolve_task
from algd_jax.training.episodes import loop_info, push_episode
from algd_jax.training.epoch_row import (
    NonFiniteLoss,
    epoch_row,
    first_nonfinite,
    nonfinite_parts,
    progress_columns,
)
from algd_jax.training.evaluation import evaluate_seeds
from algd_jax.training.lifecycle import RunLifecycle, TrainResult
from algd_jax.vector_rollouts import (
    Clock,
    CollectorRestoreError,
    CollectorState,
    VectorCollector,
    untimed,
)

LOOP_NAME = "on-policy"


class OnPolicyLoopState(struct.PyTreeNode):
    """What the on-policy loop carries between epochs, for S seeds (leading axis `[S]`;
    the counters are equal across seeds). Episode totals are (return, summed cost,
    discounted cost, length), `rollouts.EPISODE_FIELDS` order; NaN marks "none yet"."""

    seed: np.ndarray  # [S] int64
    env_step: np.ndarray  # [S] int64, env steps of the seed (all its E envs)
    update_count: np.ndarray  # [S] int64, update phases done (rollouts learned from)
    epoch_index: np.ndarray  # [S] int64, epochs completed
    episode_index: np.ndarray  # [S] int64, training episodes finished (all E envs)
    last_episode: np.ndarray  # [S, 4] float64, the last finished episode
    best_eval_return: np.ndarray  # [S] float64, best feasible evaluation return
    wall_time: np.ndarray  # [S] float64, seconds of training before this session
    # the last W finished episodes, oldest first (`training.episodes`)
    window_costs: np.ndarray  # [S, max(W, 1)] float64
    window_discounted_costs: np.ndarray  # [S, max(W, 1)] float64
    window_returns: np.ndarray  # [S, max(W, 1)] float64
    collector: CollectorState  # the envs' episodes, `[S, E, ...]` leaves

    @classmethod
    def create(cls, seeds: list[int], window: int, collector: CollectorState) -> OnPolicyLoopState:
        num = len(seeds)
        zeros = lambda *shape: np.zeros((num, *shape), np.int64)  # noqa: E731
        return cls(
            seed=np.asarray(seeds, np.int64),
            env_step=zeros(),
            update_count=zeros(),
            epoch_index=zeros(),
            episode_index=zeros(),
            last_episode=np.full((num, 4), np.nan),
            best_eval_return=np.full(num, np.nan),
            wall_time=np.zeros(num),
            window_costs=np.zeros((num, max(window, 1))),
            window_discounted_costs=np.zeros((num, max(window, 1))),
            window_returns=np.zeros((num, max(window, 1))),
            collector=collector,
        )


class OnPolicyLoop:
    """The on-policy loop of one run of S seeds; the run's files through a `RunLifecycle`.

    Build with `OnPolicyLoop(config)`; `config.resume` selects continuing a run directory.
    `run()` trains to `config.total_steps` env steps per seed (a whole number of rollouts)
    and returns a `TrainResult`. `host_acting=False` acts through the compiled per-step
    programs even where the algorithm has a `HostActor` (`vector_rollouts`; for
    benchmarks and the tests that compare the two).
    """

    def __init__(
        self,
        config: TrainConfig,
        run_root: Path = Path("runs"),
        clock: Clock | None = None,
        host_acting: bool = True,
    ) -> None:
        config = config.with_hparams().validate()
        self.config = config
        self.algorithm = config.algorithm
        parts = self.algorithm.on_policy
        if self.algorithm.kind != "on-policy" or parts is None:
            raise RunError(
                f"{self.algorithm.name} is an {self.algorithm.kind} algorithm; the on-policy "
                f"loop trains on-policy algorithms (--list-algos)"
            )
        if config.loop != "host":
            raise RunError(
                f"--loop {config.loop}: {self.algorithm.name} is on-policy and trains on host "
                f"vector environments; drop --loop"
            )
        self.spec = resolve_task(config)
        self.hparams = resolve_hparams(config, self.spec)
        self.seeds = config.seed_list
        spec = self.spec
        self.num_envs = config.num_envs
        self.rollout_size = parts.rollout_size(self.hparams)
        if self.rollout_size % self.num_envs:
            raise RunError(
                f"the rollout of {self.rollout_size} env steps per seed (--steps-per-epoch) is "
                f"not a multiple of --num-envs {self.num_envs}: each env steps T = "
                f"{self.rollout_size} / {self.num_envs} times per rollout"
            )
        self.rollout_steps = self.rollout_size // self.num_envs
        if config.total_steps % self.rollout_size:
            whole = max(config.total_steps // self.rollout_size, 1) * self.rollout_size
            raise RunError(
                f"--total-steps {config.total_steps} is not a whole number of rollouts of "
                f"{self.rollout_size} env steps (--steps-per-epoch); use --total-steps {whole}"
            )
        self.planned_phases = config.total_steps // self.rollout_size
        self.metric_names = tuple(sorted(self.algorithm.metric_names(self.hparams)))
        self.columns = progress_columns(self.metric_names)
        self.lifecycle = RunLifecycle(config, spec, self.hparams, self.columns, LOOP_NAME, run_root)
        self.run_dir, self.run_dirs = self.lifecycle.run_dir, self.lifecycle.run_dirs
        self.cost_kind = self.lifecycle.cost_kind
        axis = resolve_seed_axis(config.seed_axis)
        self.programs: OnPolicyPrograms = on_policy_programs(parts, axis)
        # deterministic evaluation through the algorithm's `act` (frozen statistics)
        self.eval_programs = programs(self.algorithm.act, None, axis)
        self.collector = VectorCollector(
            self._make_env,
            self.seeds,
            num_envs=self.num_envs,
            rollout_steps=self.rollout_steps,
            spec=spec,
            programs=self.programs,
            clock=clock,
            host_acting=host_acting,
        )
        self.clock: Clock = clock if clock is not None else untimed
        self.eval_envs = [self._make_env() for _ in self.seeds] if config.eval_episodes else []
        check_update_memory(
            self.algorithm,
            self.hparams,
            spec,
            config.batch_size,
            len(self.seeds),
            axis == "vmap",
            num_envs=self.num_envs,
        )
        self.states = stack([new_state(self.algorithm, self.hparams, spec, s) for s in self.seeds])
        self.window = self.algorithm.episode_window(self.hparams)
        self.loop: OnPolicyLoopState | None = None
        self.lifecycle.open(self._fresh, self._restore)
        self.config = self.lifecycle.config

    @property
    def env_step(self) -> int:
        return 0 if self.loop is None else int(self.loop.env_step[0])

    def _make_env(self) -> gymnasium.Env:
        try:
            return make_env(
                self.config.task, self.config.cost_limit, paper_setting=self.config.paper_setting
            )
        except (ValueError, ImportError) as err:
            raise RunError(str(err)) from None

    def _fresh(self) -> None:
        self.states = self.collector.start(self.states)
        assert self.collector.state is not None
        self.loop = OnPolicyLoopState.create(self.seeds, self.window, self.collector.state)

    # -- checkpoints ----------------------------------------------------------------------

    def _save(self) -> None:
        assert self.loop is not None and self.collector.state is not None
        self.loop.wall_time[:] = self.lifecycle.checkpoint_wall()
        loop = self.loop.replace(collector=self.collector.state)
        self.lifecycle.save(
            self.env_step,
            state=lambda k: unstack(self.states, k),
            loop=lambda k: unstack(loop, k),
        )

    def _restore(self, step: int) -> int:
        """Load every seed's checkpoint at `step`, bring its envs back (reads only);
        returns the epochs completed at `step`."""
        template_collector = self.collector._empty_state()
        template = OnPolicyLoopState.create(self.seeds, self.window, template_collector)
        template_loop = unstack(template, 0)
        template_state = unstack(self.states, 0)
        states, loops = [], []
        for k in range(len(self.seeds)):
            state, loop, _ = self.lifecycle.read_checkpoint(
                k, step, template_state, template_loop, with_replay=False
            )
            if int(loop.seed) != self.seeds[k] or int(loop.env_step) != step:
                raise RunError(
                    f"--resume {self.run_dirs[k]}: its checkpoint at step {step} belongs to "
                    f"seed {int(loop.seed)} at step {int(loop.env_step)}",
                    exit_code=1,
                )
            states.append(state)
            loops.append(loop)
        self.states = stack(states)
        self.loop = jax.tree.map(lambda *xs: np.stack(xs), *loops)
        try:
            self.collector.restore(self.loop.collector)
        except CollectorRestoreError as err:
            raise RunError(f"--resume {self.run_dir}: {err}", exit_code=1) from None
        self.lifecycle.wall_before = float(self.loop.wall_time[0])
        return int(self.loop.epoch_index[0])

    # -- the loop -------------------------------------------------------------------------

    def run(self) -> TrainResult:
        """Train until `config.total_steps` env steps per seed; see the module docstring."""
        cfg, life = self.config, self.lifecycle
        life.session_start = time.perf_counter()
        life.refuse_if_done()
        display = life.open_display(self.env_step)
        self.display = display
        loop = self.loop
        assert loop is not None
        if not np.isnan(loop.last_episode[0, 0]):  # a resumed run shows where it left off
            display.status(
                episode_return=float(loop.last_episode[0, 0]),
                episode_cost=float(loop.last_episode[0, EPISODE_FIELDS.index(self.cost_kind)]),
            )
        last_rows: list[dict[str, float] | None] = [None] * len(self.seeds)
        with life.guard(lambda: self.env_step, "this rollout's update") as interrupted:
            while self.env_step < cfg.total_steps:
                tick = time.perf_counter()
                self.states, rollout, finished = self.collector.collect(self.states)
                epoch_totals, epoch_count = self._record_episodes(finished)
                loop.env_step[:] += self.rollout_size
                info = loop_info(loop, self.planned_phases, self.window)
                with self.clock("update"):
                    self.states, metrics = self.programs.update(self.states, rollout, info)
                    metrics = jax.device_get(metrics)
                loop.update_count[:] += 1
                took = time.perf_counter() - tick
                self._check_finite(metrics)
                last_rows = self._end_epoch(metrics, epoch_totals, epoch_count, took)
                display.step(self.rollout_size)
                if interrupted:
                    raise life.interrupt(self.env_step, self._save)
        return life.finish(self.env_step, last_rows)

    def _record_episodes(self, finished: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Push the rollout's finished episodes (per seed `[n_k, 4]`, in order) into the
        windows; returns their summed totals `[S, 4]` and counts `[S]`."""
        loop = self.loop
        assert loop is not None
        totals = np.zeros((len(self.seeds), 4))
        counts = np.zeros(len(self.seeds), np.int64)
        for k, rows in enumerate(finished):
            for episode in rows:
                push_episode(loop, k, episode, self.window)
                loop.last_episode[k] = episode
            totals[k] = rows.sum(axis=0) if len(rows) else 0.0
            counts[k] = len(rows)
            loop.episode_index[k] += len(rows)
        if counts[0]:
            self.display.status(
                episode_return=float(loop.last_episode[0, 0]),
                episode_cost=float(loop.last_episode[0, EPISODE_FIELDS.index(self.cost_kind)]),
            )
        return totals, counts

    def _check_finite(self, metrics: dict[str, Any]) -> None:
        """Stop on a non-finite metric or learner parameter, as every loop does."""
        bad = first_nonfinite({name: metrics[name] for name in self.metric_names})
        if bad is None:
            return
        name, k = bad
        parts = nonfinite_parts(unstack(self.states, k))
        which = f" (the {' and '.join(parts)} parameters)" if parts else ""
        raise NonFiniteLoss(
            f"non-finite {name}{self.lifecycle.of_seed(k)} in the update phase after env step "
            f"{self.env_step}{which}; training stopped. {self.lifecycle.last_good()}"
        )

    def _evaluate(self) -> list[dict[str, float] | None]:
        loop = self.loop
        assert loop is not None
        zero_keys = self.collector.keys

        def act(obs: np.ndarray) -> np.ndarray:
            actions = np.asarray(self.eval_programs.act(self.states, obs, zero_keys, 0, True))
            if not np.isfinite(actions).all():
                bad = int(np.flatnonzero(~np.isfinite(actions).all(axis=1))[0])
                raise NonFiniteLoss(
                    f"non-finite action{self.lifecycle.of_seed(bad)} in the evaluation after "
                    f"env step {self.env_step}; training stopped. {self.lifecycle.last_good()}"
                )
            return actions

        return evaluate_seeds(
            self.eval_envs,
            act,
            self.seeds,
            int(loop.epoch_index[0]),
            self.config.eval_episodes,
            self.spec.cost_gamma,
        )

    def _end_epoch(
        self, metrics: dict[str, Any], totals: np.ndarray, counts: np.ndarray, took: float
    ) -> list[dict[str, float] | None]:
        loop = self.loop
        assert loop is not None
        evals = self._evaluate()
        loop.epoch_index[:] += 1
        wall = self.lifecycle.wall()
        rows: list[dict[str, float] | None] = []
        best: list[int] = []
        for k in range(len(self.seeds)):
            row, is_feasible = epoch_row(
                epoch=int(loop.epoch_index[k]),
                env_steps=self.env_step,
                updates=int(loop.update_count[k]),
                episodes=int(loop.episode_index[k]),
                train_totals=totals[k],
                train_count=int(counts[k]),
                evaluation=evals[k],
                spec=self.spec,
                metrics={n: float(np.asarray(metrics[n])[k]) for n in self.metric_names},
                speed=(self.rollout_size / took, 1.0 / took),
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
        for k in best:
            self.lifecycle.save_best(k, self.env_step, unstack(self.states, k))
        self._save()
        return rows
