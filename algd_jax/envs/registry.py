"""One registry of tasks: name -> (TaskSpec, constructor), and the functions that use it."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import gymnasium
from gymnasium.wrappers import TimeLimit

from algd_jax.envs.errors import UnknownTaskError
from algd_jax.envs.spec import TaskSpec, episodic_limit_to_budget
from algd_jax.envs.wrappers import TaskEnv

#: Builds the bare environment of a task. Called as ``constructor(spec)``, or as
#: ``constructor(spec, render_mode=mode)`` when ``make_env`` is given a render mode. It must
#: return a gymnasium-API env (5-tuple step) that sets ``info["cost"]`` on every step, and
#: must NOT apply the time limit: ``make_env`` wraps it in ``TimeLimit(spec.max_episode_steps)``.
EnvConstructor = Callable[..., gymnasium.Env]


@dataclass(frozen=True)
class _Entry:
    spec: TaskSpec
    constructor: EnvConstructor
    paper_spec: TaskSpec | None


_REGISTRY: dict[str, _Entry] = {}


def register_task(
    spec: TaskSpec,
    constructor: EnvConstructor,
    *,
    paper_spec: TaskSpec | None = None,
    overwrite: bool = False,
) -> None:
    """Add a task to the registry under ``spec.name``.

    Args:
        spec: the default description. A ``cost_budget`` of NaN means the task has no default
            budget and ``get_task`` requires an explicit ``cost_limit``.
        constructor: see :data:`EnvConstructor`.
        paper_spec: an optional variant returned by ``get_task(..., paper_setting=True)``
            (same name and constructor, e.g. a shorter episode and another limit).
        overwrite: replace an existing entry of the same name instead of raising.
    """
    if spec.name in _REGISTRY and not overwrite:
        raise ValueError(f"task {spec.name!r} is already registered")
    if paper_spec is not None and paper_spec.name != spec.name:
        raise ValueError("paper_spec must have the same name as spec")
    _REGISTRY[spec.name] = _Entry(spec, constructor, paper_spec)


def list_tasks(family: str | None = None) -> list[str]:
    """Names of all registered tasks, in registration order (optionally of one family)."""
    return [n for n, e in _REGISTRY.items() if family is None or e.spec.family == family]


def _entry(name: str) -> _Entry:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownTaskError(name, list(_REGISTRY)) from None


def get_task(
    name: str, cost_limit: float | None = None, *, paper_setting: bool = False
) -> TaskSpec:
    """Return the resolved :class:`TaskSpec` of a registered task.

    Args:
        name: registry name (see :func:`list_tasks`).
        cost_limit: overrides the task's default limit. For tasks whose budget is given on the
            discounted cost directly (``episode_cost_limit is None``: the paper's speed tasks,
            ``Walker2dVelocity``, ``SwimmerVelocity``) it is the critic budget ``h`` itself. For
            episodic tasks (Safety-Gymnasium) it is the per-episode limit ``C``, converted to
            ``h`` by :func:`episodic_limit_to_budget` over ``max_episode_steps`` steps.
        paper_setting: use the task's paper variant where it has one (navigation tasks:
            400-step episodes, limit 10, 400-step epochs); a no-op for other tasks.

    Raises:
        UnknownTaskError: ``name`` is not registered (message names the closest tasks).
        ValueError: the task has no default budget and ``cost_limit`` is None, or
            ``cost_limit`` is not a finite number >= 0.
    """
    entry = _entry(name)
    spec = entry.paper_spec if (paper_setting and entry.paper_spec is not None) else entry.spec
    if cost_limit is None:
        if spec.needs_cost_limit:
            raise ValueError(
                f"task {name!r} has no default cost budget (the paper gives none): "
                f"pass one with --cost-limit (the budget h on the discounted cost, "
                f"gamma_c={spec.cost_gamma})"
            )
        return spec
    cost_limit = float(cost_limit)
    if not (math.isfinite(cost_limit) and cost_limit >= 0):
        raise ValueError(f"--cost-limit must be a finite number >= 0, got {cost_limit!r}")
    if spec.episode_cost_limit is None:
        return dataclasses.replace(spec, cost_budget=cost_limit)
    return dataclasses.replace(
        spec,
        episode_cost_limit=cost_limit,
        cost_budget=episodic_limit_to_budget(cost_limit, spec.max_episode_steps, spec.cost_gamma),
    )


def make_env(
    name: str,
    cost_limit: float | None = None,
    seed: int | None = None,
    *,
    paper_setting: bool = False,
    render_mode: str | None = None,
) -> gymnasium.Env:
    """Build a task's environment.

    The returned env follows gymnasium 0.29's API: ``reset(seed=...) -> (obs, info)`` and
    ``step(action) -> (obs, reward, terminated, truncated, info)``, with ``obs`` of shape
    ``(spec.obs_dim,)``, actions of shape ``(spec.act_dim,)`` within the spec's bounds and
    ``info["cost"]`` the per-step cost (float >= 0). ``terminated`` marks a true end of the
    MDP (e.g. an unhealthy Hopper), ``truncated`` the time limit ``spec.max_episode_steps``.
    The resolved spec is ``env.task_spec``.

    Args:
        name, cost_limit, paper_setting: as in :func:`get_task`.
        seed: if given, seeds the action and observation spaces and the first ``reset()``
            called without its own seed.
        render_mode: forwarded to the underlying environment (e.g. ``"rgb_array"``).

    Raises:
        UnknownTaskError, ValueError: as :func:`get_task`.
        MissingDependencyError: the task's optional package (``spec.requires``) is missing.
    """
    spec = get_task(name, cost_limit, paper_setting=paper_setting)
    constructor = _entry(name).constructor
    env = constructor(spec) if render_mode is None else constructor(spec, render_mode=render_mode)
    env = TimeLimit(env, max_episode_steps=spec.max_episode_steps)
    return TaskEnv(env, spec, seed=seed)


def describe_tasks() -> str:
    """A human-readable table of every task (name, family, dims, budget), one per line.

    Meant for ``--list-tasks``; budgets are shown as the registry's defaults.
    """
    lines = []
    for name, entry in _REGISTRY.items():
        s = entry.spec
        budget = "needs --cost-limit" if s.needs_cost_limit else f"h={s.cost_budget:.6g}"
        if s.episode_cost_limit is not None:
            budget += f" (C={s.episode_cost_limit:g}/{s.max_episode_steps} steps)"
        extra = "  [paper_setting available]" if entry.paper_spec is not None else ""
        lines.append(
            f"{name:<30} {s.family:<10} obs={s.obs_dim:<4} act={s.act_dim:<3} "
            f"cost={s.cost_kind:<10} {budget}{extra}"
        )
    return "\n".join(lines)
