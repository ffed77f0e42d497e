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
from typing import TYPE_CHECKING, Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

from algd_jax.compile_options import compiler_options, program_precision, tuned_jit
from algd_jax.types import Batch, Metrics

if TYPE_CHECKING:  # the registry imports every algorithm; the loops import this module
    from algd_jax.algorithms.base import OnPolicyParts

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


# ----------------------------------------------------------------------------- on-policy


def _state_leaves_changed(
    fn: Callable[..., Any], states: Any, mapped: tuple[Any, ...], shared: tuple[Any, ...]
) -> tuple[bool, ...]:
    """Which leaves of the state `fn(state, *mapped, *shared) -> (state, ...)` returns are
    not simply its input leaves, found by tracing one seed's function once.

    A program mapped over seeds copies every leaf it returns, changed or not (`lax.map`
    stacks its outputs, `vmap` does not forward them either): for a learner state of a few
    hundred kB that is a copy of the whole state per env step, measured at about 100 us
    for 600 kB on the 2-core CPU. Returning only the changed leaves avoids it."""
    one = lambda x: jax.ShapeDtypeStruct(np.shape(x)[1:], x.dtype)  # noqa: E731
    whole = lambda x: jax.ShapeDtypeStruct(np.shape(x), jnp.result_type(x))  # noqa: E731
    abstract = (
        jax.tree.map(one, states),
        *(jax.tree.map(one, a) for a in mapped),
        *(jax.tree.map(whole, a) for a in shared),
    )
    closed, out_shape = jax.make_jaxpr(lambda *a: fn(*a)[0], return_shape=True)(*abstract)
    leaves, treedef = jax.tree.flatten(states)
    if jax.tree.structure(out_shape) != treedef:
        raise TypeError(f"{fn.__name__} must return a state of the structure it is given")
    invars = closed.jaxpr.invars[: len(leaves)]
    return tuple(out is not arg for out, arg in zip(closed.jaxpr.outvars, invars, strict=True))


class _StatePassing:
    """`fn(state, *mapped, *shared) -> (state, *rest)` over the seed axis, compiled, with
    the state's unchanged leaves handed back as the very input arrays (see
    `_state_leaves_changed`); no donation.

    Built for a call per env step: the state goes in as its list of leaves with the
    structure static (one compiled program per state structure), so neither the lookup of
    the compiled program nor jit's argument handling walks the state's pytree nodes again,
    and the compiler options are chosen once per structure."""

    def __init__(self, fn: Callable[..., Any], axis: SeedAxis, num_mapped: int):
        self.fn, self.axis, self.num_mapped = fn, axis, num_mapped
        self._programs: dict[Any, tuple[Any, tuple[bool, ...]]] = {}

    def _build(self, states: Any, treedef: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
        mapped, shared = args[: self.num_mapped - 1], args[self.num_mapped - 1 :]
        changed = _state_leaves_changed(self.fn, states, mapped, shared)
        fn, axis, num_mapped = self.fn, self.axis, self.num_mapped

        def one(state: Any, *a: Any) -> Any:
            new, *rest = fn(state, *a)
            kept = [x for x, c in zip(jax.tree.leaves(new), changed, strict=True) if c]
            return kept, tuple(rest)

        def run(leaves: list[jax.Array], *a: Any) -> Any:
            return over_seeds(one, axis, num_mapped)(jax.tree.unflatten(treedef, leaves), *a)

        options = compiler_options(program_precision((states,), {}))
        return jax.jit(run, compiler_options=options), changed

    def __call__(self, states: Any, *args: Any) -> tuple[Any, ...]:
        leaves, treedef = jax.tree.flatten(states)
        built = self._programs.get(treedef)
        if built is None:
            built = self._programs[treedef] = self._build(states, treedef, args)
        jitted, changed = built
        new, rest = jitted(leaves, *args)
        fresh = iter(new)
        merged = [next(fresh) if c else x for x, c in zip(leaves, changed, strict=True)]
        return (jax.tree.unflatten(treedef, merged), *rest)

    def _cache_size(self) -> int:
        return sum(jitted._cache_size() for jitted, _ in self._programs.values())


class OnPolicyPrograms:
    """The compiled programs of an on-policy algorithm (its `OnPolicyParts`) on a seed axis,
    shared by every run in a process. S seeds, E environments per seed, raw observations
    `[S, E, ds]` float32, actions `[S, E, da]`; `keys [S]` are each seed's acting keys (the
    noise of env step `counter` is `fold_in(keys[k], counter)`, so seed k's draws do not
    depend on the other seeds); `counter` an int (the env step of every seed's envs).

    `observe(states, obs, final_obs, final_mask) -> (states, obs_n, final_values, values)`:
        per seed, push the final observations `final_obs [S, E, ds]` of the episodes that
        just ended (rows where `final_mask [S, E]`), value them with the statistics after
        that push (`final_values = (V_r, V_c)`, each `[S, E]`, what a truncated episode
        bootstraps from), then push the observations `obs` and normalise them (`obs_n [S,
        E, ds]`, with `values` = their `(V_r, V_c)`, what the rollout's cut bootstraps
        from). The start of a run and the end of every rollout use it.
    `step(states, obs, final_obs, final_mask, keys, counter) -> (states, obs_n,
        final_values, env_actions, extras)`: `observe` without the values of `obs_n`, then
        `rollout_act` on `obs_n` (`env_actions [S, E, da]`, `extras` a `RolloutExtras` of
        `[S, E, ...]`): the one call per env step inside a rollout.
    `act(states, obs_n, keys, counter) -> (env_actions, extras)`: `rollout_act` on
        normalised observations (the first step of a rollout, on the observations the last
        rollout's `observe` normalised).
    `update(states, rollout, info) -> (states, metrics)`: one update phase per seed,
        `rollout` a `Rollout` of `[S, T, E, ...]`, `info` a `LoopInfo` of `[S, ...]`,
        metrics `[S]` each; the states are donated. One compiled call per rollout for all
        seeds.

    `observe` and `step` change only the observation statistics of a state and hand back
    the other leaves as they came in (no copy per env step); they do not donate. Every
    program keeps one compiled version across calls as long as the shapes and the state's
    structure stay (`counter` is passed as an int32 array).
    """

    def __init__(self, parts: OnPolicyParts, axis: SeedAxis):
        self.parts, self.axis = parts, axis
        normalize, values = parts.normalize_observation, parts.values

        def observe_one(
            state: Any, obs: jax.Array, final_obs: jax.Array, final_mask: jax.Array
        ) -> tuple[Any, jax.Array, tuple[jax.Array, jax.Array]]:
            state, final_n = normalize(state, final_obs, final_mask)
            final_values = values(state, final_n)
            state, obs_n = normalize(state, obs, None)
            return state, obs_n, final_values

        def observe_values_one(
            state: Any, obs: jax.Array, final_obs: jax.Array, final_mask: jax.Array
        ) -> tuple[Any, ...]:
            state, obs_n, final_values = observe_one(state, obs, final_obs, final_mask)
            return state, obs_n, final_values, values(state, obs_n)

        def act_one(state: Any, obs_n: jax.Array, key: jax.Array, counter: jax.Array) -> Any:
            return parts.rollout_act(state, obs_n, jax.random.fold_in(key, counter))

        def step_one(
            state: Any,
            obs: jax.Array,
            final_obs: jax.Array,
            final_mask: jax.Array,
            key: jax.Array,
            counter: jax.Array,
        ) -> tuple[Any, ...]:
            state, obs_n, final_values = observe_one(state, obs, final_obs, final_mask)
            env_actions, extras = act_one(state, obs_n, key, counter)
            return state, obs_n, final_values, env_actions, extras

        def act_all(states: Any, obs_n: jax.Array, keys: jax.Array, counter: jax.Array) -> Any:
            return over_seeds(act_one, axis, 3)(states, obs_n, keys, counter)

        def update_all(states: Any, rollout: Any, info: Any) -> Any:
            return over_seeds(parts.update_rollout, axis, 3)(states, rollout, info)

        self._observe = _StatePassing(observe_values_one, axis, 4)
        self._step = _StatePassing(step_one, axis, 5)
        self._act = tuned_jit(act_all)
        self.update = tuned_jit(update_all, donate_argnums=0)

    def observe(
        self, states: Any, obs: Any, final_obs: Any, final_mask: Any
    ) -> tuple[Any, jax.Array, tuple[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]:
        return self._observe(states, obs, final_obs, final_mask)

    def step(
        self, states: Any, obs: Any, final_obs: Any, final_mask: Any, keys: jax.Array, counter: int
    ) -> tuple[Any, ...]:
        return self._step(states, obs, final_obs, final_mask, keys, np.int32(counter))

    def act(self, states: Any, obs_n: Any, keys: jax.Array, counter: int) -> Any:
        return self._act(states, obs_n, keys, np.int32(counter))

    def cache_sizes(self) -> dict[str, int]:
        """Compiled versions of each program so far (for no-recompilation checks)."""
        return {
            "observe": self._observe._cache_size(),
            "step": self._step._cache_size(),
            "act": self._act._cache_size(),
            "update": self.update._cache_size(),
        }


@lru_cache(maxsize=32)
def on_policy_programs(parts: OnPolicyParts, axis: SeedAxis) -> OnPolicyPrograms:
    """The (cached) programs of an on-policy algorithm's `OnPolicyParts` on a seed axis."""
    return OnPolicyPrograms(parts, axis)
