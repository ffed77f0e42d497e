"""Milliseconds per ALGD update: the single jitted `update` and the fused `update_many`.

    python -m benchmarks.train_step [--quick] [--out FILE.json] [--sizes 4,4 6,6]

Paper settings (batch 256, HalfCheetah sizes: observation 17, action 6, K = 5, critics 256,
score net 128) at (M, N) = (4, 4) and (6, 6). Each timed call re-feeds the state the
previous call returned (the state is donated) and blocks until the new state and metrics
are ready. Compile time is measured separately (lower + compile, ahead of time; the jitted
function then reuses that executable).

Work accounting: FLOPs per update come from XLA's cost analysis of the single update (the
cost analysis of the fused program counts the `lax.scan` body once, not U times: it is
recorded as `cost_analysis_flops_scan` for reference). Achieved GFLOP/s = FLOPs / median
time; `ideal_ms` = FLOPs / measured matmul peak; `ratio_to_ideal` = median / ideal (1.0
would be every FLOP at the peak rate of a 1024x256x256 float32 matmul). `cpu_median_ms` is
the process CPU time per update (all threads), steadier than wall time when other work
loads the machine; `gflops_per_cpu_s` = FLOPs / that.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from algd_jax.algorithms.algd import ALGDConfig, update, update_many
from benchmarks.common import (
    base_parser,
    cost_flops,
    device_line,
    format_table,
    machine_info,
    make_agent,
    make_batch,
    matmul_peak,
    paper_config,
    quick_config,
    time_update_calls,
    write_result,
)

PAPER_SIZES = ((4, 4), (6, 6))


def measure_update(
    config: ALGDConfig,
    batch_size: int,
    updates_per_call: int,
    reps_single: int,
    reps_fused: int,
    seed: int = 0,
) -> dict[str, Any]:
    """Compile and time the single and the fused update for one configuration.

    Returns `{"single": {...}, "fused": {...}, "flops_per_update": float}`; time entries
    are per update in milliseconds, compile entries in seconds.
    """
    rng = np.random.default_rng(seed)
    state = make_agent(config, seed)
    one = make_batch(rng, batch_size)
    many = make_batch(rng, batch_size, (updates_per_call,))
    result: dict[str, Any] = {}

    # single update ------------------------------------------------------------------
    start = time.perf_counter()
    lowered = update.lower(state, one)
    lowered_at = time.perf_counter()
    compiled = lowered.compile()
    compiled_at = time.perf_counter()
    flops = cost_flops(compiled)
    stats, state = time_update_calls(lambda st: update(st, one), state, reps_single, 2, 1, flops)
    result["single"] = {
        **stats,
        "trace_lower_s": lowered_at - start,
        "compile_s": compiled_at - lowered_at,
    }

    # fused U updates ----------------------------------------------------------------
    start = time.perf_counter()
    lowered = update_many.lower(state, many)
    lowered_at = time.perf_counter()
    compiled = lowered.compile()
    compiled_at = time.perf_counter()
    scan_flops = cost_flops(compiled)
    stats, _ = time_update_calls(
        lambda st: update_many(st, many), state, reps_fused, 1, updates_per_call, flops
    )
    result["fused"] = {
        **stats,
        "updates_per_call": updates_per_call,
        "trace_lower_s": lowered_at - start,
        "compile_s": compiled_at - lowered_at,
        "cost_analysis_flops_scan": scan_flops,
    }
    result["flops_per_update"] = flops
    return result


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = base_parser(__doc__.split("\n")[0])
    parser.add_argument(
        "--sizes",
        nargs="+",
        default=None,
        help="(M, N) pairs as M,N (default: 4,4 6,6; quick: 2,2)",
    )
    parser.add_argument("--batch-size", type=int, default=None, help="default 256 (quick 32)")
    parser.add_argument("--updates-per-call", type=int, default=None, help="U (default 10)")
    parser.add_argument("--reps", type=int, default=None, help="timed calls (default 40/10)")
    args = parser.parse_args(argv)

    quick = args.quick
    if args.sizes:
        sizes = [tuple(int(v) for v in s.split(",")) for s in args.sizes]
    else:
        sizes = [(2, 2)] if quick else list(PAPER_SIZES)
    batch_size = args.batch_size or (32 if quick else 256)
    updates = args.updates_per_call or (2 if quick else 10)
    reps_single = args.reps or (3 if quick else 40)
    reps_fused = max(2, (args.reps or (3 if quick else 40)) // (1 if quick else 4))
    make_config = quick_config if quick else paper_config

    info = machine_info()
    peak = matmul_peak(reps=5 if quick else 200)
    points = []
    for members, samples in sizes:
        config = make_config(ensemble_size=members, mc_samples=samples)
        measured = measure_update(config, batch_size, updates, reps_single, reps_fused)
        flops = measured["flops_per_update"]
        ideal_ms = flops / (peak["median_gflops"] * 1e6)
        for kind in ("single", "fused"):
            entry = measured[kind]
            entry["ratio_to_peak"] = entry["gflops"] / peak["median_gflops"]
            entry["ratio_to_ideal"] = entry["median_ms"] / ideal_ms
            # the same comparison in CPU time, which other load on the machine disturbs less
            entry["cpu_ratio_to_peak"] = entry["gflops_per_cpu_s"] / peak["gflops_per_cpu_s"]
        points.append(
            {
                "ensemble_size": members,
                "mc_samples": samples,
                "batch_size": batch_size,
                "diffusion_steps": config.diffusion_steps,
                "critic_hidden": config.critic_hidden,
                "score_hidden": config.score_hidden,
                "flops_per_update": flops,
                "ideal_ms": ideal_ms,
                "single": measured["single"],
                "fused": measured["fused"],
            }
        )

    result = {
        "benchmark": "train_step",
        "quick": quick,
        "machine": info,
        "matmul_peak": peak,
        "points": points,
    }
    path = write_result(result, args.out, "train_step", quick)
    print(report(result))
    print(f"wrote {path}")
    return result


def report(result: dict[str, Any]) -> str:
    """The terminal table of a train_step result."""
    peak = result["matmul_peak"]
    rows = []
    for p in result["points"]:
        for kind in ("single", "fused"):
            e = p[kind]
            label = "single" if kind == "single" else f"fused U={e['updates_per_call']}"
            rows.append(
                [
                    f"({p['ensemble_size']},{p['mc_samples']})",
                    label,
                    e["median_ms"],
                    e["min_ms"],
                    e["p90_ms"],
                    e["compile_s"],
                    p["flops_per_update"] / 1e9,
                    e["gflops"],
                    e["ratio_to_peak"],
                    e["ratio_to_ideal"],
                    e["cpu_median_ms"],
                    e["gflops_per_cpu_s"],
                    e["cpu_ratio_to_peak"],
                ]
            )
    table = format_table(
        [
            "(M,N)",
            "update",
            "median ms",
            "min ms",
            "p90 ms",
            "compile s",
            "GFLOP/upd",
            "GFLOP/s",
            "of peak",
            "x ideal",
            "CPU ms",
            "GFLOP/CPU-s",
            "CPU of peak",
        ],
        rows,
    )
    first = result["points"][0] if result["points"] else {}
    rates = ", ".join(
        f"{name} {entry['median_gflops']:.1f}" for name, entry in peak.get("by_options", {}).items()
    )
    header = (
        f"ALGD update, ms per update (batch {first.get('batch_size')}, K "
        f"{first.get('diffusion_steps')}, critics {first.get('critic_hidden')}, score net "
        f"{first.get('score_hidden')}, obs 17, act 6)\n{device_line(result['machine'])}\n"
        f"matmul peak ({peak['shape']} f32): {peak['median_gflops']:.1f} GFLOP/s median, "
        f"{peak['best_gflops']:.1f} best, "
        f"{peak['gflops_per_cpu_s']:.1f} per CPU-s (the faster of {rates}; compiled with "
        f"'{peak['options']}' options)\n'x ideal' = median / (FLOPs / peak); "
        f"'CPU ms' = process CPU time per update (all threads; the steadier figure when other "
        f"work loads the machine); GFLOP/CPU-s = FLOPs / that; 'CPU of peak' = that / the "
        f"matmul's GFLOP per CPU-s"
    )
    return f"{header}\n{table}"


if __name__ == "__main__":
    main(sys.argv[1:])
