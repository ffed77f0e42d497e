"""glibc allocator settings made at import (`algd_jax.malloc_tuning`): applied on Linux/glibc,
switchable off, never over the user's own settings, and they keep freed scratch resident."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from algd_jax import malloc_tuning

GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
REPO = Path(__file__).resolve().parents[1]

# In a fresh process: import algd_jax, then in a worker thread (XLA runs its programs on
# worker threads) allocate, touch, free and allocate again a 48 MiB block, the size of an
# update's scratch at (M, N) = (6, 6); report the page faults of touching it the second time.
PROBE = """
import ctypes, json, resource, threading
import algd_jax
from algd_jax import malloc_tuning
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
size, out = 48 * 2**20, {}
def work():
    for attempt in range(3):
        block = libc.malloc(size)
        before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
        ctypes.memset(block, 1, size)
        out[attempt] = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before
        libc.free(block)
thread = threading.Thread(target=work)
thread.start()
thread.join()
print(json.dumps({"applied": malloc_tuning.APPLIED, "faults": out[2]}))
"""


def _probe(**env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if k not in malloc_tuning.USER_MALLOC_ENV}
    clean.pop(malloc_tuning.ENV_VAR, None)
    clean.pop("GLIBC_TUNABLES", None)
    clean.update(env, PYTHONPATH=str(REPO))
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env=clean, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not GLIBC, reason="glibc only")
def test_freed_scratch_stays_resident_unless_switched_off():
    pages = 48 * 2**20 // 4096
    tuned = _probe()
    assert tuned["applied"] == {name: v for name, (_, v) in malloc_tuning.SETTINGS.items()}
    assert tuned["faults"] < pages // 100  # the block was reused without faulting back in
    off = _probe(**{malloc_tuning.ENV_VAR: "0"})
    assert off["applied"] == {}
    assert off["faults"] > pages // 2  # glibc's defaults: returned to the OS and faulted back


def test_skip_reasons(monkeypatch):
    for name in (*malloc_tuning.USER_MALLOC_ENV, "GLIBC_TUNABLES", malloc_tuning.ENV_VAR):
        monkeypatch.delenv(name, raising=False)
    if GLIBC:
        assert malloc_tuning.skip_reason() is None
    monkeypatch.setenv(malloc_tuning.ENV_VAR, "0")
    assert malloc_tuning.skip_reason() == "ALGD_JAX_MALLOC_TUNING=0"
    monkeypatch.delenv(malloc_tuning.ENV_VAR)
    monkeypatch.setenv("MALLOC_ARENA_MAX", "1")  # not a threshold: still ours to set
    if GLIBC:
        assert malloc_tuning.skip_reason() is None
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=1")
    assert "GLIBC_TUNABLES" in (malloc_tuning.skip_reason() or "")
    monkeypatch.delenv("GLIBC_TUNABLES")
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "1")
    assert "MALLOC_TRIM_THRESHOLD_" in (malloc_tuning.skip_reason() or "")
