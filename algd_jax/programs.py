"""The compiled programs a loop runs for an algorithm: U fused updates, a seed axis, and
on-device accumulation of the update metrics.

Every function here takes one seed's state and is mapped over a leading seed axis `S` of
stacked states (`stack`), in one of two ways:

* `map` (`lax.map`): the seeds run one after the other inside one compiled program. Each
  seed executes exactly the program a single seed executes, so seed k of a multi-seed run
  gives bitwise the numbers of seed k alone. On a CPU, whose cores are already busy with one
  seed's matrix products, this costs what S separate runs cost.
* `vmap`: the seeds are one batched computation, which is what makes S seeds cost little
  more than one on an accelerator. Batched products round differently in the last bit
  (measured: 1e-7 after 30 updates), so seeds then match a lone run only to float rounding.

`auto` picks `map` on a CPU and `vmap` elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

from algd_jax.compile_options import tuned_jit
from algd_jax.types import Batch, Metrics

SeedAxis = Literal["map", "vmap"]
SeedAxisOption = Literal["auto", "map", "vmap"]


def resolve_seed_axis(option: str) -> SeedAxis:
    """`auto` -> `map` on a CPU backend, `vmap` on an accelerator."""
    if option == "auto":
        return "map" if jax.default_backend() == "cpu" else "vmap"
    if option not in ("map", "vmap"):
        raise ValueError(f"seed axis must be auto, map or vmap, got {option!r}")
    return option  # type: ignore[return-value]


def stack(trees: list[Any]) -> Any:
    """Stack pytrees of one structure (e.g. one state per seed) on a new leading axis.
    Static fields are taken from the first."""
    treedef = jax.tree.structure(trees[0])
    columns = zip(*(jax.tree.leaves(t) for t in trees), strict=True)
    return jax.tree.unflatten(treedef, [jnp.stack(col) for col in columns])


def unstack(tree: Any, index: int) -> Any:
    """Seed `index`'s slice of a stacked pytree (numpy leaves stay numpy arrays)."""
    return jax.tree.map(
        lambda x: np.asarray(x[index]) if isinstance(x, np.ndarray) else x[index], tree
    )


def over_seeds(fn: Callable[..., Any], axis: SeedAxis, num_mapped: int) -> Callable[..., Any]:
    """`fn(*mapped, *shared)` applied per seed: the first `num_mapped` arguments carry the
    leading seed axis, the rest are the same for every seed."""
    if axis == "vmap":
        return lambda *args: jax.vmap(
            fn, in_axes=(0,) * num_mapped + (None,) * (len(args) - num_mapped)
        )(*args)

    def mapped(*args: Any) -> Any:
        shared = args[num_mapped:]
        return jax.lax.map(lambda xs: fn(*xs, *shared), tuple(args[:num_mapped]))

    return mapped


def fused(update: Callable[[Any, Batch], tuple[Any, Metrics]]) -> Callable[..., Any]:
    """U updates as one `lax.scan` over a `[U, B, ...]` batch; metrics come back `[U]`."""

    def many(state: Any, batch: Batch) -> tuple[Any, Metrics]:
        return jax.lax.scan(update, state, batch)

    return many


def new_sums(names: tuple[str, ...] | list[str], num_seeds: int) -> dict[str, Any]:
    """Device-side epoch accumulators of the update metrics, `[S]` each."""
    return {
        "sum": {k: jnp.zeros((num_seeds,), jnp.float32) for k in names},
        "count": jnp.zeros((num_seeds,), jnp.int32),
        # global index of the first update whose metric was not finite (-1: none yet),
        # and the env step after which it ran
        "first_bad": {k: jnp.full((num_seeds,), -1, jnp.int32) for k in names},
        "first_bad_step": {k: jnp.full((num_seeds,), -1, jnp.int32) for k in names},
    }


def _accumulate(
    sums: dict[str, Any], metrics: Metrics, first_update: jax.Array, env_step: jax.Array
) -> dict[str, Any]:
    """Add one seed's `[U]` metrics to its scalar sums, recording the first non-finite."""
    num = next(iter(metrics.values())).shape[0]
    index = first_update + jnp.arange(num, dtype=jnp.int32)
    new: dict[str, Any] = {
        "sum": {},
        "count": sums["count"] + num,
        "first_bad": {},
        "first_bad_step": {},
    }
    for key, values in metrics.items():
        bad = ~jnp.isfinite(values)
        fresh = (sums["first_bad"][key] < 0) & bad.any()
        new["first_bad"][key] = jnp.where(fresh, index[jnp.argmax(bad)], sums["first_bad"][key])
        new["first_bad_step"][key] = jnp.where(fresh, env_step, sums["first_bad_step"][key])
        new["sum"][key] = sums["sum"][key] + jnp.sum(values)
    return new


class Programs:
    """The jitted, seed-mapped programs of one algorithm (shared by every run in a process,
    so a new run, seed count or resume reuses what is compiled).

    `act(states, obs [S, ds], keys [S], step, deterministic) -> actions [S, da]`: one action
    per seed, its noise key `fold_in(keys[k], step)`.
    `train(states, sums, batch [S, U, B, ...], first_update, env_step, info=None) ->
    (states, sums)`: per seed, `observe(state, info[k])` (when `info`, a `LoopInfo` with a
    leading seed axis, is given), then U fused updates, plus metric accumulation; states and
    sums are donated.
    """

    def __init__(
        self,
        act: Callable[..., Any],
        update: Callable[..., Any],
        axis: SeedAxis,
        observe: Callable[..., Any] | None = None,
    ):
        self.axis = axis

        def act_one(state: Any, obs: jax.Array, key: jax.Array, step: jax.Array, det: bool):
            return act(state, obs[None], jax.random.fold_in(key, step), det)[0]

        def act_all(states: Any, obs: jax.Array, keys: jax.Array, step: Any, deterministic: bool):
            one = lambda s, o, k, t: act_one(s, o, k, t, deterministic)  # noqa: E731
            return over_seeds(one, axis, 3)(states, obs, keys, jnp.asarray(step, jnp.int32))

        many = fused(update)

        def train_one(
            state: Any, sums: Any, batch: Batch, info: Any, first_update: Any, env_step: Any
        ):
            if info is not None and observe is not None:
                state = observe(state, info)
            state, metrics = many(state, batch)
            return state, _accumulate(sums, metrics, first_update, env_step)

        def train_all(
            states: Any,
            sums: Any,
            batch: Batch,
            first_update: Any,
            env_step: Any,
            info: Any = None,
        ):
            return over_seeds(train_one, axis, 4)(
                states,
                sums,
                batch,
                info,
                jnp.asarray(first_update, jnp.int32),
                jnp.asarray(env_step, jnp.int32),
            )

        self.act = tuned_jit(act_all, static_argnames="deterministic")
        self.train = tuned_jit(train_all, donate_argnums=(0, 1))


@lru_cache(maxsize=32)
def programs(
    act: Callable[..., Any],
    update: Callable[..., Any],
    axis: SeedAxis,
    observe: Callable[..., Any] | None = None,
) -> Programs:
    """The (cached) programs of an algorithm's `act`, `update` and `observe` on a seed
    axis."""
    return Programs(act, update, axis, observe)


def new_state(algorithm: Any, hparams: Any, spec: Any, seed: int) -> Any:
    """A freshly initialised learner for one seed, every leaf a strongly typed JAX array.

    Python scalars inside a state (flax's `TrainState.create` leaves `step` an int) are
    weakly typed for JAX, a restored state's leaves are not, and weak types are part of
    jit's cache key: fixing them here keeps one compiled program for fresh, updated and
    restored states.
    """
    state = algorithm.init(hparams, spec, jax.random.key(seed))

    def strong(leaf: Any) -> jax.Array:
        leaf = jnp.asarray(leaf)
        return jnp.asarray(leaf, dtype=leaf.dtype)

    return jax.tree.map(strong, state)
