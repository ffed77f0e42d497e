"""Tests of the paper's navigation tasks (algd_jax.envs.paper_nav) against the task spec.

Reference numbers are the spec's (NAV_TASKS §3 layouts, §4 observation slices, §1 budget),
written out here; the Safety-Gymnasium tests are skipped when the package is missing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import gymnasium
import numpy as np
import pytest

from algd_jax.envs import MissingDependencyError, get_task, list_tasks, make_env
from algd_jax.envs.paper_nav import (
    FORK_LAYOUTS,
    FORK_OBS_DIM,
    PAPER_NAV_TASKS,
    replay_fork_reset,
)
from algd_jax.envs.safety_gym_compat import import_safety_gymnasium

TASKS = ["PointButton1", "PointButton2", "CarButton1", "CarButton2", "PointPush1"]
FAMILY = {
    "PointButton1": "Button1",
    "CarButton1": "Button1",
    "PointButton2": "Button2",
    "CarButton2": "Button2",
    "PointPush1": "Push1",
}
# NAV_TASKS §4: the fork's observation dimension per task.
OBS_DIM = {
    "PointButton1": 76,
    "PointButton2": 60,
    "CarButton1": 88,
    "CarButton2": 72,
    "PointPush1": 76,
}
# NAV_TASKS §2: physics timestep (s); 10 substeps per env step.
TIMESTEP = {"Point": 0.006, "Car": 0.01}
# Hand-computed: 10 (1 - 0.99**400) / (0.01 * 400) = 10 * 98.20494467249548 / 400.
H_PAPER = 2.4551236168123870

# NAV_TASKS §3, the fork's layout at every reset (positions in m, yaws in rad; "derived" values
# are printed there with 6 decimals).
REFERENCE: dict[str, dict] = {
    "Button1": {
        "robot": (-0.724665, 0.953750, 2.234381),
        "buttons": [(-1.3, -1.3), (1.3, -1.3), (-1.3, 1.3), (1.3, 1.3)],
        "hazards": [(0, -1.9), (0, 1.9), (0, 0), (1.9, 0), (-1.9, 0)],
        "hazard_size": 0.17,
        "gremlins": [(0, -1.3), (0, 1.3), (1.3, 0), (-1.3, 0)],
        "gremlin_yaws": [5.908908, 4.808680, 4.703992, 5.678239],
        "pillars": [],
        "first_goal_button": 0,
    },
    "Button2": {
        "robot": (0.136678, 0.602530, 2.866077),
        "buttons": [(-1.1, -1.3), (1.8, -1.5), (-1.4, 0.6), (1.0, 1.3)],
        "hazards": [
            (0.1, -1.9),
            (-0.2, 1.7),
            (0.3, 0.1),
            (2.0, -0.1),
            (-1.8, 0.2),
            (-0.1, -1.2),
            (0.0, 1.3),
            (1.1, 0.0),
            (-1.0, 0.0),
            (0.2, -0.9),
            (-1.1, 1.1),
        ],
        "hazard_size": 0.22,
        "gremlins": [],
        "gremlin_yaws": [],
        "pillars": [],
        "first_goal_button": 2,
    },
    "Push1": {
        "robot": (-1.0, -2.0, 1.040154),
        "buttons": [],
        "hazards": [(0.5, -0.5), (-0.5, -0.5), (1.8, 0.8), (-1.8, 0.8)],
        "hazard_size": 0.3,
        "gremlins": [],
        "gremlin_yaws": [],
        "pillars": [(-2, 0), (2, 0), (0, 0), (1, 1), (-1, 1)],
        "box": (0.0, -1.5, 4.184350),
        "first_goal": (-1.029757, 0.190992),
    },
}

# NAV_TASKS §4: the fork's observation order, key -> [start, stop) in the flat vector.
_POINT_BUTTON1 = [
    ("accelerometer", 0, 3),
    ("buttons_lidar", 3, 19),
    ("goal_lidar", 19, 35),
    ("gremlins_lidar", 35, 51),
    ("gyro", 51, 54),
    ("hazards_lidar", 54, 70),
    ("magnetometer", 70, 73),
    ("velocimeter", 73, 76),
]
FORK_SLICES: dict[str, list[tuple[str, int, int]]] = {
    "PointButton1": _POINT_BUTTON1,
    "PointButton2": [
        ("accelerometer", 0, 3),
        ("buttons_lidar", 3, 19),
        ("goal_lidar", 19, 35),
        ("gyro", 35, 38),
        ("hazards_lidar", 38, 54),
        ("magnetometer", 54, 57),
        ("velocimeter", 57, 60),
    ],
    "CarButton1": [
        ("accelerometer", 0, 3),
        ("ballangvel_rear", 3, 6),
        ("ballquat_rear", 6, 15),
        ("buttons_lidar", 15, 31),
        ("goal_lidar", 31, 47),
        ("gremlins_lidar", 47, 63),
        ("gyro", 63, 66),
        ("hazards_lidar", 66, 82),
        ("magnetometer", 82, 85),
        ("velocimeter", 85, 88),
    ],
    "CarButton2": [
        ("accelerometer", 0, 3),
        ("ballangvel_rear", 3, 6),
        ("ballquat_rear", 6, 15),
        ("buttons_lidar", 15, 31),
        ("goal_lidar", 31, 47),
        ("gyro", 47, 50),
        ("hazards_lidar", 50, 66),
        ("magnetometer", 66, 69),
        ("velocimeter", 69, 72),
    ],
    "PointPush1": [
        ("accelerometer", 0, 3),
        ("box_lidar", 3, 19),
        ("goal_lidar", 19, 35),
        ("gyro", 35, 38),
        ("hazards_lidar", 38, 54),
        ("magnetometer", 54, 57),
        ("pillars_lidar", 57, 73),
        ("velocimeter", 73, 76),
    ],
}
# Which task object a fork lidar key looks at (Safety-Gymnasium attribute names).
LIDAR_OBJECT = {
    "box_lidar": "push_box",
    "buttons_lidar": "buttons",
    "goal_lidar": "goal",
    "gremlins_lidar": "gremlins",
    "hazards_lidar": "hazards",
    "pillars_lidar": "pillars",
}


# --------------------------------------------------------------------------------------
# Specs and the replayed draws (no simulator needed).
# --------------------------------------------------------------------------------------


def test_specs_of_the_paper_tasks() -> None:
    assert list(PAPER_NAV_TASKS) == TASKS
    assert set(TASKS) <= set(list_tasks("navigation"))
    assert FORK_OBS_DIM == OBS_DIM
    for name in TASKS:
        spec = get_task(name)
        assert spec.family == "navigation" and spec.obs_dim == OBS_DIM[name]
        assert (spec.act_dim, spec.action_low, spec.action_high) == (2, (-1.0, -1.0), (1.0, 1.0))
        assert (spec.max_episode_steps, spec.epoch_steps) == (400, 400)
        assert (spec.cost_kind, spec.eval_cost, spec.cost_mask) == ("navigation", "sum", "none")
        assert spec.episode_cost_limit == 10.0 and spec.cost_gamma == 0.99
        assert abs(spec.cost_budget - 2.4551) < 1e-4
        assert spec.cost_budget == pytest.approx(H_PAPER, rel=1e-12)
        assert spec.paper_total_steps == 5000 + 250 * 400 == 105000
        # The paper setting is the default here; a limit override converts over 400 steps.
        assert get_task(name, paper_setting=True) == spec
        assert get_task(name, cost_limit=20.0).cost_budget == pytest.approx(2 * H_PAPER)


def test_paper_total_steps_elsewhere() -> None:
    for name in ["HalfCheetahVelocity", "HopperVelocity", "AntVelocity", "HumanoidVelocity"]:
        assert get_task(name).paper_total_steps == 5000 + 200 * 1000 == 205000
    assert get_task("Walker2dVelocity", cost_limit=1.0).paper_total_steps is None
    assert get_task("SafetyPointButton1-v0").paper_total_steps is None


@pytest.mark.parametrize("family", ["Button1", "Button2", "Push1"])
def test_replayed_fork_draws_give_the_spec_layout(family: str) -> None:
    draws = replay_fork_reset(family)
    ref, lay = REFERENCE[family], FORK_LAYOUTS[family]
    # The replay reproduces the derived numbers of the spec, and the module's constants are
    # the replay's values at full precision.
    np.testing.assert_allclose(draws.positions["robot"], ref["robot"][:2], atol=5e-7)
    assert draws.yaws["robot"] == pytest.approx(ref["robot"][2], abs=5e-7)
    if not lay.robot_fixed:
        np.testing.assert_array_equal(draws.positions["robot"], lay.robot_xy)
    assert draws.yaws["robot"] == lay.robot_yaw
    for i, yaw in enumerate(ref["gremlin_yaws"]):
        assert draws.yaws[f"gremlin{i}"] == pytest.approx(yaw, abs=5e-7)
        assert draws.yaws[f"gremlin{i}"] == lay.gremlin_yaws[i]
    if "box" in ref:
        assert draws.yaws["box"] == pytest.approx(ref["box"][2], abs=5e-7) == lay.box_yaw
        np.testing.assert_allclose(draws.first_goal_xy, ref["first_goal"], atol=5e-7)
        np.testing.assert_array_equal(draws.first_goal_xy, lay.first_goal_xy)
    else:
        assert draws.first_goal_button == ref["first_goal_button"] == lay.first_goal_button
    if family == "Button1":  # button yaws are printed too (irrelevant for spheres)
        expected = [1.513172, 0.630165, 0.103230, 5.840405]
        np.testing.assert_allclose(
            [draws.yaws[f"button{i}"] for i in range(4)], expected, atol=5e-7
        )


# --------------------------------------------------------------------------------------
# The environments (Safety-Gymnasium).
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def env_of() -> Iterator[Callable[[str], gymnasium.Env]]:
    """One env per task for the whole module (building one compiles MuJoCo for ~2 s)."""
    try:
        import_safety_gymnasium("tests/test_paper_nav.py")
    except MissingDependencyError as err:
        pytest.skip(str(err))
    envs: dict[str, gymnasium.Env] = {}

    def get(name: str) -> gymnasium.Env:
        if name not in envs:
            envs[name] = make_env(name)
        return envs[name]

    yield get
    for env in envs.values():
        env.close()


def _yaw(mat: np.ndarray) -> float:
    return math.atan2(mat[1, 0], mat[0, 0]) % (2 * math.pi)


def _layout(env: gymnasium.Env) -> dict[str, np.ndarray]:
    """Everything a reset fixes, read from the simulator."""
    task = env.unwrapped.task
    data = task.data
    out = {
        "robot": np.r_[task.agent.pos[:2], _yaw(task.agent.mat)],
        "goal": task.goal.pos[:2].copy(),
    }
    for kind in ["buttons", "hazards", "gremlins", "pillars"]:
        obj = getattr(task, kind, None)
        out[kind] = np.array([p[:2] for p in obj.pos]) if obj is not None else np.zeros((0, 2))
    if hasattr(task, "gremlins"):
        out["gremlin_yaws"] = np.array(
            [_yaw(data.body(f"gremlin{i}obj").xmat.reshape(3, 3)) for i in range(4)]
        )
    if hasattr(task, "buttons"):
        out["goal_button"] = np.array([task.buttons.goal_button])
    if hasattr(task, "push_box"):
        out["box"] = np.r_[task.push_box.pos[:2], _yaw(data.body("push_box").xmat.reshape(3, 3))]
    return out


@pytest.mark.parametrize("name", TASKS)
def test_builds_steps_and_truncates_at_400(
    name: str, env_of: Callable[[str], gymnasium.Env]
) -> None:
    env = env_of(name)
    spec = get_task(name)
    assert env.observation_space.shape == (OBS_DIM[name],) == (spec.obs_dim,)
    assert env.action_space.shape == (2,)
    obs, _ = env.reset()
    assert obs.shape == (OBS_DIM[name],) and obs.dtype == np.float64
    task = env.unwrapped.task
    robot = "Car" if name.startswith("Car") else "Point"
    assert task.model.opt.timestep == TIMESTEP[robot]
    rng = np.random.default_rng(0)
    for t in range(1, 401):
        obs, reward, terminated, truncated, info = env.step(rng.uniform(-1, 1, 2))
        assert obs.shape == (OBS_DIM[name],) and np.all(np.isfinite(obs))
        assert math.isfinite(reward) and info["cost"] in (0.0, 1.0)
        assert info["bootstrap_end"] == bool(info.get("goal_met", False))
        assert not terminated
        assert truncated == (t == 400)
    # 400 steps x 10 substeps x dt: 24 s (Point) or 40 s (Car) of simulated time.
    assert task.data.time == pytest.approx(400 * 10 * TIMESTEP[robot])


@pytest.mark.parametrize("name", TASKS)
def test_same_layout_every_reset_and_seed(
    name: str, env_of: Callable[[str], gymnasium.Env]
) -> None:
    env = env_of(name)
    ref = REFERENCE[FAMILY[name]]
    env.reset()
    first = _layout(env)
    for _ in range(20):  # move things before the next reset
        env.step(np.array([1.0, 0.5]))
    for seed in [1, 12345]:
        env.reset(seed=seed)
        again = _layout(env)
        assert again.keys() == first.keys()
        for key in first:
            np.testing.assert_array_equal(again[key], first[key], err_msg=key)

    task = env.unwrapped.task
    np.testing.assert_allclose(first["robot"], ref["robot"], atol=1e-6)
    np.testing.assert_allclose(first["buttons"], np.reshape(ref["buttons"], (-1, 2)), atol=1e-6)
    np.testing.assert_allclose(first["hazards"], ref["hazards"], atol=1e-6)
    np.testing.assert_allclose(first["gremlins"], np.reshape(ref["gremlins"], (-1, 2)), atol=1e-6)
    np.testing.assert_allclose(first["pillars"], np.reshape(ref["pillars"], (-1, 2)), atol=1e-6)
    # Sizes (NAV_TASKS §3): hazard discs, 0.1 m buttons, 0.1 m gremlins on a 0.3 m circle,
    # 0.2 m x 0.5 m pillars, 0.2 m push box.
    assert task.model.geom("hazard0").size[0] == ref["hazard_size"]
    if ref["buttons"]:
        assert task.model.geom("button0").size[0] == 0.1
        assert first["goal_button"][0] == ref["first_goal_button"]
        np.testing.assert_allclose(first["goal"], ref["buttons"][ref["first_goal_button"]])
    if ref["gremlins"]:
        np.testing.assert_allclose(first["gremlin_yaws"], ref["gremlin_yaws"], atol=1e-6)
        assert (task.gremlins.size, task.gremlins.travel) == (0.1, 0.3)
    else:
        assert not hasattr(task, "gremlins")
    if ref["pillars"]:
        np.testing.assert_array_equal(task.model.geom("pillar0").size[:2], [0.2, 0.5])
        assert task.pillars.is_constrained
    if "box" in ref:
        np.testing.assert_allclose(first["box"], ref["box"], atol=1e-6)
        assert task.push_box.size == 0.2
        np.testing.assert_allclose(first["goal"], ref["first_goal"], atol=1e-6)


def test_fresh_env_with_another_seed_replays_the_same_episode(
    env_of: Callable[[str], gymnasium.Env],
) -> None:
    # A second env (fresh MuJoCo compile, other seed) against the shared one, whose model has
    # been reused across resets: same observations, rewards and costs, bit for bit.
    actions = np.random.default_rng(1).uniform(-1, 1, (60, 2))

    def rollout(env: gymnasium.Env) -> np.ndarray:
        obs, _ = env.reset()
        out = [obs]
        for a in actions:
            obs, reward, _, _, info = env.step(a)
            out.append(np.r_[obs, reward, info["cost"]])
        return np.concatenate(out)

    shared = env_of("CarButton1")
    shared.reset()
    fresh = make_env("CarButton1", seed=999)
    np.testing.assert_array_equal(rollout(fresh), rollout(shared))
    fresh.close()


def _drive_point_into_goal_button(env: gymnasium.Env) -> None:
    """Put the Point robot 0.245 m in front of the goal button, facing it (arrow touching)."""
    import mujoco

    task = env.unwrapped.task
    lay = task.fork_layout
    heading = np.array([math.cos(lay.robot_yaw), math.sin(lay.robot_yaw)])
    target = np.asarray(task.buttons.pos[task.buttons.goal_button][:2]) - 0.245 * heading
    # The x/y slide joints move along the body frame, which is rotated by the start yaw.
    d = target - np.asarray(lay.robot_xy)
    task.data.qpos[0:2] = [heading @ d, heading[0] * d[1] - heading[1] * d[0]]
    mujoco.mj_forward(task.model, task.data)


@pytest.mark.parametrize("name", ["PointButton1", "PointButton2"])
def test_button_press_ends_bootstrap_but_not_episode(
    name: str, env_of: Callable[[str], gymnasium.Env]
) -> None:
    env = env_of(name)
    env.reset()
    task = env.unwrapped.task
    fork_rng = np.random.RandomState()
    fork_rng.set_state(replay_fork_reset(FAMILY[name]).rng_state)
    assert task.buttons.goal_button == fork_rng.choice(4)
    _drive_point_into_goal_button(env)
    obs, _, terminated, truncated, info = env.step(np.array([1.0, 0.0]))
    assert info["bootstrap_end"] is True and info["goal_met"] is True
    assert not terminated and not truncated
    # The new goal is the fork stream's next draw (one binomial per step, one choice per goal).
    fork_rng.binomial(10, 1.0)
    assert task.buttons.goal_button == fork_rng.choice(4)
    # The button timer runs: the fork's buttons_lidar reads zeros for the next steps.
    start, stop = dict((k, (a, b)) for k, a, b in FORK_SLICES[name])["buttons_lidar"]
    np.testing.assert_array_equal(obs[start:stop], 0.0)
    # The episode goes on.
    for _ in range(3):
        obs, _, terminated, truncated, info = env.step(np.zeros(2))
        assert not terminated and not truncated and not info["bootstrap_end"]


def test_push_goal_ends_bootstrap_but_not_episode(env_of: Callable[[str], gymnasium.Env]) -> None:
    import mujoco

    env = env_of("PointPush1")
    env.reset()
    task = env.unwrapped.task
    goal = task.goal.pos[:2].copy()
    np.testing.assert_allclose(goal, REFERENCE["Push1"]["first_goal"], atol=1e-6)
    # Put the box onto the goal through its free joint.
    joint = task.model.body("push_box").jntadr[0]
    adr = task.model.jnt_qposadr[joint]
    task.data.qpos[adr : adr + 2] = goal
    mujoco.mj_forward(task.model, task.data)
    _, _, terminated, truncated, info = env.step(np.zeros(2))
    assert info["bootstrap_end"] is True and info["goal_met"] is True
    assert not terminated and not truncated
    new_goal = task.goal.pos[:2]
    assert not np.allclose(new_goal, goal)
    # Drawn from the fork's region (-2, -0.5)-(2, 2) shrunk by the 0.4 m keepout.
    assert -1.6 <= new_goal[0] <= 1.6 and -0.1 <= new_goal[1] <= 1.6
    for _ in range(3):
        _, _, terminated, truncated, info = env.step(np.zeros(2))
        assert not terminated and not truncated and not info["bootstrap_end"]


@pytest.mark.parametrize("name", TASKS)
def test_observation_in_fork_order(name: str, env_of: Callable[[str], gymnasium.Env]) -> None:
    env = env_of(name)
    obs, _ = env.reset()
    task = env.unwrapped.task
    slices = FORK_SLICES[name]
    assert slices[-1][2] == OBS_DIM[name] == obs.shape[0]
    assert all(a[2] == b[1] for a, b in zip(slices, slices[1:], strict=False))
    assert list(task.fork_observation()) == [key for key, _, _ in slices]
    # Each slice holds the component the fork puts there, computed here from the simulator.
    sensors = task.agent.obs_sensor()
    for key, start, stop in slices:
        if key.endswith("_lidar"):
            obj = getattr(task, LIDAR_OBJECT[key])
            expected = task._obs_lidar(obj.pos, obj.group)
        else:
            expected = sensors[key]
        # A repeated mj_forward can move the Car's accelerometer by ~1e-16 (solver warm start).
        np.testing.assert_allclose(obs[start:stop], np.ravel(expected), rtol=0, atol=1e-12)
