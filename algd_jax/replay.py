"""Host-side ring-buffer replay with a leading seed axis, for off-policy training.

The buffer holds preallocated numpy arrays `[S, capacity, ...]` (S independent seeds, each
its own transitions) filled by a wrap-around insert. Every env step adds one transition per
seed, so the write position and the fill are shared by the seeds.

Sampling draws a whole `[S, U, B]` block of row indices at once, so the U fused updates of
one env step get their batches in a single host-to-device transfer. Seed k's indices come
from a generator seeded by (seed k, the sampling stream, the env step): a pure function of
counters, so the buffer has no random state to save and seed k draws the same rows whether
it trains alone or among others.

`terminated` and `truncated` are stored separately and the bootstrap masks are built at
sampling time (SPEC §5): `mask_r = 1 - terminated` by default; the reference's "a time
limit also ends the bootstrap" is the explicit `truncation_ends_bootstrap` option. `mask_c`
is either the same mask (velocity tasks) or 1 everywhere (the reference on navigation tasks).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from algd_jax.types import Batch

CostMask = Literal["same", "none"]

#: Per-row fields, all stored as float32.
FIELDS: tuple[str, ...] = (
    "obs",
    "action",
    "reward",
    "cost",
    "next_obs",
    "terminated",
    "truncated",
)


def row_bytes(obs_dim: int, act_dim: int) -> int:
    """Bytes one transition takes in the buffer (float32 fields)."""
    return 4 * (2 * obs_dim + act_dim + 4)


def replay_bytes(num_seeds: int, capacity: int, obs_dim: int, act_dim: int) -> int:
    """Bytes a full buffer of `num_seeds` x `capacity` transitions takes."""
    return num_seeds * capacity * row_bytes(obs_dim, act_dim)


def sample_seed(seed: int, stream: int, step: int) -> np.random.Generator:
    """The generator of one seed's draws at one env step."""
    return np.random.default_rng(np.random.SeedSequence([seed, stream, step]))


class ReplayBuffer:
    """Fixed-capacity FIFO of transitions for S seeds, in preallocated numpy arrays.

    Args:
        capacity: transitions kept per seed; older rows are overwritten.
        obs_dim: observation size `ds`.
        act_dim: action size `da`.
        seeds: the run seed of each of the S seeds (they seed the sampling).
        stream: the random stream id of sampling (distinct from the run's other streams).
        truncation_ends_bootstrap: also zero both masks on time-limit truncation (the
            authors' choice); off by default, where only `terminated` ends it.
        cost_mask: `"same"` uses the reward mask for cost targets, `"none"` uses 1.
    """

    def __init__(
        self,
        capacity: int,
        obs_dim: int,
        act_dim: int,
        seeds: Sequence[int],
        stream: int = 2,
        truncation_ends_bootstrap: bool = False,
        cost_mask: CostMask = "same",
    ) -> None:
        if capacity < 1:
            raise ValueError(f"replay capacity must be a positive integer, got {capacity}")
        if cost_mask not in ("same", "none"):
            raise ValueError(f"cost_mask must be 'same' or 'none', got {cost_mask!r}")
        self.capacity = int(capacity)
        self.obs_dim = int(obs_dim)
        self.act_dim = int(act_dim)
        self.seeds = [int(s) for s in seeds]
        self.stream = int(stream)
        self.truncation_ends_bootstrap = bool(truncation_ends_bootstrap)
        self.cost_mask: CostMask = cost_mask
        num = len(self.seeds)
        # np.empty: pages are only touched when written, so a large buffer costs memory
        # in proportion to what has been stored so far.
        self.data: dict[str, np.ndarray] = {
            name: np.empty((num, self.capacity, *shape), dtype=np.float32)
            for name, shape in self._row_shapes().items()
        }
        self.ptr = 0  # next row to write
        self.size = 0  # number of filled rows (per seed)

    def _row_shapes(self) -> dict[str, tuple[int, ...]]:
        return {
            "obs": (self.obs_dim,),
            "action": (self.act_dim,),
            "reward": (),
            "cost": (),
            "next_obs": (self.obs_dim,),
            "terminated": (),
            "truncated": (),
        }

    @property
    def num_seeds(self) -> int:
        return len(self.seeds)

    def __len__(self) -> int:
        return self.size

    def add(
        self,
        obs: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        cost: np.ndarray,
        next_obs: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
    ) -> None:
        """Store one transition per seed (`obs [S, ds]`, `action [S, da]` in env units,
        the rest `[S]`), overwriting the oldest row once the buffer is full."""
        i = self.ptr
        d = self.data
        d["obs"][:, i] = obs
        d["action"][:, i] = action
        d["reward"][:, i] = reward
        d["cost"][:, i] = cost
        d["next_obs"][:, i] = next_obs
        d["terminated"][:, i] = terminated
        d["truncated"][:, i] = truncated
        self.ptr = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample_block(self, num_updates: int, batch_size: int, step: int) -> Batch:
        """Draw `num_updates` independent batches of `batch_size` rows per seed (uniform,
        with replacement, filled rows only), seeded by the env step `step`.

        Returns a `Batch` of float32 arrays with leading shape `[S, U, B]` (1 in the masks
        means: bootstrap from `next_obs`).
        """
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        shape = (num_updates, batch_size)
        idx = np.stack(
            [sample_seed(s, self.stream, step).integers(0, self.size, shape) for s in self.seeds]
        )
        rows = np.arange(self.num_seeds)[:, None, None]
        d = self.data
        ends = d["terminated"][rows, idx]
        if self.truncation_ends_bootstrap:
            ends = np.maximum(ends, d["truncated"][rows, idx])
        mask_r = 1.0 - ends
        mask_c = mask_r if self.cost_mask == "same" else np.ones_like(mask_r)
        return Batch(
            obs=d["obs"][rows, idx],
            action=d["action"][rows, idx],
            reward=d["reward"][rows, idx],
            cost=d["cost"][rows, idx],
            next_obs=d["next_obs"][rows, idx],
            mask_r=mask_r,
            mask_c=mask_c,
        )

    # -- checkpointing -------------------------------------------------------------------

    def state_dict(self, seed_index: int) -> dict[str, np.ndarray]:
        """Seed `seed_index`'s filled rows (`[size, ...]` per field, in storage order); with
        the write position (`ptr`) this restores that seed's part exactly."""
        return {name: arr[seed_index, : self.size] for name, arr in self.data.items()}

    def load(self, seed_index: int, arrays: dict[str, np.ndarray], ptr: int) -> None:
        """Restore what `state_dict(seed_index)` returned; every seed must be loaded with
        the same fill."""
        size = int(np.asarray(arrays["obs"]).shape[0])
        if size > self.capacity:
            raise ValueError(
                f"the checkpoint holds {size} transitions, more than --replay-size {self.capacity}"
            )
        for name in FIELDS:
            src = np.asarray(arrays[name])
            if src.shape[0] != size or src.shape[1:] != self.data[name].shape[2:]:
                raise ValueError(
                    f"replay field {name!r} has shape {src.shape}, expected "
                    f"({size}, *{self.data[name].shape[2:]})"
                )
            self.data[name][seed_index, :size] = src
        self.size = size
        self.ptr = int(ptr)
