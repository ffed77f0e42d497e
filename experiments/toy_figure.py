"""Every registered algorithm on the two-mode bandit, like the paper's Figure 2.

    python -m experiments.toy_figure [--algos NAME ...] [--seeds 5] [--iterations 800]
                                     [--out docs/results/toy_bandit_all.png]

Trains each algorithm (default: every registered off-policy one) from the same seeds on
``ToyTwoModeBandit`` with the fused loop of `algd_jax.training.on_device` (`train_bandit`), each
with its bandit configuration (`toy_config`), and draws one figure with four panels over
training: the policy's expected return E_pi[r] (with the constrained optimum V* = 10.2 over
all policies, the best feasible return of a tanh-Gaussian policy, 10.0, and ALGD's exact
Boltzmann fixed point), its expected cost E_pi[c] (with the budget h), its mass on the
fast lane (the constrained optimum puts h / C = 0.1 there; a unimodal policy on the safe
peak puts 0), and the multiplier (RCRL's is the batch mean of its state-wise lambda(s)).
Each curve is the mean over seeds with a band of +- one standard deviation; the
per-iteration measurements (128 policy draws each) are smoothed by a moving average before
plotting. A JSON summary of the last quarter of training is written next to the image
(same name, `.json`). `--algos algd lgd --iterations 1000 --out
docs/figures/toy_algd_vs_lgd.png` draws the guide's ALGD-vs-LGD figure.

PPO-Lag (on-policy) trains through the on-policy loop instead, as `experiments.run --task
ToyTwoModeBandit --algo ppo-lag` with `PPO_TOY_FLAGS` (its run directories in a temporary
folder), and is drawn in a column of its own against env steps: its return and cost are the
means over each rollout's one-step episodes (2048 draws of the stochastic policy), and the
on-policy loop does not measure the policy's mass on the fast lane.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from algd_jax.algorithms import get_algorithm, list_algorithms
from algd_jax.algorithms.algd import ALGDConfig
from algd_jax.envs import get_task
from algd_jax.envs.toy import DEFAULT_BANDIT, TASK_NAME
from algd_jax.training.on_device import BanditRun, bandit_agent_config, train_bandit

#: Legend label and colour of each algorithm.
STYLE = {
    "algd": ("ALGD (augmented)", "#1f5fbf"),
    "lgd": ("LGD (Lagrangian energy)", "#e0a000"),
    "algd-ddpm": ("ALGD-DDPM", "#7f3fbf"),
    "cal": ("CAL", "#d62728"),
    "sac-lag": ("SAC-Lag", "#2ca02c"),
    "sac-auglag": ("SAC-AugLag", "#17becf"),
    "rcrl": ("RCRL (HJ)", "#8c564b"),
    "ppo-lag": ("PPO-Lag", "#ff7f0e"),
}

#: PPO-Lag on the bandit (`experiments.run` flags): OmniSafe's defaults but for the rollout,
#: 16 envs x 128 steps per rollout, 30 rollouts (61,440 one-step episodes per seed), the
#: budget h = 0.4 as its episodic cost limit.
PPO_TOY_FLAGS = [
    "--task", "ToyTwoModeBandit", "--algo", "ppo-lag", "--cost-limit", "0.4",
    "--num-envs", "16", "--steps-per-epoch", "2048", "--total-steps", "61440",
    "--eval-episodes", "4", "--progress", "off",
]  # fmt: skip

#: The SAC-family baselines on the bandit: the shared small sizes (64 units, M = 2, as the
#: ALGD agent's `bandit_agent_config`), every other option at the algorithm's default, except
#: RCRL's learning rates: its official ones (actor 2e-5, lambda(s) 6e-7, decaying) barely move
#: a policy in the 3200 updates of this run, so the bandit uses the other baselines' 3e-4 for
#: the actor and alpha, 1e-3 for the critics (as the ALGD agent here) and 1e-4 for lambda(s),
#: constant (the on-device loop gives no planned update count to decay over).
TOY_SIZES = {"critic_hidden": 64, "actor_hidden": 64, "ensemble_size": 2}
TOY_OVERRIDES: dict[str, dict[str, Any]] = {
    "rcrl": {
        "actor_lr": 3e-4,
        "alpha_lr": 3e-4,
        "critic_lr": 1e-3,
        "cost_critic_lr": 1e-3,
        "multiplier_lr": 1e-4,
        "multiplier_hidden": 64,
        "lr_schedule": "constant",
    },
}


def off_policy_algorithms() -> list[str]:
    """Every registered off-policy algorithm, in registration order."""
    return [name for name in list_algorithms() if get_algorithm(name).kind == "off-policy"]


def on_policy_algorithms() -> list[str]:
    """Every registered on-policy algorithm (trained by `train_on_policy`)."""
    return [name for name in list_algorithms() if get_algorithm(name).kind == "on-policy"]


def train_on_policy(algo: str, seeds: list[int], root: Path) -> dict[str, np.ndarray]:
    """`algo` on the bandit through the on-policy loop (`PPO_TOY_FLAGS`, all seeds in one
    process, run directory `root`): traces `[S, R]` per rollout of `env_steps`, `return`,
    `cost` (the rollout's mean one-step episode return and cost) and `multiplier`."""
    from algd_jax.run_files import read_progress
    from algd_jax.train_config import parse_command_line
    from algd_jax.training import train

    flags = [*PPO_TOY_FLAGS]
    flags[flags.index("--algo") + 1] = algo
    config = parse_command_line([*flags, "--seeds", *map(str, seeds), "--run-dir", str(root)])
    train(config)
    columns = {
        "env_steps": "env_steps",
        "return": "train/episode_return",
        "cost": "train/episode_cost",
        "multiplier": "train/multiplier",
    }
    progress = [read_progress(root / f"seed{s}" / "progress.csv") for s in seeds]
    return {
        key: np.array([[float(r[column]) for r in rows] for rows in progress])
        for key, column in columns.items()
    }


def summarise_on_policy(traces: dict[str, np.ndarray]) -> dict[str, Any]:
    """Last-quarter statistics per seed of an on-policy algorithm's rollout traces."""
    quarter = max(traces["return"].shape[1] // 4, 1)
    last = {k: v[:, -quarter:] for k, v in traces.items()}
    feasible = [
        int(traces["env_steps"][k, i]) if i is not None else None
        for k, i in enumerate(feasible_from(traces["cost"], DEFAULT_BANDIT.budget, 1, 1))
    ]
    return {
        "feasible_from_env_step": feasible,
        "return_median": np.median(last["return"], 1).round(4).tolist(),
        "cost_mean": last["cost"].mean(1).round(4).tolist(),
        "cost_max": last["cost"].max(1).round(4).tolist(),
        "multiplier_mean": last["multiplier"].mean(1).round(4).tolist(),
        "multiplier_final": traces["multiplier"][:, -1].round(4).tolist(),
    }


def toy_config(algo: str) -> Any:
    """The configuration `algo` is trained with on the bandit (resolved for the task)."""
    algorithm = get_algorithm(algo)
    if algorithm.config_type is ALGDConfig:
        return bandit_agent_config(algo)
    config = algorithm.default_config(**TOY_SIZES, **TOY_OVERRIDES.get(algo, {}))
    return algorithm.resolve(config, get_task(TASK_NAME))


def smooth(trace: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average along the last axis (`[S, T]` -> `[S, T]`), shorter at the
    start so the curve begins at the first measurement."""
    if window <= 1:
        return trace
    cumsum = np.cumsum(trace, axis=-1)
    out = cumsum.copy()
    out[..., window:] = cumsum[..., window:] - cumsum[..., :-window]
    counts = np.minimum(np.arange(1, trace.shape[-1] + 1), window)
    return out / counts


def feasible_from(
    cost: np.ndarray, budget: float, window: int, updates_per_iteration: int
) -> list[int | None]:
    """Per seed, the updates after which the moving average (`window` iterations) of
    E_pi[c] stays within `budget` to the end of the run (0: from the start; None: over the
    budget at the end). `cost`: `[S, T]`."""
    over = smooth(cost, window) > budget
    out: list[int | None] = []
    for row in over:
        if row[-1]:
            out.append(None)
        else:
            last_over = int(np.nonzero(row)[0].max()) if row.any() else -1
            out.append((last_over + 1) * updates_per_iteration)
    return out


def summarise(
    traces: dict[str, np.ndarray], window: int = 10, updates_per_iteration: int = 4
) -> dict[str, Any]:
    """Last-quarter statistics per seed (lists) of the quantities the figure shows, and
    when each seed became feasible for good (`feasible_from`)."""
    quarter = traces["return"].shape[1] // 4
    last = {k: v[:, -quarter:] for k, v in traces.items()}
    budget = DEFAULT_BANDIT.budget
    return {
        "feasible_from_update": feasible_from(
            traces["cost"], budget, window, updates_per_iteration
        ),
        "return_mean": last["return"].mean(1).round(4).tolist(),
        "return_median": np.median(last["return"], 1).round(4).tolist(),
        "cost_mean": last["cost"].mean(1).round(4).tolist(),
        "cost_max": last["cost"].max(1).round(4).tolist(),
        "violation_mean": last["violation"].mean(1).round(4).tolist(),
        "fraction_of_iterations_violating": (last["cost"] > DEFAULT_BANDIT.budget)
        .mean(1)
        .round(4)
        .tolist(),
        "fast_lane_mass_mean": last["fast_mass"].mean(1).round(4).tolist(),
        "multiplier_mean": last["multiplier"].mean(1).round(4).tolist(),
        "multiplier_var": last["multiplier"].var(1).tolist(),
        "multiplier_final": traces["multiplier"][:, -1].round(4).tolist(),
        "eval_action_median": np.median(last["eval_action"], 1).round(4).tolist(),
    }


def plot(
    results: dict[str, dict[str, np.ndarray]],
    run: BanditRun,
    out: Path,
    window: int,
    on_policy: dict[str, dict[str, np.ndarray]] | None = None,
) -> None:
    """Write the four-panel figure for the off-policy algorithms in `results` (traces
    `[S, T]` per bandit iteration) and, in a second column against env steps, the
    on-policy ones in `on_policy` (traces `[S, R]` per rollout, `train_on_policy`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bandit = DEFAULT_BANDIT
    columns = 2 if on_policy else 1
    fig, grid = plt.subplots(
        4, columns, figsize=(7.5 + 4.5 * (columns - 1), 10.5), sharex="col", sharey="row",
        squeeze=False, gridspec_kw={"width_ratios": [5, 3][:columns]},
    )  # fmt: skip
    axes = grid[:, 0]
    panels = [
        ("return", "expected return $E_\\pi[r]$"),
        ("cost", "expected cost $E_\\pi[c]$"),
        ("fast_mass", "mass on the fast lane"),
        ("multiplier", "multiplier $\\lambda$ (RCRL: mean $\\lambda(s)$)"),
    ]
    for algo, traces in results.items():
        label, color = STYLE.get(algo, (algo, None))
        updates = (np.arange(traces["return"].shape[1]) + 1) * run.updates_per_iteration
        for ax, (key, _) in zip(axes, panels, strict=True):
            values = smooth(traces[key], window)
            mean, std = values.mean(0), values.std(0)
            ax.plot(updates / 1e3, mean, color=color, label=label, lw=1.4)
            ax.fill_between(updates / 1e3, mean - std, mean + std, color=color, alpha=0.15, lw=0)
    for algo, traces in (on_policy or {}).items():
        label, color = STYLE.get(algo, (algo, None))
        steps = traces["env_steps"][0] / 1e3
        for ax, (key, _) in zip(grid[:, -1], panels, strict=True):
            if key not in traces:
                continue
            mean, std = traces[key].mean(0), traces[key].std(0)
            ax.plot(steps, mean, color=color, label=label, lw=1.4, marker=".", ms=3)
            ax.fill_between(steps, mean - std, mean + std, color=color, alpha=0.15, lw=0)
    v_star = bandit.constrained_optimum().value
    unimodal = bandit.deterministic_optimum().value
    algd_fixed = bandit.boltzmann_optimum(1.0, "augmented").value
    optimum_mass = bandit.constrained_optimum().fast_lane_mass
    for column in range(columns):
        top, cost_ax, mass_ax = grid[0, column], grid[1, column], grid[2, column]
        top.axhline(v_star, color="k", ls="--", lw=1, label=f"constrained optimum $V^*$={v_star:g}")
        top.axhline(
            unimodal, color="k", ls="-.", lw=1, label=f"best feasible (tanh-)Gaussian {unimodal:g}"
        )
        cost_ax.axhline(
            bandit.budget, color="k", ls="--", lw=1, label=f"budget h = {bandit.budget:g}"
        )
        if column == 0:
            top.axhline(
                algd_fixed, color="grey", ls=":", lw=1,
                label=f"ALGD Boltzmann fixed point {algd_fixed:.2f}",
            )  # fmt: skip
            mass_ax.axhline(
                optimum_mass, color="k", ls="--", lw=1, label=f"$V^*$'s mass {optimum_mass:g}"
            )
        for ax in grid[:, column]:
            ax.grid(alpha=0.3)
    grid[0, 0].set_ylim(0.0, 12.5)
    grid[1, 0].set_ylim(0.0, 2.5)
    for ax, (_, ylabel) in zip(axes, panels, strict=True):
        ax.set_ylabel(ylabel, fontsize=8)
    axes[0].legend(fontsize=6.5, loc="lower right", ncol=2)
    axes[1].legend(fontsize=7, loc="upper right")
    axes[2].legend(fontsize=7, loc="upper right")
    axes[-1].set_xlabel("updates per seed (thousands)")
    if on_policy:
        right = grid[:, -1]
        right[0].legend(fontsize=6.5, loc="lower right")
        right[0].set_title("on-policy: per rollout of 2048 one-step episodes", fontsize=8)
        right[2].text(
            0.5, 0.5, "not measured by the on-policy loop", ha="center", va="center",
            transform=right[2].transAxes, fontsize=8, color="grey",
        )  # fmt: skip
        right[-1].set_xlabel("env steps per seed (thousands)")
    seeds = next(iter({**results, **(on_policy or {})}.values()))["return"].shape[0]
    fig.suptitle(
        f"ToyTwoModeBandit (h={bandit.budget:g}): mean $\\pm$ std over {seeds} seeds, "
        f"moving average of {window} iterations (off-policy)",
        fontsize=9,
    )
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="experiments.toy_figure", description=__doc__.split("\n")[0]
    )
    choices = off_policy_algorithms() + on_policy_algorithms()
    parser.add_argument(
        "--algos",
        nargs="+",
        choices=choices,
        default=choices,
        help="algorithms to train and draw (default: every registered one)",
    )
    parser.add_argument("--out", type=Path, default=Path("docs/results/toy_bandit_all.png"))
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..n-1 for each algorithm")
    parser.add_argument("--iterations", type=int, default=800, help="T, 4 updates each")
    parser.add_argument("--window", type=int, default=10, help="moving-average window")
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.iterations < 4 or args.window < 1:
        parser.error("--seeds and --window must be >= 1 and --iterations >= 4")

    run = BanditRun(iterations=args.iterations)
    seeds = list(range(args.seeds))
    bandit = DEFAULT_BANDIT
    results: dict[str, dict[str, np.ndarray]] = {}
    summary: dict[str, Any] = {
        "task": TASK_NAME,
        "seeds": seeds,
        "run": run.__dict__,
        "constrained_optimum": bandit.constrained_optimum()._asdict(),
        "best_feasible_tanh_gaussian_return": bandit.deterministic_optimum().value,
        "algd_boltzmann_fixed_point": bandit.boltzmann_optimum(1.0, "augmented")._asdict(),
        "lgd_boltzmann_fixed_point": bandit.boltzmann_optimum(1.0, "lagrangian")._asdict(),
    }
    on_policy: dict[str, dict[str, np.ndarray]] = {}
    for algo in dict.fromkeys(args.algos):
        start = time.perf_counter()
        if algo in on_policy_algorithms():
            with tempfile.TemporaryDirectory(prefix="toy-") as root:
                on_policy[algo] = train_on_policy(algo, seeds, Path(root) / algo)
            seconds = time.perf_counter() - start
            summary[algo] = summarise_on_policy(on_policy[algo]) | {
                "flags": PPO_TOY_FLAGS,
                "seconds": round(seconds),
            }
            print(f"{algo}: {seconds:.1f} s")
            for key in ("feasible_from_env_step", "return_median", "cost_mean"):
                print(f"  {key}: {summary[algo][key]}")
            continue
        config = toy_config(algo)
        _, results[algo] = train_bandit(config, seeds, run, algo=algo)
        seconds = time.perf_counter() - start
        as_dict = config.to_dict() if hasattr(config, "to_dict") else config.__dict__
        stats = summarise(results[algo], args.window, run.updates_per_iteration)
        summary[algo] = stats | {"config": as_dict, "seconds": round(seconds)}
        print(f"{algo}: {seconds:.1f} s")
        print(f"  feasible (moving average) from update: {stats['feasible_from_update']}")
        for key in ("return_median", "cost_mean", "fast_lane_mass_mean", "multiplier_mean"):
            print(f"  last quarter {key}: {np.round(summary[algo][key], 4).tolist()}")
    plot(results, run, args.out, args.window, on_policy)
    args.out.with_suffix(".json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    print(f"wrote {args.out} and {args.out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
