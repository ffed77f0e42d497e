"""The typed description of a task, and the episodic-limit to critic-budget conversion."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

Family = Literal["velocity", "navigation", "toy"]


def episodic_limit_to_budget(limit: float, horizon: int, gamma_c: float = 0.99) -> float:
    """Turn an undiscounted per-episode cost limit into a budget on the discounted cost value.

    ``h = C (1 - gamma_c**T) / ((1 - gamma_c) T)``: the discounted sum over ``T`` steps of the
    constant per-step cost ``C / T`` that exactly spends the episodic limit (SPEC §6).

    Args:
        limit: ``C``, the allowed cost summed over one episode (cost units, >= 0).
        horizon: ``T``, the episode length in environment steps (>= 1).
        gamma_c: the cost discount, in ``(0, 1]``; ``gamma_c == 1`` gives ``h = C``.

    Returns:
        ``h``, the critic budget on ``sum_t gamma_c**t c_t`` (cost units).
    """
    if not (limit >= 0 and math.isfinite(limit)):
        raise ValueError(f"cost limit must be a finite number >= 0, got {limit!r}")
    if horizon < 1:
        raise ValueError(f"episode length must be >= 1, got {horizon!r}")
    if not 0.0 < gamma_c <= 1.0:
        raise ValueError(f"cost discount must be in (0, 1], got {gamma_c!r}")
    if gamma_c == 1.0:
        return float(limit)
    return float(limit * (1.0 - gamma_c**horizon) / ((1.0 - gamma_c) * horizon))


@dataclass(frozen=True)
class TaskSpec:
    """Everything the agent and training loop need to know about a task, without building it.

    Attributes:
        name: registry name, e.g. ``"HalfCheetahVelocity"``.
        family: ``"velocity"``, ``"navigation"`` or ``"toy"``.
        obs_dim: length of the flat observation vector the env returns.
        act_dim: length of the action vector.
        action_low, action_high: per-dimension action bounds, each of length ``act_dim``.
        max_episode_steps: time limit ``T``; reaching it sets ``truncated`` (never
            ``terminated``).
        cost_kind: per-step cost definition: ``"speed"`` (continuous speed, m/s),
            ``"indicator"`` (1 when the velocity exceeds ``velocity_threshold``, else 0),
            ``"navigation"`` (Safety-Gymnasium's 0/1 ``cost_sum``), or a toy's own kind.
        cost_budget: ``h``, the budget of the cost critic on the discounted cost
            ``sum_t cost_gamma**t c_t``, after any conversion from ``episode_cost_limit``.
        episode_cost_limit: the undiscounted per-episode limit ``C`` that ``cost_budget`` was
            derived from, or ``None`` when the budget is given directly (paper speed tasks).
        eval_cost: what evaluation compares with the limit: ``"discounted"`` (compare the
            discounted episode cost with ``cost_budget``) or ``"sum"`` (compare the summed
            episode cost with ``episode_cost_limit``).
        epoch_steps: environment steps per training epoch (1000 on velocity tasks, 400 on
            navigation tasks in the paper setting, otherwise the episode length).
        cost_mask: ``"same"``: the cost TD target uses the reward mask (``1 - terminated``);
            ``"none"``: the cost target is never masked (``mask_c = 1``).
        cost_gamma: ``gamma_c``, the cost discount used for ``cost_budget``.
        requires: pip package the task needs beyond the core install, or ``None``.
        description: one human-readable line.
        env_id: the underlying simulator environment id (informative).
        velocity_threshold: ``v_max`` of indicator-cost velocity tasks (m/s), else ``None``.
        paper_total_steps: length of one run of the paper's protocol on this task, in
            environment steps (exploration steps + epochs x epoch steps), or ``None`` where the
            paper does not run the task: 5000 + 250 x 400 = 105000 on its Safety-Gym navigation
            tasks, 5000 + 200 x 1000 = 205000 on its speed-cost MuJoCo tasks.
    """

    name: str
    family: Family
    obs_dim: int
    act_dim: int
    action_low: tuple[float, ...]
    action_high: tuple[float, ...]
    max_episode_steps: int
    cost_kind: str
    cost_budget: float
    episode_cost_limit: float | None
    eval_cost: Literal["discounted", "sum"]
    epoch_steps: int
    cost_mask: Literal["same", "none"]
    cost_gamma: float = 0.99
    requires: str | None = None
    description: str = ""
    env_id: str = ""
    velocity_threshold: float | None = None
    paper_total_steps: int | None = None

    def __post_init__(self) -> None:
        if len(self.action_low) != self.act_dim or len(self.action_high) != self.act_dim:
            raise ValueError(f"{self.name}: action bounds must have length act_dim={self.act_dim}")
        if self.eval_cost == "sum" and self.episode_cost_limit is None:
            raise ValueError(f"{self.name}: eval_cost='sum' needs an episode_cost_limit")
        if self.paper_total_steps is not None and self.paper_total_steps < 1:
            raise ValueError(f"{self.name}: paper_total_steps must be >= 1 or None")

    @property
    def needs_cost_limit(self) -> bool:
        """True when the task has no default budget (``cost_budget`` is NaN in the registry)."""
        return math.isnan(self.cost_budget)
