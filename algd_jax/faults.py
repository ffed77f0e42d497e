"""Faults from outside the numbers (the disk, memory, a signal at the wrong moment) turned
into the one-line `RunError`s the commands print.

* `require_writable(path, label)`: refuse, before anything is changed, a run directory
  that cannot be written (a read-only file system, no permission).
* `deferred_interrupts()`: a block that must complete or not start (the start-up repair
  of a resumed run): SIGINT/SIGTERM during it are held and reported after it.
* `write_fault(err, what, fix)`: a failed write (a full disk) as one line.
* `is_out_of_memory(err)`: whether an exception is XLA's or the host's out-of-memory.
"""

from __future__ import annotations

import os
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from algd_jax.train_config import EXIT_BAD_INPUT, EXIT_FAULT, RunError


def _probe(directory: Path) -> None:
    """Create and remove a temporary file in `directory` (raises OSError if it cannot)."""
    fd, name = tempfile.mkstemp(dir=directory, prefix=".algd-probe-")
    os.close(fd)
    os.unlink(name)


def require_writable(path: Path, label: str = "") -> None:
    """Raise `RunError` (exit 2) when no file can be created in directory `path`."""
    try:
        _probe(Path(path))
    except OSError as err:
        where = f"{label} {path}" if label else str(path)
        raise RunError(
            f"{where}: cannot write in it ({err.strerror or type(err).__name__}); the run "
            f"needs a writable directory (copy it to one, or remount its file system "
            f"read-write)",
            EXIT_BAD_INPUT,
        ) from None


@contextmanager
def deferred_interrupts() -> Iterator[list[int]]:
    """Hold SIGINT and SIGTERM until the block has finished; the list the block receives
    holds the signals that arrived meanwhile (the caller reports them). Outside the main
    thread signals are left alone."""
    pending: list[int] = []

    def hold(signum: int, _frame: Any) -> None:
        pending.append(signum)

    try:
        previous = {s: signal.signal(s, hold) for s in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread
        yield pending
        return
    try:
        yield pending
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _reason(err: BaseException) -> str:
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    text = str(err).strip()
    return (text.splitlines()[0] if text else type(err).__name__)[:160]


def is_disk_full(err: BaseException) -> bool:
    import errno

    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
        return True
    text = str(err)
    return "No space left" in text or ("RESOURCE_EXHAUSTED" in text and "memory" not in text)


def write_fault(err: BaseException, what: str, fix: str) -> RunError:
    """A failed write of `what` (e.g. "the checkpoint at env step 300 in DIR") as one line
    ending in `fix` (exit 1)."""
    hint = "the disk is full or not writable; " if is_disk_full(err) else ""
    return RunError(f"could not write {what} ({_reason(err)}); {hint}{fix}", EXIT_FAULT)


def is_out_of_memory(err: BaseException) -> bool:
    """XLA's RESOURCE_EXHAUSTED for an allocation, or Python's MemoryError."""
    if isinstance(err, MemoryError):
        return True
    text = str(err)
    return "RESOURCE_EXHAUSTED" in text and ("memory" in text.lower() or "alloc" in text.lower())


def oom_reason(err: BaseException) -> str:
    """The first line of an out-of-memory error, without XLA's status prefix."""
    return _reason(err).replace("RESOURCE_EXHAUSTED: ", "")
