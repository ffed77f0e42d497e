"""algd-jax: ALGD (Augmented Lagrangian-Guided Diffusion) for safe off-policy RL in JAX."""

__version__ = "0.1.0"
