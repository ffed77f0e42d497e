"""`experiments.plot` on tiny runs writes a non-empty PNG; seeds of one configuration are
grouped into one curve."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from experiments import plot, summarize
from experiments.run import main
from tests.conftest import TINY as TRAINING_TINY

TINY = TRAINING_TINY + ["--total-steps", "200"]


@pytest.fixture(scope="module")
def seed_runs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("runs")
    runs = [root / f"seed{seed}" for seed in (0, 1)]
    for seed, run in zip((0, 1), runs, strict=True):
        assert main(TINY + ["--seed", str(seed), "--run-dir", str(run)]) == 0
    return runs


def test_plot_writes_a_png(seed_runs: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "fig.png"
    assert plot.main([*map(str, seed_runs), "--out", str(out)]) == 0
    data = out.read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 10_000


def test_seeds_form_one_group_with_mean_and_std(seed_runs: list[Path]) -> None:
    runs = [plot.load_run(p) for p in seed_runs]
    assert len({plot._group_key(r) for r in runs}) == 1
    steps, mean, std = plot.aggregate(runs, "eval/return")
    values = np.array([[float(row["eval/return"]) for row in r.rows] for r in runs])
    np.testing.assert_array_equal(steps, [100, 200])
    np.testing.assert_allclose(mean, values.mean(0))
    np.testing.assert_allclose(std, values.std(0))


def test_plot_rejects_a_directory_that_is_not_a_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert plot.main([str(tmp_path), "--out", str(tmp_path / "fig.png")]) == 2
    assert "not a run directory" in capsys.readouterr().err
    assert not (tmp_path / "fig.png").exists()


def test_summarize_averages_the_last_k_evaluations_of_each_seed(
    seed_runs: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = summarize.summarize(seed_runs, last=1)
    assert [r.seed for r in results] == [0, 1]
    assert len({r.label for r in results}) == 1  # the seeds are one group
    for run_dir, result in zip(seed_runs, results, strict=True):
        last = plot.load_run(run_dir).rows[-1]
        spec = plot.load_run(run_dir).task_spec
        cost_column = "eval/discounted_cost" if spec["eval_cost"] == "discounted" else "eval/cost"
        assert result.ret == pytest.approx(float(last["eval/return"]))
        assert result.cost == pytest.approx(float(last[cost_column]))
        assert result.steps == 200
    both = summarize.summarize(seed_runs, last=2)
    rows = [plot.load_run(p).rows for p in seed_runs]
    expected = [np.mean([float(r["eval/return"]) for r in rs]) for rs in rows]
    np.testing.assert_allclose([r.ret for r in both], expected)
    out = tmp_path / "table.md"
    assert summarize.main([*map(str, seed_runs), "--last", "2", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert out.read_text() == text
    mean_row = next(line for line in text.splitlines() if "mean ± std" in line)
    assert f"{np.mean(expected):.1f} ± {np.std(expected):.1f}" in mean_row


def test_summarize_refuses_an_impossible_k(
    seed_runs: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert summarize.main([str(seed_runs[0]), "--last", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--last 0" in err
