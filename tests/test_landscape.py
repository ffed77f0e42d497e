"""`experiments.landscape` on a tiny DiffDriveCircle run: the PNG is written; the grid holds
the energies the algorithm itself computes; where the penalty is inactive L_A = -Q -
lam^2 / (2 rho); the Hessian panel equals a finite-difference Hessian; bad input gives one
line and a non-zero exit status."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algd_jax.algorithms import get_algorithm, register, unregister
from algd_jax.algorithms.algd import multiplier_value, state_energy
from algd_jax.energy import make_energy
from algd_jax.landscape import energies, grid_axes, landscape
from algd_jax.train_config import TrainConfig, resolve_hparams, resolve_task
from algd_jax.training import write_config
from experiments import landscape as cli
from experiments.run import main as run_main
from tests.conftest import TINY

RUN = TINY + ["--task", "DiffDriveCircle", "--total-steps", "100"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("runs") / "dd"
    assert run_main(RUN + ["--run-dir", str(run_dir)]) == 0
    return run_dir


@pytest.fixture(scope="module")
def loaded(tiny_run: Path) -> tuple[cli.LoadedRun, np.ndarray]:
    run = cli.load_agent(tiny_run, "last")
    return run, cli.episode_state(run, 5, seed=0)


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert "Traceback" not in err
    return err


def test_png_and_summary_written(tiny_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "fig.png"
    args = [str(tiny_run), "--grid", str(G), "--state", "3", "--samples", "32", "--out", str(out)]
    assert cli.main(args) == 0
    data = out.read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 20_000
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["grid"] == G and summary["task"] == "DiffDriveCircle"
    for name in ("L", "L_A"):
        assert 0.0 <= summary["convex_fraction"][name] <= 1.0


G = 11  #: grid points per axis in these tests (one compiled program for all of them)


def _grid(run: cli.LoadedRun, obs: np.ndarray, agent=None):
    agent = run.agent if agent is None else agent
    center = run.algorithm.act(agent, obs[None], jax.random.key(0), True)[0]
    low, high = np.asarray(run.spec.action_low), np.asarray(run.spec.action_high)
    axis_i, axis_j = grid_axes(low, high, (0, 1), G)
    return landscape(agent, jnp.asarray(obs), center, axis_i, axis_j, dims=(0, 1)), center


def _with_multiplier(agent, lam: float):
    """The agent with lambda set to `lam` (Adam rule: the parameter is log lambda); a
    traced value, so the landscape program is not compiled again."""
    assert agent.config.multiplier == "adam"
    params = {"value": jnp.log(jnp.asarray(lam, jnp.float32))}
    return agent.replace(multiplier=agent.multiplier.replace(params=params))


def _straddling(run: cli.LoadedRun, obs: np.ndarray):
    """The agent with a lambda that puts the penalty's switch lam + rho (qc - h) = 0 at the
    slice's median risk, so that both regions are on the grid."""
    grid, _ = _grid(run, obs)
    cfg = run.agent.config
    lam = cfg.rho * (cfg.cost_budget - float(np.median(grid.qc_risk)))
    assert lam > 0
    return _with_multiplier(run.agent, lam)


def _plain_lagrangian(agent):
    """L through `energy.make_energy` with the agent's critics and multiplier."""
    cfg = agent.config
    return make_energy(
        lambda o, a: agent.critic.apply_fn(agent.critic.params, o, a),
        lambda o, a: agent.cost_critic.apply_fn(agent.cost_critic.params, o, a),
        multiplier_value(cfg, agent.multiplier.params["value"]),
        cfg.cost_budget,
        cfg.rho,
        cfg.kappa,
        augmented=False,
    )


def test_grid_values_equal_the_pointwise_energies(loaded) -> None:
    run, obs = loaded
    for agent in (run.agent, _straddling(run, obs)):
        grid, center = _grid(run, obs, agent)
        # every grid point, through the algorithm's own energy (L_A for algd) and
        # `make_energy`, in batches of actions
        aa, bb = np.meshgrid(np.asarray(grid.axis_i), np.asarray(grid.axis_j))  # [G, G]
        actions = np.stack([aa.ravel(), bb.ravel()], -1).astype(np.float32)
        rows = np.repeat(obs[None], len(actions), 0)
        own = state_energy(agent, agent.critic.params, agent.cost_critic.params)
        np.testing.assert_allclose(grid.augmented.ravel(), own(rows, actions), rtol=1e-5, atol=1e-5)
        plain = _plain_lagrangian(agent)
        np.testing.assert_allclose(
            grid.lagrangian.ravel(), plain(rows, actions), rtol=1e-5, atol=1e-5
        )
    # the slice spans the box and passes through the deterministic action
    assert grid.axis_i[0] == run.spec.action_low[0]
    assert grid.axis_j[-1] == run.spec.action_high[1]
    assert center.shape == (2,)


def test_inactive_penalty_leaves_minus_q_minus_lambda_squared(loaded) -> None:
    run, obs = loaded
    # the run's own lambda (penalty inactive almost everywhere on a tiny run) and one whose
    # switch lies inside the slice (both regions present)
    for agent in (run.agent, _straddling(run, obs)):
        g, _ = _grid(run, obs, agent)
        cfg = agent.config
        lam = float(g.multiplier)
        q, risk = np.asarray(g.q_min), np.asarray(g.qc_risk)
        inactive = lam + cfg.rho * (risk - cfg.cost_budget) <= 0
        np.testing.assert_array_equal(~inactive, np.asarray(g.active))
        assert inactive.any()
        np.testing.assert_allclose(
            np.asarray(g.augmented)[inactive],
            (-q - lam**2 / (2 * cfg.rho))[inactive],
            rtol=1e-6,
            atol=1e-6,
        )
        # and where it acts, L_A = L + rho / 2 (qc - h)^2
        gap = risk - cfg.cost_budget
        np.testing.assert_allclose(
            np.asarray(g.augmented)[~inactive],
            (np.asarray(g.lagrangian) + cfg.rho / 2 * gap**2)[~inactive],
            rtol=1e-5,
            atol=1e-5,
        )
    assert np.asarray(g.active).mean() > 0.2  # the straddling lambda: both regions


def test_hessian_panel_equals_finite_differences(loaded) -> None:
    run, obs = loaded
    state = _straddling(run, obs)  # so that L_A's penalty curves part of the slice
    grid, _ = _grid(run, obs, state)
    points = [(2, 3), (5, 5), (8, 1), (9, 9), (4, 7), (1, 8)]
    with jax.enable_x64(True):

        def f64(x):
            floating = hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.floating)
            return jnp.asarray(x, jnp.float64) if floating else x

        state64 = jax.tree.map(f64, state)
        obs64 = jnp.asarray(obs, jnp.float64)

        @jax.jit
        def grad(a: jax.Array) -> jax.Array:
            return jax.jacrev(lambda x: jnp.stack(energies(state64, obs64, x)[:2]))(a)

        eps = 1e-4
        for row, col in points:
            a = jnp.array([grid.axis_i[col], grid.axis_j[row]], jnp.float64)
            columns = [(grad(a + eps * e) - grad(a - eps * e)) / (2 * eps) for e in jnp.eye(2)]
            hess = np.asarray(jnp.stack(columns, axis=-1))  # [energy, k, l]
            for which, panel in enumerate((grid.hess_min_lagrangian, grid.hess_min_augmented)):
                h = hess[which]
                expected = np.linalg.eigvalsh(0.5 * (h + h.T))[0]
                scale = max(1.0, float(np.abs(h).max()))
                assert float(panel[row, col]) == pytest.approx(expected, abs=2e-4 * scale), (
                    which,
                    row,
                    col,
                )


def test_bad_dims(tiny_run: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = str(tmp_path / "x.png")
    assert cli.main([str(tiny_run), "--dims", "0", "2", "--out", out]) == 2
    assert "action dims 0..1" in _error_line(capsys)
    assert cli.main([str(tiny_run), "--dims", "1", "1", "--out", out]) == 2
    assert "must differ" in _error_line(capsys)
    assert cli.main([str(tiny_run), "--dims", "-1", "0", "--out", out]) == 2
    _error_line(capsys)
    assert cli.main([str(tiny_run), "--dims", "0", "--out", out]) == 2
    _error_line(capsys)
    assert not (tmp_path / "x.png").exists()


def _config_only_run(path: Path, task: str, algo: str = "algd") -> Path:
    """A run directory with a config.json and nothing else (no training needed)."""
    config = TrainConfig(task=task, algo=algo, run_dir=path).with_hparams()
    spec = resolve_task(config)
    path.mkdir(parents=True)
    write_config(path, config, resolve_hparams(config, spec), spec)
    return path


def test_one_dimensional_action_space(tmp_path: Path, capsys) -> None:
    run = _config_only_run(tmp_path / "bandit", "ToyTwoModeBandit")
    assert cli.main([str(run)]) == 2
    assert "1-D action space" in _error_line(capsys)


def test_missing_checkpoint_and_not_a_run(tiny_run: Path, tmp_path: Path, capsys) -> None:
    empty = tmp_path / "no-checkpoint"
    empty.mkdir()
    shutil.copy(tiny_run / "config.json", empty / "config.json")
    assert cli.main([str(empty)]) == 2
    assert "no last checkpoint" in _error_line(capsys)
    assert cli.main([str(tmp_path)]) == 2
    assert "not a run directory" in _error_line(capsys)
    assert cli.main([str(tmp_path / "nowhere")]) == 2
    assert "no such directory" in _error_line(capsys)


def test_other_algorithms_are_refused(tmp_path: Path, capsys) -> None:
    algd = get_algorithm("algd")
    register(dataclasses.replace(algd, name="not-algd", fixed={}))
    try:
        run = _config_only_run(tmp_path / "other", "DiffDriveCircle", algo="not-algd")
        assert cli.main([str(run)]) == 2
        assert "ALGD family only" in _error_line(capsys)
    finally:
        unregister("not-algd")


def test_plot_panels_of_fig_2(tiny_run: Path, tmp_path: Path, capsys) -> None:
    """`experiments.plot --panels` draws the multiplier and violation rows from the CSV."""
    from experiments import plot

    out = tmp_path / "fig2.png"
    panels = "return,cost,multiplier,violation"
    assert plot.main([str(tiny_run), "--panels", panels, "--out", str(out)]) == 0
    assert out.read_bytes().startswith(b"\x89PNG")
    runs = [plot.load_run(tiny_run)]
    _, violation, _ = plot.aggregate(runs, "train/violation", floor=0.0)
    assert np.all(violation >= 0.0)
    capsys.readouterr()
    assert plot.main([str(tiny_run), "--panels", "return,lambda", "--out", str(out)]) == 2
    assert "choose from" in _error_line(capsys)
