"""Small gymnasium wrappers that give every task the same step API and cost channel.

After ``make_env`` every task steps as ``(obs, reward, terminated, truncated, info)`` with
``info["cost"]`` a Python float >= 0 (cost units of the task, per step).
"""

from __future__ import annotations

import math
from typing import Any, SupportsFloat

import gymnasium
import numpy as np

from algd_jax.envs.spec import TaskSpec


class SpeedCost(gymnasium.Wrapper):
    """Per-step cost = the robot's speed (m/s), the paper's CAL-style velocity cost.

    Reads the velocities the gymnasium ``*-v4`` MuJoCo envs put in ``info``:
    ``|x_velocity|``, or ``sqrt(x_velocity**2 + y_velocity**2)`` when ``planar``.
    """

    def __init__(self, env: gymnasium.Env, planar: bool) -> None:
        super().__init__(env)
        self.planar = planar

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        vx = float(info["x_velocity"])
        speed = math.hypot(vx, float(info["y_velocity"])) if self.planar else abs(vx)
        info["cost"] = speed
        return obs, reward, terminated, truncated, info


class SafetyToGymnasium(gymnasium.Wrapper):
    """Adapt Safety-Gymnasium's 6-tuple step to gymnasium's 5-tuple with ``info["cost"]``.

    ``(obs, reward, cost, terminated, truncated, info)`` becomes
    ``(obs, reward, terminated, truncated, info | {"cost": float(cost)})``; ``terminated`` and
    ``truncated`` are passed through unchanged.
    """

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, cost, terminated, truncated, info = self.env.step(action)
        info = dict(info)
        info["cost"] = float(cost)
        return obs, reward, bool(terminated), bool(truncated), info


class ObservationPrefix(gymnasium.ObservationWrapper):
    """Keep only the first ``size`` entries of a flat observation (Ant: 27, Humanoid: 45)."""

    def __init__(self, env: gymnasium.Env, size: int) -> None:
        super().__init__(env)
        space = env.observation_space
        assert isinstance(space, gymnasium.spaces.Box) and len(space.shape) == 1
        if space.shape[0] < size:
            raise ValueError(f"observation has {space.shape[0]} entries, cannot keep {size}")
        self.size = size
        self.observation_space = gymnasium.spaces.Box(
            low=space.low[:size], high=space.high[:size], dtype=space.dtype
        )

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return observation[: self.size]


class TaskEnv(gymnasium.Wrapper):
    """Outermost wrapper of ``make_env``: carries the ``TaskSpec`` and the construction seed.

    * ``task_spec``: the resolved :class:`~algd_jax.envs.spec.TaskSpec`.
    * A ``seed`` given to ``make_env`` seeds ``action_space`` and ``observation_space`` at once
      and is used by the first ``reset()`` that is called without its own seed, so
      ``make_env(name, seed=s)`` followed by ``reset()`` is reproducible.
    * ``info["cost"]`` is checked to be present and returned as a float.
    """

    def __init__(self, env: gymnasium.Env, task_spec: TaskSpec, seed: int | None = None) -> None:
        super().__init__(env)
        self.task_spec = task_spec
        self._pending_seed = seed
        if seed is not None:
            self.action_space.seed(seed)
            self.observation_space.seed(seed)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        if seed is None:
            seed = self._pending_seed
        self._pending_seed = None
        return self.env.reset(seed=seed, options=options)

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        if "cost" not in info:
            raise KeyError(
                f"task {self.task_spec.name!r}: the environment did not set info['cost']"
            )
        info["cost"] = float(info["cost"])
        return obs, float(reward), bool(terminated), bool(truncated), info
