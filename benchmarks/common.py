"""Shared helpers of the benchmarks: machine description, timing, matmul peak, output.

Units everywhere: milliseconds (`*_ms`), seconds (`*_s`), FLOPs per update (`flops*`),
GFLOP/s (`*gflops`). Every benchmark writes one JSON file (default
`benchmarks/results/<name>[-quick].json`, git-ignored) and prints a table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import jaxlib
import numpy as np

from algd_jax import malloc_tuning
from algd_jax.algorithms.algd import AgentState, ALGDConfig, create_agent
from algd_jax.compile_options import compiler_options
from algd_jax.types import Batch

RESULTS_DIR = Path(__file__).resolve().parent / "results"

#: The paper's HalfCheetah sizes (SPEC §7): observation 17, action 6.
OBS_DIM = 17
ACT_DIM = 6

#: Environment variables that change the measured speed; recorded in every result.
SPEED_ENV_VARS = (
    "XLA_FLAGS",
    "MALLOC_ARENA_MAX",
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TRIM_THRESHOLD_",
    "JAX_PLATFORMS",
    "OMP_NUM_THREADS",
    "ALGD_JAX_CPU_TUNING",
    "ALGD_JAX_BF16_DOTS",
    "ALGD_JAX_MALLOC_TUNING",
    "GLIBC_TUNABLES",
)


# ----------------------------------------------------------------------------- machine


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """Device, CPU, versions, date and outside load (1/5/15-minute load averages)."""
    device = jax.devices()[0]
    try:
        usable_cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable_cpus = os.cpu_count() or 1
    import flax
    import optax

    return {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "platform": device.platform,
        "device_kind": device.device_kind,
        "device": str(device),
        "device_count": jax.device_count(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": usable_cpus,
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "flax": flax.__version__,
        "optax": optax.__version__,
        "prng_impl": str(jax.config.jax_default_prng_impl),
        "agent_compiler_options": compiler_options(),
        "malloc_tuning": dict(malloc_tuning.APPLIED),
        "env": {k: os.environ[k] for k in SPEED_ENV_VARS if k in os.environ},
        "loadavg_start": list(os.getloadavg()),
    }


def device_line(info: dict[str, Any]) -> str:
    """One line naming the device, versions, date and load for the terminal tables."""
    load = info.get("loadavg_start", [math.nan] * 3)
    end = info.get("loadavg_end")
    load_text = f"load {load[0]:.2f}" + (f" -> {end[0]:.2f}" if end else "")
    return (
        f"{info['device_kind']} ({info['platform']}, {info['cpu_model']}, "
        f"{info['usable_cpus']}/{info['cpu_count']} CPUs) | jax {info['jax']} | "
        f"{info['date']} | {load_text} (1-min load average; > 0.5 means other work ran)"
    )


# ----------------------------------------------------------------------------- timing


def summarize_ms(seconds: Sequence[float], divisor: int = 1) -> dict[str, float]:
    """median / min / p90 / mean in milliseconds of call times (seconds), each divided by
    `divisor` (the number of updates per call, for per-update figures)."""
    ms = np.asarray(seconds, np.float64) * 1e3 / divisor
    return {
        "median_ms": float(np.median(ms)),
        "min_ms": float(np.min(ms)),
        "p90_ms": float(np.percentile(ms, 90)),
        "mean_ms": float(np.mean(ms)),
        "calls": len(ms),
    }


def time_calls(call: Callable[[], Any], reps: int, warmup: int = 1) -> list[float]:
    """Seconds per call of `call()` (which must block until its result is ready)."""
    return time_calls_cpu(call, reps, warmup)[0]


def time_calls_cpu(
    call: Callable[[], Any], reps: int, warmup: int = 1
) -> tuple[list[float], list[float]]:
    """(wall seconds, process CPU seconds) per call of `call()`.

    CPU time sums all of this process's threads. On a machine that other work keeps busy
    it is the steadier measure of the work done: wall time then also counts the time the
    scheduler gave the cores to others.
    """
    for _ in range(warmup):
        call()
    wall, cpu = [], []
    for _ in range(reps):
        start, start_cpu = time.perf_counter(), time.process_time()
        call()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return wall, cpu


def cpu_stats(cpu_seconds: Sequence[float], divisor: int, flops: float) -> dict[str, float]:
    """Median / min process CPU milliseconds per update and FLOPs per CPU second."""
    ms = np.asarray(cpu_seconds, np.float64) * 1e3 / divisor
    median = float(np.median(ms))
    return {
        "cpu_median_ms": median,
        "cpu_min_ms": float(np.min(ms)),
        "gflops_per_cpu_s": flops / (median * 1e6),
    }


def _matmul_rate(
    a: jax.Array, b: jax.Array, reps: int, options: dict[str, str] | None
) -> dict[str, float]:
    f = jax.jit(jnp.matmul, compiler_options=options).lower(a, b).compile()
    times, cpu = time_calls_cpu(lambda: f(a, b).block_until_ready(), reps, warmup=3)
    flops = 2.0 * a.shape[0] * a.shape[1] * b.shape[1]
    return {
        "median_gflops": flops / float(np.median(times)) / 1e9,
        "best_gflops": flops / float(np.min(times)) / 1e9,
        "gflops_per_cpu_s": flops / float(np.median(cpu)) / 1e9,
    }


def matmul_peak(reps: int = 50, m: int = 1024, k: int = 256, n: int = 256) -> dict[str, Any]:
    """Achieved GFLOP/s of one jitted float32 `[m, k] @ [k, n]` matmul: the practical
    arithmetic ceiling of this device for the critic-sized products of the update.

    It is measured twice, with XLA's default compiler options and with the options the
    agent is compiled with (`algd_jax.compile_options`); the faster of the two is the peak,
    so tuning the update's options cannot lower the bar it is compared against. Both are
    recorded under `by_options`. `gflops_per_cpu_s` is per second of process CPU time."""
    rng = np.random.default_rng(0)
    a = jnp.asarray(rng.standard_normal((m, k), np.float32))
    b = jnp.asarray(rng.standard_normal((k, n), np.float32))
    tuned = compiler_options()
    rates = {"xla_default": _matmul_rate(a, b, reps, None)}
    if tuned is not None:
        rates["agent"] = _matmul_rate(a, b, reps, tuned)
    best = max(rates, key=lambda name: rates[name]["median_gflops"])
    return {
        "shape": f"{m}x{k}x{n}",
        "flops": 2.0 * m * k * n,
        **rates[best],
        "options": best,
        "by_options": rates,
    }


def cost_flops(compiled: Any) -> float:
    """FLOPs from XLA's cost analysis of a compiled executable (NaN when unavailable)."""
    try:
        analysis = compiled.cost_analysis()
    except Exception:  # noqa: BLE001 - some backends do not implement it
        return math.nan
    if isinstance(analysis, list):  # older JAX: one dict per device
        analysis = analysis[0] if analysis else {}
    return float(analysis.get("flops", math.nan)) if analysis else math.nan


# ----------------------------------------------------------------------------- agent


def paper_config(**overrides: Any) -> ALGDConfig:
    """The paper's update settings (K = 5, critics 256, score net 128), with overrides."""
    base = {"diffusion_steps": 5, "critic_hidden": 256, "score_hidden": 128}
    base.update(overrides)
    return ALGDConfig(**base)


def quick_config(**overrides: Any) -> ALGDConfig:
    """A tiny configuration with the same program structure, for `--quick` runs."""
    base = {"diffusion_steps": 2, "critic_hidden": 16, "score_hidden": 16, "embed_dim": 4}
    base.update(overrides)
    return ALGDConfig(**base)


def make_agent(config: ALGDConfig, seed: int = 0) -> AgentState:
    """An agent for HalfCheetah sizes with actions in [-1, 1]^6.

    Agents of equal configs share one pytree structure (`create_agent` builds the static
    modules and optimisers once per config), so a second agent reuses the compiled update.
    """
    return create_agent(config, OBS_DIM, -np.ones(ACT_DIM), np.ones(ACT_DIM), seed)


def make_batch(rng: np.random.Generator, batch: int, leading: tuple[int, ...] = ()) -> Batch:
    """A random replay `Batch` on the device, leaves `[*leading, batch, ...]` float32."""
    shape = (*leading, batch)
    f32 = np.float32
    host = Batch(
        obs=rng.standard_normal((*shape, OBS_DIM)).astype(f32),
        action=rng.uniform(-1, 1, (*shape, ACT_DIM)).astype(f32),
        reward=rng.standard_normal(shape).astype(f32),
        cost=rng.uniform(0, 1, shape).astype(f32),
        next_obs=rng.standard_normal((*shape, OBS_DIM)).astype(f32),
        mask_r=(rng.uniform(size=shape) > 0.01).astype(f32),
        mask_c=np.ones(shape, f32),
    )
    return jax.device_put(host)


# ----------------------------------------------------------------------------- output


def base_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes and repetition counts (CI smoke run)"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="JSON file (default benchmarks/results/)"
    )
    return parser


def default_out(name: str, quick: bool) -> Path:
    return RESULTS_DIR / f"{name}{'-quick' if quick else ''}.json"


def write_result(result: dict[str, Any], out: Path | None, name: str, quick: bool) -> Path:
    """Add the end load average and write `result` as JSON; returns the path."""
    result["machine"]["loadavg_end"] = list(os.getloadavg())
    path = out if out is not None else default_out(name, quick)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    return path


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain aligned text table; floats get 2 decimals (3 significant digits below 1)."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            if math.isnan(value):
                return "-"
            return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"
        return str(value)

    text = [[cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in text)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in text]
    return "\n".join(lines)


def block(tree: Any) -> Any:
    """`jax.block_until_ready` on every leaf; returns the tree."""
    return jax.block_until_ready(tree)


def time_update_calls(
    step: Callable[[Any], tuple[Any, Any]],
    state: Any,
    reps: int,
    warmup: int,
    updates_per_call: int,
    flops: float,
) -> tuple[dict[str, float], Any]:
    """Time `state, metrics = step(state)` (the state is donated, so each call is fed the
    previous call's result). Returns per-update wall/CPU statistics, achieved GFLOP/s from
    `flops` per update, and the last state."""
    holder = [state]

    def call() -> None:
        new, metrics = step(holder[0])
        holder[0] = block(new)
        block(metrics)

    wall, cpu = time_calls_cpu(call, reps, warmup=warmup)
    stats = summarize_ms(wall, divisor=updates_per_call)
    stats.update(cpu_stats(cpu, updates_per_call, flops))
    stats["gflops"] = flops / (stats["median_ms"] * 1e6)
    return stats, holder[0]
