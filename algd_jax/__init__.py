"""algd-jax: ALGD (Augmented Lagrangian-Guided Diffusion) for safe off-policy RL in JAX."""

__version__ = "0.1.0"


def _silence_adroit_notice() -> None:
    # `import gymnasium` loads gymnasium-robotics as a plugin, which prints a notice about
    # its Adroit hand tasks (never used here) to stderr on every command. The notice comes
    # from the farama-notifications table; dropping its entry before gymnasium is imported
    # keeps our command-line output clean without touching any environment.
    try:
        from farama_notifications import notifications
    except ImportError:
        return
    notifications.pop("gymnasium_robotics", None)


_silence_adroit_notice()


def _tune_malloc() -> None:
    # Keep the compiled update's scratch memory resident between calls (glibc's mallopt; see
    # algd_jax/malloc_tuning.py). ALGD_JAX_MALLOC_TUNING=0 switches it off.
    from algd_jax import malloc_tuning

    malloc_tuning.apply()


_tune_malloc()
