"""How an evaluation's cost is judged against a task's limit: one rule for the loop,
`experiments.evaluate`, `plot`, `summarize` and any algorithm.

On the paper's speed tasks (`eval_cost == "discounted"`) the judged cost is the discounted
episode cost `sum_t gamma_c**t c_t` against the critic budget h; elsewhere it is the
undiscounted episode cost `sum_t c_t` against the per-episode limit C. A task may be given
as a `TaskSpec` or as its dict (the `task_spec` of a run's config.json).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _field(spec: Any, name: str) -> Any:
    return spec[name] if isinstance(spec, Mapping) else getattr(spec, name)


def cost_kind(spec: Any) -> str:
    """The episode quantity the limit applies to: `discounted_cost` or `cost` (the suffix
    of the `eval/...` and `train/episode_...` progress columns)."""
    return "discounted_cost" if _field(spec, "eval_cost") == "discounted" else "cost"


def cost_label(spec: Any) -> str:
    """The judged cost in words, for axis labels and tables."""
    return "discounted cost" if cost_kind(spec) == "discounted_cost" else "episode cost"


def cost_limit_of(spec: Any) -> float:
    """The limit the judged cost is compared with: h (discounted) or C (episodic)."""
    if cost_kind(spec) == "discounted_cost":
        return float(_field(spec, "cost_budget"))
    limit = _field(spec, "episode_cost_limit")
    if limit is None:
        raise ValueError("a task judged on its episode cost needs an episode_cost_limit")
    return float(limit)


def judged_cost(spec: Any, summary: Mapping[str, float]) -> float:
    """The judged cost of an episode summary (keys of `rollouts.EPISODE_FIELDS`)."""
    return float(summary[cost_kind(spec)])


def feasible(spec: Any, summary: Mapping[str, float]) -> bool:
    """Whether an episode summary's judged cost is within the task's limit."""
    return judged_cost(spec, summary) <= cost_limit_of(spec)


def judged_column(spec: Any) -> tuple[str, float, str]:
    """(column suffix, limit, label) of the judged cost, for figures and tables."""
    return cost_kind(spec), cost_limit_of(spec), cost_label(spec)
