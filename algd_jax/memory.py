"""What one update will need in memory, known from shapes before anything is allocated.

`update_footprint` traces the algorithm's `init` and `update` on abstract arrays
(`jax.eval_shape`, `jax.make_jaxpr`: nothing is computed or allocated) and returns the
bytes of the learner's state and of the largest array the update creates, with their
shapes. Both must fit at once, so their sum is a lower bound on the memory a run needs;
the loop refuses a run whose bound exceeds the memory available, naming the option whose
value is a dimension of the array that does not fit (`--mc-samples 1000000000` shows up
as the N axis of the Monte-Carlo samples).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from algd_jax.types import Batch


@dataclass(frozen=True)
class Footprint:
    """Bytes of one seed's learner state and of the update's largest intermediate array.

    Attributes:
        state_bytes: every leaf of the state returned by `init` (parameters, targets,
            optimiser moments).
        largest_state_leaf: the shape of the state's largest leaf.
        intermediate_bytes: the largest array any operation of one update produces.
        largest_intermediate: its shape.
    """

    state_bytes: int
    largest_state_leaf: tuple[int, ...]
    intermediate_bytes: int
    largest_intermediate: tuple[int, ...]


def _nbytes(aval: Any) -> int:
    shape = getattr(aval, "shape", ())
    dtype = getattr(aval, "dtype", None)
    try:
        size = np.dtype(dtype).itemsize
    except TypeError:  # PRNG key and other extended dtypes
        size = 8
    return math.prod(shape) * size


def _largest_var(jaxpr: Any) -> tuple[int, tuple[int, ...]]:
    """(bytes, shape) of the largest value any equation of `jaxpr` (and of the jaxprs
    inside it: scans, conditionals, nested jits, custom derivatives) produces."""
    best = (0, ())
    for eqn in jaxpr.eqns:
        for var in eqn.outvars:
            size = _nbytes(var.aval)
            if size > best[0]:
                best = (size, tuple(var.aval.shape))
        for param in eqn.params.values():
            for sub in param if isinstance(param, list | tuple) else [param]:
                inner = getattr(sub, "jaxpr", sub)  # a ClosedJaxpr holds its Jaxpr
                if hasattr(inner, "eqns"):
                    best = max(best, _largest_var(inner), key=lambda b: b[0])
    return best


@lru_cache(maxsize=16)
def _footprint(
    name: str, hparams: Any, obs_dim: int, act_dim: int, batch: int, num_envs: int = 1
) -> Footprint:
    from algd_jax.algorithms import get_algorithm

    algorithm = get_algorithm(name)
    spec = _Box(obs_dim, act_dim, (-1.0,) * act_dim, (1.0,) * act_dim)
    state = jax.eval_shape(lambda key: algorithm.init(hparams, spec, key), jax.random.key(0))
    leaves = jax.tree.leaves(state)
    state_bytes = sum(_nbytes(x) for x in leaves)
    largest_leaf = max(leaves, key=_nbytes)
    f32 = lambda *shape: jax.ShapeDtypeStruct(shape, jnp.float32)  # noqa: E731
    abstract_batch = Batch(
        obs=f32(batch, obs_dim),
        action=f32(batch, act_dim),
        reward=f32(batch),
        cost=f32(batch),
        next_obs=f32(batch, obs_dim),
        mask_r=f32(batch),
        mask_c=f32(batch),
    )
    if algorithm.kind == "on-policy":
        jaxpr = jax.make_jaxpr(algorithm.on_policy.update_rollout)(
            state,
            _abstract_rollout(algorithm, hparams, obs_dim, act_dim, num_envs),
            _info(max(algorithm.episode_window(hparams), 1)),
        )
    else:
        jaxpr = jax.make_jaxpr(algorithm.update)(state, abstract_batch)
    size, shape = _largest_var(jaxpr.jaxpr)
    return Footprint(state_bytes, tuple(largest_leaf.shape), size, shape)


def _abstract_rollout(algorithm: Any, hparams: Any, obs_dim: int, act_dim: int, envs: int) -> Any:
    """An abstract `Rollout` of T = rollout_size / E steps of E envs (on-policy)."""
    from algd_jax.algorithms.base import Rollout

    steps = max(algorithm.on_policy.rollout_size(hparams) // max(envs, 1), 1)
    f32 = lambda *shape: jax.ShapeDtypeStruct(shape, jnp.float32)  # noqa: E731
    flag = jax.ShapeDtypeStruct((steps, envs), jnp.bool_)
    per_step = {
        name: f32(steps, envs)
        for name in Rollout._fields
        if name not in ("obs", "raw_action", "terminated", "truncated")
    }
    return Rollout(
        obs=f32(steps, envs, obs_dim),
        raw_action=f32(steps, envs, act_dim),
        terminated=flag,
        truncated=flag,
        **per_step,
    )


def _info(width: int) -> Any:
    """An abstract `LoopInfo` of one seed with an episode window `width` wide."""
    from algd_jax.algorithms.base import LoopInfo

    i32 = jax.ShapeDtypeStruct((), jnp.int32)
    window = jax.ShapeDtypeStruct((width,), jnp.float32)
    return LoopInfo(
        env_step=i32,
        epoch=i32,
        update_step=i32,
        total_updates=i32,
        episode_costs=window,
        episode_discounted_costs=window,
        episode_returns=window,
        episode_count=i32,
    )


@dataclass(frozen=True)
class _Box:
    obs_dim: int
    act_dim: int
    action_low: tuple[float, ...]
    action_high: tuple[float, ...]


def update_footprint(
    algorithm: Any, hparams: Any, spec: Any, batch_size: int, num_envs: int = 1
) -> Footprint:
    """The `Footprint` of one seed's learner for task `spec` (its obs and action sizes):
    of one update on batches of `batch_size` rows (off-policy), or of one update phase on a
    rollout of `num_envs` envs (on-policy, `update_rollout`); cached per configuration."""
    args = (algorithm.name, hparams, spec.obs_dim, spec.act_dim, batch_size, num_envs)
    try:
        hash(hparams)
    except TypeError:  # a config that cannot be a cache key is traced each time
        return _footprint.__wrapped__(*args)
    return _footprint(*args)


def options_in_shape(shape: tuple[int, ...], options: dict[str, Any]) -> list[str]:
    """The options (name -> value) whose integer value (> 1) is one of `shape`'s dims, the
    largest value first: the options that make an array this big."""
    dims = set(shape)
    hits = [
        (value, name)
        for name, value in options.items()
        if isinstance(value, int) and not isinstance(value, bool) and value > 1 and value in dims
    ]
    return [name for _, name in sorted(hits, reverse=True)]


def numeric_options(config: Any) -> dict[str, Any]:
    """A config dataclass's fields as name -> value."""
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}


def device_memory() -> tuple[int | None, str]:
    """(bytes available to a new allocation, where) on the default device: its free
    memory for an accelerator, the host's MemAvailable on a CPU (None if unknown)."""
    device = jax.devices()[0]
    if device.platform != "cpu":
        stats = device.memory_stats() or {}
        if "bytes_limit" in stats:
            return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0)), device.platform
    from algd_jax.training.lifecycle import available_memory

    return available_memory(), "this machine"


def _suspects(hparams: Any, batch_size: int) -> list[str]:
    """Integer options set above their defaults, the most inflated first (the options a
    user raised to make an array this big), as `--flag value`."""
    values = {**numeric_options(hparams), "batch_size": batch_size}
    defaults = {f.name: f.default for f in dataclasses.fields(hparams)}
    defaults["batch_size"] = 256
    ratios = []
    for name, value in values.items():
        default = defaults.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and isinstance(default, int):
            if default > 0 and value > default:
                ratios.append((value / default, name, value))
    ratios.sort(reverse=True)
    picked = [r for r in ratios if r[0] >= 10] or ratios[:1]
    return [f"--{name.replace('_', '-')} {value}" for _, name, value in picked]


def check_update_memory(
    algorithm: Any,
    hparams: Any,
    spec: Any,
    batch_size: int,
    seeds: int,
    batched_seeds: bool,
    host_bytes: int = 0,
    num_envs: int = 1,
) -> None:
    """Raise `RunError` (exit 2) when the learner states of `seeds` seeds and one update's
    largest array (one per seed when `batched_seeds`) cannot fit in the memory available
    (with `host_bytes`, e.g. the replay, on a CPU where both share it)."""
    from algd_jax.train_config import RunError
    from algd_jax.training.lifecycle import human_bytes as _human

    available, where = device_memory()
    if available is None:
        return
    fp = update_footprint(algorithm, hparams, spec, batch_size, num_envs)
    arrays = seeds if batched_seeds else 1
    needed = seeds * fp.state_bytes + arrays * fp.intermediate_bytes
    if where == "this machine":
        needed += host_bytes
    if needed <= 0.9 * available:
        return
    if fp.intermediate_bytes >= fp.state_bytes:
        what = f"one update makes an array of shape {list(fp.largest_intermediate)}"
    else:
        what = f"the learner's state holds an array of shape {list(fp.largest_state_leaf)}"
    suspects = _suspects(hparams, batch_size)
    fix = f"lower {' or '.join(suspects)}" if suspects else "lower --batch-size or the sizes"
    raise RunError(
        f"the run needs at least {_human(needed)} ({what}) but {where} has {_human(available)} "
        f"available; {fix}"
    )
