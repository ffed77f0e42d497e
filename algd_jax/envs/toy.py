"""A tiny constrained task with a known answer: the two-mode bandit ``ToyTwoModeBandit``.

One step, one state, one action ``a`` in ``[-1, 1]``. Every step ends the episode
(``terminated=True``), so the critics' targets are the immediate reward and cost,
``Q(s, a) = r(a)`` and ``Qc(s, a) = c(a)``, and the budget ``h`` bounds the policy's
*expected per-step cost* ``E_pi[c(a)]``::

    r(a) = R_L max(0, 1 - ((a - a_L) / s)^2) + R_R max(0, 1 - ((a - a_R) / s)^2)   (reward)
    c(a) = C smoothstep((a - t + w) / (2 w))                                      (cost)

with ``smoothstep(x) = 3x^2 - 2x^3`` on [0, 1] (0 below, 1 above). Two separated reward
modes: a "safe lane", a parabola of height ``R_L = 10`` around ``a_L = -0.5``, and a "fast
lane" of height ``R_R = 12`` around ``a_R = +0.5`` (half-width ``s = 0.5``: the lanes touch
at ``a = 0`` with zero reward and fall to zero at the box edges). Reward prefers the larger
action, but cost ``C = 4`` per step is paid above the threshold ``t = 0`` (rising smoothly
over ``[-w, w]``, ``w = 0.1``, so the cost critics have a gradient to learn; it is exactly 0
on the safe lane's peak and exactly C on the fast lane's), and the budget is ``h = 0.4``:
at most 10 % of the probability mass may sit in the fast lane.

Why this shape: the reward has a slope everywhere inside the box (no flat region, where the
score target would have nothing to follow) and is zero at the edges, so a policy stuck in
tanh saturation at ``a = +-1`` earns nothing; and the untrained diffusion policy starts on
the threshold (cost ~C/2 = 2), so it must move its mass half the box away, to one mode,
rather than hedge between two, which is what a unimodal policy centred between the modes
would do (earning ~0 at the threshold).

Known answers (closed form; checked against a fine grid by ``tests/test_learning.py``):

* unconstrained optimum: ``a = a_R``, return ``R_R = 12``, cost ``C = 4 > h``: it violates;
* constrained optimum over all (randomised) policies, the linear programme
  ``max E[r] s.t. E[c] <= h``: the upper concave envelope of the ``(c(a), r(a))`` points at
  ``h``, here the chord between the two peaks, i.e. the two-point mixture with ``p = h / C =
  0.1`` on ``a_R`` and ``1 - p`` on ``a_L``: ``V* = R_L + (h / C)(R_R - R_L) = 10.2``, dual
  multiplier ``lambda* = (R_R - R_L) / C = 0.5`` (exact: the modes do not overlap and the cost
  is exactly 0 and C on them);
* best single feasible action: ``a = a_L``, return ``R_L = 10``, cost 0.

ALGD's policy is the Boltzmann policy ``exp(-L_A / beta)`` (temperature ``beta = 1``), not
the deterministic optimum: the entropy costs ~``beta / 2`` of reward in a mode (the energy
near a peak is ``R ((a - a_mode) / s)^2``, whose Boltzmann mean is ``beta / 2``).
:meth:`TwoModeBandit.boltzmann_optimum` computes the exact constrained Boltzmann optimum on a
grid for either energy. With the augmented Lagrangian at ``rho = 1`` the quadratic penalty
alone, ``rho (C - h)^2 / 2 = 6.48``, outweighs the fast lane's advantage ``R_R - R_L = 2``,
so the Boltzmann policy of ``L_A`` at ``lambda = 0`` is already feasible (1 % of its mass in
the fast lane, return 9.52, cost 0.04): ALGD's ideal multiplier is 0, as in the paper's
Figure 2. The standard Lagrangian has no such term and needs ``lambda = 1.03`` to bring the
fast lane down to 10 % (return 9.70).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, SupportsFloat

import gymnasium
import numpy as np

from algd_jax.envs.registry import register_task
from algd_jax.envs.spec import TaskSpec

TASK_NAME = "ToyTwoModeBandit"


class Optimum(NamedTuple):
    """A constrained optimum: expected return and cost per step, the multiplier that
    supports it, and the probability mass in the fast lane (``a > t``)."""

    value: float
    cost: float
    multiplier: float
    fast_lane_mass: float


@dataclass(frozen=True)
class TwoModeBandit:
    """Parameters of the two-mode bandit and its reward, cost and known optima.

    ``reward`` and ``cost`` accept any array namespace with ``clip`` (``numpy`` or
    ``jax.numpy``) so the gymnasium env and the jitted test loop share one definition.
    """

    safe_mode: float = -0.5
    """a_L, centre of the safe lane (action units)."""
    fast_mode: float = 0.5
    """a_R, centre of the fast lane (action units)."""
    half_width: float = 0.5
    """s, half-width of each reward mode's support (action units): the lanes touch at 0."""
    safe_reward: float = 10.0
    """R_L, peak reward of the safe lane."""
    fast_reward: float = 12.0
    """R_R, peak reward of the fast lane (> R_L: the unconstrained optimum is there)."""
    fast_cost: float = 4.0
    """C, cost per step above the threshold."""
    threshold: float = 0.0
    """t, action above which the cost is paid."""
    edge: float = 0.1
    """w, half-width of the smooth cost step (action units): c rises on [t - w, t + w]."""
    budget: float = 0.4
    """h, budget on the expected per-step cost (= the cost critic's budget, one-step episodes)."""

    def reward(self, action: Any, xp: Any = np) -> Any:
        """r(a) for actions `[..., 1]`, same leading shape out (trailing 1 dropped)."""
        a = action[..., 0]

        def bump(mode: float) -> Any:
            # inverted parabola 1 - u^2 on |u| < 1: slope everywhere in its support, so the
            # energy has no flat region (flat regions give the score target nothing to
            # follow); zero outside
            return xp.clip(1.0 - ((a - mode) / self.half_width) ** 2, 0.0, 1.0)

        return self.safe_reward * bump(self.safe_mode) + self.fast_reward * bump(self.fast_mode)

    def cost(self, action: Any, xp: Any = np) -> Any:
        """c(a) in [0, C] for actions `[..., 1]`, same leading shape out."""
        a = action[..., 0]
        # smoothstep 3x^2 - 2x^3: C^1, exactly 0 below t - w and exactly C above t + w
        x = xp.clip((a - self.threshold + self.edge) / (2.0 * self.edge), 0.0, 1.0)
        return self.fast_cost * x * x * (3.0 - 2.0 * x)

    # -- known answers -------------------------------------------------------------------

    def unconstrained_optimum(self) -> Optimum:
        """The best action ignoring cost: the fast-lane peak (violates the budget)."""
        return Optimum(self.fast_reward, self.fast_cost, 0.0, 1.0)

    def constrained_optimum(self) -> Optimum:
        """Closed-form optimum of ``max E[r] s.t. E[c] <= h`` over all policies.

        The optimum of this linear programme in the policy lies on the concave envelope of
        the points ``(c(a), r(a))``; here that envelope is the chord from the safe peak
        ``(0, R_L)`` to the fast peak ``(C, R_R)``, so the answer mixes the two peaks with
        fast-lane mass ``p = h / C`` (valid for ``0 <= h <= C``).
        """
        p = min(max(self.budget / self.fast_cost, 0.0), 1.0)
        slope = (self.fast_reward - self.safe_reward) / self.fast_cost
        value = self.safe_reward + p * (self.fast_reward - self.safe_reward)
        return Optimum(value, p * self.fast_cost, slope, p)

    def deterministic_optimum(self) -> Optimum:
        """Best single action within the budget: the safe-lane peak (for h < C)."""
        return Optimum(self.safe_reward, 0.0, 0.0, 0.0)

    def envelope_optimum(self, points: int = 200_001) -> Optimum:
        """Numerical check of :meth:`constrained_optimum`: the upper concave envelope of the
        ``(c(a), r(a))`` points of a fine action grid, evaluated at the budget.

        Over distributions, ``max E[r] s.t. E[c] <= h`` is attained on that envelope (a mix
        of at most two actions); its slope there is the dual multiplier.
        """
        a = np.linspace(-1.0, 1.0, points)[:, None]
        hull_c, hull_r = _upper_hull(self.cost(a), self.reward(a))
        h = self.budget
        # The return is non-increasing past the envelope's peak: spend at most up to it.
        top = int(np.argmax(hull_r))
        if h >= hull_c[top]:
            return Optimum(float(hull_r[top]), float(hull_c[top]), 0.0, math.nan)
        j = int(np.searchsorted(hull_c, h, side="right"))  # hull_c[j-1] <= h < hull_c[j]
        c0, c1, r0, r1 = hull_c[j - 1], hull_c[j], hull_r[j - 1], hull_r[j]
        p = (h - c0) / (c1 - c0)
        return Optimum(float(r0 + p * (r1 - r0)), h, float((r1 - r0) / (c1 - c0)), float(p))

    def boltzmann_optimum(
        self,
        beta: float = 1.0,
        energy: Literal["lagrangian", "augmented"] = "augmented",
        rho: float = 1.0,
        points: int = 40_001,
    ) -> Optimum:
        """Exact constrained optimum of the Boltzmann policy ``pi ~ exp(-E(a, lambda) / beta)``
        on a grid of the action box (the uniform reference measure of ALGD's entropy term).

        ``lambda`` is the smallest value >= 0 with ``E_pi[c] <= h`` (bisection on the
        monotone expected cost); ``lambda = 0`` when the policy at zero is already feasible.
        Returns the policy's expected return and cost, that lambda and the fast-lane mass.
        """
        a = np.linspace(-1.0, 1.0, points)[:, None]
        r, c = self.reward(a), self.cost(a)
        h = self.budget

        def stats(lam: float) -> tuple[float, float, float]:
            if energy == "augmented":
                e = -r + (np.maximum(lam + rho * (c - h), 0.0) ** 2 - lam**2) / (2.0 * rho)
            else:
                e = -r + lam * (c - h)
            w = np.exp(-(e - e.min()) / beta)
            w /= w.sum()
            return float(w @ r), float(w @ c), float(w[a[:, 0] > self.threshold].sum())

        if stats(0.0)[1] <= h:
            return Optimum(*stats(0.0)[:2], 0.0, stats(0.0)[2])
        lo, hi = 0.0, 1.0
        while stats(hi)[1] > h:
            hi *= 2.0
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if stats(mid)[1] > h else (lo, mid)
        value, cost, mass = stats(hi)
        return Optimum(value, cost, hi, mass)


def _upper_hull(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vertices of the upper concave hull of the points ``(x, y)``, by increasing x
    (Andrew's monotone chain)."""
    order = np.lexsort((-y, x))
    hull: list[tuple[float, float]] = []
    for px, py in zip(x[order], y[order], strict=True):
        if hull and hull[-1][0] == px:
            continue  # same x, lower y (sorted by -y within equal x)
        # pop while the last turn is not clockwise (the middle point lies on/below the chord)
        while len(hull) >= 2:
            (ax, ay), (bx, by) = hull[-2], hull[-1]
            if (bx - ax) * (py - ay) - (by - ay) * (px - ax) >= 0:
                hull.pop()
            else:
                break
        hull.append((float(px), float(py)))
    xs, ys = zip(*hull, strict=True)
    return np.asarray(xs), np.asarray(ys)


DEFAULT_BANDIT = TwoModeBandit()


class TwoModeBanditEnv(gymnasium.Env):
    """The bandit as a one-step gymnasium env: constant observation ``[0.0]``, every step
    terminates (``terminated=True``) with reward ``r(a)`` and ``info["cost"] = c(a)``."""

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, bandit: TwoModeBandit = DEFAULT_BANDIT) -> None:
        self.bandit = bandit
        self.observation_space = gymnasium.spaces.Box(0.0, 0.0, (1,), np.float32)
        self.action_space = gymnasium.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        return np.zeros(1, np.float32), {}

    def step(self, action: Any) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        a = np.clip(np.asarray(action, np.float64).reshape(1, 1), -1.0, 1.0)
        reward, cost = float(self.bandit.reward(a)[0]), float(self.bandit.cost(a)[0])
        if not (math.isfinite(reward) and math.isfinite(cost)):
            raise ValueError(f"non-finite action {action!r}")
        return np.zeros(1, np.float32), reward, True, False, {"cost": cost}


def _make_bandit(spec: TaskSpec, render_mode: str | None = None) -> gymnasium.Env:
    return TwoModeBanditEnv(DEFAULT_BANDIT)


_b = DEFAULT_BANDIT
_opt = _b.constrained_optimum()
register_task(
    TaskSpec(
        name=TASK_NAME,
        family="toy",
        obs_dim=1,
        act_dim=1,
        action_low=(-1.0,),
        action_high=(1.0,),
        max_episode_steps=1,
        cost_kind="toy-step",
        # One-step episodes: the discounted cost value is the per-step cost, so h is the
        # budget on the expected per-step cost directly.
        cost_budget=_b.budget,
        episode_cost_limit=None,
        eval_cost="discounted",
        epoch_steps=200,
        cost_mask="same",
        description=(
            f"one-step two-mode bandit with a known optimum: safe lane r={_b.safe_reward:g} "
            f"at a={_b.safe_mode:g}, fast lane r={_b.fast_reward:g} at a={_b.fast_mode:g} "
            f"costing {_b.fast_cost:g}/step, h={_b.budget:g}; constrained optimum {_opt.value:g}"
        ),
        env_id="algd_jax.envs.toy:TwoModeBanditEnv",
    ),
    _make_bandit,
)
