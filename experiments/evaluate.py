"""Evaluate a trained run: deterministic episodes from its last or best checkpoint.

    python -m experiments.evaluate RUN_DIR [--episodes 10] [--checkpoint best] [--video]

Prints each episode and the mean ± std of return and cost against the task's limit.
`--video` writes an mp4 of the first episode to RUN_DIR/videos/ (MuJoCo offscreen
rendering; headless machines use EGL unless MUJOCO_GL says otherwise).
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import tyro

from algd_jax.options import POSITIVE_INT, SEED, check_ranges, ranged

#: Random stream of these evaluation episodes (distinct from training's streams 0-3).
EVALUATE_STREAM = 4

RENDER_HELP = (
    "MuJoCo offscreen rendering needs an OpenGL driver: EGL (Debian/Ubuntu: `apt install "
    "libegl1 libgl1`, then MUJOCO_GL=egl) or OSMesa (`apt install libosmesa6`, then "
    "MUJOCO_GL=osmesa)"
)


@dataclass(frozen=True)
class EvaluateArgs:
    """Run deterministic evaluation episodes of a trained run."""

    run_dir: tyro.conf.Positional[Path]
    """The run directory (as written by experiments.run)."""
    episodes: int = ranged(10, POSITIVE_INT)
    """Number of episodes."""
    checkpoint: Literal["last", "best"] = "last"
    """`last`: the newest checkpoint; `best`: the best feasible evaluation during training."""
    seed: int = ranged(0, SEED)
    """Seed of the evaluation episodes (independent of the training seed's streams)."""
    video: bool = False
    """Also write an mp4 of the first episode to RUN_DIR/videos/."""


def _video_path(run_dir: Path, which: str, step: int) -> Path:
    """A new file under run_dir/videos/ (never overwrites an earlier video)."""
    base = run_dir / "videos" / f"{which}-step{step}"
    path, n = base.with_suffix(".mp4"), 1
    while path.exists():
        path = base.with_name(f"{base.name}-{n}").with_suffix(".mp4")
        n += 1
    return path


def evaluate(args: EvaluateArgs) -> int:
    """Load the checkpoint, run the episodes, print the summary; returns the exit status."""
    import numpy as np

    from algd_jax.checkpointing import Checkpointer
    from algd_jax.envs import make_env
    from algd_jax.judging import cost_limit_of, feasible
    from algd_jax.programs import programs, stack
    from algd_jax.rollouts import run_episodes
    from algd_jax.run_files import read_run_config
    from algd_jax.train_config import (
        GROUP_FILE,
        RunError,
        resolve_hparams,
        resolve_task,
    )
    from algd_jax.training import new_state, stream_seed

    if (args.run_dir / GROUP_FILE).is_file() and not (args.run_dir / "config.json").is_file():
        raise RunError(
            f"{args.run_dir} holds several seeds; evaluate one of them, e.g. "
            f"{args.run_dir / 'seed0'} (python -m experiments.plot takes them all)"
        )

    config = read_run_config(args.run_dir).config  # validated, as every reader of a run's files
    spec = resolve_task(config)
    algorithm = config.algorithm
    hparams = resolve_hparams(config, spec)
    checkpoints = Checkpointer(args.run_dir)
    steps = checkpoints.steps(args.checkpoint)
    if not steps:
        hint = (
            " (no evaluation within the cost limit yet); try --checkpoint last"
            if args.checkpoint == "best"
            else ""
        )
        raise RunError(f"{args.run_dir}: no {args.checkpoint} checkpoint{hint}")
    template = new_state(algorithm, hparams, spec, config.seed)
    try:
        state, _, _, _ = checkpoints.restore(template, which=args.checkpoint, with_replay=False)
    finally:
        checkpoints.close()
    import jax

    compiled = programs(algorithm.act, algorithm.update, "map")
    states = stack([state])
    keys = jax.random.key(0)[None]  # unused by the deterministic sampler

    def act(obs: np.ndarray) -> np.ndarray:
        actions = np.asarray(compiled.act(states, obs, keys, 0, True))
        if not np.isfinite(actions).all():
            raise RunError(
                f"{args.run_dir}: the {args.checkpoint} checkpoint at env step {steps[-1]} "
                f"gives a non-finite action (its parameters diverged); evaluate a run that "
                f"trained without a non-finite stop",
                1,
            )
        return actions

    try:
        env = make_env(
            config.task,
            config.cost_limit,
            paper_setting=config.paper_setting,
            render_mode="rgb_array" if args.video else None,
        )
    except (ValueError, ImportError) as err:
        raise RunError(str(err)) from None
    if args.video and "rgb_array" not in env.metadata.get("render_modes", ["rgb_array"]):
        raise RunError(f"{config.task} has no renderer, so no video can be made; drop --video")

    print(
        f"{config.task} ({config.algo}), {args.checkpoint} checkpoint at env step "
        f"{steps[-1]}, {args.episodes} deterministic episodes"
    )
    if args.video:
        print("recording episode 1 (software rendering takes ~60 ms a frame on a CPU)")
    results, frames = [], [] if args.video else None
    for j in range(args.episodes):
        try:
            (summary,) = run_episodes(
                [env],
                act,
                [stream_seed(args.seed, EVALUATE_STREAM, j)],
                spec.cost_gamma,
                frames=frames if j == 0 else None,
            )
        except Exception as err:
            if frames is not None and not frames:  # failed on the very first render
                reason = str(err).strip().splitlines()[0] if str(err).strip() else repr(err)
                raise RunError(f"rendering failed ({reason}); {RENDER_HELP}", 1) from None
            raise
        results.append(summary)
        print(
            f"  episode {j + 1:>3}: return {summary['return']:10.2f}  cost "
            f"{summary['cost']:8.2f}  discounted cost {summary['discounted_cost']:8.2f}  "
            f"length {int(summary['length'])}"
        )

    def stat(key: str) -> str:
        values = np.array([r[key] for r in results])
        return f"{values.mean():.2f} ± {values.std():.2f}"

    cost_key = "discounted_cost" if spec.eval_cost == "discounted" else "cost"
    within = sum(feasible(spec, r) for r in results)
    print(f"return {stat('return')}")
    print(
        f"cost ({'discounted' if cost_key == 'discounted_cost' else 'per episode'}) "
        f"{stat(cost_key)} against the limit {cost_limit_of(spec):g}: "
        f"{within}/{len(results)} episodes within it"
    )
    if frames:
        import imageio.v2 as imageio

        path = _video_path(args.run_dir, args.checkpoint, steps[-1])
        path.parent.mkdir(parents=True, exist_ok=True)
        fps = int(env.metadata.get("render_fps", 30))
        with warnings.catch_warnings():
            # imageio-ffmpeg starts ffmpeg with subprocess; JAX's fork warning does not apply
            warnings.filterwarnings("ignore", message="os.fork", category=RuntimeWarning)
            imageio.mimwrite(path, frames, fps=fps, macro_block_size=1)
        print(f"video of episode 1: {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    video = any(a == "--video" or a.startswith("--video=") for a in argv)
    if video and "MUJOCO_GL" not in os.environ and not os.environ.get("DISPLAY"):
        os.environ["MUJOCO_GL"] = "egl"  # read once, when mujoco is first imported
    try:
        # MuJoCo loads the OpenGL library that MUJOCO_GL names when it is imported
        from algd_jax.train_config import RunError, parse_args
    except Exception as err:
        if "MUJOCO_GL" not in os.environ:
            raise
        reason = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        print(
            f"error: MuJoCo could not load MUJOCO_GL={os.environ['MUJOCO_GL']} ({reason}); "
            f"{RENDER_HELP}",
            file=sys.stderr,
        )
        return 1
    try:
        args = parse_args(EvaluateArgs, argv, prog="python -m experiments.evaluate")
        problems = check_ranges(args)
        if problems:
            raise RunError("; ".join(problems))
        return evaluate(args)
    except RunError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code


if __name__ == "__main__":
    sys.exit(main())
