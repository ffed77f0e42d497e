"""Orbax checkpoints of a training run: the agent state, the replay buffer and the loop state.

Layout inside a run directory::

    checkpoints/last/<env_step>/{agent,replay,loop,meta}   # the latest `keep` checkpoints
    checkpoints/best/<env_step>/{agent,meta}               # best feasible evaluation so far

`agent` is the algorithm's whole state pytree (train states, targets, multiplier, step,
PRNG key), `replay` the filled rows of the ring buffer, `loop` the loop's state pytree
(counters, the current episode's totals and actions, partial-epoch sums, best evaluation),
and `meta` a JSON document: the format, a digest of the run's resolved config, and
checksums of the array items, so that a corrupt or truncated checkpoint is reported
instead of silently resumed.

Checkpoints are written synchronously: the replay arrays are mutated in place right after a
save, and orbax's asynchronous mode would race with that.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from algd_jax.train_config import RunError

Which = Literal["last", "best"]


class CheckpointError(RunError):
    """A checkpoint that cannot be read back, or whose content fails its checksum."""

    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=1)


def _leaf_bytes(leaf: Any) -> bytes:
    if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        leaf = jax.random.key_data(leaf)
    return np.ascontiguousarray(jax.device_get(leaf)).tobytes()


def digest(tree: Any) -> str:
    """A content hash of every array leaf of `tree` (shape-insensitive, order-sensitive)."""
    h = hashlib.blake2b(digest_size=16)
    for leaf in jax.tree.leaves(tree):
        h.update(_leaf_bytes(leaf))
    return h.hexdigest()


#: Name of the file, beside a checkpoint's items, that lists the digest of every file.
FILE_DIGESTS = "files.json"


def _file_digests(where: Path) -> dict[str, str]:
    out = {}
    for path in sorted(where.rglob("*")):
        if path.is_file() and path.name != FILE_DIGESTS:
            h = hashlib.blake2b(digest_size=16)
            with path.open("rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            out[str(path.relative_to(where))] = h.hexdigest()
    return out


def _write_file_digests(where: Path) -> None:
    """Record every file's digest, so that damage is found before orbax reads a file (a
    damaged file read by tensorstore leaves its reader threads failing at exit)."""
    tmp = where / (FILE_DIGESTS + ".tmp")
    tmp.write_text(json.dumps(_file_digests(where), indent=0))
    tmp.replace(where / FILE_DIGESTS)


def _check_file_digests(where: Path) -> str | None:
    """Why a checkpoint's files are not what was saved (None if every file matches its
    recorded digest): the record is missing (the save did not finish, or it was deleted)
    or unreadable, a file differs, is missing, or was added."""
    record = where / FILE_DIGESTS
    if not record.is_file():
        return f"{FILE_DIGESTS}, the record of its files, is missing"
    try:
        saved = json.loads(record.read_text())
        if not isinstance(saved, dict):
            raise ValueError
    except (OSError, ValueError):
        return f"{FILE_DIGESTS} is unreadable"
    current = _file_digests(where)
    for name, value in saved.items():
        if name not in current:
            return f"{name} is missing"
        if current[name] != value:
            return f"{name} differs from what was saved"
    return None


@contextmanager
def _quiet_orbax() -> Iterator[None]:
    """Silence orbax's own error logs (absl) while it reads: a damaged file is reported as
    one `CheckpointError` line, not as a log record before it."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _reason(err: BaseException) -> str:
    """A short, printable reason from an orbax/tensorstore exception (no object reprs)."""
    text = str(err).strip()
    first = text.splitlines()[0] if text else type(err).__name__
    first = first.split(" See full TensorStore details")[0]
    first = re.sub(r"<[^<>]*(?:bound method|object at|function)[^<>]*>?", "...", first)
    return first[:200]


def _as_template(template_leaf: Any, leaf: Any) -> Any:
    """A restored loop-state leaf as the kind of array its template holds (numpy leaves
    stay numpy; device leaves become uncommitted device arrays)."""
    if isinstance(template_leaf, np.ndarray):
        return np.asarray(leaf, dtype=template_leaf.dtype).copy()
    return _uncommitted(leaf)


def _abstract(tree: Any) -> Any:
    return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


def _uncommitted(leaf: Any) -> Any:
    """A copy of a restored array that is not committed to a device.

    Orbax returns arrays committed to their saved sharding, and jit compiles separately for
    committed and uncommitted inputs; a freshly created agent is uncommitted, so this keeps
    a resumed run on the programs that are already compiled.
    """
    if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        data = jnp.asarray(np.asarray(jax.random.key_data(leaf)))
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(leaf))
    return jnp.asarray(np.asarray(leaf))


class Checkpointer:
    """Saves and restores the checkpoints of one run directory.

    Args:
        run_dir: the run directory; checkpoints go to `run_dir/checkpoints/{last,best}`.
        keep: number of latest checkpoints to keep (older ones are removed on save).
    """

    def __init__(self, run_dir: Path, keep: int = 3) -> None:
        self.root = Path(run_dir).absolute() / "checkpoints"
        self._managers: dict[str, ocp.CheckpointManager] = {}
        self._keep = {"last": keep, "best": 1}
        self._verified: set[tuple[str, int]] = set()

    def _manager(self, which: Which) -> ocp.CheckpointManager:
        if which not in self._managers:
            # Reading must not create anything in a run directory: the directory is made
            # by `save`, never by the manager.
            options = ocp.CheckpointManagerOptions(
                max_to_keep=self._keep[which], enable_async_checkpointing=False, create=False
            )
            with _quiet_orbax():
                manager = ocp.CheckpointManager(self.root / which, options=options)
            self._managers[which] = manager
        return self._managers[which]

    def steps(self, which: Which = "last") -> list[int]:
        """Env steps of the stored checkpoints, ascending."""
        if not (self.root / which).is_dir():
            return []
        with _quiet_orbax():
            return sorted(self._manager(which).all_steps())

    def verify(self, which: Which, step: int) -> None:
        """Raise `CheckpointError` naming the file if checkpoint `step` is not exactly what
        was saved (checked once per checkpoint, before orbax reads any of its files)."""
        if (which, step) in self._verified:
            return
        where = self.root / which / str(step)
        damaged = _check_file_digests(where)
        if damaged:
            raise CheckpointError(
                f"checkpoint {where} is corrupt or truncated ({damaged}); "
                f"{self._others(which, step)}"
            )
        self._verified.add((which, step))

    def save(
        self,
        step: int,
        agent: Any,
        meta: dict[str, Any],
        loop: Any = None,
        replay: dict[str, np.ndarray] | None = None,
        which: Which = "last",
    ) -> Path:
        """Write one checkpoint at env step `step`; returns its directory.

        `meta` must be JSON-serialisable; checksums of the array items are added to it.
        """
        meta = dict(meta)
        meta["checksums"] = {"agent": digest(agent)}
        items = {"agent": ocp.args.StandardSave(agent)}
        for name, tree in (("loop", loop), ("replay", replay)):
            if tree is not None:
                meta["checksums"][name] = digest(tree)
                items[name] = ocp.args.StandardSave(tree)
        items["meta"] = ocp.args.JsonSave(meta)
        (self.root / which).mkdir(parents=True, exist_ok=True)
        manager = self._manager(which)
        manager.save(step, args=ocp.args.Composite(**items), force=True)
        manager.wait_until_finished()
        where = self.root / which / str(step)
        _write_file_digests(where)
        self._verified.discard((which, step))
        return where

    def remove_after(self, step: int, which: Which = "last") -> list[int]:
        """Delete the checkpoints made after env step `step` (a resume from an older one
        repeats those steps); returns their steps."""
        newer = [s for s in self.steps(which) if s > step]
        for s in newer:
            self._manager(which).delete(s)
        return newer

    def read_meta(self, which: Which = "last", step: int | None = None) -> dict[str, Any]:
        """The JSON `meta` item of one checkpoint (the newest if `step` is None)."""
        steps = self.steps(which)
        if not steps:
            raise CheckpointError(f"no {which} checkpoint in {self.root / which}")
        step = steps[-1] if step is None else step
        self.verify(which, step)
        path = self.root / which / str(step) / "meta" / "metadata"
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise CheckpointError(
                f"checkpoint {path.parent.parent} is corrupt or truncated (its meta item is "
                f"unreadable: {type(err).__name__}); {self._others(which, step)}"
            ) from None
        if not isinstance(data, dict):
            raise CheckpointError(f"checkpoint {path.parent.parent} has a malformed meta item")
        return data

    def restore(
        self,
        template: Any,
        which: Which = "last",
        step: int | None = None,
        loop_template: Any = None,
        with_replay: bool = True,
    ) -> tuple[Any, Any, dict[str, np.ndarray] | None, dict[str, Any]]:
        """Read back (agent, loop state or None, replay arrays or None, meta) of one
        checkpoint.

        Args:
            template: an agent state with the right structure, shapes and dtypes (e.g. a
                freshly created agent with the same config); its values are not used.
            which: `last` or `best`.
            step: env step to read; the newest if None.
            loop_template: the loop state's structure, or None not to read it.
            with_replay: also read the replay buffer (not stored in `best`).

        Raises:
            CheckpointError: nothing to restore, unreadable files, or a checksum mismatch.
        """
        steps = self.steps(which)
        if not steps:
            raise CheckpointError(f"no {which} checkpoint in {self.root / which}")
        step = steps[-1] if step is None else step
        where = self.root / which / str(step)
        self.verify(which, step)
        items = {
            "agent": ocp.args.StandardRestore(_abstract(template)),
            "meta": ocp.args.JsonRestore(),
        }
        if loop_template is not None:
            items["loop"] = ocp.args.StandardRestore(_abstract(loop_template))
        if with_replay:
            items["replay"] = ocp.args.StandardRestore()
        try:
            with _quiet_orbax():
                restored = self._manager(which).restore(step, args=ocp.args.Composite(**items))
            agent, meta = jax.tree.map(_uncommitted, restored["agent"]), restored["meta"]
            loop = None
            if loop_template is not None:
                loop = jax.tree.map(_as_template, loop_template, restored["loop"])
            replay = restored["replay"] if with_replay else None
        except Exception as err:  # orbax/tensorstore raise many types for damaged files
            raise CheckpointError(
                f"checkpoint {where} is corrupt or truncated ({_reason(err)}); "
                f"{self._others(which, step)}"
            ) from None
        sums = meta.get("checksums", {}) if isinstance(meta, dict) else {}
        parts = [("agent", agent)]
        parts += [("loop", loop)] if loop_template is not None else []
        parts += [("replay", replay)] if with_replay else []
        for name, tree in parts:
            if sums.get(name) != digest(tree):
                raise CheckpointError(
                    f"checkpoint {where} is corrupt: its {name} data fails the checksum; "
                    f"{self._others(which, step)}"
                )
        return agent, loop, replay, meta

    def _others(self, which: Which, step: int) -> str:
        others = [s for s in self.steps(which) if s != step]
        if not others:
            return "no other checkpoint to fall back on"
        return (
            f"other checkpoints: steps {others}; move the damaged directory aside to "
            f"resume from step {others[-1]}"
        )

    def close(self) -> None:
        for manager in self._managers.values():
            manager.close()
        self._managers.clear()
