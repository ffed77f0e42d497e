"""The built-in tasks: the paper's speed-cost velocity tasks and Safety-Gymnasium's tasks.

Importing this module registers them (``algd_jax.envs`` does so on import). Nothing here
imports ``safety_gymnasium`` at module level: that happens in the constructor, through
:func:`algd_jax.envs.safety_gym_compat.import_safety_gymnasium`, so the package stays
optional and the Python 3.11 remedy is applied first.
"""

from __future__ import annotations

import functools
import importlib.util
import math
from typing import Any

import gymnasium
from gymnasium.envs.registration import load_env_creator

from algd_jax.envs.errors import MissingDependencyError
from algd_jax.envs.registry import register_task
from algd_jax.envs.safety_gym_compat import import_safety_gymnasium
from algd_jax.envs.spec import TaskSpec, episodic_limit_to_budget
from algd_jax.envs.wrappers import ObservationPrefix, SafetyToGymnasium, SpeedCost

GAMMA_C = 0.99
#: Safety-Gymnasium's own convention: at most 25 cost per 1000-step episode.
SAFETY_GYM_LIMIT, SAFETY_GYM_HORIZON = 25.0, 1000
#: The reference's navigation setting (the paper): at most 10 cost per 400-step episode.
PAPER_NAV_LIMIT, PAPER_NAV_HORIZON = 10.0, 400
#: One run of the paper's protocol on its speed-cost MuJoCo tasks, in env steps: 5000
#: exploration steps, then 200 epochs of 1000 steps.
PAPER_SPEED_TOTAL_STEPS = 5000 + 200 * 1000


def _bare_env(env_id: str, render_mode: str | None) -> gymnasium.Env:
    """Instantiate a registered gymnasium env without ``gymnasium.make``'s wrappers.

    ``make`` would add its own TimeLimit (and Safety-Gymnasium's make a 6-tuple one); the
    time limit is applied once, by ``make_env``, from ``spec.max_episode_steps``.
    """
    env_spec = gymnasium.spec(env_id)
    kwargs: dict[str, Any] = dict(env_spec.kwargs)
    if render_mode is not None:
        kwargs["render_mode"] = render_mode
    return load_env_creator(env_spec.entry_point)(**kwargs)


def _require(package: str, pip_name: str, task: str) -> None:
    if importlib.util.find_spec(package) is None:
        raise MissingDependencyError(pip_name, task)


# ----------------------------------------------------------------------------------------
# The paper's velocity tasks (CAL convention): continuous speed cost on gymnasium *-v4.
# ----------------------------------------------------------------------------------------


def _make_speed_task(
    spec: TaskSpec, render_mode: str | None = None, *, planar: bool, obs_prefix: int | None
) -> gymnasium.Env:
    _require("mujoco", "mujoco", f"task {spec.name!r}")
    env: gymnasium.Env = SpeedCost(_bare_env(spec.env_id, render_mode), planar=planar)
    if obs_prefix is not None:
        env = ObservationPrefix(env, obs_prefix)
    return env


# name, gymnasium id, obs_dim after any cut, act_dim, action bound, planar speed, budget h
# (NaN: no paper budget, an explicit --cost-limit is required).
_SPEED_TASKS: list[tuple[str, str, int, int, float, bool, float]] = [
    ("HalfCheetahVelocity", "HalfCheetah-v4", 17, 6, 1.0, False, 151.989),
    ("HopperVelocity", "Hopper-v4", 11, 3, 1.0, False, 82.748),
    ("AntVelocity", "Ant-v4", 27, 8, 1.0, True, 103.115),
    ("HumanoidVelocity", "Humanoid-v4", 45, 17, 0.4, True, 20.140),
    ("Walker2dVelocity", "Walker2d-v4", 17, 6, 1.0, False, math.nan),
    # Swimmer reports a y velocity too, but the cost stays |x_velocity| like the 2-D robots
    # (and like Safety-Gymnasium's Swimmer indicator, which uses the signed x velocity).
    ("SwimmerVelocity", "Swimmer-v4", 8, 2, 1.0, False, math.nan),
]
# Observation cuts of the paper (SPEC §6): Ant keeps its first 27 entries (Ant-v4's default
# observation already has 27, the cut only guards against use_contact_forces=True), Humanoid
# its first 45 (qpos[2:] and qvel, dropping the 331 inertia/force entries).
_OBS_PREFIX = {"AntVelocity": 27, "HumanoidVelocity": 45}

for _name, _env_id, _obs, _act, _bound, _planar, _h in _SPEED_TASKS:
    _speed = "planar speed sqrt(vx^2+vy^2)" if _planar else "|x velocity|"
    _budget = f"h={_h}" if not math.isnan(_h) else "no paper budget, needs --cost-limit"
    register_task(
        TaskSpec(
            name=_name,
            family="velocity",
            obs_dim=_obs,
            act_dim=_act,
            action_low=(-_bound,) * _act,
            action_high=(_bound,) * _act,
            max_episode_steps=1000,
            cost_kind="speed",
            cost_budget=_h,
            episode_cost_limit=None,
            eval_cost="discounted",
            epoch_steps=1000,
            cost_mask="same",
            cost_gamma=GAMMA_C,
            requires="mujoco",
            description=f"paper velocity task on {_env_id}: cost = {_speed} (m/s), {_budget}",
            env_id=_env_id,
            # Only the four tasks with a paper budget are run in the paper.
            paper_total_steps=None if math.isnan(_h) else PAPER_SPEED_TOTAL_STEPS,
        ),
        functools.partial(_make_speed_task, planar=_planar, obs_prefix=_OBS_PREFIX.get(_name)),
    )


# ----------------------------------------------------------------------------------------
# Safety-Gymnasium tasks: indicator-cost velocity tasks and navigation tasks.
# ----------------------------------------------------------------------------------------


def _make_safety_gym_task(spec: TaskSpec, render_mode: str | None = None) -> gymnasium.Env:
    # Lazy import (with the 3.11 remedy): also registers the Safety* ids in gymnasium's
    # registry, which _bare_env reads.
    import_safety_gymnasium(f"task {spec.name!r}")
    return SafetyToGymnasium(_bare_env(spec.env_id, render_mode))


# name, obs_dim, act_dim, v_max (m/s; signed x velocity, or planar speed for Ant/Humanoid)
_SAFETY_VELOCITY: list[tuple[str, int, int, float, float]] = [
    ("SafetyHalfCheetahVelocity-v1", 17, 6, 1.0, 3.2096),
    ("SafetyHopperVelocity-v1", 11, 3, 1.0, 0.7402),
    ("SafetyAntVelocity-v1", 27, 8, 1.0, 2.6222),
    ("SafetyHumanoidVelocity-v1", 376, 17, 0.4, 1.4149),
    ("SafetyWalker2dVelocity-v1", 17, 6, 1.0, 2.3415),
    ("SafetySwimmerVelocity-v1", 8, 2, 1.0, 0.2282),
]

for _name, _obs, _act, _bound, _vmax in _SAFETY_VELOCITY:
    _v = "planar speed" if ("Ant" in _name or "Humanoid" in _name) else "x velocity"
    register_task(
        TaskSpec(
            name=_name,
            family="velocity",
            obs_dim=_obs,
            act_dim=_act,
            action_low=(-_bound,) * _act,
            action_high=(_bound,) * _act,
            max_episode_steps=SAFETY_GYM_HORIZON,
            cost_kind="indicator",
            cost_budget=episodic_limit_to_budget(SAFETY_GYM_LIMIT, SAFETY_GYM_HORIZON, GAMMA_C),
            episode_cost_limit=SAFETY_GYM_LIMIT,
            eval_cost="sum",
            epoch_steps=1000,
            cost_mask="same",
            cost_gamma=GAMMA_C,
            requires="safety-gymnasium",
            description=(
                f"Safety-Gymnasium velocity task: cost = [{_v} > {_vmax}], "
                f"limit {SAFETY_GYM_LIMIT:g} per {SAFETY_GYM_HORIZON}-step episode"
            ),
            env_id=_name,
            velocity_threshold=_vmax,
        ),
        _make_safety_gym_task,
    )

# name, obs_dim (lidar observations, flattened), act_dim
_NAVIGATION: list[tuple[str, int]] = [
    ("SafetyPointButton1-v0", 76),
    ("SafetyPointButton2-v0", 76),
    ("SafetyCarButton1-v0", 88),
    ("SafetyCarButton2-v0", 88),
    ("SafetyPointPush1-v0", 76),
    ("SafetyPointGoal1-v0", 60),
]


def _navigation_spec(name: str, obs_dim: int, limit: float, horizon: int) -> TaskSpec:
    return TaskSpec(
        name=name,
        family="navigation",
        obs_dim=obs_dim,
        act_dim=2,
        action_low=(-1.0, -1.0),
        action_high=(1.0, 1.0),
        max_episode_steps=horizon,
        cost_kind="navigation",
        cost_budget=episodic_limit_to_budget(limit, horizon, GAMMA_C),
        episode_cost_limit=limit,
        eval_cost="sum",
        epoch_steps=horizon,
        # The reference never masks the navigation cost target (mask_c = 1), SPEC §5.
        cost_mask="none",
        cost_gamma=GAMMA_C,
        requires="safety-gymnasium",
        description=(
            f"Safety-Gymnasium navigation task: cost = cost_sum (0/1 per step), "
            f"limit {limit:g} per {horizon}-step episode"
            + (" (paper setting)" if horizon == PAPER_NAV_HORIZON else "")
        ),
        env_id=name,
    )


for _name, _obs in _NAVIGATION:
    register_task(
        _navigation_spec(_name, _obs, SAFETY_GYM_LIMIT, SAFETY_GYM_HORIZON),
        _make_safety_gym_task,
        # paper_setting=True: the reference's 10 per 400-step episode, 400-step epochs. The
        # underlying env keeps its own 1000-step counter; our 400-step TimeLimit ends first.
        paper_spec=_navigation_spec(_name, _obs, PAPER_NAV_LIMIT, PAPER_NAV_HORIZON),
    )
