"""The quick mode of every benchmark runs and writes a complete JSON (no assertions on
times), and the jitted updates do not recompile when only the data change."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from algd_jax.algorithms.algd import update, update_many
from algd_jax.types import Batch
from benchmarks import acting, loop, scaling, train_step
from benchmarks.common import make_agent, make_batch, quick_config

MACHINE_KEYS = {"date", "platform", "device_kind", "cpu_model", "jax", "loadavg_start"}


def positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def check_positive(entry: dict[str, Any], keys: list[str], where: str) -> None:
    for key in keys:
        assert key in entry, f"{where}: missing {key}"
        assert positive(entry[key]), f"{where}.{key} = {entry[key]!r}"


def load(path: Path, result: dict[str, Any]) -> dict[str, Any]:
    data = json.loads(path.read_text())
    assert data == json.loads(json.dumps(result))  # what was returned is what was written
    assert data["quick"] is True
    assert MACHINE_KEYS <= set(data["machine"])
    assert len(data["machine"]["loadavg_end"]) == 3
    return data


STATS = ["median_ms", "min_ms", "p90_ms", "mean_ms", "calls"]
CPU = ["cpu_median_ms", "cpu_min_ms", "gflops_per_cpu_s"]


def test_train_step_quick(tmp_path, capsys):
    out = tmp_path / "train_step.json"
    data = load(out, train_step.main(["--quick", "--out", str(out)]))
    check_positive(
        data["matmul_peak"], ["median_gflops", "best_gflops", "gflops_per_cpu_s", "flops"], "peak"
    )
    assert len(data["points"]) == 1
    point = data["points"][0]
    check_positive(point, ["flops_per_update", "ideal_ms", "batch_size"], "point")
    for kind in ("single", "fused"):
        check_positive(
            point[kind],
            [
                *STATS,
                *CPU,
                "compile_s",
                "trace_lower_s",
                "gflops",
                "ratio_to_peak",
                "ratio_to_ideal",
                "cpu_ratio_to_peak",
            ],
            kind,
        )
    assert "GFLOP/s" in capsys.readouterr().out


BASELINES = ["sac-lag", "sac-auglag", "cal", "rcrl"]


# one baseline in the default run (about 50 s of compiles on 2 cores), the others slow
@pytest.mark.parametrize(
    "algo", [a if a == "cal" else pytest.param(a, marks=pytest.mark.slow) for a in BASELINES]
)
def test_train_step_quick_for_a_baseline(algo, tmp_path, capsys):
    out = tmp_path / "train_step.json"
    data = load(out, train_step.main(["--quick", "--algo", algo, "--out", str(out)]))
    assert data["algo"] == algo
    (point,) = data["points"]
    assert point["ensemble_size"] == 2
    check_positive(point, ["flops_per_update", "ideal_ms", "batch_size"], "point")
    for kind in ("single", "fused"):
        check_positive(point[kind], [*STATS, *CPU, "compile_s", "gflops", "ratio_to_peak"], kind)
    assert f"{algo} update" in capsys.readouterr().out


def test_update_parts_counts_the_products_xla_runs():
    """Hand-counted products of a small program: x [8, 5] @ w [5, 3] (240 FLOPs), a batched
    [4, 8, 5] @ [4, 5, 2] (640), and a [8, 3] @ [3, 3] product in a 3-step scan whose carry
    it feeds (3 x 144 = 432, whether XLA keeps the loop or unrolls it)."""
    import jax
    import jax.numpy as jnp

    from benchmarks.update_parts import hlo_products

    def f(x, w, v, u, s):
        def step(c, _):
            return jnp.tanh(c @ s), None

        y, _ = jax.lax.scan(step, x @ w, None, length=3)
        return y, jnp.einsum("bij,bjk->bik", v, u)

    args = [jnp.ones(shape) for shape in ((8, 5), (5, 3), (4, 8, 5), (4, 5, 2), (3, 3))]
    products, problems = hlo_products(jax.jit(f).lower(*args).compile().as_text())
    assert problems == []
    assert sum(p.flops * count for p, count in products) == 240 + 640 + 432
    labels = {p.label() for p, _ in products}
    assert {"8x5x3 (NN)", "[4] 8x5x2 (NN)", "8x3x3 (NN)"} <= labels


@pytest.mark.slow  # two compiles of CAL's update: about 40 s on 2 cores
def test_update_parts_quick(tmp_path, capsys):
    from benchmarks import update_parts

    out = tmp_path / "update_parts.json"
    data = load(out, update_parts.main(["--quick", "--algo", "cal", "--out", str(out)]))
    check_positive(data, ["flops_per_update", "product_flops"], "parts")
    for kind in ("single", "fused", "products"):
        check_positive(data[kind], ["median_ms", "cpu_median_ms", "gflops", "ratio_to_peak"], kind)
    assert 0 < data["product_flop_share"] <= 1 and data["shapes"]
    assert "matrix products" in capsys.readouterr().out


def test_scaling_quick(tmp_path):
    out = tmp_path / "scaling.json"
    data = load(out, scaling.main(["--quick", "--out", str(out)]))
    assert set(data["tables"]) == {"mc_samples", "ensemble_size", "batch_size", "diffusion_steps"}
    for axis, rows in data["tables"].items():
        assert rows
        for row in rows:
            check_positive(
                row, [axis, *STATS, *CPU, "compile_s", "flops_per_update", "gflops"], axis
            )


def test_acting_quick(tmp_path):
    out = tmp_path / "acting.json"
    data = load(out, acting.main(["--quick", "--out", str(out)]))
    assert {"stochastic", "deterministic"} <= set(data["results"])
    for label, entry in data["results"].items():
        for part in ("device", "round_trip", "loop_style"):
            check_positive(
                entry[part], ["median_us", "min_us", "p90_us", "mean_us"], f"{label}.{part}"
            )


@pytest.mark.slow  # two whole-loop compiles (S = 1, 2): about 45 s on 2 cores
def test_loop_quick(tmp_path):
    from algd_jax.training import PhaseClock

    out = tmp_path / "loop.json"
    data = load(out, loop.main(["--quick", "--seeds", "1", "2", "--out", str(out)]))
    assert [r["seeds"] for r in data["runs"]] == [1, 2]
    for run in data["runs"]:
        steady = run["steady"]
        check_positive(
            steady,
            [
                "wall_s",
                "loop_steps",
                "env_steps_per_s_per_seed",
                "env_steps_per_s_total",
                "updates_per_s_total",
                "s_per_1000_step_epoch",
                "ms_per_update_in_loop",
            ],
            "steady",
        )
        check_positive(run, ["peak_rss_bytes", "replay_bytes", "cost_vs_separate"], "run")
        assert steady["env_steps_per_s_total"] == pytest.approx(
            run["seeds"] * steady["env_steps_per_s_per_seed"]
        )
        assert set(steady["shares"]) == {*PhaseClock.PHASES, "other"}
        assert all(0.0 <= v <= 1.0 for v in steady["shares"].values())
        assert sum(steady["shares"].values()) == pytest.approx(1.0, abs=1e-6)
        # every phase of an updating step ran once per loop step
        calls = steady["phase_calls"]
        assert calls["update"] == steady["loop_steps"] == calls["action"] == calls["env_step"]
    assert data["runs"][0]["cost_vs_separate"] == pytest.approx(1.0)


@pytest.mark.parametrize("fused", [True, False], ids=["update_many", "update"])
def test_update_does_not_recompile_for_new_data(fused):
    """One compiled program per agent structure and shapes: new batch values, the state
    returned by the previous call (its update counter moved on, which decides whether the
    targets move) and a second agent of the same config all reuse it."""
    fn = update_many if fused else update
    config = quick_config(ensemble_size=2, mc_samples=2)
    state = make_agent(config)
    leading = (2,) if fused else ()

    def call(state, seed):
        batch = make_batch(np.random.default_rng(seed), 32, leading)
        assert isinstance(batch, Batch)
        return fn(state, batch)

    state, _ = call(state, 0)
    size = fn._cache_size()
    for seed in range(1, 5):
        state, metrics = call(state, seed)
    assert int(state.step) == 5 * (2 if fused else 1)
    assert np.isfinite(np.asarray(metrics["critic_loss"])).all()
    call(make_agent(config, seed=1), 5)
    assert fn._cache_size() == size


def test_loop_ratios_pair_each_run_with_its_own_precision():
    """`cost vs S x one seed` divides by one seed of the same precision; `bf16 / f32` divides
    by f32 at the same S (hand-computed from made-up per-step times)."""

    def run(seeds, precision, per_step):
        return {"seeds": seeds, "precision": precision, "steady": {"s_per_loop_step": per_step}}

    runs = [run(1, "f32", 0.30), run(1, "bf16", 0.33), run(2, "f32", 0.63), run(2, "bf16", 0.72)]
    loop.add_ratios(runs)
    assert [r["cost_vs_separate"] for r in runs] == pytest.approx(
        [1.0, 1.0, 0.63 / 0.60, 0.72 / 0.66]
    )
    assert [r["bf16_over_f32"] for r in runs] == pytest.approx([None, 1.1, None, 0.72 / 0.63])
    lone = [run(2, "bf16", 0.5)]  # no one-seed or f32 run to compare with
    loop.add_ratios(lone)
    assert math.isnan(lone[0]["cost_vs_separate"]) and lone[0]["bf16_over_f32"] is None
