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

Programs of a `precision="bf16"` agent (bfloat16 products, `algd_jax.networks`) are compiled
with options of their own, chosen per program from the agent state among its arguments
(`program_precision`). Which dot path is faster for bfloat16 depends on the CPU, and the same
choice holds for every product of the update (the score net's [B, 39/128] x [.., 128] and the
critics' [members, rows, 23/256] x [.., 256] products, forward and backward):

* without bfloat16 dot instructions (AMD Zen 3, AVX2 only; measured 2026-11-30, jax 0.10.2,
  one core): bf16 products ran at 0.7-0.95x of float32's GFLOP/s with Eigen and at
  0.45-0.7x on XLA's default YNNPACK path; the whole fused bf16 update at (4, 4) took
  70.5 ms with Eigen and 99.1 ms on XLA's default path (f32: 66.9). bf16 programs therefore
  get `CPU_COMPILER_OPTIONS` too;
* with them (`avx512_bf16` or `amx_bf16` in /proc/cpuinfo, e.g. AMD Zen 5, Intel Sapphire
  Rapids): XLA's default YNNPACK path ran bf16 products at 680-760 GFLOP/s on Zen 5, against
  370-390 with Eigen (slower than float32), so bf16 programs get `CPU_BF16_DOT_OPTIONS`,
  which leave the dots to XLA's default.

`ALGD_JAX_BF16_DOTS=eigen` or `=xla` overrides that choice (`auto`, the default, decides from
the CPU flags), e.g. to measure both on a new machine.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax

CPU_COMPILER_OPTIONS: dict[str, str] = {
    "xla_cpu_experimental_ynn_fusion_type": "",
    "xla_cpu_prefer_vector_width": "512",
}

#: bf16 programs on a CPU with bfloat16 dot instructions: dots on XLA's default path.
CPU_BF16_DOT_OPTIONS: dict[str, str] = {
    "xla_cpu_prefer_vector_width": "512",
}

TUNING_ENV_VAR = "ALGD_JAX_CPU_TUNING"
BF16_DOTS_ENV_VAR = "ALGD_JAX_BF16_DOTS"

#: /proc/cpuinfo flags of x86 CPUs with bfloat16 dot-product instructions.
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.lru_cache(maxsize=1)
def cpu_has_bf16_dots() -> bool:
    """Whether this CPU has bfloat16 dot-product instructions (Linux: /proc/cpuinfo flags;
    `avx512_bf16`/`amx_bf16` on x86, `bf16` on Arm). False when that cannot be read."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags = set(value.split())
            return any(flag in flags for flag in (*BF16_CPU_FLAGS, "bf16"))
    return False


def _bf16_dots_on_xla_default() -> bool:
    setting = os.environ.get(BF16_DOTS_ENV_VAR, "auto").strip()
    if setting not in ("auto", "eigen", "xla"):
        raise ValueError(
            f"{BF16_DOTS_ENV_VAR}={setting!r} is not understood: use auto (decide from the "
            "CPU's bfloat16 instructions, the default), eigen or xla"
        )
    return setting == "xla" or (setting == "auto" and cpu_has_bf16_dots())


def compiler_options(precision: str = "f32") -> dict[str, str] | None:
    """The options for the default backend and a program of the given `precision`:
    `CPU_COMPILER_OPTIONS` on CPU (bf16 programs on a CPU with bfloat16 dot instructions:
    `CPU_BF16_DOT_OPTIONS`) unless `ALGD_JAX_CPU_TUNING=0`; otherwise None (XLA's defaults,
    always on GPU and TPU)."""
    setting = os.environ.get(TUNING_ENV_VAR, "1").strip()
    if setting not in ("0", "1"):
        raise ValueError(
            f"{TUNING_ENV_VAR}={setting!r} is not understood: use 1 (tuned XLA options on CPU, "
            "the default) or 0 (XLA's defaults)"
        )
    if setting == "0" or jax.default_backend() != "cpu":
        return None
    if precision == "bf16" and _bf16_dots_on_xla_default():
        return dict(CPU_BF16_DOT_OPTIONS)
    return dict(CPU_COMPILER_OPTIONS)


def _precision_in(value: Any, depth: int) -> str | None:
    config = getattr(value, "config", None)
    precision = getattr(config, "precision", None)
    if isinstance(precision, str):
        return precision
    if depth > 0:
        if isinstance(value, dict):
            value = tuple(value.values())
        if isinstance(value, (tuple, list)):
            for item in value:
                found = _precision_in(item, depth - 1)
                if found is not None:
                    return found
    return None


def program_precision(args: Any, kwargs: Any) -> str:
    """The precision of the program a call runs: that of the first argument with a
    `config.precision` (an agent state), looked for among the arguments and two levels of
    tuples, lists and dicts inside them; `f32` when there is none."""
    for value in (*args, *kwargs.values()):
        found = _precision_in(value, 2)
        if found is not None:
            return found
    return "f32"


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
    """`jax.jit(fun, **kwargs)` with `compiler_options(precision)`, built at the first use.

    Deciding at the first call rather than at import keeps importing the package free of
    backend initialisation (so `JAX_PLATFORMS` and jax config set after the import still
    count). The options can differ by the precision of the agent among the arguments
    (`program_precision`): each distinct option set has its own jitted function. JAX
    accepts compiler options only on the outermost jit, so a call made while tracing (this
    function used inside another jitted function) goes to a plain `jax.jit(fun, **kwargs)`,
    and the outer program's options apply. `lower` picks the options from its arguments
    like a call; `_cache_size()` counts the programs of every option set; other attributes
    are those of the float32 programs' jitted function.
    """

    def __init__(
        self,
        fun: Callable[..., Any],
        jit_kwargs: dict[str, Any],
        extra_options: dict[str, str] | None = None,
    ):
        self._fun = fun
        self._jit_kwargs = jit_kwargs
        self._extra = extra_options
        self._jitted: dict[Any, Any] = {}  # one jitted function per distinct option set
        self._by_precision: dict[str, Any] = {}
        self._nested = jax.jit(fun, **jit_kwargs)
        functools.update_wrapper(self, fun)

    def _get(self, precision: str = "f32") -> Any:
        jitted = self._by_precision.get(precision)
        if jitted is None:  # first use of this precision: decide its options once
            options = with_extra(compiler_options(precision), self._extra)
            key = None if options is None else tuple(sorted(options.items()))
            jitted = self._jitted.get(key)
            if jitted is None:
                jitted = jax.jit(self._fun, compiler_options=options, **self._jit_kwargs)
                self._jitted[key] = jitted
            self._by_precision[precision] = jitted
        return jitted

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if _tracing(args, kwargs):
            return self._nested(*args, **kwargs)
        return self._get(program_precision(args, kwargs))(*args, **kwargs)

    def lower(self, *args: Any, **kwargs: Any) -> Any:
        return self._get(program_precision(args, kwargs)).lower(*args, **kwargs)

    def _cache_size(self) -> int:
        self._get()
        return sum(jitted._cache_size() for jitted in self._jitted.values())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._get(), name)


#: The option of the programs mapped over seeds with `lax.map` (the `map` seed axis; see
#: `programs.seed_axis_options` for which). XLA's while-loop simplifier removes the loop over
#: seeds when there is one seed, and the one-seed program then rounded some reductions
#: differently in the last bit from the same seed in the loop of S > 1 seeds (seen
#: 2026-12-02: a sac-lag critic's Adam moment after one update on HalfCheetahVelocity, then
#: visibly different curves after 3,000 updates). Without the pass, seed k alone was bitwise
#: seed k among others in every program tested with it except PPO-Lag's update phase.
SEED_MAP_OPTIONS: dict[str, str] = {"xla_disable_hlo_passes": "simplify-while-loops"}


def with_extra(options: dict[str, str] | None, extra: dict[str, str] | None) -> Any:
    """`options` (None: XLA's defaults) with the entries of `extra` added."""
    if not extra:
        return options
    return {**(options or {}), **extra}


def tuned_jit(
    fun: Callable[..., Any] | None = None,
    *,
    extra_options: dict[str, str] | None = None,
    **jit_kwargs: Any,
) -> Any:
    """`jax.jit` with this package's compiler options (plus `extra_options`, which apply on
    every backend and whatever `ALGD_JAX_CPU_TUNING` says); usable as `@tuned_jit` or
    `@tuned_jit(donate_argnums=0, ...)` with any `jax.jit` keyword."""
    if fun is None:
        return functools.partial(tuned_jit, extra_options=extra_options, **jit_kwargs)
    return _TunedJit(fun, jit_kwargs, extra_options)
