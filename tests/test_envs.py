"""Tests of the task suite (algd_jax.envs): registry, costs, budgets, the 3.11 remedy."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from collections.abc import Callable

import gymnasium
import numpy as np
import pytest

from algd_jax.envs import (
    MissingDependencyError,
    TaskSpec,
    UnknownTaskError,
    episodic_limit_to_budget,
    get_task,
    list_tasks,
    make_env,
    register_task,
    safety_gym_compat,
)
from algd_jax.envs import registry as registry_module

# A budget for the tasks that have no default one (Walker2dVelocity, SwimmerVelocity).
ANY_LIMIT = 50.0
PAPER_BUDGETS = {
    "HalfCheetahVelocity": 151.989,
    "HopperVelocity": 82.748,
    "AntVelocity": 103.115,
    "HumanoidVelocity": 20.140,
}
# SPEC §6, indicator thresholds v_max (m/s).
V_MAX = {
    "SafetyHalfCheetahVelocity-v1": 3.2096,
    "SafetyHopperVelocity-v1": 0.7402,
    "SafetyWalker2dVelocity-v1": 2.3415,
    "SafetyAntVelocity-v1": 2.6222,
    "SafetyHumanoidVelocity-v1": 1.4149,
    "SafetySwimmerVelocity-v1": 0.2282,
}
NAVIGATION = [
    "SafetyPointButton1-v0",
    "SafetyPointButton2-v0",
    "SafetyCarButton1-v0",
    "SafetyCarButton2-v0",
    "SafetyPointPush1-v0",
    "SafetyPointGoal1-v0",
]
# Hand-computed with 40-digit decimals: 25 (1 - 0.99**1000) / (0.01 * 1000) and
# 10 (1 - 0.99**400) / (0.01 * 400).
H_25_PER_1000 = 2.4998920718814733
H_10_PER_400 = 2.4551236168123870


def _limit_for(name: str) -> float | None:
    """The cost limit a test must pass to build ``name`` (None where there is a default)."""
    return ANY_LIMIT if _no_default(name) else None


def _no_default(name: str) -> bool:
    try:
        get_task(name)
    except ValueError:
        return True
    return False


# --------------------------------------------------------------------------------------
# Every task builds, steps, reports a cost, and resets reproducibly.
# --------------------------------------------------------------------------------------


def test_registry_holds_the_issue_tasks() -> None:
    expected = (
        list(PAPER_BUDGETS) + ["Walker2dVelocity", "SwimmerVelocity"] + list(V_MAX) + NAVIGATION
    )
    assert set(expected) <= set(list_tasks())
    # The paper's own navigation tasks (PointButton1, ...) are tested in test_paper_nav.py.
    assert {n for n in list_tasks("navigation") if n.startswith("Safety")} == set(NAVIGATION)


@pytest.mark.parametrize("name", list_tasks())
def test_task_builds_steps_and_resets_reproducibly(name: str) -> None:
    spec = get_task(name, _limit_for(name))
    env = make_env(name, _limit_for(name))
    assert env.task_spec == spec
    assert env.observation_space.shape == (spec.obs_dim,)
    assert isinstance(env.action_space, gymnasium.spaces.Box)
    assert env.action_space.shape == (spec.act_dim,)
    # The env stores float32 bounds (Humanoid's 0.4 is 0.4000000059...), the spec exact ones.
    np.testing.assert_allclose(env.action_space.low, spec.action_low, rtol=1e-6)
    np.testing.assert_allclose(env.action_space.high, spec.action_high, rtol=1e-6)
    assert math.isfinite(spec.cost_budget) and spec.cost_budget >= 0

    first_obs, _ = env.reset(seed=7)
    assert first_obs.shape == (spec.obs_dim,)
    env.action_space.seed(7)
    for _ in range(50):
        out = env.step(env.action_space.sample())
        assert len(out) == 5
        obs, reward, terminated, truncated, info = out
        assert obs.shape == (spec.obs_dim,)
        assert np.all(np.isfinite(obs)) and math.isfinite(reward)
        assert isinstance(terminated, bool) and isinstance(truncated, bool)
        assert isinstance(info["cost"], float)
        assert math.isfinite(info["cost"]) and info["cost"] >= 0.0
        if terminated or truncated:
            env.reset()

    again, _ = env.reset(seed=7)
    # Bitwise equal except for the Car's accelerometer, which differs by ~1e-16 after a
    # previous episode (MuJoCo solver warm-start state survives the reset).
    np.testing.assert_allclose(again, first_obs, rtol=0, atol=1e-9)
    env.close()


def test_make_env_seed_seeds_first_reset_and_action_space() -> None:
    a = make_env("HalfCheetahVelocity", seed=3)
    b = make_env("HalfCheetahVelocity")
    obs_a, _ = a.reset()
    obs_b, _ = b.reset(seed=3)
    np.testing.assert_array_equal(obs_a, obs_b)
    b.action_space.seed(3)
    np.testing.assert_array_equal(a.action_space.sample(), b.action_space.sample())
    # Only the first reset uses the construction seed.
    obs_a2, _ = a.reset()
    assert not np.array_equal(obs_a2, obs_a)


# --------------------------------------------------------------------------------------
# terminated vs truncated, and the time limit.
# --------------------------------------------------------------------------------------


def test_time_limit_truncates_without_terminating() -> None:
    env = make_env("HalfCheetahVelocity", seed=0)
    env.reset()
    zero = np.zeros(6)
    for t in range(1, 1001):
        _, _, terminated, truncated, _ = env.step(zero)
        assert not terminated
        assert truncated == (t == 1000)


def test_unhealthy_hopper_terminates_without_truncation() -> None:
    env = make_env("HopperVelocity", seed=0)
    env.reset()
    env.action_space.seed(0)
    for _ in range(1000):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            break
    assert terminated and not truncated


def test_navigation_paper_setting_truncates_at_400_steps() -> None:
    spec = get_task("SafetyPointGoal1-v0", paper_setting=True)
    assert (spec.max_episode_steps, spec.epoch_steps, spec.episode_cost_limit) == (400, 400, 10)
    env = make_env("SafetyPointGoal1-v0", seed=0, paper_setting=True)
    env.reset()
    zero = np.zeros(2)
    for t in range(1, 401):
        _, _, terminated, truncated, _ = env.step(zero)
        if terminated:  # reaching the goal may end it early; that is not the time limit
            break
        assert truncated == (t == 400)


# --------------------------------------------------------------------------------------
# The paper's speed cost against MuJoCo data.
# --------------------------------------------------------------------------------------


def _root_x(env: gymnasium.Env) -> np.ndarray:
    return env.unwrapped.data.qpos[:1].copy()


def _torso_xy(env: gymnasium.Env) -> np.ndarray:
    # Ant-v4 measures the torso's body position (``xpos``), which MuJoCo updates at the start
    # of each ``mj_step``, so it lags ``qpos`` by one integration substep: read the same thing.
    return env.unwrapped.data.body("torso").xpos[:2].copy()


def _mass_center_xy(env: gymnasium.Env) -> np.ndarray:
    # Humanoid-v4 measures its velocity at the centre of mass, not at the root joint.
    model, data = env.unwrapped.model, env.unwrapped.data
    mass = model.body_mass[:, None]
    return (np.sum(mass * data.xipos, axis=0) / mass.sum())[:2].copy()


@pytest.mark.parametrize(
    ("name", "position"),
    [
        ("HalfCheetahVelocity", _root_x),
        ("HopperVelocity", _root_x),
        ("Walker2dVelocity", _root_x),
        ("SwimmerVelocity", _root_x),
        ("AntVelocity", _torso_xy),
        ("HumanoidVelocity", _mass_center_xy),
    ],
)
def test_speed_cost_equals_speed_from_mujoco_data(
    name: str, position: Callable[[gymnasium.Env], np.ndarray]
) -> None:
    env = make_env(name, _limit_for(name), seed=1)
    env.reset()
    env.action_space.seed(1)
    dt = env.unwrapped.dt
    for _ in range(30):
        before = position(env)
        _, _, terminated, truncated, info = env.step(env.action_space.sample())
        speed = float(np.linalg.norm((position(env) - before) / dt))
        np.testing.assert_allclose(info["cost"], speed, rtol=1e-9, atol=1e-12)
        if terminated or truncated:
            env.reset()


def test_observation_cuts() -> None:
    ant = make_env("AntVelocity", seed=0)
    obs, _ = ant.reset()
    data = ant.unwrapped.data
    # Ant-v4's 27 entries: qpos without the root x, y (13), then qvel (14).
    np.testing.assert_array_equal(obs, np.concatenate([data.qpos[2:], data.qvel])[:27])

    humanoid = make_env("HumanoidVelocity", seed=0)
    obs, _ = humanoid.reset()
    humanoid.action_space.seed(0)
    obs, *_ = humanoid.step(humanoid.action_space.sample())
    data = humanoid.unwrapped.data
    # Humanoid keeps qpos[2:] (22) and qvel (23): 45 entries, no inertia/force terms.
    np.testing.assert_array_equal(obs, np.concatenate([data.qpos[2:], data.qvel]))


# --------------------------------------------------------------------------------------
# The indicator cost flips at v_max.
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "planar"),
    [("SafetyHalfCheetahVelocity-v1", False), ("SafetyAntVelocity-v1", True)],
)
def test_indicator_cost_flips_at_threshold(name: str, planar: bool) -> None:
    v_max = V_MAX[name]
    assert get_task(name).velocity_threshold == v_max
    env = make_env(name, seed=0)
    base = env.unwrapped
    seen = set()
    # Launch the robot at forward speeds around v_max and compare the returned cost with
    # the velocity measured from the root position over the step.
    for launch in np.linspace(0.5 * v_max, 1.6 * v_max, 23):
        env.reset(seed=0)
        qpos, qvel = base.data.qpos.copy(), base.data.qvel.copy()
        qvel[0] = launch
        base.set_state(qpos, qvel)
        before = base.data.qpos[:2].copy()
        _, _, _, _, info = env.step(np.zeros(env.action_space.shape))
        vel = (base.data.qpos[:2] - before) / base.dt
        v = float(np.hypot(*vel)) if planar else float(vel[0])
        if abs(v - v_max) < 1e-9:
            continue  # too close to call in floating point
        assert info["cost"] == float(v > v_max), (launch, v)
        seen.add(info["cost"])
    assert seen == {0.0, 1.0}, "the sweep must cross the threshold"


# --------------------------------------------------------------------------------------
# Budgets.
# --------------------------------------------------------------------------------------


def test_paper_budgets() -> None:
    for name, h in PAPER_BUDGETS.items():
        spec = get_task(name)
        assert spec.cost_budget == h
        assert spec.episode_cost_limit is None
        assert (spec.cost_kind, spec.eval_cost, spec.cost_mask) == ("speed", "discounted", "same")
        assert (spec.epoch_steps, spec.max_episode_steps, spec.cost_gamma) == (1000, 1000, 0.99)
    assert get_task("AntVelocity").obs_dim == 27
    assert get_task("HumanoidVelocity").obs_dim == 45
    # A cost limit on a speed task is the budget h itself.
    assert get_task("HalfCheetahVelocity", cost_limit=30.0).cost_budget == 30.0
    assert get_task("Walker2dVelocity", cost_limit=12.5).cost_budget == 12.5


def test_episodic_limit_to_budget_hand_values() -> None:
    assert episodic_limit_to_budget(25, 1000, 0.99) == pytest.approx(H_25_PER_1000, rel=1e-12)
    assert episodic_limit_to_budget(10, 400, 0.99) == pytest.approx(H_10_PER_400, rel=1e-12)
    assert episodic_limit_to_budget(10, 400) == pytest.approx(H_10_PER_400, rel=1e-12)
    assert episodic_limit_to_budget(7, 30, 1.0) == 7.0  # no discount: h = C
    assert episodic_limit_to_budget(0, 10) == 0.0
    for bad in [(-1, 10, 0.99), (1, 0, 0.99), (1, 10, 0.0), (1, 10, 1.5), (math.inf, 10, 0.9)]:
        with pytest.raises(ValueError):
            episodic_limit_to_budget(*bad)


def test_safety_gym_budgets() -> None:
    for name in V_MAX:
        spec = get_task(name)
        assert (spec.cost_kind, spec.eval_cost, spec.cost_mask) == ("indicator", "sum", "same")
        assert spec.episode_cost_limit == 25.0
        assert spec.cost_budget == pytest.approx(H_25_PER_1000, rel=1e-12)
    for name in NAVIGATION:
        spec = get_task(name)
        assert (spec.cost_kind, spec.eval_cost, spec.cost_mask) == ("navigation", "sum", "none")
        assert (spec.episode_cost_limit, spec.max_episode_steps, spec.epoch_steps) == (
            25.0,
            1000,
            1000,
        )
        assert spec.cost_budget == pytest.approx(H_25_PER_1000, rel=1e-12)
        paper = get_task(name, paper_setting=True)
        assert (paper.episode_cost_limit, paper.max_episode_steps) == (10.0, 400)
        assert paper.cost_budget == pytest.approx(H_10_PER_400, rel=1e-12)
    # On episodic tasks a cost limit replaces C and is converted over the episode length.
    spec = get_task("SafetyPointButton1-v0", cost_limit=10.0, paper_setting=True)
    assert spec.episode_cost_limit == 10.0
    assert spec.cost_budget == pytest.approx(H_10_PER_400, rel=1e-12)
    spec = get_task("SafetyHopperVelocity-v1", cost_limit=50.0)
    assert spec.cost_budget == pytest.approx(2 * H_25_PER_1000, rel=1e-12)
    # paper_setting is a no-op on tasks without a paper variant.
    assert get_task("HalfCheetahVelocity", paper_setting=True) == get_task("HalfCheetahVelocity")


# --------------------------------------------------------------------------------------
# Error messages.
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typo", "close"),
    [
        ("HalfCheetahVelocty", "HalfCheetahVelocity"),
        ("safetypointgoal1-v0", "SafetyPointGoal1-v0"),
        ("SafetyCarButton1", "SafetyCarButton1-v0"),
    ],
)
def test_unknown_task_message(typo: str, close: str) -> None:
    for build in (get_task, make_env):
        with pytest.raises(UnknownTaskError) as err:
            build(typo)
        message = str(err.value)
        assert isinstance(err.value, ValueError)
        assert "\n" not in message
        assert close in message and "--list-tasks" in message


def test_missing_cost_limit_message_names_the_option() -> None:
    for name in ["Walker2dVelocity", "SwimmerVelocity"]:
        for build in (get_task, make_env):
            with pytest.raises(ValueError, match="--cost-limit"):
                build(name)
    with pytest.raises(ValueError, match="--cost-limit"):
        get_task("HalfCheetahVelocity", cost_limit=-1.0)


def test_missing_safety_gymnasium_names_the_pip_package(monkeypatch: pytest.MonkeyPatch) -> None:
    # Pretend the package is neither imported nor installed.
    monkeypatch.delitem(sys.modules, "safety_gymnasium", raising=False)
    monkeypatch.setattr(safety_gym_compat.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(MissingDependencyError) as err:
        make_env("SafetyPointGoal1-v0")
    message = str(err.value)
    assert "safety-gymnasium" in message and "pip install" in message
    assert "SafetyPointGoal1-v0" in message and "\n" not in message


# --------------------------------------------------------------------------------------
# The Python 3.11 remedy for safety-gymnasium, in fresh interpreters.
# --------------------------------------------------------------------------------------


def _run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.skipif(sys.version_info < (3, 11), reason="the import failure is Python >= 3.11")
def test_plain_import_of_safety_gymnasium_fails_on_311() -> None:
    """Documents why the remedy exists; if this starts passing, the remedy can go."""
    result = _run_python("import safety_gymnasium")
    assert result.returncode != 0
    assert "mutable default" in result.stderr


def test_remedy_imports_lazily_and_builds_navigation() -> None:
    result = _run_python(
        """
        import dataclasses, sys
        original = dataclasses.dataclass
        from algd_jax.envs import make_env
        # Our package must not import safety_gymnasium until a Safety task is built.
        assert "safety_gymnasium" not in sys.modules
        env = make_env("SafetyPointButton1-v0", seed=0)
        obs, _ = env.reset()
        assert obs.shape == (76,)
        assert dataclasses.dataclass is original, "the patch must be undone after the import"
        from safety_gymnasium.assets.geoms import Hazards
        a, b = Hazards(), Hazards()
        assert a.color.shape == (4,) and a.color is not b.color
        print("ok")
        """
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")


# --------------------------------------------------------------------------------------
# register_task, for task families added elsewhere (e.g. the toy problem).
# --------------------------------------------------------------------------------------


class _ToyEnv(gymnasium.Env):
    """1-D point: action moves it, reward = -|x|, cost = |action|."""

    observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (1,), np.float32)
    action_space = gymnasium.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def reset(self, *, seed=None, options=None):  # noqa: ANN001, ANN201
        super().reset(seed=seed)
        self.x = self.np_random.uniform(-1, 1, size=1).astype(np.float32)
        return self.x.copy(), {}

    def step(self, action):  # noqa: ANN001, ANN201
        self.x = self.x + np.asarray(action, np.float32)
        return self.x.copy(), -float(abs(self.x[0])), False, False, {"cost": abs(action[0])}


def test_register_task_toy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry_module, "_REGISTRY", dict(registry_module._REGISTRY))
    spec = TaskSpec(
        name="ToyLine",
        family="toy",
        obs_dim=1,
        act_dim=1,
        action_low=(-1.0,),
        action_high=(1.0,),
        max_episode_steps=5,
        cost_kind="action",
        cost_budget=1.0,
        episode_cost_limit=None,
        eval_cost="discounted",
        epoch_steps=5,
        cost_mask="same",
        description="toy",
    )
    register_task(spec, lambda s: _ToyEnv())
    with pytest.raises(ValueError, match="already registered"):
        register_task(spec, lambda s: _ToyEnv())
    assert "ToyLine" in list_tasks("toy")
    env = make_env("ToyLine", seed=0)
    env.reset()
    truncations = [env.step(np.array([0.5], np.float32))[3] for _ in range(5)]
    assert truncations == [False] * 4 + [True]  # make_env applied the spec's time limit
    assert get_task("ToyLine", cost_limit=2.0).cost_budget == 2.0
