"""Whole training loop on HalfCheetahVelocity for S = 1, 2, 4, ... seeds in one process:
env steps/s per seed and in total, updates/s, where the time goes, and peak memory.

    python -m benchmarks.loop [--quick] [--seeds 1 2 4 8] [--steps N] [--out FILE.json]
                              [--precision f32 [bf16]]
    python -m benchmarks.loop --algo ppo-lag [--seeds 1 3] [--num-envs E] [--steps N]

`--algo` names the registered algorithm (default algd). For an on-policy one (ppo-lag) each
S runs the on-policy loop (`algd_jax.training.on_policy.OnPolicyLoop`) for one rollout of
N env steps per seed (default 2000) after a first rollout that compiles every program, and
reports env steps/s, the shares of acting, env stepping, bookkeeping, valuing and the
update phase, and the env-only stepping rate of the same vector envs under a fixed random
policy measured in the same run (`vector_rollouts.env_step_rate`), with their ratio.

Each S runs in a fresh child process (so that its peak RSS is its own; `--quick` runs them
in this process) the real training loop (`algd_jax.training.OffPolicyLoop`, the code
`experiments.run` uses) with S seeds: N env steps without updates (initial exploration; at
least one batch), then N steps with U = 10 fused updates each per seed (batch 256,
M = N = 4, K = 5). Every program compiles before the steady part
begins, so the measurement has no compilation in it. The loop times its own phases
(`training.PhaseClock`: action, env stepping, replay add and sample, update, episode and
epoch ends), blocking on device results so that each phase is charged its own time;
shares are of the steady (updating) part's wall time, `other` is the loop's bookkeeping.

`cost vs S x one seed` is the wall time per env step at S seeds over S times the wall time
per env step at one seed of the same precision, measured in the same benchmark run: 1.0
means S seeds in one process cost exactly what S separate runs cost. `--precision f32 bf16`
measures both precisions in one benchmark run, f32 and bf16 children in turn for each S, so
both see the same machine and load; `bf16 / f32` is then the ratio of their wall times per
env step. The paper (Table 6) reports 67 s per
1000-step MuJoCo epoch on its GPU; `s per 1000-step epoch` extrapolates ours from the
steady rate (one seed's epoch: per-step phases scaled to 1000 steps plus one epoch end).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import (
    base_parser,
    device_line,
    format_table,
    machine_info,
    write_result,
)

PAPER_S_PER_EPOCH = 67.0
TASK = "HalfCheetahVelocity"


def train_argv(
    steps: int, quick: bool, run_dir: Path, seeds: int, seed_axis: str, precision: str = "f32"
) -> list[str]:
    """Command line of one benchmark run for seeds 0..S-1: exploration steps (`steps`, or
    one batch if that is more), then `steps` updating steps, one epoch each; `--precision`
    of the matrix products when not f32."""
    batch = 32 if quick else 256
    explore = max(steps, batch)
    argv = [
        "--task", TASK,
        "--total-steps", str(explore + steps),
        "--initial-steps", str(explore),
        "--learning-starts", str(explore),
        "--epoch-steps", str(explore),
        "--eval-episodes", "0",
        "--keep-checkpoints", "1",
        "--progress", "off",
        "--seed-axis", seed_axis,
        "--run-dir", str(run_dir),
        "--seeds", *map(str, range(seeds)),
    ]  # fmt: skip
    if quick:
        argv += [
            "--updates-per-step", "2",
            "--batch-size", str(batch),
            "--ensemble-size", "2",
            "--mc-samples", "2",
            "--diffusion-steps", "2",
            "--critic-hidden", "16",
            "--score-hidden", "16",
        ]  # fmt: skip
    else:
        argv += [
            "--updates-per-step", "10",
            "--batch-size", str(batch),
            "--ensemble-size", "4",
            "--mc-samples", "4",
            "--diffusion-steps", "5",
            "--critic-hidden", "256",
            "--score-hidden", "128",
        ]  # fmt: skip
    if precision != "f32":
        argv += ["--precision", precision]
    return argv


def run_loop(
    steps: int, quick: bool, seeds: int, seed_axis: str, workdir: Path, precision: str = "f32"
) -> dict[str, Any]:
    """Measure one run (S seeds). Compilation needs no separate warm-up run: the action
    program, the evaluation program and the first checkpoint save all happen during the
    exploration steps, and the update program compiles in the first updating step, before
    the clock's steady part begins."""
    from algd_jax.train_config import parse_command_line
    from algd_jax.training import OffPolicyLoop, PhaseClock

    config = parse_command_line(
        train_argv(steps, quick, workdir / "measured", seeds, seed_axis, precision)
    )
    clock = PhaseClock()
    trainer = OffPolicyLoop(config, clock=clock)
    start = time.perf_counter()
    result = trainer.run()
    end = time.perf_counter()

    steady_wall = end - clock.steady_start
    steady = clock.seconds["steady"]
    shares = {phase: steady[phase] / steady_wall for phase in clock.PHASES}
    shares["other"] = max(0.0, 1.0 - sum(shares.values()))
    env_steps = clock.calls["env_step"]  # loop iterations, each one step of every seed
    updates = clock.calls["update"] * config.updates_per_step  # per seed
    row = result.last_rows[0] or {}
    per_step = (steady_wall - steady["epoch_end"]) / env_steps
    return {
        "task": TASK,
        "seeds": seeds,
        "seed_axis": trainer.programs.axis,
        "precision": precision,
        "steps_per_phase": steps,
        "updates_per_step": config.updates_per_step,
        "batch_size": config.batch_size,
        "ensemble_size": config.hparams.ensemble_size,
        "mc_samples": config.hparams.mc_samples,
        "diffusion_steps": config.hparams.diffusion_steps,
        "total_wall_s": end - start,
        "replay_bytes": trainer.replay_bytes,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "steady": {
            "wall_s": steady_wall,
            "loop_steps": env_steps,
            "env_steps_per_s_per_seed": env_steps / steady_wall,
            "env_steps_per_s_total": seeds * env_steps / steady_wall,
            "updates_per_s_per_seed": updates / steady_wall,
            "updates_per_s_total": seeds * updates / steady_wall,
            "s_per_loop_step": per_step,
            "s_per_1000_step_epoch": 1000.0 * per_step + steady["epoch_end"],
            "ms_per_update_in_loop": 1e3 * steady["update"] / (seeds * updates),
            "phase_s": dict(steady),
            "phase_calls": dict(clock.calls),
            "shares": shares,
        },
        "loop_reported": {
            "env_steps_per_s": float(row.get("time/env_steps_per_s", float("nan"))),
            "updates_per_s": float(row.get("time/updates_per_s", float("nan"))),
        },
    }


def on_policy_run(
    algo: str, steps: int, seeds: int, num_envs: int, seed_axis: str, acting: str = "host"
) -> dict:
    """One on-policy measurement (S seeds, E envs each, a rollout of `steps` env steps per
    seed): a compiling rollout, then a fresh run of one rollout on the cached programs.
    `acting`: `host` (the algorithm's `HostActor`, the loop's default) or `compiled` (one
    compiled call per env step)."""
    from collections import defaultdict
    from contextlib import contextmanager

    from algd_jax.envs import make_env
    from algd_jax.run_files import read_progress
    from algd_jax.train_config import parse_command_line
    from algd_jax.training.on_policy import OnPolicyLoop
    from algd_jax.vector_rollouts import env_step_rate

    seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def clock(phase: str):  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        yield
        seconds[phase] += time.perf_counter() - start

    with tempfile.TemporaryDirectory(prefix="algd-loop-bench-") as tmp:
        argv = [
            "--algo", algo, "--task", TASK, "--seeds", *map(str, range(seeds)),
            "--num-envs", str(num_envs), "--steps-per-epoch", str(steps),
            "--total-steps", str(steps), "--eval-episodes", "0", "--progress", "off",
            "--seed-axis", seed_axis,
        ]  # fmt: skip
        host = acting == "host"
        compile_argv = argv + ["--run-dir", f"{tmp}/compile"]
        OnPolicyLoop(parse_command_line(compile_argv), host_acting=host).run()
        run_argv = argv + ["--run-dir", f"{tmp}/run"]
        loop = OnPolicyLoop(parse_command_line(run_argv), clock=clock, host_acting=host)
        start = time.perf_counter()
        loop.run()
        wall = time.perf_counter() - start
        row = read_progress(loop.run_dirs[0] / "progress.csv")[-1]
    env_only = env_step_rate(
        lambda: make_env(TASK), list(range(seeds)), num_envs, loop.spec, steps // num_envs
    )
    loop_rate = seeds * steps / wall
    shares = {phase: s / wall for phase, s in seconds.items()}
    shares["other"] = max(0.0, 1.0 - sum(shares.values()))
    return {
        "algo": algo,
        "task": TASK,
        "acting": acting,
        "seeds": seeds,
        "num_envs": num_envs,
        # passes over the rollout the update phase made (seed 0; the KL stop may end it
        # before `update_iters`): the update's share scales with it
        "update_passes": float(row["train/passes"]) if "train/passes" in row else None,
        "rollout_steps_per_seed": steps,
        "wall_s": wall,
        "env_steps_per_s_total": loop_rate,
        "env_only_env_steps_per_s_total": env_only["env_steps_per_s"],
        "loop_over_env_only": loop_rate / env_only["env_steps_per_s"],
        "phase_s": dict(seconds),
        "shares": shares,
    }


def on_policy_main(args: Any) -> dict[str, Any]:
    counts = args.seeds or [1]
    runs = []
    for s in counts:
        # both acting paths for each S, one after the other, so that they see the same load
        for acting in ("host", "compiled"):
            run = on_policy_run(args.algo, args.steps, s, args.num_envs, args.seed_axis, acting)
            runs.append(run)
            shares = ", ".join(f"{k} {v:.0%}" for k, v in run["shares"].items())
            passes = run["update_passes"]
            passes_text = "" if passes is None else f"{passes:.0f} update passes; "
            print(
                f"{args.algo} S={s} E={args.num_envs} acting={acting}: "
                f"{run['env_steps_per_s_total']:.0f} env steps/s (loop), "
                f"{run['env_only_env_steps_per_s_total']:.0f} env-only, ratio "
                f"{run['loop_over_env_only']:.2f}; {passes_text}{shares}",
                flush=True,
            )
    result = {"benchmark": "loop", "machine": machine_info(), "runs": runs}
    path = write_result(result, args.out, f"loop_{args.algo}", args.quick)
    print(f"wrote {path}")
    return result


def _child(args: Any) -> int:
    with tempfile.TemporaryDirectory(prefix="algd-loop-bench-") as tmp:
        out = run_loop(
            args.steps, args.quick, args.child, args.seed_axis, Path(tmp), args.precision
        )
    print(json.dumps(out))
    return 0


def measure(
    seeds: int, steps: int, quick: bool, seed_axis: str, precision: str = "f32"
) -> dict[str, Any]:
    """One S in a fresh process; its JSON result."""
    command = [sys.executable, "-m", "benchmarks.loop", "--child", str(seeds)]
    command += ["--steps", str(steps), "--seed-axis", seed_axis, "--precision", precision]
    command += ["--quick"] if quick else []
    repo = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(repo))
    done = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"benchmark child for S={seeds} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = base_parser(__doc__.split("\n")[0])
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=None, help="seed counts S (default 1 2 4 8)"
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="env steps of each phase (default 40; quick 12); 1000 = one paper epoch",
    )
    parser.add_argument("--seed-axis", choices=("auto", "map", "vmap"), default="auto")
    parser.add_argument(
        "--precision",
        choices=("f32", "bf16"),
        nargs="+",
        default=["f32"],
        help="precisions of the matrix products (the training command's --precision); "
        "several are measured in turn for each S in one run",
    )
    parser.add_argument("--algo", default="algd", help="registered algorithm (default algd)")
    parser.add_argument(
        "--num-envs", type=int, default=1, help="on-policy: envs per seed (default 1)"
    )
    parser.add_argument("--child", type=int, default=None, help=argparse_hidden())
    args = parser.parse_args(argv)
    from algd_jax.algorithms import get_algorithm

    if get_algorithm(args.algo).kind == "on-policy":
        args.steps = args.steps or (200 if args.quick else 2000)
        return on_policy_main(args)
    if args.algo != "algd":
        parser.error(
            "--algo: the off-policy loop benchmark measures algd; see benchmarks.train_step"
        )
    args.steps = args.steps or (12 if args.quick else 40)
    precisions = list(dict.fromkeys(args.precision))
    if args.child is not None:
        args.precision = precisions[0]
        sys.exit(_child(args))
    counts = args.seeds or ([1, 2] if args.quick else [1, 2, 4, 8])
    info = machine_info()
    runs = [
        measure(s, args.steps, args.quick, args.seed_axis, p) for s in counts for p in precisions
    ]
    add_ratios(runs)
    result = {"benchmark": "loop", "quick": args.quick, "machine": info, "runs": runs}
    result["paper_s_per_1000_step_epoch"] = PAPER_S_PER_EPOCH
    path = write_result(result, args.out, "loop", args.quick)
    print(report(result))
    print(f"wrote {path}")
    return result


def add_ratios(runs: list[dict[str, Any]]) -> None:
    """Set each run's `cost_vs_separate` (against one seed of its own precision) and, when
    f32 was measured at the same S, `bf16_over_f32` (wall time per env step)."""

    def per_step(r: dict[str, Any]) -> float:
        return r["steady"]["s_per_loop_step"]

    by_key = {(r["seeds"], r.get("precision", "f32")): r for r in runs}
    for r in runs:
        precision = r.get("precision", "f32")
        one = by_key.get((1, precision))
        r["cost_vs_separate"] = (
            per_step(r) / (r["seeds"] * per_step(one)) if one is not None else float("nan")
        )
        f32 = by_key.get((r["seeds"], "f32"))
        r["bf16_over_f32"] = (
            per_step(r) / per_step(f32) if precision == "bf16" and f32 is not None else None
        )


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


def report(result: dict[str, Any]) -> str:
    """The terminal tables of a loop result."""
    runs = result["runs"]
    first = runs[0]
    rows = [
        [
            r["seeds"],
            r.get("precision", "f32"),
            r["steady"]["env_steps_per_s_per_seed"],
            r["steady"]["env_steps_per_s_total"],
            r["steady"]["updates_per_s_total"],
            r["steady"]["ms_per_update_in_loop"],
            r["cost_vs_separate"],
            r["steady"]["s_per_1000_step_epoch"],
            r["peak_rss_bytes"] / 2**20,
            float("nan") if r.get("bf16_over_f32") is None else r["bf16_over_f32"],
        ]
        for r in runs
    ]
    table = format_table(
        [
            "S",
            "precision",
            "env steps/s per seed",
            "env steps/s total",
            "updates/s total",
            "ms/update",
            "cost vs S x one seed",
            "s per 1000-step epoch",
            "peak RSS MiB",
            "bf16 / f32",
        ],
        rows,
    )
    shares = format_table(
        ["S", "precision", *first["steady"]["shares"]],
        [
            [
                r["seeds"],
                r.get("precision", "f32"),
                *(100 * v for v in r["steady"]["shares"].values()),
            ]
            for r in runs
        ],
    )
    return (
        f"Training loop on {first['task']}: exploration, "
        f"then {first['steps_per_phase']} steps x U={first['updates_per_step']} updates per "
        f"seed (batch {first['batch_size']}, M={first['ensemble_size']}, "
        f"N={first['mc_samples']}, K={first['diffusion_steps']}), "
        f"seed axis {first['seed_axis']}\n"
        f"{device_line(result['machine'])}\n{table}\n"
        f"% of steady wall time per phase:\n{shares}\n"
        f"(paper Table 6, its GPU: {result['paper_s_per_1000_step_epoch']:.0f} s per 1000-step "
        f"epoch)"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
