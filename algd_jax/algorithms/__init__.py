"""The algorithm registry. Importing this package registers the built-in algorithms.

Use: `algo = get_algorithm("algd")`, then
`state = algo.init(algo.default_config(), spec, jax.random.key(0))`; `list_algorithms()`
names every entry.
"""

from algd_jax.algorithms import algd as _algd  # noqa: F401  (registers algd, lgd, algd-ddpm)
from algd_jax.algorithms import cal as _cal  # noqa: F401  (registers cal)
from algd_jax.algorithms import ppo_lag as _ppo_lag  # (registers ppo-lag below)
from algd_jax.algorithms import rcrl as _rcrl  # noqa: F401  (registers rcrl)
from algd_jax.algorithms import sac_auglag as _sac_auglag  # noqa: F401  (registers sac-auglag)
from algd_jax.algorithms import sac_lag as _sac_lag  # noqa: F401  (registers sac-lag)
from algd_jax.algorithms.base import (
    ActionSpace,
    Algorithm,
    LoopInfo,
    OnPolicyParts,
    Rollout,
    RolloutExtras,
    UnknownAlgorithmError,
    get_algorithm,
    list_algorithms,
    register,
    unregister,
    window_mean,
)

# ppo-lag (trained by `algd_jax.training.on_policy`)
_ppo_lag.register_ppo_lag()

__all__ = [
    "ActionSpace",
    "Algorithm",
    "LoopInfo",
    "OnPolicyParts",
    "Rollout",
    "RolloutExtras",
    "UnknownAlgorithmError",
    "get_algorithm",
    "list_algorithms",
    "register",
    "unregister",
    "window_mean",
]
