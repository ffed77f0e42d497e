"""The compiled programs a loop runs for an algorithm: U fused updates, a seed axis, and
on-device accumulation of the update metrics.

Every function here takes one seed's state and is mapped over a leading seed axis `S` of
stacked states (`stack`), in one of two ways:

* `map` (`lax.map`): the seeds run one after the other inside one compiled program. Each
  seed executes the program a single seed executes, so seed k of a multi-seed run gives
  bitwise the numbers of seed k alone; that needs XLA to keep the loop of a lone seed
  (`seed_axis_options`, `compile_options.SEED_MAP_OPTIONS`). On a CPU, whose cores are
  already busy with one seed's matrix products, this costs what S separate runs cost.
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

import functools
import math
import sys
from collections.abc import Callable
from functools import cache, lru_cache
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import jax
import jax.extend.core as jex_core
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from algd_jax.compile_options import (
    SEED_MAP_OPTIONS,
    compiler_options,
    program_precision,
    tuned_jit,
    with_extra,
)
from algd_jax.types import Batch, Metrics

if TYPE_CHECKING:  # the registry imports every algorithm; the loops import this module
    from algd_jax.algorithms.base import OnPolicyParts

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


def seed_axis_options(axis: SeedAxis) -> dict[str, str] | None:
    """The compiler options a program mapped over seeds on `axis` needs (for `tuned_jit`'s
    `extra_options`): on `map`, `SEED_MAP_OPTIONS`, which keep a lone seed bitwise equal
    to that seed among others. Used by the off-policy programs, the on-policy acting
    programs and the on-device loop; not by PPO-Lag's update phase (see there)."""
    return dict(SEED_MAP_OPTIONS) if axis == "map" else None


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

        extra = seed_axis_options(axis)
        self._act = tuned_jit(act_all, static_argnames="deterministic", extra_options=extra)
        self._train = tuned_jit(train_all, donate_argnums=(0, 1), extra_options=extra)

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


# ----------------------------------------------------------------------------- on-policy


def _state_leaf_use(
    fn: Callable[..., Any], states: Any, mapped: tuple[Any, ...], shared: tuple[Any, ...]
) -> tuple[tuple[bool, ...], tuple[bool, ...], Any]:
    """How `fn(state, *mapped, *shared) -> (state, outputs)` uses the leaves of one seed's
    state, found by tracing it once: `(changed, needed, output shapes)`, per leaf, whether
    the returned state's leaf is anything but the input leaf and whether the computation
    reads it, and the `ShapeDtypeStruct`s of one seed's `outputs`.

    Both matter for a program called once per env step. A program mapped over seeds copies
    every leaf it returns, changed or not (`lax.map` stacks its outputs, `vmap` does not
    forward them either): for a learner state of a few hundred kB, a copy of the whole
    state per env step (measured: about 100 us for 600 kB on the 2-core CPU). And every
    argument of a compiled call costs its dispatch time even where the program ignores it
    (a PPO-Lag state has 71 leaves, acting reads 16 of them)."""
    one = lambda x: jax.ShapeDtypeStruct(np.shape(x)[1:], x.dtype)  # noqa: E731
    whole = lambda x: jax.ShapeDtypeStruct(np.shape(x), jnp.result_type(x))  # noqa: E731
    abstract = (
        jax.tree.map(one, states),
        *(jax.tree.map(one, a) for a in mapped),
        *(jax.tree.map(whole, a) for a in shared),
    )
    closed, out_shape = jax.make_jaxpr(fn, return_shape=True)(*abstract)
    leaves, treedef = jax.tree.flatten(states)
    if not isinstance(out_shape, tuple) or jax.tree.structure(out_shape[0]) != treedef:
        raise TypeError(f"{fn.__name__} must return a state of the structure it is given")
    jaxpr, n = closed.jaxpr, len(leaves)
    invars, outvars = jaxpr.invars[:n], jaxpr.outvars
    changed = tuple(out is not arg for out, arg in zip(outvars[:n], invars, strict=True))
    read = {v for eqn in jaxpr.eqns for v in eqn.invars if isinstance(v, jex_core.Var)}
    # an input leaf handed out anywhere but at its own place is read too
    elsewhere = [v for j, v in enumerate(outvars) if j >= n or v is not invars[j]]
    needed = tuple(v in read or any(v is o for o in elsewhere) for v in invars)
    return changed, needed, out_shape[1]


def _stand_in(leaf: Any) -> Callable[[], jax.Array]:
    """A maker of an array of one seed's shape and type of `leaf` (a stacked leaf), for a
    leaf the program does not read (removed by the compiler as unused)."""
    shape = np.shape(leaf)[1:]
    if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        impl = jax.random.key_impl(leaf)
        data = jax.random.key_data(leaf)
        return lambda: jax.random.wrap_key_data(jnp.zeros(data.shape[1:], data.dtype), impl=impl)
    return lambda: jnp.zeros(shape, leaf.dtype)


class _StatePassing:
    """`fn(state, *mapped, *shared) -> (state, outputs)` over the seed axis, compiled, for a
    call per env step; `outputs` a dict of float32 arrays. Returns `(states, outputs)` with
    `outputs[name]` a numpy array `[S, ...]`.

    Cheap to call: the program takes only the state leaves `fn` reads and returns only
    those it changes, the others are the very input arrays (see `_state_leaf_use`); the
    state goes in as a list of leaves with its structure static (one compiled program per
    state structure, its compiler options chosen once), so neither the lookup of the
    program nor jit's argument handling walks the state's pytree nodes; and the outputs
    come back as one packed float32 array `[S, K]`, one transfer instead of one per output.
    No donation."""

    def __init__(self, fn: Callable[..., Any], axis: SeedAxis, num_mapped: int):
        self.fn, self.axis, self.num_mapped = fn, axis, num_mapped
        self._programs: dict[Any, tuple[Any, ...]] = {}

    def _build(self, states: Any, treedef: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
        mapped, shared = args[: self.num_mapped - 1], args[self.num_mapped - 1 :]
        changed, needed, out_shapes = _state_leaf_use(self.fn, states, mapped, shared)
        leaves = jax.tree.leaves(states)
        stand_ins = [None if n else _stand_in(x) for x, n in zip(leaves, needed, strict=True)]
        layout = [(name, tuple(a.shape)) for name, a in out_shapes.items()]
        for name, a in out_shapes.items():
            if a.dtype != jnp.float32:
                raise TypeError(f"output {name} of {self.fn.__name__} must be float32")
        fn, axis, num_mapped = self.fn, self.axis, self.num_mapped

        def one(read: list[jax.Array], *a: Any) -> Any:
            given = iter(read)
            full = [next(given) if make is None else make() for make in stand_ins]
            new, outputs = fn(jax.tree.unflatten(treedef, full), *a)
            kept = [x for x, c in zip(jax.tree.leaves(new), changed, strict=True) if c]
            packed = jnp.concatenate([outputs[name].reshape(-1) for name, _ in layout])
            return kept, packed

        def run(read: list[jax.Array], *a: Any) -> Any:
            return over_seeds(one, axis, num_mapped)(read, *a)

        options = with_extra(
            compiler_options(program_precision((states,), {})), seed_axis_options(axis)
        )
        return jax.jit(run, compiler_options=options), changed, needed, layout

    def __call__(self, states: Any, *args: Any) -> tuple[Any, dict[str, np.ndarray]]:
        leaves, treedef = jax.tree.flatten(states)
        built = self._programs.get(treedef)
        if built is None:
            built = self._programs[treedef] = self._build(states, treedef, args)
        jitted, changed, needed, layout = built
        new, packed = jitted([x for x, n in zip(leaves, needed, strict=True) if n], *args)
        fresh = iter(new)
        merged = [next(fresh) if c else x for x, c in zip(leaves, changed, strict=True)]
        packed = np.array(packed)  # writable: the envs get views of it as their actions
        outputs, start = {}, 0
        for name, shape in layout:
            size = math.prod(shape)
            outputs[name] = packed[:, start : start + size].reshape(-1, *shape)
            start += size
        return jax.tree.unflatten(treedef, merged), outputs

    def _cache_size(self) -> int:
        return sum(built[0]._cache_size() for built in self._programs.values())


class Observed(NamedTuple):
    """`OnPolicyPrograms.observe`'s results (numpy float32, S seeds x E envs)."""

    obs_n: np.ndarray  # [S, E, ds] the observations, normalised after their push
    final_obs_n: np.ndarray  # [S, E, ds] the final observations, normalised (where final_mask)


class Acted(NamedTuple):
    """`OnPolicyPrograms.act`'s and `step`'s results (numpy float32, S seeds x E envs)."""

    env_action: np.ndarray  # [S, E, da] in the box
    raw_action: np.ndarray  # [S, E, da] the policy's draw
    log_prob: np.ndarray  # [S, E] its log-density (nats)
    obs_n: np.ndarray  # [S, E, ds] the observations acted on, normalised
    final_obs_n: np.ndarray  # [S, E, ds] the final observations, normalised (where final_mask)


class OnPolicyPrograms:
    """The compiled programs of an on-policy algorithm (its `OnPolicyParts`) on a seed axis,
    shared by every run in a process. S seeds, E environments per seed; observations are
    raw float32 `[S, E, ds]` unless named `obs_n` (normalised). Results come back as numpy
    arrays (`Observed`, `Acted`).

    `noise(states, keys, counters, num_envs) -> noise`: the acting draws of T env steps,
        `acting_noise(state, fold_in(keys[k], counters[t]), E)` for every seed k and step t
        (`keys [S]` each seed's acting key, `counters [T]` int the env steps): a pytree of
        numpy `[S, T, E, ...]`, one call per rollout. Seed k's draws depend on its key only.

    `observe(states, obs, final_obs, final_mask) -> (states, Observed)`: per seed, push the
        final observations `final_obs [S, E, ds]` of the episodes that just ended (rows
        where `final_mask [S, E]`) and normalise them with the statistics after that push
        (what a truncated episode bootstraps from is their value), then push the
        observations `obs` and normalise them. For the start of a run (no final
        observation: `final_mask` all false) and the end of every rollout.
    `step(states, obs, noise, final_obs=None, final_mask=None) -> (states, Acted)`:
        `observe`, then `rollout_act` on the normalised observations with the step's draws
        `noise` (`[S, E, ...]`: the rollout's noise at step t): the one call per env step
        inside a rollout. Without `final_obs` (no episode ended on the step before) only
        `obs` is pushed and `final_obs_n` is 0.
    `act(states, obs_n, noise) -> Acted`: `rollout_act` on normalised observations (the
        first step of a rollout, on what the previous rollout's `observe` returned);
        `obs_n` is passed through, `final_obs_n` is 0.
    `values(states, obs_n) -> (V_r, V_c)`: the values of normalised observations `[S, N,
        ds]`, each `[S, N]`: once per rollout, for every row it collected (the learner
        does not change during a rollout, so its values need not be computed step by step:
        the per-step programs leave the value nets out).
    `update(states, rollout, info) -> (states, metrics)`: one update phase per seed,
        `rollout` a `Rollout` of `[S, T, E, ...]`, `info` a `LoopInfo` of `[S, ...]`,
        metrics device arrays `[S]`; the states are donated: one compiled call per rollout
        for all seeds.

    `observe` and `step` change only the observation statistics of a state; every program
    but `update` reads only the state leaves it needs and hands the others back as they
    came in (see `_StatePassing`). Every program keeps one compiled version across calls as
    long as the shapes and the state's structure stay.
    """

    def __init__(self, parts: OnPolicyParts, axis: SeedAxis):
        self.parts, self.axis = parts, axis
        normalize, values, rollout_act = (
            parts.normalize_observation,
            parts.values,
            parts.rollout_act,
        )
        self._noise_tree: dict[int, Any] = {}

        def push(state: Any, obs: jax.Array, final_obs: jax.Array, final_mask: jax.Array) -> Any:
            state, final_n = normalize(state, final_obs, final_mask)
            state, obs_n = normalize(state, obs, None)
            return state, obs_n, final_n

        def acting(state: Any, obs_n: jax.Array, noise: Any) -> Any:
            # the values `rollout_act` returns are left out (and compiled away): `values`
            # computes them for the whole rollout at once
            env_action, extras = rollout_act(state, obs_n, noise)
            return {
                "env_action": env_action,
                "raw_action": extras.raw_action,
                "log_prob": extras.log_prob,
                "obs_n": obs_n,
            }

        def observe_one(
            state: Any, obs: jax.Array, final_obs: jax.Array, final_mask: jax.Array
        ) -> Any:
            state, obs_n, final_n = push(state, obs, final_obs, final_mask)
            return state, {"obs_n": obs_n, "final_obs_n": final_n}

        def step_one(
            state: Any, obs: jax.Array, final_obs: jax.Array, final_mask: jax.Array, noise: Any
        ) -> Any:
            state, obs_n, final_n = push(state, obs, final_obs, final_mask)
            return state, {**acting(state, obs_n, noise), "final_obs_n": final_n}

        def plain_step_one(state: Any, obs: jax.Array, noise: Any) -> Any:
            state, obs_n = normalize(state, obs, None)
            return state, acting(state, obs_n, noise)

        def act_one(state: Any, obs_n: jax.Array, noise: Any) -> Any:
            return state, acting(state, obs_n, noise)

        def noise_one(state: Any, key: jax.Array, counters: jax.Array, num_envs: int) -> Any:
            draw = lambda c: parts.acting_noise(state, jax.random.fold_in(key, c), num_envs)  # noqa: E731
            leaves, tree = jax.tree.flatten(jax.vmap(draw)(counters))
            self._noise_tree[num_envs] = tree
            return state, {str(i): leaf for i, leaf in enumerate(leaves)}

        self._noise_one = noise_one
        self._noise: dict[int, _StatePassing] = {}

        def values_one(state: Any, obs_n: jax.Array) -> Any:
            value_r, value_c = values(state, obs_n)
            return state, {"value_r": value_r, "value_c": value_c}

        def update_all(states: Any, rollout: Any, info: Any) -> Any:
            return over_seeds(parts.update_rollout, axis, 3)(states, rollout, info)

        self._observe = _StatePassing(observe_one, axis, 4)
        self._step = _StatePassing(step_one, axis, 5)
        self._plain_step = _StatePassing(plain_step_one, axis, 3)
        self._act = _StatePassing(act_one, axis, 3)
        self._values = _StatePassing(values_one, axis, 2)
        # Not with `seed_axis_options`: on PPO-Lag's update phase (epochs x minibatches in
        # nested loops) it was the option that made a lone seed round differently from the
        # same seed among two (tests/test_on_policy_loop.py, 2026-12-02); XLA's defaults
        # keep them bitwise equal there.
        self.update = tuned_jit(update_all, donate_argnums=0)

    def observe(
        self, states: Any, obs: np.ndarray, final_obs: np.ndarray, final_mask: np.ndarray
    ) -> tuple[Any, Observed]:
        states, out = self._observe(states, obs, final_obs, final_mask)
        return states, Observed(**out)

    def noise(self, states: Any, keys: jax.Array, counters: np.ndarray, num_envs: int) -> Any:
        program = self._noise.get(num_envs)
        if program is None:
            one = functools.partial(self._noise_one, num_envs=num_envs)
            program = self._noise[num_envs] = _StatePassing(one, self.axis, 2)
        _, out = program(states, keys, np.asarray(counters, np.int32))
        leaves = [out[str(i)] for i in range(len(out))]  # each [S, T, E, ...]
        return jax.tree.unflatten(self._noise_tree[num_envs], leaves)

    def step(
        self,
        states: Any,
        obs: np.ndarray,
        noise: Any,
        final_obs: np.ndarray | None = None,
        final_mask: np.ndarray | None = None,
    ) -> tuple[Any, Acted]:
        if final_obs is None:
            states, out = self._plain_step(states, obs, noise)
            return states, Acted(**out, final_obs_n=np.zeros_like(out["obs_n"]))
        states, out = self._step(states, obs, final_obs, final_mask, noise)
        return states, Acted(**out)

    def act(self, states: Any, obs_n: np.ndarray, noise: Any) -> Acted:
        _, out = self._act(states, obs_n, noise)
        return Acted(**out, final_obs_n=np.zeros_like(out["obs_n"]))

    def values(self, states: Any, obs_n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        _, out = self._values(states, obs_n)
        return out["value_r"], out["value_c"]

    def cache_sizes(self) -> dict[str, int]:
        """Compiled versions of each program so far (for no-recompilation checks)."""
        return {
            "observe": self._observe._cache_size(),
            "step": self._step._cache_size(),
            "plain_step": self._plain_step._cache_size(),
            "act": self._act._cache_size(),
            "noise": sum(program._cache_size() for program in self._noise.values()),
            "values": self._values._cache_size(),
            "update": self.update._cache_size(),
        }


@lru_cache(maxsize=32)
def on_policy_programs(parts: OnPolicyParts, axis: SeedAxis) -> OnPolicyPrograms:
    """The (cached) programs of an on-policy algorithm's `OnPolicyParts` on a seed axis."""
    return OnPolicyPrograms(parts, axis)


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
