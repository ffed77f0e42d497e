"""XLA compiler options of the agent's jitted programs (`tuned_jit`).

On the CPU backend the update, action selection and training step are compiled with
`CPU_COMPILER_OPTIONS`. Measured with `python -m benchmarks.train_step` on a 2-vCPU Intel
Xeon (Sapphire Rapids, AVX-512), jax 0.10.2, idle machine, (M, N) = (4, 4), fused U = 10:

* `xla_cpu_experimental_ynn_fusion_type=""`: XLA's default hands every matrix product to
  YNNPACK, which is faster for one lone 1024x256x256 product but slower for the update's
  batched `[members, rows, 256]` products and the many small score-net products. Eigen's
  kernels made the update about 10 % faster.
* `xla_cpu_prefer_vector_width=512`: elementwise loops (SiLU, Adam, bias adds) use the
  512-bit registers instead of 256-bit ones, another 5-7 %.

Neither option changes what is computed; the parity checks against the authors' code pass
with and without them. Set the environment variable `ALGD_JAX_CPU_TUNING=0` to compile
with XLA's defaults instead, e.g. to compare. Other backends always get XLA's defaults.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

import jax

CPU_COMPILER_OPTIONS: dict[str, str] = {
    "xla_cpu_experimental_ynn_fusion_type": "",
    "xla_cpu_prefer_vector_width": "512",
}

TUNING_ENV_VAR = "ALGD_JAX_CPU_TUNING"


def compiler_options() -> dict[str, str] | None:
    """The options for the default backend: `CPU_COMPILER_OPTIONS` on CPU unless
    `ALGD_JAX_CPU_TUNING=0`, otherwise None (XLA's defaults)."""
    setting = os.environ.get(TUNING_ENV_VAR, "1").strip()
    if setting not in ("0", "1"):
        raise ValueError(
            f"{TUNING_ENV_VAR}={setting!r} is not understood: use 1 (tuned XLA options on CPU, "
            "the default) or 0 (XLA's defaults)"
        )
    if setting == "0" or jax.default_backend() != "cpu":
        return None
    return dict(CPU_COMPILER_OPTIONS)


try:  # private API; looked up once here, since every call of a tuned function asks it
    from jax._src.core import trace_state_clean as _trace_state_clean
except ImportError:  # moved: look for tracers among the arguments instead
    _trace_state_clean = None


def _tracing(args: Any, kwargs: Any) -> bool:
    """True when called while another function is being traced (inside a jit, vmap, grad)."""
    if _trace_state_clean is None:
        return any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves((args, kwargs)))
    return not _trace_state_clean()


class _TunedJit:
    """`jax.jit(fun, **kwargs)` with `compiler_options()`, built at the first use.

    Deciding at the first call rather than at import keeps importing the package free of
    backend initialisation (so `JAX_PLATFORMS` and jax config set after the import still
    count). JAX accepts compiler options only on the outermost jit, so a call made while
    tracing (this function used inside another jitted function) goes to a plain
    `jax.jit(fun, **kwargs)`, and the outer program's options apply. Attributes such as
    `lower` or `_cache_size` are those of the tuned jitted function.
    """

    def __init__(self, fun: Callable[..., Any], jit_kwargs: dict[str, Any]):
        self._fun = fun
        self._jit_kwargs = jit_kwargs
        self._jitted: Any = None
        self._nested = jax.jit(fun, **jit_kwargs)
        functools.update_wrapper(self, fun)

    def _get(self) -> Any:
        if self._jitted is None:
            self._jitted = jax.jit(
                self._fun, compiler_options=compiler_options(), **self._jit_kwargs
            )
        return self._jitted

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if _tracing(args, kwargs):
            return self._nested(*args, **kwargs)
        return self._get()(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._get(), name)


def tuned_jit(fun: Callable[..., Any] | None = None, **jit_kwargs: Any) -> Any:
    """`jax.jit` with this package's compiler options; usable as `@tuned_jit` or
    `@tuned_jit(donate_argnums=0, ...)` with any `jax.jit` keyword."""
    if fun is None:
        return functools.partial(tuned_jit, **jit_kwargs)
    return _TunedJit(fun, jit_kwargs)
