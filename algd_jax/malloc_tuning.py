"""glibc allocator settings that keep the update's scratch memory resident between calls.

Each call of a compiled update allocates its scratch (about 51 MB at M = N = 6, batch 256)
with `malloc` and frees it on return. With glibc's defaults a block that large is
`mmap`ed and `munmap`ed on every call (or, below the dynamic mmap threshold, trimmed off the
heap with `brk`/`madvise`), so the next call page-faults all of it back in: about 12k page
faults and 15-50 ms of system time per call at (6, 6), which made one unfused `update` 1.27x
(CPU time 1.29x) the per-update time of the fused scan on a 2-vCPU AMD EPYC (Zen 3). With
the two settings below the scratch stays in the heap: 0 page faults per call and the single
update as fast as the fused one per update (0.99x; measured 2026-11-30, jax 0.10.2).

* `M_MMAP_THRESHOLD` = 256 MiB: blocks up to 256 MiB come from the heap, not from `mmap`;
* `M_TRIM_THRESHOLD` = 512 MiB: the heap returns free memory at its top to the OS only
  beyond 512 MiB.

The price is memory: up to that much freed memory per malloc arena stays mapped (resident
where it was touched) instead of being returned, which for this package's long-running
training processes is the scratch they need again on the next call anyway. Blocks over
64 MiB allocated by threads other than the main one still come from `mmap` (glibc's
per-thread heaps are at most 64 MiB), so scratch beyond that (much larger batches or
networks) still faults; `MALLOC_ARENA_MAX=1` would move it to the main heap, at the cost of
contention between threads, and is not set here.

`apply()` runs once when `algd_jax` is imported, only on Linux with glibc. It does nothing
when `ALGD_JAX_MALLOC_TUNING=0` (the switch), or when the user already chose allocator
settings (`MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_`, `MALLOC_TOP_PAD_`,
`MALLOC_MMAP_MAX_` or a `glibc.malloc` entry in `GLIBC_TUNABLES`): those are left alone.
`APPLIED` records what was set (empty when nothing was).
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys

ENV_VAR = "ALGD_JAX_MALLOC_TUNING"

#: mallopt parameter numbers (glibc's malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

SETTINGS: dict[str, tuple[int, int]] = {
    "M_MMAP_THRESHOLD": (M_MMAP_THRESHOLD, 256 * 2**20),
    "M_TRIM_THRESHOLD": (M_TRIM_THRESHOLD, 512 * 2**20),
}

#: Environment variables through which a user sets glibc's allocator themselves.
USER_MALLOC_ENV = (
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TRIM_THRESHOLD_",
    "MALLOC_TOP_PAD_",
    "MALLOC_MMAP_MAX_",
)

#: What `apply` set: parameter name -> value (empty when it set nothing).
APPLIED: dict[str, int] = {}


def skip_reason() -> str | None:
    """Why the settings are not applied in this process, or None when they are."""
    setting = os.environ.get(ENV_VAR, "1").strip()
    if setting == "0":
        return f"{ENV_VAR}=0"
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return "not Linux with glibc"
    chosen = [name for name in USER_MALLOC_ENV if name in os.environ]
    if "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""):
        chosen.append("GLIBC_TUNABLES")
    if chosen:
        return f"allocator settings chosen by the user ({', '.join(chosen)})"
    return None


def apply() -> dict[str, int]:
    """Set `SETTINGS` with glibc's `mallopt` unless `skip_reason()`; returns `APPLIED`.

    Any failure (no `mallopt`, a rejected value) leaves the allocator as it was: these
    settings change speed, never results.
    """
    if APPLIED or skip_reason() is not None:
        return APPLIED
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return APPLIED
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    for name, (param, value) in SETTINGS.items():
        if mallopt(param, value) == 1:
            APPLIED[name] = value
    return APPLIED
