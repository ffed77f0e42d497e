"""algd_jax.faults: the one-line forms of disk, memory and signal faults."""

from __future__ import annotations

import errno
import os
import signal
from pathlib import Path

import pytest

from algd_jax.faults import (
    deferred_interrupts,
    is_disk_full,
    is_out_of_memory,
    oom_reason,
    require_writable,
    write_fault,
)
from algd_jax.train_config import RunError


def test_out_of_memory_is_recognised() -> None:
    xla = RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 8 bytes.")
    assert is_out_of_memory(xla) and is_out_of_memory(MemoryError())
    assert not is_out_of_memory(ValueError("RESOURCE_EXHAUSTED: too many open files"))
    assert oom_reason(xla) == "Out of memory while trying to allocate 8 bytes."


def test_write_fault_names_the_path_and_the_fix() -> None:
    full = OSError(errno.ENOSPC, "No space left on device")
    assert is_disk_full(full) and not is_disk_full(OSError(errno.EACCES, "Permission denied"))
    fault = write_fault(full, "run/progress.csv", "free space")
    assert fault.exit_code == 1
    assert str(fault) == (
        "could not write run/progress.csv (No space left on device); the disk is full or not "
        "writable; free space"
    )


def test_require_writable(tmp_path: Path) -> None:
    require_writable(tmp_path)  # passes, and leaves nothing behind
    assert list(tmp_path.iterdir()) == []
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(RunError, match=r"^--resume .*/file: cannot write in it \(Not a direc"):
        require_writable(blocker, "--resume")


def test_deferred_interrupts_hold_a_signal_until_the_block_is_done() -> None:
    before = signal.getsignal(signal.SIGINT)
    done = []
    with deferred_interrupts() as pending:
        os.kill(os.getpid(), signal.SIGINT)  # would raise KeyboardInterrupt here
        done.append(True)
    assert done == [True] and pending == [signal.SIGINT]
    assert signal.getsignal(signal.SIGINT) is before
