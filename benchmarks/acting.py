"""Latency of one action selection at batch 1 (stochastic and deterministic).

    python -m benchmarks.acting [--quick] [--out FILE.json]

Three measurements per mode, in microseconds:
* `device`: `select_action` on an observation already on the device, blocking on the result;
* `round_trip`: a numpy observation `[17]` in, a numpy action `[6]` out (what the training
  loop pays per env step: transfer, dispatch, the K-step reverse chain, transfer back);
* `loop_style`: as the training loop calls it: its seed-axis action program
  (`algd_jax.programs.programs(algo.act, algo.update, "map").act`) on one seed's stacked
  state, observation `[1, 17]` and key `[1]`, the noise key folded with the step counter
  inside the jitted call; numpy in and out.

The stochastic mode is also timed with the non-default PRNG implementations (`rbg`,
`unsafe_rbg`; not in `--quick`), whose keys compile to cheaper code on CPU than threefry's;
the agent is unchanged, only the key passed in differs.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from algd_jax import programs
from algd_jax.algorithms import get_algorithm
from algd_jax.algorithms.algd import select_action
from benchmarks.common import (
    ACT_DIM,
    OBS_DIM,
    base_parser,
    device_line,
    format_table,
    machine_info,
    make_agent,
    paper_config,
    quick_config,
    summarize_ms,
    time_calls,
    write_result,
)

PRNG_IMPLS = ("threefry2x32", "rbg", "unsafe_rbg")


def _us(stats: dict[str, Any]) -> dict[str, Any]:
    """ms statistics -> the same in microseconds (`*_us`)."""
    return {
        (k.replace("_ms", "_us") if k.endswith("_ms") else k): (v * 1e3 if k.endswith("_ms") else v)
        for k, v in stats.items()
    }


def _calls(
    state: Any,
    obs_host: np.ndarray,
    obs_device: jax.Array,
    keys: list[jax.Array],
    deterministic: bool,
    act: Callable[..., jax.Array],
    states: Any,
) -> dict[str, Callable[[], Callable[[], None]]]:
    """Factories of the three timed calls; each factory starts a fresh stream of keys.

    `act(states, obs [S, ds], keys [S], step, deterministic)` is the loop's action program
    and `states` the agent stacked on a seed axis of S = 1.
    """

    def device() -> Callable[[], None]:
        it = iter(keys)
        return lambda: select_action(state, obs_device, next(it), deterministic).block_until_ready()

    def round_trip() -> Callable[[], None]:
        it = iter(keys)

        def call() -> None:
            action = np.asarray(select_action(state, obs_host[None], next(it), deterministic))[0]
            assert action.shape == (ACT_DIM,)

        return call

    def loop_style() -> Callable[[], None]:
        counter = iter(range(1 << 30))
        seed_keys = keys[0][None]  # [S = 1]

        def call() -> None:
            obs = obs_host[None]  # [S = 1, ds]
            actions = np.asarray(act(states, obs, seed_keys, next(counter), deterministic))
            assert actions.shape == (1, ACT_DIM)

        return call

    return {"device": device, "round_trip": round_trip, "loop_style": loop_style}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = base_parser(__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=None, help="timed calls (default 2000)")
    args = parser.parse_args(argv)
    quick = args.quick
    reps = args.reps or (20 if quick else 2000)
    config = quick_config() if quick else paper_config(ensemble_size=4, mc_samples=4)
    state = make_agent(config)
    info = machine_info()
    rng = np.random.default_rng(0)
    obs_host = rng.standard_normal(OBS_DIM).astype(np.float32)
    obs_device = jax.device_put(obs_host[None])

    # the training loop's own jitted action program, on a seed axis of one
    algo = get_algorithm(config.agent)
    loop_act = programs.programs(algo.act, algo.update, "map").act
    states = programs.stack([state])

    results: dict[str, Any] = {}
    for deterministic in (False, True):
        mode = "deterministic" if deterministic else "stochastic"
        for impl in ("threefry2x32",) if deterministic or quick else PRNG_IMPLS:
            keys = list(jax.random.split(jax.random.key(0, impl=impl), reps + 8))
            calls = _calls(state, obs_host, obs_device, keys, deterministic, loop_act, states)
            entry = {
                name: _us(summarize_ms(time_calls(make(), reps, warmup=3)))
                for name, make in calls.items()
            }
            label = mode if impl == "threefry2x32" else f"{mode} ({impl} key)"
            results[label] = {"mode": mode, "prng_impl": impl, **entry}

    result = {
        "benchmark": "acting",
        "quick": quick,
        "machine": info,
        "batch": 1,
        "diffusion_steps": config.diffusion_steps,
        "score_hidden": config.score_hidden,
        "results": results,
    }
    path = write_result(result, args.out, "acting", quick)
    print(report(result))
    print(f"wrote {path}")
    return result


def report(result: dict[str, Any]) -> str:
    """The terminal table of an acting result."""
    rows = []
    for label, e in result["results"].items():
        rows.append(
            [
                label,
                e["device"]["median_us"],
                e["round_trip"]["median_us"],
                e["round_trip"]["min_us"],
                e["round_trip"]["p90_us"],
                e["loop_style"]["median_us"],
            ]
        )
    table = format_table(
        ["mode", "device us", "round trip us", "min us", "p90 us", "loop act us"], rows
    )
    return (
        f"Action selection at batch 1 (K={result['diffusion_steps']}, score net "
        f"{result['score_hidden']}), microseconds per action (median unless stated)\n"
        f"{device_line(result['machine'])}\n{table}"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
