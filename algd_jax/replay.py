"""Host-side ring-buffer replay for off-policy training.

The buffer is a dict of preallocated numpy arrays (one row per transition) filled by a
wrap-around insert. Sampling draws a whole ``[U, B]`` block of row indices at once from a
seeded ``numpy.random.Generator``, so the U fused updates of one env step get their
batches in a single host-to-device transfer.

``terminated`` and ``truncated`` are stored separately and the bootstrap masks are built
at sampling time (SPEC §5): ``mask_r = 1 - terminated`` by default; the reference's
"a time limit also ends the bootstrap" is the explicit ``truncation_ends_bootstrap``
option. ``mask_c`` is either the same mask (velocity tasks) or 1 everywhere (the reference
on navigation tasks).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

CostMask = Literal["same", "none"]

#: Per-row fields and their dtypes; shapes are filled in from obs_dim/act_dim.
FIELDS: tuple[str, ...] = (
    "obs",
    "action",
    "reward",
    "cost",
    "next_obs",
    "terminated",
    "truncated",
)


class ReplayBuffer:
    """Fixed-capacity FIFO of transitions in preallocated numpy arrays.

    Args:
        capacity: maximum number of stored transitions; older rows are overwritten.
        obs_dim: observation size ``ds``.
        act_dim: action size ``da``.
        seed: seed of the sampling generator (``numpy.random.default_rng``).
        truncation_ends_bootstrap: also zero both masks on time-limit truncation (the
            authors' choice); off by default, where only ``terminated`` ends it.
        cost_mask: ``"same"`` uses the reward mask for cost targets, ``"none"`` uses 1.
    """

    def __init__(
        self,
        capacity: int,
        obs_dim: int,
        act_dim: int,
        seed: int,
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
        self.truncation_ends_bootstrap = bool(truncation_ends_bootstrap)
        self.cost_mask: CostMask = cost_mask
        self.rng = np.random.default_rng(seed)
        # np.empty: pages are only touched when written, so a 1e6-row buffer costs memory
        # in proportion to what has been stored so far.
        self.data: dict[str, np.ndarray] = {
            name: np.empty((self.capacity, *shape), dtype=np.float32)
            for name, shape in self._row_shapes().items()
        }
        self.ptr = 0  # next row to write
        self.size = 0  # number of filled rows

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

    def __len__(self) -> int:
        return self.size

    def add(
        self,
        obs: np.ndarray,
        action: np.ndarray,
        reward: float,
        cost: float,
        next_obs: np.ndarray,
        terminated: bool,
        truncated: bool,
    ) -> None:
        """Store one transition (``obs`` [ds], ``action`` [da] in env units), overwriting
        the oldest row once the buffer is full."""
        i = self.ptr
        d = self.data
        d["obs"][i] = obs
        d["action"][i] = action
        d["reward"][i] = reward
        d["cost"][i] = cost
        d["next_obs"][i] = next_obs
        d["terminated"][i] = terminated
        d["truncated"][i] = truncated
        self.ptr = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample_block(self, num_updates: int, batch_size: int) -> dict[str, np.ndarray]:
        """Draw ``num_updates`` independent batches of ``batch_size`` rows (uniform, with
        replacement, filled rows only).

        Returns:
            dict of float32 arrays with leading shape ``[U, B]``: ``obs`` [U,B,ds],
            ``action`` [U,B,da], ``reward``, ``cost`` [U,B], ``next_obs`` [U,B,ds],
            ``mask_r``, ``mask_c`` [U,B] (1 = bootstrap from ``next_obs``).
        """
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        idx = self.rng.integers(0, self.size, size=(num_updates, batch_size))
        d = self.data
        ends = d["terminated"][idx]
        if self.truncation_ends_bootstrap:
            ends = np.maximum(ends, d["truncated"][idx])
        mask_r = 1.0 - ends
        mask_c = mask_r if self.cost_mask == "same" else np.ones_like(mask_r)
        return {
            "obs": d["obs"][idx],
            "action": d["action"][idx],
            "reward": d["reward"][idx],
            "cost": d["cost"][idx],
            "next_obs": d["next_obs"][idx],
            "mask_r": mask_r,
            "mask_c": mask_c,
        }

    # -- checkpointing -------------------------------------------------------------------

    def state_dict(self) -> dict[str, np.ndarray]:
        """The filled rows (``[size, ...]`` per field, in storage order) for a checkpoint;
        together with :meth:`meta` this restores the buffer exactly."""
        return {name: arr[: self.size] for name, arr in self.data.items()}

    def meta(self) -> dict[str, object]:
        """JSON-serialisable scalars: write pointer, fill, and the generator state."""
        return {
            "capacity": self.capacity,
            "ptr": self.ptr,
            "size": self.size,
            "rng": self.rng.bit_generator.state,
        }

    def load(self, arrays: dict[str, np.ndarray], meta: dict[str, object]) -> None:
        """Restore what :meth:`state_dict` and :meth:`meta` returned."""
        if int(meta["capacity"]) != self.capacity:
            raise ValueError(
                f"replay capacity {meta['capacity']} in the checkpoint differs from {self.capacity}"
            )
        size = int(meta["size"])
        for name in FIELDS:
            src = np.asarray(arrays[name])
            if src.shape[0] != size or src.shape[1:] != self.data[name].shape[1:]:
                raise ValueError(
                    f"replay field {name!r} has shape {src.shape}, expected "
                    f"({size}, *{self.data[name].shape[1:]})"
                )
            self.data[name][:size] = src
        self.size = size
        self.ptr = int(meta["ptr"])
        self.rng.bit_generator.state = meta["rng"]
