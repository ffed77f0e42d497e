"""`DiffDriveCircle`: hand-computed unicycle kinematics, the cost switching at the disc's
boundary, the goal, the time limit, and the JAX functions agreeing with the host env."""

from __future__ import annotations

import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algd_jax.envs import get_task, make_env
from algd_jax.envs.diffdrive import DEFAULT_DIFFDRIVE, TASK_NAME, EnvState, reset, step


def _env_at(pose: tuple[float, float, float]):
    env = make_env(TASK_NAME, seed=0)
    env.reset()
    env.unwrapped.pose = np.asarray(pose, np.float64)
    return env


def test_registered_with_the_documented_spec() -> None:
    spec = get_task(TASK_NAME)
    assert (spec.obs_dim, spec.act_dim) == (8, 2)
    assert spec.action_low == (0.0, -2.0) and spec.action_high == (1.0, 2.0)
    assert spec.max_episode_steps == 100 and spec.episode_cost_limit == 5.0
    # h = C (1 - 0.99^T) / ((1 - 0.99) T)
    assert spec.cost_budget == pytest.approx(5.0 * (1 - 0.99**100) / (0.01 * 100))


def test_kinematics_by_hand_for_three_steps() -> None:
    env = _env_at((1.0, 2.0, 0.0))
    # 1: v = 1 m/s, omega = 1 rad/s for 0.1 s: x moves along the old heading 0, turns 0.1
    obs, reward, terminated, truncated, info = env.step(np.array([1.0, 1.0]))
    np.testing.assert_allclose(env.unwrapped.pose, [1.1, 2.0, 0.1], atol=1e-12)
    # progress towards the goal (2, 0): 10 (|(-1, 2)| - |(-0.9, 2)|)
    assert reward == pytest.approx(10 * (math.hypot(1.0, 2.0) - math.hypot(0.9, 2.0)))
    assert not terminated and not truncated and info["cost"] == 0.0
    np.testing.assert_allclose(obs[:4], [1.1, 2.0, math.cos(0.1), math.sin(0.1)], atol=1e-6)
    # goal (2, 0) in the robot's frame: rotate (0.9, -2) by -0.1
    c, s = math.cos(0.1), math.sin(0.1)
    np.testing.assert_allclose(obs[4:6], [c * 0.9 - s * 2.0, -s * 0.9 - c * 2.0], atol=1e-6)
    # 2: half speed straight on at heading 0.1
    env.step(np.array([0.5, 0.0]))
    np.testing.assert_allclose(
        env.unwrapped.pose, [1.1 + 0.05 * c, 2.0 + 0.05 * s, 0.1], atol=1e-12
    )
    # 3: out-of-box action clipped to v = 1, omega = -2
    env.step(np.array([2.0, -5.0]))
    np.testing.assert_allclose(
        env.unwrapped.pose, [1.1 + 0.15 * c, 2.0 + 0.15 * s, -0.1], atol=1e-12
    )


def test_heading_wraps_to_minus_pi_pi() -> None:
    env = _env_at((0.0, 3.0, 3.1))
    env.step(np.array([0.0, 2.0]))
    assert env.unwrapped.pose[2] == pytest.approx(3.3 - 2 * math.pi)


@pytest.mark.parametrize(
    ("x", "cost"),
    [(-1.05, 1.0), (-1.15, 0.0), (-1.1, 0.0), (-1.1 + 1e-6, 1.0)],
)
def test_cost_switches_at_the_disc_boundary(x: float, cost: float) -> None:
    """A full-speed step of 0.1 m along +x from x ends at x + 0.1; the disc of radius 1 at
    the origin costs 1 strictly inside, 0 on its boundary (x + 0.1 = -1) and outside."""
    env = _env_at((x, 0.0, 0.0))
    _, _, _, _, info = env.step(np.array([1.0, 0.0]))
    assert info["cost"] == cost
    assert float(DEFAULT_DIFFDRIVE.cost(np.array([-0.9999, 0.0, 0.0]))) == 1.0
    assert float(DEFAULT_DIFFDRIVE.cost(np.array([0.0, 1.0, 0.0]))) == 0.0


def test_reaching_the_goal_terminates_with_the_bonus() -> None:
    env = _env_at((1.65, 0.0, 0.0))
    _, reward, terminated, truncated, _ = env.step(np.array([1.0, 0.0]))
    assert terminated and not truncated
    assert reward == pytest.approx(10 * (0.35 - 0.25) + 10.0)


def test_time_limit_truncates_after_100_steps() -> None:
    env = make_env(TASK_NAME, seed=3)
    env.reset()
    for t in range(100):
        _, _, terminated, truncated, info = env.step(np.array([0.0, 0.5]))
        assert not terminated and "cost" in info
        assert truncated == (t == 99)


def test_jax_functions_match_the_host_env() -> None:
    rng = np.random.default_rng(0)
    jitted = jax.jit(step)
    for _ in range(20):
        pose = np.array([rng.uniform(-3, 3), rng.uniform(-3, 3), rng.uniform(-3, 3)])
        action = np.array([rng.uniform(-0.5, 1.5), rng.uniform(-3, 3)])
        env = _env_at(tuple(pose))
        obs, reward, terminated, _, info = env.step(action)
        out = jitted(EnvState(jnp.asarray(pose, jnp.float32)), jnp.asarray(action, jnp.float32))
        np.testing.assert_allclose(out.state.pose, env.unwrapped.pose, atol=2e-5)
        np.testing.assert_allclose(out.obs, obs, atol=2e-5)
        assert float(out.reward) == pytest.approx(reward, abs=1e-4)
        assert float(out.cost) == info["cost"] and bool(out.terminated) == terminated
    # reset(key): a pure function of the key, starts within the documented jitter
    keys = jax.random.split(jax.random.key(0), 256)
    states, obs = jax.vmap(reset)(keys)
    pose = np.asarray(states.pose)
    assert np.all(np.abs(pose[:, 0] + 2.0) <= 0.2) and np.all(np.abs(pose[:, 1]) <= 0.2)
    assert np.all(np.abs(pose[:, 2]) <= 0.3) and obs.shape == (256, 8)
    again, _ = reset(keys[0])
    np.testing.assert_array_equal(again.pose, pose[0])


def test_on_device_loop_writes_a_run_the_commands_read(tmp_path: Path) -> None:
    """Two seeds of a tiny on-device run: one progress row per epoch with the host loop's
    columns, agent checkpoints that `experiments.landscape` restores."""
    from algd_jax.train_config import parse_command_line
    from algd_jax.training import EPISODE_COLUMNS, TIMING_COLUMNS, train
    from algd_jax.training.run_dir import seed_dirs
    from experiments import landscape
    from tests.test_on_device_loop import DEVICE_TINY

    config = parse_command_line(DEVICE_TINY + ["--run-dir", str(tmp_path / "run")])
    result = train(config)
    assert result.run_dirs == seed_dirs(tmp_path / "run", config)
    assert result.run_dirs == [tmp_path / "run" / "seed0", tmp_path / "run" / "seed1"]
    rows_of = []
    for seed_dir in result.run_dirs:
        with (seed_dir / "progress.csv").open() as f:
            header = f.readline().strip().split(",")
            rows = [dict(zip(header, line.strip().split(","), strict=True)) for line in f]
        rows_of.append(rows)
        assert header[:4] == ["epoch", "env_steps", "updates", "episodes"]
        assert header[4 : 4 + len(EPISODE_COLUMNS)] == list(EPISODE_COLUMNS)
        assert header[-len(TIMING_COLUMNS) :] == list(TIMING_COLUMNS)
        assert [int(r["env_steps"]) for r in rows] == [300, 500]
        assert [int(r["updates"]) for r in rows] == [200, 400]  # 100 iterations x U=2 per epoch
        # 200 env steps per epoch = 100 steps of each of the 2 envs: each ends an episode
        assert all(int(r["episodes"]) >= 2 for r in rows)
        for row in rows:
            values = {k: float(v) for k, v in row.items() if not k.startswith("train/ep")}
            assert all(np.isfinite(v) for v in values.values())
            assert 0 < values["eval/length"] <= 100
        loaded = landscape.load_agent(seed_dir, "last")
        assert loaded.step == 500 and loaded.config.task == TASK_NAME
    rows = [[{k: float(v) for k, v in r.items()} for r in seed_rows] for seed_rows in rows_of]
    result = type("R", (), {"rows": rows})
    # the seeds differ (each has its own keys)
    assert result.rows[0][-1]["eval/return"] != result.rows[1][-1]["eval/return"]
