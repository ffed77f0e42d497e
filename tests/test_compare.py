"""`experiments.compare` on hand-written run directories with known numbers: per-seed final
values, grouping (algorithms, `--by`, several sweeps), the statistics recomputed with
scipy.stats from the per-seed CSV, and the one-line refusals. (The tiny real sweep is
compared in tests/test_sweep.py.)"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from algd_jax import compare as cmp
from experiments.compare import main

SPEC_DISCOUNTED = {"eval_cost": "discounted", "cost_budget": 2.0, "episode_cost_limit": None}
SPEC_EPISODE = {"eval_cost": "episode", "cost_budget": 2.455, "episode_cost_limit": 10.0}


def write_run(
    root: Path,
    task: str,
    algo: str,
    seed: int,
    returns: list[float],
    costs: list[float],
    spec: dict,
    **hparams: float,
) -> Path:
    """A run directory with config.json and one progress row per epoch of 100 env steps
    (eval/return, both eval costs equal to `costs`, training episode cost = cost + 1)."""
    root.mkdir(parents=True, exist_ok=True)
    config = {"task": task, "algo": algo, "seed": seed, "total_steps": 100 * len(returns)}
    config["hparams"] = {"mc_samples": 2, **hparams}
    (root / "config.json").write_text(json.dumps({"config": config, "task_spec": spec}))
    cols = ["epoch", "env_steps", "eval/return", "eval/cost", "eval/discounted_cost"]
    cols += ["train/episode_cost", "train/episode_discounted_cost"]
    with (root / "progress.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for i, (r, c) in enumerate(zip(returns, costs, strict=True)):
            w.writerow([i + 1, 100 * (i + 1), r, c, c, c + 1, c + 1])
    return root


@pytest.fixture(scope="module")
def two_sweeps(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two 'sweep folders': A with algd and lgd on two tasks (3 seeds), B with a third
    algorithm on the same tasks. Final returns differ by seed so every statistic is
    non-trivial."""
    base = tmp_path_factory.mktemp("cmp")
    rng = np.random.default_rng(7)
    for sweep, algos in (("A", ("algd", "lgd")), ("B", ("algd-ddpm",))):
        (base / sweep / "manifest.json").parent.mkdir(parents=True, exist_ok=True)
        (base / sweep / "manifest.json").write_text("{}")
        for task, spec in (("TaskD", SPEC_DISCOUNTED), ("TaskE", SPEC_EPISODE)):
            for a, algo in enumerate(algos):
                for seed in range(3):
                    rets = list(np.round(rng.normal(10 * (2 - a), 3, 4), 3))
                    costs = list(
                        np.round(rng.uniform(0, 4 if spec is SPEC_DISCOUNTED else 15, 4), 3)
                    )
                    write_run(
                        base / sweep / "runs" / task / algo / "seeds0-2" / f"seed{seed}",
                        task, algo, seed, rets, costs, spec,
                    )  # fmt: skip
    return base / "A", base / "B"


def test_final_numbers_are_the_mean_of_the_last_evaluations(tmp_path: Path) -> None:
    write_run(tmp_path / "r", "TaskD", "algd", 3, [1.0, 2.0, 4.0], [0.5, 3.0, 1.0], SPEC_DISCOUNTED)
    runs = cmp.load_runs([tmp_path / "r"])
    (group,) = cmp.group_runs(runs)
    final = cmp.seed_final(group, group.runs[0], last=2)
    assert (final.ret, final.cost, final.limit, final.seed) == (3.0, 2.0, 2.0, 3)
    assert final.cost_kind == "discounted_cost" and final.env_steps == 300


def test_statistics_equal_scipy_on_the_per_seed_csv(two_sweeps, tmp_path: Path) -> None:
    a, b = two_sweeps
    out = tmp_path / "fig.png"
    assert main([str(a), str(b), "--out", str(out), "--resamples", "500"]) == 0
    with (tmp_path / "fig_seeds.csv").open() as fh:
        seeds = list(csv.DictReader(fh))
    assert len(seeds) == 2 * 3 * 3  # tasks x algorithms x seeds, from both sweeps
    with (tmp_path / "fig.csv").open() as fh:
        table = {(r["task"], r["label"]): r for r in csv.DictReader(fh)}
    assert set(table) == {(t, a) for t in ("TaskD", "TaskE") for a in ("algd", "lgd", "algd-ddpm")}

    def column(task: str, label: str, name: str) -> np.ndarray:
        return np.array([float(r[name]) for r in seeds if (r["task"], r["label"]) == (task, label)])

    for (task, label), row in table.items():
        rets, costs = column(task, label, "return"), column(task, label, "cost")
        limit = float(row["limit"])
        assert limit == (2.0 if task == "TaskD" else 10.0)
        for values, name in ((rets, "ret"), (costs, "cost")):
            ci = stats.bootstrap(
                (values,), np.mean, confidence_level=0.95, n_resamples=500,
                method="percentile", random_state=np.random.default_rng(0),
            ).confidence_interval  # fmt: skip
            assert float(row[name]) == pytest.approx(values.mean(), rel=1e-12)
            assert float(row[f"{name}_lo"]) == pytest.approx(ci.low, rel=1e-12)
            assert float(row[f"{name}_hi"]) == pytest.approx(ci.high, rel=1e-12)
        assert float(row["within_limit"]) == pytest.approx(np.mean(costs <= limit))
        assert float(row["cost_over_limit"]) == pytest.approx(costs.mean() / limit)
        if label == "algd":
            assert row["p_reference_better"] == "nan"
        else:
            ref = column(task, "algd", "return")
            u = stats.mannwhitneyu(ref, rets, alternative="two-sided")
            assert float(row["p_reference_better"]) == pytest.approx(u.statistic / 9)
            assert float(row["mannwhitney_p"]) == pytest.approx(u.pvalue)
    # across tasks: IQM of min-max normalised returns, stratified bootstrap
    with (tmp_path / "fig_aggregate.csv").open() as fh:
        agg = {r["label"]: r for r in csv.DictReader(fh)}
    per_task = {}
    for task in ("TaskD", "TaskE"):
        every = np.array([float(r["return"]) for r in seeds if r["task"] == task])
        lo, hi = every.min(), every.max()
        per_task[task] = {
            lab: (column(task, lab, "return") - lo) / (hi - lo) for lab in table_labels(table)
        }
    for label, row in agg.items():
        samples = tuple(per_task[t][label] for t in ("TaskD", "TaskE"))
        pooled = np.concatenate(samples)
        assert float(row["iqm_normalised_return"]) == pytest.approx(stats.trim_mean(pooled, 0.25))
        ci = stats.bootstrap(
            samples,
            lambda *xs, axis=-1: stats.trim_mean(np.concatenate(xs, axis=axis), 0.25, axis=axis),
            confidence_level=0.95, n_resamples=500, method="percentile", vectorized=True,
            random_state=np.random.default_rng(0),
        ).confidence_interval  # fmt: skip
        assert float(row["low"]) == pytest.approx(ci.low, rel=1e-12)
        assert float(row["high"]) == pytest.approx(ci.high, rel=1e-12)
    md = (tmp_path / "fig.md").read_text()
    assert "| TaskE | lgd | 3 | 400 |" in md and "IQM normalised return" in md
    assert out.stat().st_size > 10_000


def table_labels(table: dict) -> set[str]:
    return {label for _, label in table}


def test_by_axis_groups_by_its_values(tmp_path: Path) -> None:
    for n in (2, 4):
        for seed in range(2):
            write_run(
                tmp_path / "s" / "runs" / f"n{n}" / f"seed{seed}", "TaskE", "algd", seed,
                [float(n + seed)] * 2, [1.0, 2.0], SPEC_EPISODE, mc_samples=n,
            )  # fmt: skip
    groups = cmp.group_runs(cmp.load_runs([tmp_path / "s"]), by="mc-samples")
    assert [(g.label, [r.seed for r in g.runs]) for g in groups] == [
        ("mc-samples=2", [0, 1]),
        ("mc-samples=4", [0, 1]),
    ]
    # without --by the differing option tells the two groups of one algorithm apart
    labels = [g.label for g in cmp.group_runs(cmp.load_runs([tmp_path / "s"]))]
    assert labels == ["algd mc_samples=2", "algd mc_samples=4"]
    out = tmp_path / "ablation.png"
    assert main([str(tmp_path / "s"), "--by", "mc-samples", "--out", str(out)]) == 0
    assert out.is_file() and "mc-samples=4" in (tmp_path / "ablation.md").read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope"], "nope: no such directory"),
        (["EMPTY", "--by", "rho"], "its config has no option rho; choose another --by"),
        (["EMPTY", "--last", "0"], "--last 0: average at least 1 evaluation"),
        (["DUP"], "seed 0 appears twice"),
    ],
)
def test_bad_input_is_one_line(tmp_path: Path, capsys, args: list[str], message: str) -> None:
    write_run(tmp_path / "e", "TaskE", "algd", 0, [1.0], [0.0], SPEC_EPISODE)
    write_run(tmp_path / "d", "TaskE", "algd", 0, [2.0], [0.0], SPEC_EPISODE)
    paths = {"EMPTY": [str(tmp_path / "e")], "DUP": [str(tmp_path / "e"), str(tmp_path / "d")]}
    argv = [p for a in args for p in paths.get(a, [a])]
    assert main([*argv, "--out", str(tmp_path / "f.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
