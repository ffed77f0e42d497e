"""``DiffDriveCircle``: a differential-drive robot that must reach a goal past a forbidden disc.

The setting of the paper's Fig. 1 (a differential-drive mobile robot, Contreras et al. 2017,
with a circular region that decides safety), written as pure functions so that it runs both
as a gymnasium env on the host and inside a compiled training loop on the device.

State ``(x, y, heading)`` in m, m, rad. Action ``(v, omega)``: forward speed
``v in [0, max_speed]`` (m/s) and turn rate ``omega in [-max_turn, max_turn]`` (rad/s),
clipped to those bounds. Unicycle kinematics, explicit Euler with step ``dt`` (s)::

    x'       = x + v cos(heading) dt
    y'       = y + v sin(heading) dt
    heading' = wrap(heading + omega dt)          wrap to [-pi, pi)

Episodes start near ``start`` (uniform offsets of at most ``start_jitter`` m in x and y,
heading uniform within ``heading_jitter`` rad of pointing along +x at the goal), with the
forbidden disc (centre ``hazard``, radius ``hazard_radius``) straight in between.

Reward (per step): progress towards the goal, ``progress_scale * (d - d')`` with ``d`` the
distance to the goal before and ``d'`` after the step (so a step at full speed straight at
the goal earns ``progress_scale * max_speed * dt`` = 1), plus ``goal_bonus`` on the step that
reaches the goal (``d' < goal_radius``), which ends the episode (``terminated``).

Cost (per step), the choice of this task: **a forbidden disc**. ``cost = 1`` when the
robot's position after the step lies strictly inside the disc (``|p' - hazard| <
hazard_radius``), else 0; the boundary itself is safe. The straight line to the goal
crosses the disc for 2 m (20 steps at full speed, cost 20), while a detour around it costs
nothing but takes longer, so the unconstrained optimum violates the limit and the
constrained one skirts the disc. The limit is ``C = 5`` cost per 100-step episode (the
critic budget ``h = C (1 - 0.99^T) / ((1 - 0.99) T)`` = 3.17 on the discounted cost).

Observation (8 values): ``x, y`` (m), ``cos(heading), sin(heading)``, and the goal and the
disc centre relative to the robot in its own frame (forward, left; m).

Every function takes an array namespace ``xp`` (``numpy`` or ``jax.numpy``), like the
two-mode bandit, so the gymnasium env and the JAX functions ``reset(key)`` / ``step(state,
action)`` share one definition. The time limit (``max_episode_steps``) is applied by the
loops (``make_env`` wraps the env in ``TimeLimit``; the on-device loop truncates itself).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple, SupportsFloat

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np

from algd_jax.envs.registry import register_task
from algd_jax.envs.spec import TaskSpec, episodic_limit_to_budget

TASK_NAME = "DiffDriveCircle"
OBS_DIM = 8
ACT_DIM = 2


@dataclass(frozen=True)
class DiffDrive:
    """Geometry, limits and reward scales of the task (lengths in m, angles in rad, s)."""

    dt: float = 0.1
    """Integration step (s)."""
    max_speed: float = 1.0
    """Upper bound of the forward speed v (m/s); the lower bound is 0."""
    max_turn: float = 2.0
    """Bound of the turn rate |omega| (rad/s)."""
    start: tuple[float, float] = (-2.0, 0.0)
    """Centre of the start positions."""
    start_jitter: float = 0.2
    """Start positions are uniform within +- this (m) of `start` in x and in y."""
    heading_jitter: float = 0.3
    """Start headings are uniform within +- this (rad) of 0 (pointing along +x)."""
    goal: tuple[float, float] = (2.0, 0.0)
    goal_radius: float = 0.3
    """The goal is reached when the robot is closer than this to `goal`."""
    hazard: tuple[float, float] = (0.0, 0.0)
    """Centre of the forbidden disc."""
    hazard_radius: float = 1.0
    progress_scale: float = 10.0
    """Reward per m of progress towards the goal."""
    goal_bonus: float = 10.0
    """Reward on the step that reaches the goal."""
    max_episode_steps: int = 100
    episode_cost_limit: float = 5.0
    """C: allowed cost per episode (steps inside the disc)."""

    @property
    def action_low(self) -> tuple[float, float]:
        return (0.0, -self.max_turn)

    @property
    def action_high(self) -> tuple[float, float]:
        return (self.max_speed, self.max_turn)

    # -- the shared definition (numpy or jax.numpy) ---------------------------------------

    def start_pose(self, u: Any, xp: Any = np) -> Any:
        """Start pose `[3]` from three uniforms `u [3]` in [0, 1)."""
        sx, sy = self.start
        j, h = self.start_jitter, self.heading_jitter
        return xp.stack([sx + j * (2 * u[0] - 1), sy + j * (2 * u[1] - 1), h * (2 * u[2] - 1)])

    def move(self, pose: Any, action: Any, xp: Any = np) -> Any:
        """Pose `[3]` after one Euler step with action `[2]` = (v, omega), clipped."""
        v = xp.clip(action[0], 0.0, self.max_speed)
        omega = xp.clip(action[1], -self.max_turn, self.max_turn)
        x, y, heading = pose[0], pose[1], pose[2]
        turned = heading + omega * self.dt
        wrapped = (turned + math.pi) % (2 * math.pi) - math.pi
        return xp.stack(
            [x + v * xp.cos(heading) * self.dt, y + v * xp.sin(heading) * self.dt, wrapped]
        )

    def goal_distance(self, pose: Any, xp: Any = np) -> Any:
        return xp.hypot(pose[0] - self.goal[0], pose[1] - self.goal[1])

    def cost(self, pose: Any, xp: Any = np) -> Any:
        """1 strictly inside the forbidden disc, 0 on or outside its boundary."""
        distance = xp.hypot(pose[0] - self.hazard[0], pose[1] - self.hazard[1])
        return xp.where(distance < self.hazard_radius, 1.0, 0.0)

    def observe(self, pose: Any, xp: Any = np) -> Any:
        """The 8 observations of a pose (see the module docstring)."""
        x, y, heading = pose[0], pose[1], pose[2]
        c, s = xp.cos(heading), xp.sin(heading)

        def body(px: float, py: float) -> tuple[Any, Any]:
            dx, dy = px - x, py - y
            return c * dx + s * dy, -s * dx + c * dy

        gx, gy = body(*self.goal)
        hx, hy = body(*self.hazard)
        return xp.stack([x, y, c, s, gx, gy, hx, hy])

    def transition(self, pose: Any, action: Any, xp: Any = np) -> tuple[Any, ...]:
        """`(pose', obs', reward, cost, terminated)` of one step."""
        new = self.move(pose, action, xp)
        before, after = self.goal_distance(pose, xp), self.goal_distance(new, xp)
        reached = after < self.goal_radius
        reward = self.progress_scale * (before - after) + xp.where(reached, self.goal_bonus, 0.0)
        return new, self.observe(new, xp), reward, self.cost(new, xp), reached


DEFAULT_DIFFDRIVE = DiffDrive()


class EnvState(NamedTuple):
    """The JAX env's state: the pose `[3]` (x m, y m, heading rad), float32."""

    pose: jax.Array


class Step(NamedTuple):
    """One JAX env step (every leaf float32 / bool, unbatched)."""

    state: EnvState
    obs: jax.Array  # [8]
    reward: jax.Array  # []
    cost: jax.Array  # [] 0 or 1
    terminated: jax.Array  # [] bool: the goal was reached


def reset(key: jax.Array, task: DiffDrive = DEFAULT_DIFFDRIVE) -> tuple[EnvState, jax.Array]:
    """A new episode: `(state, obs [8])` from the PRNG `key`."""
    pose = task.start_pose(jax.random.uniform(key, (3,)), jnp).astype(jnp.float32)
    return EnvState(pose), task.observe(pose, jnp)


def step(state: EnvState, action: jax.Array, task: DiffDrive = DEFAULT_DIFFDRIVE) -> Step:
    """One step with action `[2]` = (v m/s, omega rad/s), clipped to the box."""
    pose, obs, reward, cost, terminated = task.transition(state.pose, action, jnp)
    f32 = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
    return Step(EnvState(f32(pose)), f32(obs), f32(reward), f32(cost), terminated)


class DiffDriveEnv(gymnasium.Env):
    """The task as a gymnasium env (float64 on the host); `info["cost"]` on every step.

    It does not apply the time limit: `make_env` wraps it in `TimeLimit(100)`.
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, task: DiffDrive = DEFAULT_DIFFDRIVE) -> None:
        self.task = task
        self.observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float32)
        self.action_space = gymnasium.spaces.Box(
            np.asarray(task.action_low, np.float32),
            np.asarray(task.action_high, np.float32),
            dtype=np.float32,
        )
        self.pose = task.start_pose(np.full(3, 0.5))

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.pose = self.task.start_pose(self.np_random.uniform(size=3))
        return self.task.observe(self.pose).astype(np.float32), {}

    def step(self, action: Any) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        a = np.asarray(action, np.float64).reshape(ACT_DIM)
        if not np.all(np.isfinite(a)):
            raise ValueError(f"non-finite action {action!r}")
        self.pose, obs, reward, cost, reached = self.task.transition(self.pose, a)
        return obs.astype(np.float32), float(reward), bool(reached), False, {"cost": float(cost)}


def _make_diffdrive(spec: TaskSpec, render_mode: str | None = None) -> gymnasium.Env:
    return DiffDriveEnv(DEFAULT_DIFFDRIVE)


_t = DEFAULT_DIFFDRIVE
register_task(
    TaskSpec(
        name=TASK_NAME,
        family="toy",
        obs_dim=OBS_DIM,
        act_dim=ACT_DIM,
        action_low=_t.action_low,
        action_high=_t.action_high,
        max_episode_steps=_t.max_episode_steps,
        cost_kind="disc",
        cost_budget=episodic_limit_to_budget(_t.episode_cost_limit, _t.max_episode_steps, 0.99),
        episode_cost_limit=_t.episode_cost_limit,
        eval_cost="sum",
        epoch_steps=1000,
        cost_mask="same",
        description=(
            f"differential-drive robot (v in [0, {_t.max_speed:g}] m/s, |omega| <= "
            f"{_t.max_turn:g} rad/s) reaching a goal {_t.goal[0] - _t.start[0]:g} m away past a "
            f"forbidden disc of radius {_t.hazard_radius:g} m (cost 1 per step inside), "
            f"C={_t.episode_cost_limit:g} per {_t.max_episode_steps}-step episode; pure JAX"
        ),
        env_id="algd_jax.envs.diffdrive:DiffDriveEnv",
    ),
    _make_diffdrive,
)
