"""Task suite: one registry of typed task descriptions and gymnasium environment builders.

Public API::

    from algd_jax.envs import get_task, make_env, list_tasks
    spec = get_task("HalfCheetahVelocity")          # TaskSpec (frozen dataclass)
    env = make_env("HalfCheetahVelocity", seed=0)   # gymnasium.Env, info["cost"] per step
    list_tasks()                                    # every registered name

Built-in tasks (registered on import): the paper's speed-cost velocity tasks on gymnasium's
MuJoCo ``*-v4`` envs and Safety-Gymnasium's indicator-cost velocity and navigation tasks
(``safety-gymnasium`` is imported lazily, when such an env is built), and the paper's five
Safety-Gym navigation tasks as the authors ran them (``PointButton1``, ``PointButton2``,
``CarButton1``, ``CarButton2``, ``PointPush1``; see :mod:`algd_jax.envs.paper_nav`). Other
task families register themselves with :func:`register_task`.
"""

# ``builtin`` registers the built-in tasks when imported (it imports the registry itself).
from algd_jax.envs import builtin as _builtin  # noqa: F401
from algd_jax.envs import diffdrive as _diffdrive  # noqa: F401  (registers DiffDriveCircle)
from algd_jax.envs import paper_nav as _paper_nav  # noqa: F401  (registers PointButton1, ...)
from algd_jax.envs import toy as _toy  # noqa: F401  (registers ToyTwoModeBandit)
from algd_jax.envs.errors import MissingDependencyError, UnknownTaskError
from algd_jax.envs.registry import (
    EnvConstructor,
    describe_tasks,
    get_task,
    list_tasks,
    make_env,
    register_task,
)
from algd_jax.envs.spec import TaskSpec, episodic_limit_to_budget

__all__ = [
    "EnvConstructor",
    "MissingDependencyError",
    "TaskSpec",
    "UnknownTaskError",
    "describe_tasks",
    "episodic_limit_to_budget",
    "get_task",
    "list_tasks",
    "make_env",
    "register_task",
]
