"""Reverse-diffusion samplers of the ALGD policy (SPEC §2), as pure functions.

Every sampler takes the score network as a function `net(obs, action, step) -> (score, eps)`
(parameters already bound) and all of its noise as explicit arrays, so each is a pure
function that can be checked against fixed noise. The loop over the K diffusion steps is an
unrolled Python loop *inside* jit (K is static and small): it compiles to one straight-line
program, never a host loop.

Shapes: `obs [B, ds]`, actions and latents `[B, da]`, `init_noise [B, da]`,
`step_noise [K, B, da]` (row k is the noise added by reverse step k; row 0 is never used),
`taus [B]` int in [0, K).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

ScoreFn = Callable[[jax.Array, jax.Array, jax.Array], tuple[jax.Array, jax.Array]]


class VESchedule(NamedTuple):
    """VE-SDE noise levels, each `[K]` float32 (numpy constants baked into the program)."""

    sigmas: np.ndarray
    sigma2: np.ndarray
    dsig2: np.ndarray


class DDPMSchedule(NamedTuple):
    """DDPM constants, each `[K]` float32; `abar_prev[t] = abar[t-1]`, `abar_prev[0] = 1`."""

    betas: np.ndarray
    alphas: np.ndarray
    abar: np.ndarray
    abar_prev: np.ndarray


class ChainResult(NamedTuple):
    """`a0 [B, da]` final action; `a_tau [B, da]` action recorded after step tau (zeros when
    no taus were given); `latents [K, B, da]` pre-squash latent after each reverse step, in
    the order they were produced (`latents[j]` follows reverse step K-1-j)."""

    a0: jax.Array
    a_tau: jax.Array
    latents: jax.Array


def ve_schedule(num_steps: int, sigma_min: float, sigma_max: float) -> VESchedule:
    """Geometric sigma_k = sigma_min (sigma_max / sigma_min)^(k / (K-1)), k = 0..K-1."""
    k = np.arange(num_steps, dtype=np.float64)
    sigmas = sigma_min * (sigma_max / sigma_min) ** (k / max(num_steps - 1, 1))
    sigma2 = sigmas**2
    dsig2 = np.maximum(np.diff(sigma2, prepend=0.0), 1e-8)
    return VESchedule(
        sigmas.astype(np.float32), sigma2.astype(np.float32), dsig2.astype(np.float32)
    )


def ddpm_schedule(num_steps: int) -> DDPMSchedule:
    """Linear beta_t in [1e-4, 0.02] with the cumulative products the sampler needs."""
    betas = np.linspace(1e-4, 0.02, num_steps, dtype=np.float64)
    alphas = 1.0 - betas
    abar = np.cumprod(alphas)
    abar_prev = np.concatenate([[1.0], abar[:-1]])
    f32 = lambda x: x.astype(np.float32)  # noqa: E731
    return DDPMSchedule(f32(betas), f32(alphas), f32(abar), f32(abar_prev))


def ddpm_sigma(schedule: DDPMSchedule) -> np.ndarray:
    """Per-step proposal width of the Monte-Carlo target for the DDPM policy, `[K]`."""
    return np.sqrt(1.0 - schedule.abar.astype(np.float64) + 1e-8).astype(np.float32)


def squash(x: jax.Array, scale: jax.Array, bias: jax.Array) -> jax.Array:
    """Map the unbounded latent to the action box: tanh(x) * scale + bias."""
    return jnp.tanh(x) * scale + bias


def _record(a_tau: jax.Array, taus: jax.Array | None, k: int, a: jax.Array) -> jax.Array:
    if taus is None:
        return a_tau
    return jnp.where((taus == k)[:, None], a, a_tau)


def ve_chain(
    net: ScoreFn,
    obs: jax.Array,
    init_noise: jax.Array,
    step_noise: jax.Array,
    schedule: VESchedule,
    scale: jax.Array,
    bias: jax.Array,
    taus: jax.Array | None = None,
) -> ChainResult:
    """Stochastic VE-SDE reverse chain (pass zero noise for the deterministic sampler).

    x_{K-1} = sigma_{K-1} eps_K;  x <- x + dsig2_k phi(s, squash(x), k) + [k>0] sqrt(dsig2_k) eps_k.
    """
    num_steps = len(schedule.sigmas)
    x = schedule.sigmas[-1] * init_noise
    a_tau = jnp.zeros_like(x)
    latents = []
    for k in reversed(range(num_steps)):
        score, _ = net(obs, squash(x, scale, bias), jnp.asarray(k, jnp.int32))
        x = x + schedule.dsig2[k] * score
        if k > 0:
            x = x + np.sqrt(schedule.dsig2[k]) * step_noise[k]
        latents.append(x)
        a_tau = _record(a_tau, taus, k, squash(x, scale, bias))
    return ChainResult(squash(x, scale, bias), a_tau, jnp.stack(latents))


def ddpm_chain(
    net: ScoreFn,
    obs: jax.Array,
    init_noise: jax.Array,
    step_noise: jax.Array,
    schedule: DDPMSchedule,
    scale: jax.Array,
    bias: jax.Array,
    guidance: float,
    taus: jax.Array | None = None,
) -> ChainResult:
    """DDPM reverse chain with normalised score guidance (SPEC §2, authors' variant).

    The eps head sees the latent x; the score head sees squash(x). Pass zero noise for the
    deterministic sampler (which, unlike the authors', adds no noise at all).
    """
    num_steps = len(schedule.betas)
    x = init_noise
    a_tau = jnp.zeros_like(x)
    latents = []
    for t in reversed(range(num_steps)):
        step = jnp.asarray(t, jnp.int32)
        _, eps = net(obs, x, step)
        score, _ = net(obs, squash(x, scale, bias), step)
        beta, alpha = schedule.betas[t], schedule.alphas[t]
        abar, abar_prev = schedule.abar[t], schedule.abar_prev[t]
        x0_hat = (x - np.sqrt(1.0 - abar) * eps) / np.sqrt(abar + 1e-8)
        c1 = np.sqrt(abar_prev) * beta / (1.0 - abar + 1e-8)
        c2 = np.sqrt(alpha) * (1.0 - abar_prev) / (1.0 - abar + 1e-8)
        mean = c1 * x0_hat + c2 * x
        norm = jnp.linalg.norm(score, axis=-1, keepdims=True)
        mean = mean + guidance * score / (norm + 1e-8)
        if t > 0:
            std = np.sqrt(beta * (1.0 - abar_prev) / (1.0 - abar + 1e-8) + 1e-8)
            x = mean + std * step_noise[t]
        else:
            x = mean
        latents.append(x)
        a_tau = _record(a_tau, taus, t, squash(x, scale, bias))
    return ChainResult(squash(x, scale, bias), a_tau, jnp.stack(latents))


def draw_chain_noise(
    key: jax.Array, batch: int, action_dim: int, num_steps: int
) -> tuple[jax.Array, jax.Array]:
    """`(init_noise [B, da], step_noise [K, B, da])`, standard normal, from one draw.

    One draw rather than one per part: on CPU every threefry draw is a rolled loop of small
    kernels, and their count, not their arithmetic, is what a draw costs here.
    """
    noise = jax.random.normal(key, (num_steps + 1, batch, action_dim))
    return noise[0], noise[1:]
