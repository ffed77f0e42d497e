"""Milliseconds per update of a registered algorithm (ALGD by default): the single jitted
`update` and the fused U-update program.

    python -m benchmarks.train_step [--quick] [--out FILE.json] [--sizes 4,4 6,6]
                                    [--precision f32 bf16] [--algo NAME]

`--algo` takes any registered name; for the SAC-family baselines `--sizes` lists the
ensemble sizes M (default 6, the paper's comparison; `M,N` reads as M) and the networks are
their defaults (256 units), f32 only.

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
loads the machine; `gflops_per_cpu_s` = FLOPs / that. `page_faults_per_update` counts the
minor page faults of the process per update (median over calls): memory the update's
scratch had returned to the OS and faults back in (`algd_jax/malloc_tuning.py`).

`--precision f32 bf16` measures both precisions of the matrix products (`ALGDConfig.precision`)
in the same run and interleaved call by call (f32, bf16, f32, ...), so that both see the same
outside load; `ratios` then holds the bf16/f32 time ratio of each size (< 1: bf16 faster).
FLOPs of a bf16 update are those of its f32 twin (the same arithmetic), so GFLOP/s compare
directly. The bf16 rate of the peak's matmul (bf16 inputs, float32 accumulation) is recorded
for XLA's default dot path and for Eigen (`matmul_bf16`).
"""

from __future__ import annotations

import dataclasses
import resource
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from algd_jax.algorithms import get_algorithm, list_algorithms
from algd_jax.algorithms.algd import ALGDConfig, update, update_many
from algd_jax.compile_options import CPU_COMPILER_OPTIONS, compiler_options, tuned_jit
from algd_jax.networks import PRECISIONS
from benchmarks.common import (
    base_parser,
    block,
    cost_flops,
    cpu_stats,
    device_line,
    format_table,
    machine_info,
    make_agent,
    make_batch,
    matmul_peak,
    paper_config,
    quick_config,
    summarize_ms,
    write_result,
)

PAPER_SIZES = ((4, 4), (6, 6))


def _compile(fn: Any, *args: Any) -> tuple[Any, dict[str, float]]:
    start = time.perf_counter()
    lowered = fn.lower(*args)
    lowered_at = time.perf_counter()
    compiled = lowered.compile()
    times = {"trace_lower_s": lowered_at - start, "compile_s": time.perf_counter() - lowered_at}
    return compiled, times


def _time_interleaved(
    steps: dict[str, Callable[[Any], tuple[Any, Any]]],
    states: dict[str, Any],
    reps: int,
    warmup: int,
    updates_per_call: int,
    flops: float,
) -> dict[str, dict[str, float]]:
    """`time_update_calls` for several programs, one call of each in turn per repetition
    (so that each sees the same outside load). Per-update statistics per name."""
    wall: dict[str, list[float]] = {name: [] for name in steps}
    cpu: dict[str, list[float]] = {name: [] for name in steps}
    faults: dict[str, list[int]] = {name: [] for name in steps}
    for rep in range(warmup + reps):
        for name, step in steps.items():
            start_faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            start, start_cpu = time.perf_counter(), time.process_time()
            new, metrics = step(states[name])
            states[name] = block(new)
            block(metrics)
            if rep >= warmup:
                wall[name].append(time.perf_counter() - start)
                cpu[name].append(time.process_time() - start_cpu)
                faults[name].append(
                    resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start_faults
                )
    result = {}
    for name in steps:
        stats = summarize_ms(wall[name], divisor=updates_per_call)
        stats.update(cpu_stats(cpu[name], updates_per_call, flops))
        stats["gflops"] = flops / (stats["median_ms"] * 1e6)
        stats["page_faults_per_update"] = float(np.median(faults[name])) / updates_per_call
        result[name] = stats
    return result


def registry_programs(algo: str) -> tuple[Callable[..., Any], Any, Any]:
    """`(make_agent(config, seed), update, fused update)` of a registered algorithm for
    HalfCheetah sizes (obs 17, actions in [-1, 1]^6); the updates jitted with the state
    donated, as the loop runs them."""
    from algd_jax.envs import get_task
    from algd_jax.programs import fused
    from algd_jax.training import new_state

    algorithm = get_algorithm(algo)
    spec = get_task("HalfCheetahVelocity")

    def make(config: Any, seed: int = 0) -> Any:
        return new_state(algorithm, algorithm.resolve(config, spec), spec, seed)

    single = tuned_jit(algorithm.update, donate_argnums=0)
    many = tuned_jit(fused(algorithm.update), donate_argnums=0)
    return make, single, many


def measure_update(
    configs: dict[str, Any],
    batch_size: int,
    updates_per_call: int,
    reps_single: int,
    reps_fused: int,
    seed: int = 0,
    algo: str | None = None,
) -> dict[str, dict[str, Any]]:
    """Compile and time the single and the fused update for each configuration (keyed by a
    name, e.g. the precision), calls of the configurations interleaved.

    Returns `{name: {"single": {...}, "fused": {...}, "flops_per_update": float}}`; time
    entries are per update in milliseconds, compile entries in seconds. FLOPs are counted on
    the first configuration's single update. `algo`: a registered algorithm's update instead of
    ALGD's (its configs are that algorithm's config type).
    """
    make, single_update, fused_update = make_agent, update, update_many
    if algo is not None:
        make, single_update, fused_update = registry_programs(algo)
    rng = np.random.default_rng(seed)
    one = make_batch(rng, batch_size)
    many = make_batch(rng, batch_size, (updates_per_call,))
    singles = {name: make(config, seed) for name, config in configs.items()}
    fuseds = {name: make(config, seed) for name, config in configs.items()}
    result: dict[str, dict[str, Any]] = {}
    for name in configs:
        compiled, single_times = _compile(single_update, singles[name], one)
        flops = cost_flops(compiled)
        compiled, fused_times = _compile(fused_update, fuseds[name], many)
        result[name] = {
            "single": single_times,
            "fused": {
                **fused_times,
                "updates_per_call": updates_per_call,
                "cost_analysis_flops_scan": cost_flops(compiled),
            },
            "flops_per_update": flops,
        }
    flops = result[next(iter(configs))]["flops_per_update"]
    single = _time_interleaved(
        {name: lambda st: single_update(st, one) for name in configs},
        singles,
        reps_single,
        2,
        1,
        flops,
    )
    fused = _time_interleaved(
        {name: lambda st: fused_update(st, many) for name in configs},
        fuseds,
        reps_fused,
        1,
        updates_per_call,
        flops,
    )
    for name in configs:
        result[name]["single"].update(single[name])
        result[name]["fused"].update(fused[name])
        result[name]["flops_per_update"] = flops
    return result


def bf16_matmul_rates(reps: int, m: int = 1024, k: int = 256, n: int = 256) -> dict[str, Any]:
    """GFLOP/s of one `[m, k] @ [k, n]` product with bfloat16 inputs and float32 accumulation,
    compiled with XLA's default options, with Eigen's dot path (`CPU_COMPILER_OPTIONS`) and
    with the options the agent's bf16 programs get; float32 with the agent's options, timed
    in the same loop for the ratio."""
    rng = np.random.default_rng(0)
    a = jnp.asarray(rng.standard_normal((m, k), np.float32))
    b = jnp.asarray(rng.standard_normal((k, n), np.float32))

    def bf16(x: jax.Array, y: jax.Array) -> jax.Array:
        return jnp.matmul(
            x.astype(jnp.bfloat16), y.astype(jnp.bfloat16), preferred_element_type=jnp.float32
        )

    variants = {
        "bf16_xla_default": (bf16, None),
        "bf16_eigen": (bf16, dict(CPU_COMPILER_OPTIONS)),
        "bf16_agent": (bf16, compiler_options("bf16")),
        "f32_agent": (jnp.matmul, compiler_options("f32")),
    }
    compiled = {
        name: jax.jit(fn, compiler_options=options).lower(a, b).compile()
        for name, (fn, options) in variants.items()
    }
    times: dict[str, list[float]] = {name: [] for name in compiled}
    for rep in range(reps + 3):
        for name, fn in compiled.items():
            start = time.perf_counter()
            fn(a, b).block_until_ready()
            if rep >= 3:
                times[name].append(time.perf_counter() - start)
    flops = 2.0 * m * k * n
    rates = {name: flops / float(np.median(t)) / 1e9 for name, t in times.items()}
    return {"shape": f"{m}x{k}x{n}", "median_gflops": rates}


def rate_against_peak(measured: dict[str, Any], peak: dict[str, Any]) -> float:
    """Add to `measured`'s single and fused entries their ratios to the matmul peak (wall and
    CPU time) and to the ideal time; return the ideal ms/update at that peak."""
    ideal_ms = measured["flops_per_update"] / (peak["median_gflops"] * 1e6)
    for kind in ("single", "fused"):
        entry = measured[kind]
        entry["ratio_to_peak"] = entry["gflops"] / peak["median_gflops"]
        entry["ratio_to_ideal"] = entry["median_ms"] / ideal_ms
        # the same comparison in CPU time, which other load disturbs less
        entry["cpu_ratio_to_peak"] = entry["gflops_per_cpu_s"] / peak["gflops_per_cpu_s"]
    return ideal_ms


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
    parser.add_argument(
        "--reps",
        type=int,
        default=None,
        help="timed calls of the single update (default 40); the fused U-update call gets "
        "a quarter as many, at least 5",
    )
    parser.add_argument(
        "--precision",
        nargs="+",
        choices=PRECISIONS,
        default=["f32"],
        help="precisions of the matrix products, measured interleaved in one run "
        "(default f32; `f32 bf16` for the bf16/f32 ratio)",
    )
    parser.add_argument(
        "--algo",
        default="algd",
        choices=list_algorithms(),
        help="registered algorithm whose update is timed (default algd)",
    )
    args = parser.parse_args(argv)
    precisions = list(dict.fromkeys(args.precision))
    if get_algorithm(args.algo).config_type is not ALGDConfig:
        if precisions != ["f32"]:
            parser.error(f"--precision: {args.algo} has float32 networks only")
        return main_registry(args)

    quick = args.quick
    if args.sizes:
        sizes = [tuple(int(v) for v in s.split(",")) for s in args.sizes]
    else:
        sizes = [(2, 2)] if quick else list(PAPER_SIZES)
    batch_size = args.batch_size or (32 if quick else 256)
    updates = args.updates_per_call or (2 if quick else 10)
    reps_single = args.reps or (3 if quick else 40)
    # a fused call is U updates: a quarter as many calls, but never fewer than 5 outside
    # --quick, so that a median is not one of two calls
    reps_fused = max(2, args.reps or 3) if quick else max(5, (args.reps or 40) // 4)
    make_config = quick_config if quick else paper_config

    info = machine_info()
    peak = matmul_peak(reps=5 if quick else 200)
    points, ratios = [], []
    for members, samples in sizes:
        config = make_config(ensemble_size=members, mc_samples=samples, agent=args.algo)
        configs = {p: dataclasses.replace(config, precision=p) for p in precisions}
        by_precision = measure_update(configs, batch_size, updates, reps_single, reps_fused)
        for precision, measured in by_precision.items():
            flops = measured["flops_per_update"]
            ideal_ms = rate_against_peak(measured, peak)
            points.append(
                {
                    "ensemble_size": members,
                    "mc_samples": samples,
                    "precision": precision,
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
        if {"f32", "bf16"} <= set(by_precision):
            f32, bf16 = by_precision["f32"], by_precision["bf16"]
            ratio = {"ensemble_size": members, "mc_samples": samples}
            for kind in ("single", "fused"):
                ratio[f"{kind}_bf16_over_f32"] = bf16[kind]["median_ms"] / f32[kind]["median_ms"]
                ratio[f"{kind}_cpu_bf16_over_f32"] = (
                    bf16[kind]["cpu_median_ms"] / f32[kind]["cpu_median_ms"]
                )
            ratios.append(ratio)

    result = {
        "benchmark": "train_step",
        "quick": quick,
        "precisions": precisions,
        "machine": info,
        "matmul_peak": peak,
        "points": points,
    }
    if "bf16" in precisions:
        result["agent_compiler_options_bf16"] = compiler_options("bf16")
        result["matmul_bf16"] = bf16_matmul_rates(reps=5 if quick else 100)
    if ratios:
        result["ratios"] = ratios
    path = write_result(result, args.out, "train_step", quick)
    print(report(result))
    print(f"wrote {path}")
    return result


def main_registry(args: Any) -> dict[str, Any]:
    """`main` for a registered algorithm other than the ALGD family: ensemble sizes M."""
    algorithm = get_algorithm(args.algo)
    quick = args.quick
    if args.sizes:
        members = [int(s.split(",")[0]) for s in args.sizes]
    else:
        members = [2] if quick else [6]
    batch_size = args.batch_size or (32 if quick else 256)
    updates = args.updates_per_call or (2 if quick else 10)
    reps_single = args.reps or (3 if quick else 40)
    reps_fused = max(2, args.reps or 3) if quick else max(5, (args.reps or 40) // 4)
    small = {"critic_hidden": 16, "actor_hidden": 16} if quick else {}
    info = machine_info()
    peak = matmul_peak(reps=5 if quick else 200)
    points = []
    for m in members:
        config = algorithm.default_config(ensemble_size=m, **small)
        measured = measure_update(
            {"f32": config}, batch_size, updates, reps_single, reps_fused, algo=args.algo
        )["f32"]
        flops = measured["flops_per_update"]
        ideal_ms = rate_against_peak(measured, peak)
        points.append(
            {
                "ensemble_size": m,
                "mc_samples": None,
                "precision": "f32",
                "batch_size": batch_size,
                "critic_hidden": config.critic_hidden,
                "actor_hidden": config.actor_hidden,
                "flops_per_update": flops,
                "ideal_ms": ideal_ms,
                "single": measured["single"],
                "fused": measured["fused"],
            }
        )
    result = {
        "benchmark": "train_step",
        "algo": args.algo,
        "quick": quick,
        "precisions": ["f32"],
        "machine": info,
        "matmul_peak": peak,
        "points": points,
    }
    path = write_result(result, args.out, f"train_step_{args.algo}", quick)
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
                    f"({p['ensemble_size']},{p['mc_samples']})"
                    if p.get("mc_samples") is not None
                    else f"M={p['ensemble_size']}",
                    p.get("precision", "f32"),
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
                    e.get("page_faults_per_update", float("nan")),
                ]
            )
    table = format_table(
        [
            "(M,N)",
            "prec",
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
            "faults/upd",
        ],
        rows,
    )
    first = result["points"][0] if result["points"] else {}
    rates = ", ".join(
        f"{name} {entry['median_gflops']:.1f}" for name, entry in peak.get("by_options", {}).items()
    )
    algo = result.get("algo", "algd")
    sizes = (
        f"K {first.get('diffusion_steps')}, critics {first.get('critic_hidden')}, score net "
        f"{first.get('score_hidden')}"
        if "diffusion_steps" in first
        else f"critics {first.get('critic_hidden')}, actor {first.get('actor_hidden')}"
    )
    header = (
        f"{algo} update, ms per update (batch {first.get('batch_size')}, {sizes}, obs 17, "
        f"act 6)\n{device_line(result['machine'])}\n"
        f"matmul peak ({peak['shape']} f32): {peak['median_gflops']:.1f} GFLOP/s median, "
        f"{peak['best_gflops']:.1f} best, "
        f"{peak['gflops_per_cpu_s']:.1f} per CPU-s (the faster of {rates}; compiled with "
        f"'{peak['options']}' options)\n'x ideal' = median / (FLOPs / peak); "
        f"'CPU ms' = process CPU time per update (all threads; the steadier figure when other "
        f"work loads the machine); GFLOP/CPU-s = FLOPs / that; 'CPU of peak' = that / the "
        f"matmul's GFLOP per CPU-s; 'faults/upd' = minor page faults per update (median; "
        f"scratch memory faulted back in, see algd_jax/malloc_tuning.py)"
    )
    text = f"{header}\n{table}"
    if result.get("ratios"):
        ratio_table = format_table(
            ["(M,N)", "single bf16/f32", "fused bf16/f32", "single CPU", "fused CPU"],
            [
                [
                    f"({r['ensemble_size']},{r['mc_samples']})",
                    r["single_bf16_over_f32"],
                    r["fused_bf16_over_f32"],
                    r["single_cpu_bf16_over_f32"],
                    r["fused_cpu_bf16_over_f32"],
                ]
                for r in result["ratios"]
            ],
        )
        text += (
            "\nbf16/f32 time ratio, same run, calls interleaved (< 1: bf16 faster; CPU: "
            f"process CPU time)\n{ratio_table}"
        )
    if result.get("matmul_bf16"):
        mm = result["matmul_bf16"]
        rates = ", ".join(f"{k} {v:.1f}" for k, v in mm["median_gflops"].items())
        text += (
            f"\n{mm['shape']} matmul, GFLOP/s: {rates} (bf16 programs compiled with "
            f"{result['agent_compiler_options_bf16']})"
        )
    return text


if __name__ == "__main__":
    main(sys.argv[1:])
