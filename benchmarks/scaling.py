"""Milliseconds per fused update as M, N, the batch size and K grow (paper Tables 2 and 5).

    python -m benchmarks.scaling [--quick] [--out FILE.json]

Every point runs `update_many` (U = 10 updates per call, the training path) on random data
of HalfCheetah sizes (observation 17, action 6) with critics 256 and score net 128; the
value not being varied stays at the paper's setting (M = N = 6, batch 256, K = 5). Table 2
of the paper varies N, Table 5 varies M; the paper reports 4.8 ms per update at M = 6 on
its GPU, printed beside our M = 6 row. FLOPs per update come from XLA's cost analysis of
the fused program, which counts the scan body once (i.e. one update).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from algd_jax.algorithms.algd import ALGDConfig, update_many
from benchmarks.common import (
    base_parser,
    cost_flops,
    device_line,
    format_table,
    machine_info,
    make_agent,
    make_batch,
    paper_config,
    quick_config,
    time_update_calls,
    write_result,
)

#: ms per update the paper reports (its GPU), keyed by (table, value).
PAPER_MS = {("ensemble_size", 6): 4.8}

FULL_AXES = {
    "mc_samples": [2, 4, 6, 8, 16],  # paper Table 2
    "ensemble_size": [1, 2, 4, 6, 8, 16],  # paper Table 5
    "batch_size": [64, 128, 256, 512],
    "diffusion_steps": [2, 5, 10],
}
FULL_BASE = {"ensemble_size": 6, "mc_samples": 6, "batch_size": 256, "diffusion_steps": 5}
QUICK_AXES = {"mc_samples": [2], "ensemble_size": [2], "batch_size": [32], "diffusion_steps": [2]}
QUICK_BASE = {"ensemble_size": 2, "mc_samples": 2, "batch_size": 32, "diffusion_steps": 2}


def measure_fused(
    config: ALGDConfig, batch_size: int, updates_per_call: int, reps: int, seed: int = 0
) -> dict[str, Any]:
    """Compile (seconds) and time (ms per update) `update_many` for one configuration."""
    rng = np.random.default_rng(seed)
    state = make_agent(config, seed)
    many = make_batch(rng, batch_size, (updates_per_call,))
    start = time.perf_counter()
    compiled = update_many.lower(state, many).compile()
    compile_s = time.perf_counter() - start
    flops = cost_flops(compiled)
    stats, _ = time_update_calls(
        lambda st: update_many(st, many), state, reps, 1, updates_per_call, flops
    )
    return {
        **stats,
        "compile_s": compile_s,
        "flops_per_update": flops,
        "updates_per_call": updates_per_call,
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = base_parser(__doc__.split("\n")[0])
    parser.add_argument("--updates-per-call", type=int, default=None, help="U (default 10)")
    parser.add_argument("--reps", type=int, default=None, help="timed calls per point")
    args = parser.parse_args(argv)
    quick = args.quick
    axes = QUICK_AXES if quick else FULL_AXES
    base = QUICK_BASE if quick else FULL_BASE
    updates = args.updates_per_call or (2 if quick else 10)
    reps = args.reps or (3 if quick else 8)
    make_config = quick_config if quick else paper_config

    info = machine_info()
    cache: dict[tuple[int, int, int, int], dict[str, Any]] = {}
    tables: dict[str, list[dict[str, Any]]] = {}
    for axis, values in axes.items():
        rows = []
        for value in values:
            point = {**base, axis: value}
            key = (
                point["ensemble_size"],
                point["mc_samples"],
                point["batch_size"],
                point["diffusion_steps"],
            )
            if key not in cache:
                config = make_config(
                    ensemble_size=point["ensemble_size"],
                    mc_samples=point["mc_samples"],
                    diffusion_steps=point["diffusion_steps"],
                )
                cache[key] = measure_fused(config, point["batch_size"], updates, reps)
                print(f"  {axis}={value}: {cache[key]['median_ms']:.2f} ms/update", file=sys.stderr)
            row = {**point, **cache[key]}
            paper = PAPER_MS.get((axis, value))
            if paper is not None:
                row["paper_ms"] = paper
            rows.append(row)
        tables[axis] = rows

    result = {
        "benchmark": "scaling",
        "quick": quick,
        "machine": info,
        "base": base,
        "tables": tables,
    }
    path = write_result(result, args.out, "scaling", quick)
    print(report(result))
    print(f"wrote {path}")
    return result


TITLES = {
    "mc_samples": "N (Monte-Carlo samples; paper Table 2)",
    "ensemble_size": "M (cost critics; paper Table 5)",
    "batch_size": "batch size",
    "diffusion_steps": "K (diffusion steps)",
}


def report(result: dict[str, Any]) -> str:
    """The terminal tables of a scaling result."""
    base = result["base"]
    parts = [
        f"ALGD fused update, ms per update; fixed: M={base['ensemble_size']}, "
        f"N={base['mc_samples']}, batch {base['batch_size']}, K={base['diffusion_steps']}",
        device_line(result["machine"]),
    ]
    for axis, rows in result["tables"].items():
        table = format_table(
            [
                axis,
                "median ms",
                "min ms",
                "p90 ms",
                "CPU ms",
                "GFLOP/upd",
                "GFLOP/s",
                "paper ms (GPU)",
            ],
            [
                [
                    r[axis],
                    r["median_ms"],
                    r["min_ms"],
                    r["p90_ms"],
                    r["cpu_median_ms"],
                    r["flops_per_update"] / 1e9,
                    r["gflops"],
                    r.get("paper_ms", float("nan")),
                ]
                for r in rows
            ],
        )
        parts.append(f"\n{TITLES[axis]}\n{table}")
    return "\n".join(parts)


if __name__ == "__main__":
    main(sys.argv[1:])
