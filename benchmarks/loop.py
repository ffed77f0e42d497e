"""Whole training loop on HalfCheetahVelocity: env steps/s, updates/s and where the time goes.

    python -m benchmarks.loop [--quick] [--steps S] [--out FILE.json]

Runs the real training loop (`algd_jax.training.Trainer`, the code `experiments.run` uses)
for 2 S env steps: the first S - 1 without updates (initial exploration; `--initial-steps
S`), then S + 1 steps with U = 10 fused updates each (batch 256, M = N = 4, K = 5). With
`--epoch-steps S` the loop itself reports the speed of that second, updating epoch
(`time/env_steps_per_s`, `time/updates_per_s` of its progress log), which is the steady
state. A first, short run compiles the jitted functions, so neither count compilation.

The loop has no timing hooks of its own, so this benchmark wraps its pieces in the measured
run: the jitted action function (`training._act`, blocking on the action), the env's
`step`, the replay buffer's `add` and `sample_block`, the fused update (`training._train_step`,
blocking on the new state), the episode end (env reset) and the epoch end (log row,
checkpoint save; no evaluation episodes). Blocking inside the wrappers moves the wait for
the asynchronously dispatched update from the next action into the update, where it
belongs; nothing else overlaps on this CPU. Shares are of the steady (updating) epoch's
wall time; `other` is the loop's own bookkeeping. The paper (Table 6) reports 67 s per
1000-step MuJoCo epoch on its GPU; `s_per_1000_step_epoch` extrapolates ours from the
steady rate (per-step phases scaled to 1000 steps, plus one epoch end). The loop's own
`time/env_steps_per_s` leaves the epoch end out.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax

from benchmarks.common import (
    base_parser,
    device_line,
    format_table,
    machine_info,
    write_result,
)

PAPER_S_PER_EPOCH = 67.0
PHASES = (
    "env_step",
    "action",
    "replay_add",
    "replay_sample",
    "update",
    "episode_end",
    "epoch_end",
)
TASK = "HalfCheetahVelocity"


class PhaseTimer:
    """Wall-time accumulators per phase, split into the steps before the first update
    (warm-up) and from the start of the first updating step on (steady).

    `first_updating_step` is the 0-based index of the first loop iteration that updates;
    the steady part begins with that iteration's action selection.
    """

    def __init__(self, first_updating_step: int) -> None:
        self.first_updating_step = first_updating_step
        self.action_calls = 0
        self.steady = False
        self.totals: dict[str, dict[str, float]] = {
            "warmup": dict.fromkeys(PHASES, 0.0),
            "steady": dict.fromkeys(PHASES, 0.0),
        }
        self.counts: dict[str, int] = dict.fromkeys(PHASES, 0)
        self.steady_start = float("nan")

    def wrap(self, phase: str, fn: Callable[..., Any], sync: bool = False) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            if phase == "action":
                if self.action_calls == self.first_updating_step:
                    self.steady = True
                    self.steady_start = time.perf_counter()
                self.action_calls += 1
            start = time.perf_counter()
            out = fn(*args, **kwargs)
            if sync:
                out = jax.block_until_ready(out)
            bucket = "steady" if self.steady else "warmup"
            self.totals[bucket][phase] += time.perf_counter() - start
            if self.steady:
                self.counts[phase] += 1
            return out

        return timed


def train_argv(steps: int, quick: bool, run_dir: Path) -> list[str]:
    """Command line of one benchmark run: `steps` exploration steps, then `steps` updating
    steps, one epoch each."""
    argv = [
        "--task", TASK,
        "--total-steps", str(2 * steps),
        "--initial-steps", str(steps),
        "--learning-starts", str(steps),
        "--epoch-steps", str(steps),
        "--eval-episodes", "0",
        "--keep-checkpoints", "1",
        "--progress", "off",
        "--run-dir", str(run_dir),
    ]  # fmt: skip
    if quick:
        argv += [
            "--updates-per-step", "2",
            "--batch-size", "32",
            "--ensemble-size", "2",
            "--mc-samples", "2",
            "--diffusion-steps", "2",
            "--critic-hidden", "16",
            "--score-hidden", "16",
        ]  # fmt: skip
    else:
        argv += [
            "--updates-per-step", "10",
            "--batch-size", "256",
            "--ensemble-size", "4",
            "--mc-samples", "4",
            "--diffusion-steps", "5",
            "--critic-hidden", "256",
            "--score-hidden", "128",
        ]  # fmt: skip
    return argv


def run_loop(steps: int, quick: bool, workdir: Path) -> dict[str, Any]:
    """Compile with a short run, then measure one run of 2 `steps` env steps."""
    from algd_jax import training
    from algd_jax.train_config import parse_command_line

    warm_steps = 4 if quick else 16
    start = time.perf_counter()
    warm = training.Trainer(parse_command_line(train_argv(warm_steps, quick, workdir / "warm")))
    warm.run()
    warm_s = time.perf_counter() - start

    config = parse_command_line(train_argv(steps, quick, workdir / "measured"))
    trainer = training.Trainer(config)
    # The agent state's static fields (module `apply` functions, optimisers) are new
    # objects in every agent, and jit keys its compiled programs on them: give the measured
    # agent the warm-up agent's structure so that it reuses the compiled functions.
    trainer.state = jax.tree.unflatten(
        jax.tree.structure(warm.state), jax.tree.leaves(trainer.state)
    )
    # updates start once env_step >= initial_steps, i.e. in iteration `steps - 1`
    timer = PhaseTimer(first_updating_step=steps - 1)
    original_act, original_step = training._act, training._train_step
    training._act = timer.wrap("action", original_act, sync=True)
    training._train_step = timer.wrap("update", original_step, sync=True)
    trainer.env.step = timer.wrap("env_step", trainer.env.step)
    trainer.replay.add = timer.wrap("replay_add", trainer.replay.add)
    trainer.replay.sample_block = timer.wrap("replay_sample", trainer.replay.sample_block)
    trainer._end_episode = timer.wrap("episode_end", trainer._end_episode)
    trainer._end_epoch = timer.wrap("epoch_end", trainer._end_epoch)
    try:
        start = time.perf_counter()
        result = trainer.run()
        end = time.perf_counter()
    finally:
        training._act, training._train_step = original_act, original_step

    steady_wall = end - timer.steady_start
    steady = timer.totals["steady"]
    shares = {phase: steady[phase] / steady_wall for phase in PHASES}
    shares["other"] = max(0.0, 1.0 - sum(shares.values()))
    env_steps = timer.counts["env_step"]
    updates = timer.counts["update"] * config.updates_per_step
    row = result.last_row or {}
    return {
        "task": TASK,
        "steps_per_phase": steps,
        "updates_per_step": config.updates_per_step,
        "batch_size": config.batch_size,
        "ensemble_size": config.algo.ensemble_size,
        "mc_samples": config.algo.mc_samples,
        "diffusion_steps": config.algo.diffusion_steps,
        "warm_up_run_s": warm_s,
        "total_wall_s": end - start,
        "steady": {
            "wall_s": steady_wall,
            "env_steps": env_steps,
            "updates": updates,
            "env_steps_per_s": env_steps / steady_wall,
            "updates_per_s": updates / steady_wall,
            # one epoch end (log row, checkpoint) per 1000-step epoch, whatever `steps` is
            "s_per_1000_step_epoch": 1000.0 * (steady_wall - steady["epoch_end"]) / env_steps
            + steady["epoch_end"],
            "ms_per_update_in_loop": 1e3 * steady["update"] / updates,
            "phase_s": dict(steady),
            "phase_calls": dict(timer.counts),
            "shares": shares,
        },
        "loop_reported": {
            "env_steps_per_s": float(row.get("time/env_steps_per_s", float("nan"))),
            "updates_per_s": float(row.get("time/updates_per_s", float("nan"))),
        },
        "warmup_phase_s": dict(timer.totals["warmup"]),
        "paper_s_per_1000_step_epoch": PAPER_S_PER_EPOCH,
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = base_parser(__doc__.split("\n")[0])
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="env steps of each phase (default 200; quick 12); 1000 = one paper epoch",
    )
    args = parser.parse_args(argv)
    quick = args.quick
    steps = args.steps or (12 if quick else 200)
    info = machine_info()
    with tempfile.TemporaryDirectory(prefix="algd-loop-bench-") as tmp:
        measured = run_loop(steps, quick, Path(tmp))
    result = {"benchmark": "loop", "quick": quick, "machine": info, **measured}
    path = write_result(result, args.out, "loop", quick)
    print(report(result))
    print(f"wrote {path}")
    return result


def report(result: dict[str, Any]) -> str:
    """The terminal table of a loop result."""
    s = result["steady"]
    rows = [
        [phase, s["phase_s"].get(phase, float("nan")), 100.0 * share]
        for phase, share in s["shares"].items()
    ]
    table = format_table(["phase", "seconds", "% of wall"], rows)
    return (
        f"Training loop on {result['task']}: {result['steps_per_phase'] - 1} steps without "
        f"updates, then {s['env_steps']} steps x U={result['updates_per_step']} updates "
        f"(batch {result['batch_size']}, M={result['ensemble_size']}, "
        f"N={result['mc_samples']}, K={result['diffusion_steps']})\n"
        f"{device_line(result['machine'])}\n"
        f"steady: {s['env_steps_per_s']:.2f} env steps/s, {s['updates_per_s']:.1f} updates/s, "
        f"{s['ms_per_update_in_loop']:.2f} ms/update; the loop's own log: "
        f"{result['loop_reported']['env_steps_per_s']:.2f} env steps/s, "
        f"{result['loop_reported']['updates_per_s']:.1f} updates/s\n"
        f"seconds per 1000-step epoch: {s['s_per_1000_step_epoch']:.1f} (paper Table 6, its "
        f"GPU: {result['paper_s_per_1000_step_epoch']:.0f})\n{table}"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
