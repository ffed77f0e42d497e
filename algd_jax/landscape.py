"""Energy landscapes of a trained ALGD-family agent over a 2-D slice of its action space.

The paper's Fig. 1 draws the standard Lagrangian L and the augmented one L_A over the action
space of one state; Theorem 3.2(a) says that L_A adds curvature `rho grad Qc grad Qc^T` near
the constraint boundary. `landscape` evaluates, at every point of a `G x G` grid of a plane
through a chosen action `center` (action dims `i` and `j` varied over the box, the others
held at `center`), with the agent's own critics, its current multiplier and its config's
`rho`, `kappa` and `h` (SPEC §3):

    q_min    = min(Q1, Q2)                            (reward value, units of return)
    qc_risk  = mean_m Qc_m + kappa std_m Qc_m        (cost value, units of cost)
    L        = -q_min + lam (qc_risk - h)
    L_A      = -q_min + (relu(lam + rho (qc_risk - h))^2 - lam^2) / (2 rho)
    score    = phi_theta(s, a, tau)[[i, j]]           (the score net at diffusion step tau;
               its Monte-Carlo target is -grad_a E / beta, SPEC §4, so it is compared
               with the energies' gradients `grad_*` along the slice)
    hess_min = smallest eigenvalue of the Hessian of L (resp. L_A) with respect to the two
               slice coordinates (`full_hessian=True`: to the whole action vector)

all as one jitted program, vmapped over the grid points (`lax.map` over chunks of them, so
that memory stays bounded for wide critics). Grids are `[G, G]` with the row index along
dim `j` and the column index along dim `i` (matplotlib's `contourf(axis_i, axis_j, Z)`).

Note on curvature: the reward critic is a ReLU network, piecewise linear in the action, so
its Hessian is zero almost everywhere; the curvature comes from the SiLU cost critics, the
ensemble's spread and, for L_A, the quadratic penalty.
"""

from __future__ import annotations

from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from algd_jax.algorithms.algd import AgentState, multiplier_value
from algd_jax.energy import augmented_lagrangian, lagrangian, qc_risk

#: Algorithms whose state this module understands (the ALGD family of one config type).
ALGD_FAMILY = ("algd", "lgd", "algd-ddpm")


class Landscape(NamedTuple):
    """One slice of the energies. Grids `[G, G]`: row = index along dim j, column = along i."""

    axis_i: jax.Array  # [G] values of action dim i (env action units)
    axis_j: jax.Array  # [G] values of action dim j
    q_min: jax.Array  # [G, G] min(Q1, Q2), return units
    qc_risk: jax.Array  # [G, G] mean + kappa std of the cost ensemble, cost units
    lagrangian: jax.Array  # [G, G] L
    augmented: jax.Array  # [G, G] L_A
    active: jax.Array  # [G, G] bool, lam + rho (qc_risk - h) > 0 (the penalty acts)
    score: jax.Array  # [G, G, 2] phi_theta(s, a, tau) along dims (i, j)
    grad_lagrangian: jax.Array  # [G, G, 2] dL/da along dims (i, j)
    grad_augmented: jax.Array  # [G, G, 2] dL_A/da along dims (i, j)
    hess_min_lagrangian: jax.Array  # [G, G] smallest Hessian eigenvalue of L
    hess_min_augmented: jax.Array  # [G, G] smallest Hessian eigenvalue of L_A
    multiplier: jax.Array  # [] lambda used in both energies


def grid_axes(
    low: np.ndarray, high: np.ndarray, dims: tuple[int, int], points: int
) -> tuple[np.ndarray, np.ndarray]:
    """`points` evenly spaced values `[G]` over the action box along each of the two dims."""
    i, j = dims
    return (
        np.linspace(low[i], high[i], points, dtype=np.float32),
        np.linspace(low[j], high[j], points, dtype=np.float32),
    )


def slice_actions(
    center: jax.Array, dims: tuple[int, int], axis_i: jax.Array, axis_j: jax.Array
) -> jax.Array:
    """The grid's full actions `[G, G, da]`: `center` with dims i, j replaced."""
    grid_j, grid_i = jnp.meshgrid(axis_j, axis_i, indexing="ij")  # [G, G] each
    actions = jnp.broadcast_to(center, (*grid_i.shape, center.shape[0]))
    actions = actions.at[..., dims[0]].set(grid_i)
    return actions.at[..., dims[1]].set(grid_j)


def value_terms(state: AgentState, obs: jax.Array, action: jax.Array) -> tuple[jax.Array, ...]:
    """`(q_min, qc_risk)` scalars at one state `obs [ds]` and one action `action [da]`."""
    q = state.critic.apply_fn(state.critic.params, obs[None], action[None])[:, 0]  # [2]
    qc = state.cost_critic.apply_fn(state.cost_critic.params, obs[None], action[None])[:, 0]
    return jnp.min(q), qc_risk(qc, state.config.kappa)


def energies(
    state: AgentState, obs: jax.Array, action: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """`(L, L_A, q_min, qc_risk)` scalars at `obs [ds]`, `action [da]` (SPEC §3), with the
    state's multiplier and its config's rho, kappa and h."""
    config = state.config
    lam = multiplier_value(config, state.multiplier.params["value"])
    q_min, risk = value_terms(state, obs, action)
    return (
        lagrangian(q_min, risk, lam, config.cost_budget),
        augmented_lagrangian(q_min, risk, lam, config.cost_budget, config.rho),
        q_min,
        risk,
    )


def _min_eigenvalue(hessian: jax.Array) -> jax.Array:
    """Smallest eigenvalue of a (numerically symmetrised) Hessian `[n, n]`."""
    return jnp.linalg.eigvalsh(0.5 * (hessian + hessian.T))[0]


def _point(
    state: AgentState,
    obs: jax.Array,
    center: jax.Array,
    dims: tuple[int, int],
    diffusion_step: int,
    full_hessian: bool,
    coords: jax.Array,
) -> dict[str, jax.Array]:
    """Everything `landscape` reports at one slice point `coords [2]`."""
    index = jnp.asarray(dims)
    action = center.at[index].set(coords)
    lagr, aug, q_min, risk = energies(state, obs, action)

    def both(a: jax.Array) -> jax.Array:
        e = energies(state, obs, a)
        return jnp.stack([e[0], e[1]])

    on_slice = lambda p: both(center.at[index].set(p))  # noqa: E731
    grad = jax.jacrev(on_slice)(coords)  # [2, 2]: energy, slice coordinate
    if full_hessian:
        hess = jax.hessian(both)(action)  # [2, da, da]
    else:
        hess = jax.hessian(on_slice)(coords)  # [2, 2, 2]
    steps = jnp.full((1,), diffusion_step, jnp.int32)
    score, _ = state.actor.apply_fn(state.actor.params, obs[None], action[None], steps)
    config = state.config
    lam = multiplier_value(config, state.multiplier.params["value"])
    return {
        "q_min": q_min,
        "qc_risk": risk,
        "lagrangian": lagr,
        "augmented": aug,
        "active": lam + config.rho * (risk - config.cost_budget) > 0,
        "score": score[0, index],
        "grad_lagrangian": grad[0],
        "grad_augmented": grad[1],
        "hess_min_lagrangian": _min_eigenvalue(hess[0]),
        "hess_min_augmented": _min_eigenvalue(hess[1]),
    }


@partial(jax.jit, static_argnames=("dims", "diffusion_step", "full_hessian", "chunk"))
def landscape(
    state: AgentState,
    obs: jax.Array,
    center: jax.Array,
    axis_i: jax.Array,
    axis_j: jax.Array,
    dims: tuple[int, int],
    diffusion_step: int = 0,
    full_hessian: bool = False,
    chunk: int = 2048,
) -> Landscape:
    """Evaluate the slice through `center [da]` at state `obs [ds]` on the grid
    `axis_i [G] x axis_j [G]` (env action units), as one jitted program.

    `diffusion_step` is the tau of the score net (0: the last reverse step, the finest noise
    level). `full_hessian`: eigenvalues of the `da x da` action Hessian instead of the 2 x 2
    slice Hessian (the two agree for a 2-D action space). `chunk`: grid points evaluated
    together (a memory bound, not a result change).
    """
    if dims[0] == dims[1]:
        raise ValueError("the two slice dims must differ")
    actions = slice_actions(center, dims, axis_i, axis_j)  # [G, G, da]
    shape = actions.shape[:2]
    coords = actions[..., jnp.asarray(dims)].reshape(-1, 2)
    one = partial(_point, state, obs, center, dims, diffusion_step, full_hessian)
    out = jax.lax.map(one, coords, batch_size=chunk)
    grids = {k: v.reshape(*shape, *v.shape[1:]) for k, v in out.items()}
    lam = multiplier_value(state.config, state.multiplier.params["value"])
    return Landscape(axis_i=axis_i, axis_j=axis_j, multiplier=lam, **grids)


def score_alignment(score: Any, grad: Any) -> float:
    """Median cosine between the score field and the energy's descent direction -grad over
    the grid (1: the score net points downhill everywhere; 0: unrelated)."""
    score, grad = np.asarray(score).reshape(-1, 2), -np.asarray(grad).reshape(-1, 2)
    norms = np.linalg.norm(score, axis=-1) * np.linalg.norm(grad, axis=-1)
    cos = np.sum(score * grad, axis=-1) / np.maximum(norms, 1e-12)
    return float(np.median(cos[norms > 0])) if np.any(norms > 0) else float("nan")


def convex_fraction(hess_min: Any, tol: float = 1e-6) -> float:
    """Fraction of grid points whose smallest Hessian eigenvalue is >= -tol (locally convex,
    flat directions included)."""
    values = np.asarray(hess_min)
    return float(np.mean(values >= -tol))


def strictly_convex_fraction(hess_min: Any, tol: float = 1e-6) -> float:
    """Fraction of grid points whose smallest Hessian eigenvalue is > tol."""
    return float(np.mean(np.asarray(hess_min) > tol))
