"""The algorithm registry. Importing this package registers the built-in algorithms.

    from algd_jax.algorithms import get_algorithm, list_algorithms
    algo = get_algorithm("algd")
    state = algo.init(algo.default_config(), spec, jax.random.key(0))
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
