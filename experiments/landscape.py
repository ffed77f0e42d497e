"""Draw the energy landscapes of a trained ALGD-family agent, like the paper's Fig. 1.

    python -m experiments.landscape RUN_DIR [--checkpoint last|best] [--state N]
        [--dims I J] [--grid 101] [--diffusion-step 0] [--samples 256] [--out fig.png]

At one state (by default the N-th observation of a fresh deterministic evaluation episode;
`--source replay` takes the N-th row of the replay buffer saved in the last checkpoint), it
draws a 2-D slice of the action space through the policy's deterministic action (action
dims I and J varied over the box, the others held there), with the agent's critics, its
current multiplier lambda and its config's rho, kappa and h:

* panels 1 and 2: filled contours of the standard Lagrangian L and the augmented one L_A,
  the feasible set {qc_risk <= h} outlined in white (the infeasible side hatched), the score
  net's field phi_theta(s, a, tau) at diffusion step tau as arrows (directions only, along
  dims I and J) and `--samples` draws of the stochastic policy as dots (the deterministic
  action: a star);
* panel 3: the smallest eigenvalue of the Hessian of L (top) and of L_A (bottom) with
  respect to the two slice coordinates, on one colour scale centred at 0, with the
  fraction of the grid where each is locally convex (smallest eigenvalue >= -1e-6).

The grid is one jitted, vmapped evaluation (`algd_jax.landscape`). A JSON summary (convex
fractions, lambda, timings) is written next to the image. Problems with the input are
reported as one line `error: ...` (exit status 2; 1 for a damaged checkpoint).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

#: Axis labels of the action dims of tasks that name them (others: "action dim k").
ACTION_NAMES = {"DiffDriveCircle": ("forward speed v (m/s)", "turn rate omega (rad/s)")}

#: Random stream of the evaluation episode and the policy samples (training uses 0-3,
#: experiments.evaluate 4).
LANDSCAPE_STREAM = 5


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line as one `error: ...` line (exit 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m experiments.landscape",
        description="Energy landscapes L and L_A of a trained ALGD-family agent over a 2-D "
        "slice of its action space (the paper's Fig. 1).",
    )
    p.add_argument("run_dir", type=Path, help="a run directory written by experiments.run")
    p.add_argument("--checkpoint", choices=("last", "best"), default="last")
    p.add_argument(
        "--step", type=int, default=None, help="env step of the checkpoint (default: newest)"
    )
    p.add_argument("--state", type=int, default=0, help="index N of the state (default 0)")
    p.add_argument(
        "--source",
        choices=("episode", "replay"),
        default="episode",
        help="episode: the N-th observation of a fresh deterministic evaluation episode; "
        "replay: row N of the replay buffer in the last checkpoint",
    )
    p.add_argument("--dims", type=int, nargs=2, default=(0, 1), metavar=("I", "J"))
    p.add_argument("--grid", type=int, default=101, help="grid points per axis (>= 3)")
    p.add_argument("--diffusion-step", type=int, default=0, help="tau of the score field (0..K-1)")
    p.add_argument("--samples", type=int, default=256, help="policy samples drawn as dots")
    p.add_argument("--seed", type=int, default=0, help="seed of the episode and the samples")
    p.add_argument("--out", type=Path, default=None, help="image (default RUN_DIR/landscape.png)")
    return p


@dataclass
class LoadedRun:
    """A run's resolved configuration and one restored agent."""

    config: Any  # TrainConfig
    spec: Any  # TaskSpec
    algorithm: Any
    agent: Any
    step: int


def load_agent(run_dir: Path, which: str, step: int | None = None) -> LoadedRun:
    """Restore a run's agent (the pattern of experiments.evaluate); `RunError` if the run is
    not an ALGD-family run with an action space of at least two dims."""
    from algd_jax.checkpointing import Checkpointer
    from algd_jax.landscape import ALGD_FAMILY
    from algd_jax.run_files import read_run_config
    from algd_jax.train_config import (
        GROUP_FILE,
        RunError,
        resolve_hparams,
        resolve_task,
    )
    from algd_jax.training import new_state

    if (run_dir / GROUP_FILE).is_file() and not (run_dir / "config.json").is_file():
        raise RunError(f"{run_dir} holds several seeds; draw one of them, e.g. {run_dir / 'seed0'}")
    config = read_run_config(run_dir).config  # validated, as every reader of a run's files
    if config.algo not in ALGD_FAMILY:
        raise RunError(
            f"{run_dir} is a {config.algo} run; landscapes are drawn from the energies of the "
            f"ALGD family only ({', '.join(ALGD_FAMILY)})"
        )
    spec = resolve_task(config)
    if spec.act_dim < 2:
        raise RunError(
            f"{config.task} has a {spec.act_dim}-D action space: there is no 2-D slice to "
            f"draw (the landscape needs at least two action dims)"
        )
    algorithm = config.algorithm
    hparams = resolve_hparams(config, spec)
    checkpoints = Checkpointer(run_dir)
    try:
        steps = checkpoints.steps(which)  # type: ignore[arg-type]
        if not steps:
            hint = " (no evaluation within the cost limit yet); try --checkpoint last"
            raise RunError(f"{run_dir}: no {which} checkpoint{hint if which == 'best' else ''}")
        if step is not None and step not in steps:
            raise RunError(
                f"--step {step}: {run_dir} has {which} checkpoints at env steps "
                f"{', '.join(map(str, steps))}"
            )
        step = steps[-1] if step is None else step
        template = new_state(algorithm, hparams, spec, config.seed)
        agent, _, _, _ = checkpoints.restore(template, which=which, step=step, with_replay=False)
    finally:
        checkpoints.close()
    return LoadedRun(config, spec, algorithm, agent, step)


def episode_state(run: LoadedRun, index: int, seed: int) -> Any:
    """The `index`-th observation `[ds]` of a deterministic evaluation episode."""
    import jax
    import numpy as np

    from algd_jax.envs import make_env
    from algd_jax.train_config import RunError
    from algd_jax.training import stream_seed

    config = run.config
    try:
        env = make_env(config.task, config.cost_limit, paper_setting=config.paper_setting)
    except (ValueError, ImportError) as err:
        raise RunError(str(err)) from None
    act = jax.jit(run.algorithm.act, static_argnames="deterministic")
    key = jax.random.key(0)  # unused by the deterministic sampler
    obs, _ = env.reset(seed=stream_seed(seed, LANDSCAPE_STREAM, 0))
    for t in range(index):
        action = np.asarray(act(run.agent, np.asarray(obs, np.float32)[None], key, True))[0]
        obs, _, terminated, truncated, _ = env.step(action)
        if (terminated or truncated) and t + 1 < index:
            raise RunError(
                f"the evaluation episode ended after {t + 1} steps; choose --state {t + 1} or less"
            )
    env.close()
    return np.asarray(obs, np.float32)


def replay_state(run_dir: Path, run: LoadedRun, index: int) -> Any:
    """Row `index` of the replay buffer saved in the run's last checkpoint, `[ds]`."""
    import numpy as np

    from algd_jax.checkpointing import Checkpointer
    from algd_jax.train_config import RunError

    checkpoints = Checkpointer(run_dir)
    try:
        if not checkpoints.steps("last"):
            raise RunError(f"{run_dir}: no last checkpoint (it holds the replay buffer)")
        _, _, replay, _ = checkpoints.restore(run.agent, which="last", with_replay=True)
    finally:
        checkpoints.close()
    assert replay is not None
    rows = np.asarray(replay["obs"])
    if index >= rows.shape[0]:
        raise RunError(f"--state {index}: the replay holds {rows.shape[0]} rows")
    return rows[index].astype(np.float32)


def compute(
    run: LoadedRun,
    obs: Any,
    dims: tuple[int, int],
    points: int,
    diffusion_step: int,
    samples: int,
    seed: int,
) -> dict[str, Any]:
    """Evaluate the grid and draw the policy samples; numpy results and timings."""
    import jax
    import numpy as np

    from algd_jax import landscape as ls
    from algd_jax.training import stream_seed

    agent, spec = run.agent, run.spec
    low, high = np.asarray(spec.action_low), np.asarray(spec.action_high)
    key = jax.random.key(stream_seed(seed, LANDSCAPE_STREAM, 1))
    obs_row = np.asarray(obs, np.float32)[None]
    center = run.algorithm.act(agent, obs_row, key, True)[0]
    policy = run.algorithm.act(agent, np.repeat(obs_row, samples, axis=0), key, False)
    axis_i, axis_j = ls.grid_axes(low, high, dims, points)
    args = (agent, obs_row[0], center, axis_i, axis_j)
    static = {"dims": dims, "diffusion_step": diffusion_step}
    start = time.perf_counter()
    jax.block_until_ready(ls.landscape(*args, **static))  # compiles (cached per shape)
    compiled_at = time.perf_counter()
    grid = jax.block_until_ready(ls.landscape(*args, **static))
    done = time.perf_counter()
    result = {k: np.asarray(v) for k, v in grid._asdict().items()}
    result.update(
        center=np.asarray(center),
        samples=np.asarray(policy),
        compile_s=compiled_at - start,
        evaluate_s=done - compiled_at,
    )
    return result


def draw(result: dict[str, Any], run: LoadedRun, info: dict[str, Any], out: Path) -> None:
    """The three-panel figure (see the module docstring)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.colors import TwoSlopeNorm

    from algd_jax.landscape import convex_fraction, strictly_convex_fraction

    cfg = run.agent.config
    i, j = info["dims"]
    names = ACTION_NAMES.get(run.config.task)
    label_i, label_j = (names[i], names[j]) if names else (f"action dim {i}", f"action dim {j}")
    xi, xj = result["axis_i"], result["axis_j"]
    risk, budget = result["qc_risk"], cfg.cost_budget
    fig = plt.figure(figsize=(18.0, 6.0), layout="constrained")
    grid = fig.add_gridspec(2, 3, width_ratios=(1.0, 1.0, 0.8))
    stride = max(1, len(xi) // 17)
    score = result["score"][::stride, ::stride]
    norm = np.linalg.norm(score, axis=-1, keepdims=True)
    direction = np.where(norm > 0, score / np.maximum(norm, 1e-12), 0.0)
    feasible_all, feasible_none = bool(np.all(risk <= budget)), bool(np.all(risk > budget))
    panels = (("L (Lagrangian)", "lagrangian"), ("L_A (augmented)", "augmented"))
    for col, (name, key) in enumerate(panels):
        ax = fig.add_subplot(grid[:, col])
        filled = ax.contourf(xi, xj, result[key], levels=30, cmap="viridis")
        fig.colorbar(filled, ax=ax, fraction=0.046, pad=0.03)
        if not (feasible_all or feasible_none):
            ax.contour(xi, xj, risk, levels=[budget], colors="white", linewidths=2.0)
            ax.contourf(xi, xj, risk, levels=[budget, np.inf], colors="none", hatches=["//"])
        ax.quiver(
            xi[::stride],
            xj[::stride],
            direction[..., 0],
            direction[..., 1],
            color="black",
            alpha=0.55,
            scale=30,
            width=0.004,
        )
        ax.scatter(
            result["samples"][:, i], result["samples"][:, j], s=6, color="#e8412c", alpha=0.7
        )
        ax.scatter(
            [result["center"][i]], [result["center"][j]], marker="*", s=180, color="white",
            edgecolors="black", zorder=5,
        )  # fmt: skip
        feasible = "all feasible" if feasible_all else "all infeasible" if feasible_none else (
            "white: qc_risk = h, hatched: infeasible"
        )  # fmt: skip
        ax.set_title(f"{name}\n{feasible}", fontsize=10)
        ax.set_xlabel(label_i)
        ax.set_ylabel(label_j)
        ax.set_xlim(xi[0], xi[-1])
        ax.set_ylim(xj[0], xj[-1])
    hess = (result["hess_min_lagrangian"], result["hess_min_augmented"])
    scale = float(np.nanpercentile(np.abs(np.concatenate([h.ravel() for h in hess])), 99))
    scale = scale if scale > 0 else 1.0
    colour = TwoSlopeNorm(vcenter=0.0, vmin=-scale, vmax=scale)
    for row, (name, values) in enumerate(zip(("L", "L_A"), hess, strict=True)):
        ax = fig.add_subplot(grid[row, 2])
        image = ax.pcolormesh(xi, xj, np.clip(values, -scale, scale), cmap="RdBu_r", norm=colour)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.03)
        ax.set_title(
            f"smallest Hessian eigenvalue of {name}\n>= 0 on {100 * convex_fraction(values):.1f}%"
            f", > 0 on {100 * strictly_convex_fraction(values):.1f}% of the slice",
            fontsize=9,
        )
        ax.set_ylabel(label_j, fontsize=8)
        if row == 1:
            ax.set_xlabel(label_i)
    lam = float(result["multiplier"])
    fig.suptitle(
        f"{run.config.algo} on {run.config.task}, {info['checkpoint']} checkpoint at env step "
        f"{run.step}; state {info['state']} ({info['source']}); lambda={lam:.3g}, "
        f"rho={cfg.rho:g}, kappa={cfg.kappa:g}, h={budget:.4g}\narrows: score direction at "
        f"tau={info['diffusion_step']} (median cosine with the descent of "
        f"{'L_A' if cfg.augmented else 'L'}: {info['alignment']:.2f}); red dots: "
        f"{len(result['samples'])} policy samples; star: deterministic action (the slice "
        f"passes through it)",
        fontsize=10,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(fig)


def curvature_raised(result: dict[str, Any], tol: float = 1e-6) -> float | None:
    """Fraction of the grid points where the penalty acts (lam + rho (qc - h) > 0) at which
    L_A's smallest Hessian eigenvalue is at least L's (None: the penalty acts nowhere)."""
    import numpy as np

    active = np.asarray(result["active"], bool)
    if not active.any():
        return None
    raised = result["hess_min_augmented"] >= result["hess_min_lagrangian"] - tol
    return float(np.mean(raised[active]))


def landscape(args: argparse.Namespace) -> dict[str, Any]:
    """Validate, load, evaluate, draw; returns the summary written next to the image."""
    import numpy as np

    from algd_jax.landscape import convex_fraction, score_alignment, strictly_convex_fraction
    from algd_jax.train_config import RunError

    if args.grid < 3:
        raise RunError(f"--grid must be at least 3, got {args.grid}")
    if args.samples < 1:
        raise RunError(f"--samples must be a positive integer, got {args.samples}")
    if args.state < 0:
        raise RunError(f"--state must be >= 0, got {args.state}")
    run_dir: Path = args.run_dir
    out = args.out if args.out is not None else run_dir / "landscape.png"
    from experiments.plot import check_image_out

    check_image_out(out)
    run = load_agent(run_dir, args.checkpoint, args.step)
    da = run.spec.act_dim
    dims = (int(args.dims[0]), int(args.dims[1]))
    for d in dims:
        if not 0 <= d < da:
            raise RunError(f"--dims {d}: {run.config.task} has action dims 0..{da - 1}")
    if dims[0] == dims[1]:
        raise RunError(f"--dims {dims[0]} {dims[1]}: the two dims of the slice must differ")
    steps = run.agent.config.diffusion_steps
    if not 0 <= args.diffusion_step < steps:
        raise RunError(f"--diffusion-step must be in 0..{steps - 1}, got {args.diffusion_step}")
    if args.source == "replay":
        obs = replay_state(run_dir, run, args.state)
    else:
        obs = episode_state(run, args.state, args.seed)
    from algd_jax.faults import is_out_of_memory, oom_reason

    try:
        result = compute(run, obs, dims, args.grid, args.diffusion_step, args.samples, args.seed)
    except Exception as err:
        if not is_out_of_memory(err):
            raise
        raise RunError(
            f"--grid {args.grid} --samples {args.samples}: the landscape does not fit in memory "
            f"({oom_reason(err)}); lower --grid or --samples"
        ) from None
    info = {
        "dims": dims,
        "checkpoint": args.checkpoint,
        "state": args.state,
        "source": args.source,
        "diffusion_step": args.diffusion_step,
    }
    energy = "grad_augmented" if run.agent.config.augmented else "grad_lagrangian"
    try:
        draw(
            result,
            run,
            {**info, "alignment": score_alignment(result["score"], result[energy])},
            out,
        )
    except OSError as err:
        raise RunError(f"cannot write {out} ({err.strerror}); choose a writable --out") from None
    summary = {
        **info,
        "run_dir": str(run_dir),
        "algo": run.config.algo,
        "task": run.config.task,
        "env_step": run.step,
        "grid": args.grid,
        "multiplier": float(result["multiplier"]),
        "rho": run.agent.config.rho,
        "kappa": run.agent.config.kappa,
        "cost_budget": run.agent.config.cost_budget,
        "observation": np.asarray(obs).round(6).tolist(),
        "deterministic_action": result["center"].round(6).tolist(),
        "feasible_fraction": float(np.mean(result["qc_risk"] <= run.agent.config.cost_budget)),
        "penalty_active_fraction": float(np.mean(result["active"])),
        "convex_fraction": {
            "L": convex_fraction(result["hess_min_lagrangian"]),
            "L_A": convex_fraction(result["hess_min_augmented"]),
        },
        "strictly_convex_fraction": {
            "L": strictly_convex_fraction(result["hess_min_lagrangian"]),
            "L_A": strictly_convex_fraction(result["hess_min_augmented"]),
        },
        # Theorem 3.2(a): where the penalty acts, L_A's smallest curvature is at least L's
        "curvature_raised_fraction": curvature_raised(result),
        # the score net against its own energy's descent direction (L_A, or L for lgd)
        "score_alignment": score_alignment(
            result["score"],
            result["grad_augmented" if run.agent.config.augmented else "grad_lagrangian"],
        ),
        "compile_s": round(result["compile_s"], 3),
        "evaluate_s": round(result["evaluate_s"], 3),
        "out": str(out),
    }
    try:
        out.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
    except OSError as err:
        raise RunError(f"cannot write {out.with_suffix('.json')} ({err.strerror})") from None
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exit_info:
        return int(exit_info.code or 0)
    from algd_jax.train_config import RunError

    try:
        summary = landscape(args)
    except RunError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    fractions = summary["convex_fraction"]
    print(
        f"{summary['grid']}x{summary['grid']} grid in {summary['evaluate_s']:.2f} s "
        f"(compiled in {summary['compile_s']:.1f} s); lambda {summary['multiplier']:.4g}; "
        f"convex on {100 * fractions['L']:.1f}% (L) and {100 * fractions['L_A']:.1f}% (L_A) "
        f"of the slice; feasible on {100 * summary['feasible_fraction']:.1f}%; score vs "
        f"its energy's descent: median cosine {summary['score_alignment']:.2f}"
    )
    print(f"wrote {summary['out']}")
    return 0 if math.isfinite(summary["multiplier"]) else 1


if __name__ == "__main__":
    sys.exit(main())
