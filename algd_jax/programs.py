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

Several devices. On a machine with several devices of the default backend (GPUs, or CPUs
forced with `XLA_FLAGS=--xla_force_host_platform_device_count=N`), the seed axis is
sharded over them: `seed_mesh(S)` is a one-axis `Mesh` named `seed`, `stack` places stacked
trees with `NamedSharding(mesh, P("seed"))`, and `over_seeds` runs its map or vmap inside
`jax.shard_map` on each device's block of seeds, so each device trains its own seeds. XLA
fuses the partitioned program differently from the one-device one, so a sharded seed equals
its unsharded run to float rounding (the last bits), not bitwise; the same seed on the same
device count is reproducible whatever trains beside it. The seeds are split
evenly: over the largest number of devices that divides S, said once in one line on stderr
when that is not all of them (3 seeds on 2 devices run on one).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import cache, lru_cache
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from algd_jax.compile_options import tuned_jit
from algd_jax.types import Batch, Metrics

SeedAxis = Literal["map", "vmap"]
SeedAxisOption = Literal["auto", "map", "vmap"]
#: Name of the mesh axis the seeds are sharded over.
SEED = "seed"


def resolve_seed_axis(option: str) -> SeedAxis:
    """`auto` -> `map` on a CPU backend, `vmap` on an accelerator."""
    if option == "auto":
        return "map" if jax.default_backend() == "cpu" else "vmap"
    if option not in ("map", "vmap"):
        raise ValueError(f"seed axis must be auto, map or vmap, got {option!r}")
    return option  # type: ignore[return-value]


@cache
def seed_mesh(num_seeds: int) -> Mesh | None:
    """The mesh that `num_seeds` seeds are sharded over: the first D devices of the default
    backend on one axis named `seed`, D the largest device count that divides the seeds;
    None when that is one device (a one-device machine, or a seed count no larger device
    count divides). Said in one line on stderr (once per seed count) when the machine has
    more devices than are used."""
    devices = jax.devices()
    used = max(d for d in range(1, len(devices) + 1) if num_seeds % d == 0)
    if used < len(devices):
        where = "one device" if used == 1 else f"{used} of them"
        print(
            f"{num_seeds} seed(s) on {len(devices)} {devices[0].platform} devices: the seed "
            f"axis is sharded over {where}, as the seeds split evenly only so; train a "
            f"multiple of {len(devices)} seeds to use every device",
            file=sys.stderr,
            flush=True,
        )
    return Mesh(np.array(devices[:used]), (SEED,)) if used > 1 else None


@cache
def _device_count() -> int:
    return jax.device_count()


def _num_seeds(tree: Any) -> int:
    return int(np.shape(jax.tree.leaves(tree)[0])[0])


def place_seeds(tree: Any) -> Any:
    """A tree whose leaves have a leading seed axis, sharded over `seed_mesh` (unchanged
    when there is no mesh). Arrays already placed so are not copied."""
    if _device_count() == 1:  # the common case, without flattening the tree
        return tree
    mesh = seed_mesh(_num_seeds(tree))
    if mesh is None:
        return tree
    return jax.device_put(tree, NamedSharding(mesh, P(SEED)))


def stack(trees: list[Any]) -> Any:
    """Stack pytrees of one structure (e.g. one state per seed) on a new leading axis,
    sharded over the devices (`place_seeds`). Static fields are taken from the first."""
    treedef = jax.tree.structure(trees[0])
    columns = zip(*(jax.tree.leaves(t) for t in trees), strict=True)
    return place_seeds(jax.tree.unflatten(treedef, [jnp.stack(col) for col in columns]))


def unstack(tree: Any, index: int) -> Any:
    """Seed `index`'s slice of a stacked pytree (numpy leaves stay numpy arrays)."""
    return jax.tree.map(
        lambda x: np.asarray(x[index]) if isinstance(x, np.ndarray) else x[index], tree
    )


def _over_block(fn: Callable[..., Any], axis: SeedAxis, num_mapped: int) -> Callable[..., Any]:
    """`fn` mapped over the leading axis of the first `num_mapped` arguments, on one
    device."""
    if axis == "vmap":
        return lambda *args: jax.vmap(
            fn, in_axes=(0,) * num_mapped + (None,) * (len(args) - num_mapped)
        )(*args)

    def mapped(*args: Any) -> Any:
        shared = args[num_mapped:]
        return jax.lax.map(lambda xs: fn(*xs, *shared), tuple(args[:num_mapped]))

    return mapped


def over_seeds(fn: Callable[..., Any], axis: SeedAxis, num_mapped: int) -> Callable[..., Any]:
    """`fn(*mapped, *shared)` applied per seed: the first `num_mapped` arguments carry the
    leading seed axis, the rest are the same for every seed; every output gets the seed
    axis. With a `seed_mesh`, each device maps `fn` over its own block of seeds
    (`jax.shard_map`; the shared arguments are replicated)."""
    block = _over_block(fn, axis, num_mapped)

    def run(*args: Any) -> Any:
        mesh = None if _device_count() == 1 else seed_mesh(_num_seeds(args[:num_mapped]))
        if mesh is None:
            return block(*args)
        specs = (P(SEED),) * num_mapped + (P(),) * (len(args) - num_mapped)
        return jax.shard_map(block, mesh=mesh, in_specs=specs, out_specs=P(SEED))(*args)

    return run


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

        self._act = tuned_jit(act_all, static_argnames="deterministic")
        self._train = tuned_jit(train_all, donate_argnums=(0, 1))

    def act(
        self, states: Any, obs: Any, keys: Any, step: Any, deterministic: bool = False
    ) -> jax.Array:
        # inputs committed to one device (a restored checkpoint's) move to the seed mesh
        states, obs, keys = place_seeds((states, obs, keys))
        return self._act(states, obs, keys, step, deterministic=deterministic)

    def train(
        self,
        states: Any,
        sums: Any,
        batch: Batch,
        first_update: Any,
        env_step: Any,
        info: Any = None,
    ) -> tuple[Any, Any]:
        states, sums, batch, info = place_seeds((states, sums, batch, info))
        return self._train(states, sums, batch, first_update, env_step, info)

    def cache_sizes(self) -> tuple[int, int]:
        """How many programs `train` and `act` have compiled (one per set of shapes)."""
        return self._train._cache_size(), self._act._cache_size()


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
