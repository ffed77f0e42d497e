"""The interface every algorithm implements, and the registry that names them.

An algorithm is a typed, frozen config dataclass plus pure functions over its own immutable
state pytree (the config travels inside the state as a static field):

    state = algorithm.init(config, spec, key)                  # spec: obs_dim, action box
    action = algorithm.act(state, obs, key, deterministic)     # obs [B, ds] -> [B, da]
    state, metrics = algorithm.update(state, batch)            # batch leaves [B, ...]

Nothing here knows of loops, seeds, environments or files: the loops (`algd_jax.programs`)
jit these functions, fuse U updates in one `lax.scan` and map them over a seed axis.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import jax

from algd_jax.types import Batch, Metrics


class ActionSpace(Protocol):
    """What `init` needs to know of a task (a `TaskSpec` satisfies it)."""

    obs_dim: int
    act_dim: int
    action_low: tuple[float, ...]
    action_high: tuple[float, ...]


@dataclass(frozen=True)
class Algorithm:
    """One registered learner.

    Attributes:
        name: registry name (`--algo NAME`).
        description: one line for `--list-algos`.
        config_type: its frozen config dataclass; every field a hashable plain value.
        init: `(config, spec, key) -> state`.
        act: `(state, obs [B, ds], key, deterministic) -> actions [B, da]`, inside the box.
        update: `(state, Batch of [B, ...]) -> (state, metrics)`; scalar metrics.
        metric_names: `config -> names` of the metrics `update` returns.
        fixed: config values this entry sets and the command line does not offer (e.g.
            the variant of a family that shares one config type).
        task_fields: config fields the loop fills in from the task (e.g. the cost budget
            h); `resolve` does that.
        resolve: `(config, spec) -> config` with the task-dependent fields filled in.
        kind: `off-policy` learners train from a replay buffer in the host loop;
            `on-policy` ones (PPO-Lag) need rollouts, which the loop does not drive yet.
        presets: named sets of option values (`--preset NAME`); the config's own defaults
            are the preset `defaults`.
    """

    name: str
    description: str
    config_type: type
    init: Callable[[Any, ActionSpace, jax.Array], Any]
    act: Callable[[Any, jax.Array, jax.Array, bool], jax.Array]
    update: Callable[[Any, Batch], tuple[Any, Metrics]]
    metric_names: Callable[[Any], tuple[str, ...]]
    resolve: Callable[[Any, Any], Any]
    fixed: Mapping[str, Any] = field(default_factory=dict)
    task_fields: tuple[str, ...] = ()
    kind: Literal["off-policy", "on-policy"] = "off-policy"
    presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def default_config(self, **overrides: Any) -> Any:
        """The entry's config with its fixed values and `overrides` applied."""
        return self.config_type(**{**dict(self.fixed), **overrides})

    def preset_names(self) -> list[str]:
        """`defaults` (the config's own defaults) and the entry's named presets."""
        return ["defaults", *self.presets]

    def preset_config(self, name: str) -> Any:
        """The entry's config with the values of preset `name`."""
        if name == "defaults":
            return self.default_config()
        if name not in self.presets:
            raise ValueError(
                f"unknown preset {name!r} for {self.name}; choose one of "
                f"{', '.join(self.preset_names())}"
            )
        return self.default_config(**self.presets[name])

    def option_names(self) -> tuple[str, ...]:
        """Config fields a user may set (the command-line flags of this algorithm)."""
        hidden = set(self.fixed) | set(self.task_fields)
        return tuple(f.name for f in dataclasses.fields(self.config_type) if f.name not in hidden)


_REGISTRY: dict[str, Algorithm] = {}


class UnknownAlgorithmError(ValueError):
    """An algorithm name that is not registered; the message suggests the closest ones."""


def register(algorithm: Algorithm) -> Algorithm:
    """Add an algorithm under its name (an existing name is an error)."""
    if algorithm.name in _REGISTRY:
        raise ValueError(f"algorithm {algorithm.name!r} is already registered")
    _REGISTRY[algorithm.name] = algorithm
    return algorithm


def unregister(name: str) -> None:
    """Remove an algorithm (for tests that register throw-away learners)."""
    _REGISTRY.pop(name, None)


def list_algorithms() -> list[str]:
    """Every registered name, in registration order."""
    return list(_REGISTRY)


def get_algorithm(name: str) -> Algorithm:
    """The algorithm registered as `name`; `UnknownAlgorithmError` names the closest."""
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.4)
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        raise UnknownAlgorithmError(
            f"unknown algorithm {name!r}; {hint}--list-algos prints all of them "
            f"({', '.join(_REGISTRY)})"
        ) from None


def task_budget(spec: Any, cost_gamma: float) -> float:
    """h for a cost critic discounted by `cost_gamma`: the task's budget, re-derived from
    its episodic limit when the discount differs from the one the registry used."""
    from algd_jax.envs.spec import episodic_limit_to_budget

    if spec.episode_cost_limit is None or cost_gamma == spec.cost_gamma:
        return float(spec.cost_budget)
    return episodic_limit_to_budget(spec.episode_cost_limit, spec.max_episode_steps, cost_gamma)
