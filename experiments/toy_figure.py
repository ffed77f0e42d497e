"""ALGD vs LGD on the two-mode bandit, like the paper's Figure 2.

    python -m experiments.toy_figure --out docs/figures/toy_algd_vs_lgd.png

Trains both agents (`algd`: augmented Lagrangian energy L_A; `lgd`: standard Lagrangian L,
everything else identical) from the same seeds on ``ToyTwoModeBandit`` with the fused loop
of `algd_jax.training.on_device`, and draws one figure with three panels over training:
the policy's expected return E_pi[r] (with the known constrained optimum V* and ALGD's
exact Boltzmann fixed point), the multiplier lambda, and the constraint violation
max(0, E_pi[c] - h). Each curve is the mean over seeds with a band of +- one standard
deviation; the per-iteration measurements (128 policy draws each) are smoothed by a moving
average before plotting. A JSON summary of the last quarter of training is written next to
the image (same name, `.json`).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from algd_jax.envs.toy import DEFAULT_BANDIT
from algd_jax.training.on_device import BanditRun, bandit_agent_config, train_bandit

AGENTS = {"lgd": ("LGD (Lagrangian energy)", "#e0a000"), "algd": ("ALGD (augmented)", "#1f5fbf")}


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


def summarise(traces: dict[str, np.ndarray]) -> dict[str, Any]:
    """Last-quarter statistics per seed (lists) of the quantities the figure shows."""
    quarter = traces["return"].shape[1] // 4
    last = {k: v[:, -quarter:] for k, v in traces.items()}
    return {
        "return_mean": last["return"].mean(1).round(4).tolist(),
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


def plot(results: dict[str, dict[str, np.ndarray]], run: BanditRun, out: Path, window: int) -> None:
    """Write the three-panel figure for the agents in `results` (traces `[S, T]`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bandit = DEFAULT_BANDIT
    fig, axes = plt.subplots(3, 1, figsize=(7.0, 8.0), sharex=True)
    panels = [
        ("return", "expected return $E_\\pi[r]$"),
        ("multiplier", "multiplier $\\lambda$"),
        ("violation", "violation $\\max(0, E_\\pi[c] - h)$"),
    ]
    for agent, traces in results.items():
        label, color = AGENTS[agent]
        updates = (np.arange(traces["return"].shape[1]) + 1) * run.updates_per_iteration
        for ax, (key, _) in zip(axes, panels, strict=True):
            values = smooth(traces[key], window)
            mean, std = values.mean(0), values.std(0)
            ax.plot(updates / 1e3, mean, color=color, label=label, lw=1.6)
            ax.fill_between(updates / 1e3, mean - std, mean + std, color=color, alpha=0.2, lw=0)
    v_star = bandit.constrained_optimum().value
    algd_fixed = bandit.boltzmann_optimum(1.0, "augmented").value
    axes[0].axhline(v_star, color="k", ls="--", lw=1, label=f"constrained optimum $V^*$={v_star:g}")
    axes[0].axhline(
        algd_fixed,
        color="k",
        ls=":",
        lw=1,
        label=f"Boltzmann fixed point ($\\beta$=1) {algd_fixed:.2f}",
    )
    axes[0].axhline(bandit.fast_reward, color="grey", ls="-.", lw=1, label="unconstrained (cost 4)")
    for ax, (_, ylabel) in zip(axes, panels, strict=True):
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="lower right")
    axes[-1].set_xlabel("updates per seed (thousands)")
    seeds = next(iter(results.values()))["return"].shape[0]
    fig.suptitle(
        f"ToyTwoModeBandit (h={bandit.budget:g}): mean $\\pm$ std over {seeds} seeds, "
        f"moving average of {window} iterations",
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
    parser.add_argument("--out", type=Path, default=Path("docs/figures/toy_algd_vs_lgd.png"))
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..n-1 for each agent")
    parser.add_argument("--iterations", type=int, default=1000, help="T, 4 updates each")
    parser.add_argument("--window", type=int, default=10, help="moving-average window")
    args = parser.parse_args(argv)

    run = BanditRun(iterations=args.iterations)
    seeds = list(range(args.seeds))
    results: dict[str, dict[str, np.ndarray]] = {}
    summary: dict[str, Any] = {
        "task": "ToyTwoModeBandit",
        "seeds": seeds,
        "run": run.__dict__,
        "constrained_optimum": DEFAULT_BANDIT.constrained_optimum()._asdict(),
        "algd_boltzmann_fixed_point": DEFAULT_BANDIT.boltzmann_optimum(1.0, "augmented")._asdict(),
        "lgd_boltzmann_fixed_point": DEFAULT_BANDIT.boltzmann_optimum(1.0, "lagrangian")._asdict(),
    }
    for agent in AGENTS:
        start = time.perf_counter()
        config = bandit_agent_config(agent)
        _, results[agent] = train_bandit(config, seeds, run)
        summary[agent] = summarise(results[agent]) | {"config": config.to_dict()}
        print(f"{agent}: {time.perf_counter() - start:.1f} s")
        for key in ("return_mean", "cost_mean", "multiplier_mean", "multiplier_var"):
            print(f"  last quarter {key}: {np.round(summary[agent][key], 4).tolist()}")
    plot(results, run, args.out, args.window)
    args.out.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {args.out} and {args.out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
