"""The lifecycle around any training loop: what a run does besides stepping environments
and updating learners, written once for the off-policy, on-policy and on-device loops.

A loop builds a `RunLifecycle` before anything is written (the run directory is checked,
not created), sets itself up, then calls `open` with two functions of its own: `fresh` (a
new run's first state) and `restore(step)` (read every seed's checkpoint at `step` through
`read_checkpoint`, bring the loop back to it). From then on the lifecycle owns:

* the run directory (`run_dir`), its config.json / group.json, resume records and the
  finished marker; a new run that fails to start leaves nothing behind;
* the checkpointers of any loop-state pytree (`save`, `save_best`), each write of which
  fails with one line naming the last good checkpoint;
* progress.csv / TensorBoard (`write_row`) and the terminal display;
* signals (`guard`: the first SIGINT/SIGTERM becomes a flag the loop polls; the loop then
  saves and raises `interrupt()`), out-of-memory errors and the wall clock.

Refusals (`--resume` of a finished run, a damaged or mismatched checkpoint, a log behind
its checkpoint) are raised before anything in the run directory changes.
"""

from __future__ import annotations

import shlex
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from algd_jax.checkpointing import Checkpointer
from algd_jax.envs import TaskSpec
from algd_jax.faults import (
    deferred_interrupts,
    is_out_of_memory,
    oom_reason,
    require_writable,
    write_fault,
)
from algd_jax.judging import cost_kind, cost_limit_of
from algd_jax.logging_utils import (
    Display,
    LogBehindCheckpoint,
    ProgressLog,
    ResumePlan,
    plan_resume,
)
from algd_jax.train_config import EXIT_ALREADY_DONE, FINISHED_FILE, RunError, TrainConfig
from algd_jax.training.identity import (
    check_checkpoint,
    checkpoint_meta,
    config_values,
    field_defaults,
)
from algd_jax.training.run_dir import (
    check_new_run_dir,
    check_writable,
    create_run_dirs,
    default_run_dir,
    mark_finished,
    record_resume,
    remove_failed_start,
    seed_dirs,
)


class Interrupted(RunError):
    """Ctrl-C (SIGINT) or SIGTERM: a checkpoint was saved, the run can be resumed."""

    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=130)


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


@contextmanager
def catch_interrupts(after: str = "this env step") -> Iterator[list[int]]:
    """Turn the first SIGINT/SIGTERM into a flag the loop polls between steps; a second
    one interrupts at once (without a checkpoint). `after`: where the loop next polls it,
    for the message."""
    flag: list[int] = []

    def handler(signum: int, _frame: Any) -> None:
        if flag:
            raise KeyboardInterrupt
        flag.append(signum)
        print(
            f"\nstopping: saving a checkpoint after {after} (press Ctrl-C again to "
            f"quit without saving)",
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


class RunLifecycle:
    """The run directory, identity, checkpoints, logs, display and signals of one run of S
    seeds, for the loop named `loop` (`off-policy`, `on-policy`, `on-device`; recorded in
    every checkpoint, so a checkpoint of one loop is never resumed by another).

    `columns`: the progress.csv header (`epoch_row.progress_columns`); `extra`: further
    entries of config.json / group.json (the on-device loop's schedule).
    """

    def __init__(
        self,
        config: TrainConfig,
        spec: TaskSpec,
        hparams: Any,
        columns: list[str],
        loop: str,
        run_root: Path = Path("runs"),
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.config = config
        self.spec = spec
        self.hparams = hparams
        self.columns = columns
        self.loop = loop
        self.extra = extra
        self.seeds = config.seed_list
        #: the episode cost the task's limit applies to (`cost` or `discounted_cost`)
        self.cost_kind = cost_kind(spec)
        if config.resume is None:
            # checked before the loop's slow set-up, created only once that succeeded
            self.run_dir = config.run_dir or default_run_dir(config, run_root)
            check_new_run_dir(self.run_dir)
            check_writable(self.run_dir)
        else:
            self.run_dir = Path(config.resume)
        self.run_dirs = seed_dirs(self.run_dir, config)
        self.values = [config_values(config, hparams, spec, s) for s in self.seeds]
        self.defaults = field_defaults(config, hparams)
        self.checkpointers = [Checkpointer(d, keep=config.keep_checkpoints) for d in self.run_dirs]
        self.logs: list[ProgressLog] = []
        self.env_step = 0
        self.last_saved_step = -1
        self.refusal: RunError | None = None
        self.display: Display | None = None
        self.wall_before = 0.0
        self.session_start = time.perf_counter()

    # -- opening --------------------------------------------------------------------------

    def open(self, fresh: Callable[[], None], restore: Callable[[int], int]) -> None:
        """Start a new run (`fresh()`, then its directories and logs) or continue one
        (`restore(step)`, which returns the epochs completed at `step`, for the newest
        checkpoint progress.csv holds whole; then the files are made ready to continue).
        Everything that can refuse is checked before anything is written; a new run that
        fails here leaves nothing behind."""
        created, existed = False, self.run_dir.exists()
        try:
            if self.config.resume is not None:
                plans = self._restore_with_logs(restore)
                if self.env_step >= self.config.total_steps:
                    self.refusal = RunError(
                        f"run {self.run_dir} already has {self.env_step} env steps "
                        f"(--total-steps {self.config.total_steps}); raise --total-steps to "
                        f"continue it",
                        exit_code=EXIT_ALREADY_DONE,
                    )
                    return
                for d in dict.fromkeys([self.run_dir, *self.run_dirs]):
                    require_writable(d, "--resume")
                # The repair completes or does not start: a signal meanwhile waits for it.
                with deferred_interrupts() as pending:
                    self._repair_for_resume(plans)
                if pending:
                    self.close()
                    raise Interrupted(
                        f"interrupted during start-up, after the run's files were made ready "
                        f"to continue from env step {self.env_step} (nothing else was "
                        f"written); continue with: python -m experiments.run --resume "
                        f"{shlex.quote(str(self.run_dir))}"
                    )
            else:
                fresh()
                created = True
                self.config = create_run_dirs(
                    self.config, self.run_dir, self.hparams, self.spec, self.extra
                )
                self.logs = [
                    ProgressLog(d, self.columns, config=self.config) for d in self.run_dirs
                ]
        except BaseException:
            self.close_checkpointers()
            if created:  # a new run that failed to start leaves nothing behind
                remove_failed_start(self.run_dir, self.run_dirs, existed)
            raise

    def refuse_if_done(self) -> None:
        """Raise the refusal `open` found (a resume of a run already at --total-steps); a
        run stopped between its last checkpoint and its marker gets the marker first, one
        that has it is left exactly as it is."""
        if self.refusal is None:
            return
        self.close()
        if (
            self.refusal.exit_code == EXIT_ALREADY_DONE
            and not (self.run_dir / FINISHED_FILE).exists()
        ):
            self.mark_finished()
        raise self.refusal

    def resume_steps(self) -> list[int]:
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

    def read_checkpoint(
        self, k: int, step: int, state_template: Any, loop_template: Any, with_replay: bool
    ) -> tuple[Any, Any, dict[str, Any] | None]:
        """Seed k's checkpoint at `step` (learner state, loop state, replay arrays or None),
        after its format, loop and configuration were checked (reads only)."""
        checkpointer = self.checkpointers[k]
        meta = checkpointer.read_meta("last", step)
        check_checkpoint(meta, self.run_dirs[k], step, self.loop, self.values[k], self.defaults)
        state, loop, arrays, _ = checkpointer.restore(
            state_template, step=step, loop_template=loop_template, with_replay=with_replay
        )
        return state, loop, arrays

    def _restore_with_logs(self, restore: Callable[[int], int]) -> list[ResumePlan]:
        """Restore the newest checkpoint whose epochs progress.csv holds whole, with the
        plan of each seed's log. A checkpoint whose last row was torn by a crash mid-write
        gives way to the one before it (said on the terminal)."""
        steps = self.resume_steps()
        for i, step in enumerate(steps):
            epochs = restore(step)
            self.env_step = step
            self.last_saved_step = step
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
        self.record_resume()
        self.logs = [
            ProgressLog(d, self.columns, resume=plan, resume_step=self.env_step, config=self.config)
            for d, plan in zip(self.run_dirs, plans, strict=True)
        ]

    def record_resume(self) -> None:
        """Note this resume in each config.json (and group.json)."""
        record_resume(self.config, self.run_dir, self.run_dirs, self.env_step)

    # -- while training -------------------------------------------------------------------

    def open_display(self, initial: int, message: str | None = None) -> Display:
        """The terminal display (progress bar with ETA, or one line per epoch)."""
        self.display = Display(
            self.config.progress,
            total=self.config.total_steps,
            initial=initial,
            cost_kind=self.cost_kind,
            seeds=self.seeds,
        )
        if message is not None and self.config.progress != "off":
            self.display.message(message)
        return self.display

    def wall(self) -> float:
        """Seconds of training of this run so far, over all its sessions."""
        return self.wall_before + (time.perf_counter() - self.session_start)

    def checkpoint_wall(self) -> float:
        """`wall()`, from which the clock counts on (the value a checkpoint stores)."""
        self.wall_before = self.wall()
        self.session_start = time.perf_counter()
        return self.wall_before

    def meta(self, k: int, env_step: int) -> dict[str, Any]:
        return checkpoint_meta(self.values[k], env_step, self.loop)

    def save(
        self,
        env_step: int,
        state: Callable[[int], Any],
        loop: Callable[[int], Any] | None = None,
        replay: Callable[[int], dict[str, Any]] | None = None,
    ) -> None:
        """Save every seed's `last` checkpoint at `env_step`: `state(k)`, `loop(k)` and
        `replay(k)` give seed k's learner state, loop state and replay arrays."""
        self.env_step = env_step
        for k, checkpointer in enumerate(self.checkpointers):
            with self.writing(k, "last"):
                checkpointer.save(
                    env_step,
                    state(k),
                    self.meta(k, env_step),
                    loop=None if loop is None else loop(k),
                    replay=None if replay is None else replay(k),
                )
        self.last_saved_step = env_step

    def save_best(self, k: int, env_step: int, state: Any) -> None:
        """Save seed k's learner state as its `best` checkpoint."""
        self.env_step = env_step
        with self.writing(k, "best"):
            self.checkpointers[k].save(env_step, state, self.meta(k, env_step), which="best")

    def write_row(self, k: int, row: dict[str, float]) -> None:
        """Log seed k's epoch row (progress.csv, TensorBoard, the display)."""
        self.env_step = int(row["env_steps"])
        with self.writing(k, None):
            self.logs[k].write(row)
        if self.display is not None:
            self.display.epoch(row, self.seeds[k])

    @contextmanager
    def writing(self, k: int, which: str | None) -> Iterator[None]:
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

    def last_good(self) -> str:
        """`Last good checkpoint: ...; logs kept in RUN` (the end of every stop line)."""
        where = self.checkpointers[0].root / "last"
        if len(self.run_dirs) > 1:
            where = self.run_dir / "seed*" / "checkpoints" / "last"
        last = (
            f"step {self.last_saved_step} in {where}" if self.last_saved_step >= 0 else "none yet"
        )
        return f"Last good checkpoint: {last}; logs kept in {self.run_dir}"

    def of_seed(self, k: int) -> str:
        """` in seed N` for a multi-seed run (for messages about seed index k)."""
        return f" in seed {self.seeds[k]}" if len(self.seeds) > 1 else ""

    def interrupt(self, env_step: int, save: Callable[[], None]) -> Interrupted:
        """The stop after a SIGINT/SIGTERM at `env_step`: `save()` unless that step is saved."""
        if env_step == 0:
            return Interrupted("interrupted before the first env step; nothing to save")
        if self.last_saved_step != env_step:
            save()
        return Interrupted(
            f"interrupted at env step {env_step}; checkpoint saved. Continue with: "
            f"python -m experiments.run --resume {shlex.quote(str(self.run_dir))}"
        )

    @contextmanager
    def guard(
        self, env_step: Callable[[], int], polled_after: str = "this env step"
    ) -> Iterator[list[int]]:
        """Around the loop: yields the interrupt flag (polled after `polled_after`, as the
        signal's message says); turns an out-of-memory error and a second Ctrl-C into one
        line each; closes the display, logs and checkpointers."""
        try:
            with catch_interrupts(polled_after) as interrupted:
                yield interrupted
        except Exception as err:
            if not is_out_of_memory(err):
                raise
            raise RunError(
                f"out of memory at env step {env_step()} ({oom_reason(err)}); training "
                f"stopped. {self.last_good()}; lower --batch-size or the algorithm's sizes",
                exit_code=1,
            ) from None
        except KeyboardInterrupt:
            last = self.last_saved_step if self.last_saved_step >= 0 else "none"
            raise RunError(
                f"interrupted without saving; the last checkpoint is step {last} in {self.run_dir}",
                exit_code=130,
            ) from None
        finally:
            if self.display is not None:
                self.display.close()
            self.close()

    # -- closing --------------------------------------------------------------------------

    def mark_finished(self) -> None:
        mark_finished(
            self.run_dir, self.run_dirs, self.env_step, self.config.total_steps, self.seeds
        )

    def finish(self, env_step: int, last_rows: list[dict[str, float] | None]) -> TrainResult:
        """Mark the run finished and report it."""
        self.env_step = env_step
        self.mark_finished()
        return TrainResult(
            self.run_dir,
            self.run_dirs,
            self.seeds,
            env_step,
            last_rows,
            f"eval/{self.cost_kind}",
            cost_limit_of(self.spec),
        )

    def close_checkpointers(self) -> None:
        for checkpointer in self.checkpointers:
            checkpointer.close()

    def close(self) -> None:
        for log in self.logs:
            log.close()
        self.close_checkpointers()


def human_bytes(num_bytes: float) -> str:
    """`1.5 GiB` and the like."""
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
