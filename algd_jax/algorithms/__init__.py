"""The algorithm registry. Importing this package registers the built-in algorithms.

Use: `algo = get_algorithm("algd")`, then
`state = algo.init(algo.default_config(), spec, jax.random.key(0))`; `list_algorithms()`
names every entry.
"""

from algd_jax.algorithms import algd as _algd  # noqa: F401  (registers algd, lgd, algd-ddpm)
from algd_jax.algorithms.base import (
    ActionSpace,
    Algorithm,
    UnknownAlgorithmError,
    get_algorithm,
    list_algorithms,
    register,
    unregister,
)

__all__ = [
    "ActionSpace",
    "Algorithm",
    "UnknownAlgorithmError",
    "get_algorithm",
    "list_algorithms",
    "register",
    "unregister",
]
