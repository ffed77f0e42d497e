"""Lagrange multiplier rules, shared by every Lagrangian learner.

A multiplier is a `TrainState` whose one parameter `{"value": []}` is stored in the rule's
own parameterisation; `value` turns it into lambda >= 0. Each rule is one gradient step on
the dual loss `mean(lambda * (h - J))`, where `J` is the constraint signal the algorithm
chooses (ALGD and CAL: the cost critic at replay actions; OmniSafe's SAC-Lag: recent
episode costs), so that `lambda` grows while `J > h`:

* `adam`: Adam on `log lambda` (the authors' ALGD code, CAL); lambda > 0 by construction.
* `projected`: projected ascent `lambda <- max(0, lambda + lr (J - h))` (ALGD paper, Alg. 1
  line 21): plain SGD on lambda, clipped at zero.
* `adam-clamped`: Adam on lambda itself, then clamped at zero (OmniSafe's `Lagrange`).

A rule with memory (a PID controller on the violation) keeps that memory in its own
`TrainState.opt_state`-like fields; adding one is a new entry here, not a change to the
learners.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training.train_state import TrainState

MultiplierRule = Literal["adam", "projected", "adam-clamped"]
RULES: tuple[str, ...] = ("adam", "projected", "adam-clamped")


def _check(rule: str) -> None:
    if rule not in RULES:
        raise ValueError(f"unknown multiplier rule {rule!r}; choose one of {', '.join(RULES)}")


@lru_cache(maxsize=64)
def multiplier_tx(rule: MultiplierRule, lr: float) -> optax.GradientTransformation:
    """The optimiser of the stored parameter; one object per `(rule, lr)`, because it is a
    static field of the state: equal configs must give equal pytree structures, or every
    new learner (a resume, another seed) would compile its programs again."""
    _check(rule)
    return optax.sgd(lr) if rule == "projected" else optax.adam(lr)


def value(rule: MultiplierRule, param: jax.Array) -> jax.Array:
    """lambda from its stored parameter."""
    return jnp.exp(param) if rule == "adam" else param


def create_multiplier(
    rule: MultiplierRule, initial: float, tx: optax.GradientTransformation
) -> TrainState:
    """A multiplier state starting at lambda = `initial` (> 0 for `adam`, >= 0 otherwise)."""
    if rule != "adam":
        initial = max(initial, 0.0)
    _check(rule)
    param = np.log(initial) if rule == "adam" else initial
    return TrainState.create(
        apply_fn=None, params={"value": jnp.asarray(param, jnp.float32)}, tx=tx
    ).replace(step=jnp.zeros((), jnp.int32))


def dual_step(
    rule: MultiplierRule, multiplier: TrainState, signal: jax.Array, budget: float
) -> tuple[TrainState, jax.Array]:
    """One step of the rule on `mean(lambda * (budget - signal))`.

    `signal` is the constraint estimate `J` (any shape, held constant); returns the new state
    and the dual loss.
    """
    signal = jax.lax.stop_gradient(signal)

    def loss_fn(params: dict[str, jax.Array]) -> jax.Array:
        return jnp.mean(value(rule, params["value"]) * (budget - signal))

    loss, grad = jax.value_and_grad(loss_fn)(multiplier.params)
    new = multiplier.apply_gradients(grads=grad)
    if rule != "adam":
        new = new.replace(params={"value": jnp.maximum(new.params["value"], 0.0)})
    return new, loss
