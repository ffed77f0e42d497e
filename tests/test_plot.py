"""`experiments.plot` on tiny runs writes a non-empty PNG; seeds of one configuration are
grouped into one curve."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from experiments import plot
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
