"""Lagrange multiplier rules (`algd_jax.multipliers`) against hand-computed steps."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algd_jax import multipliers


def new(rule, initial, lr):
    return multipliers.create_multiplier(rule, initial, multipliers.multiplier_tx(rule, lr))


def lam(rule, state) -> float:
    return float(multipliers.value(rule, state.params["value"]))


@pytest.mark.parametrize(
    "initial,signal,budget,expected",
    [
        (0.05, [1.0, 2.0, 3.0], 0.5, 0.05 + 0.1 * (2.0 - 0.5)),  # J > h: up by lr (J - h)
        (0.3, [0.1, 0.3], 1.0, 0.3 + 0.1 * (0.2 - 1.0)),  # J < h: down
        (0.05, [0.0, 0.2], 1.5, 0.0),  # would go below 0: projected onto 0
        (0.0, [0.4], 0.4, 0.0),  # J = h at 0: stays
    ],
)
def test_projected_rule_is_clipped_ascent(initial, signal, budget, expected):
    state = new("projected", initial, 0.1)
    assert lam("projected", state) == pytest.approx(initial)
    updated, loss = multipliers.dual_step("projected", state, jnp.asarray(signal), budget)
    assert lam("projected", updated) == pytest.approx(expected, rel=1e-6, abs=1e-8)
    # the dual loss at the old lambda: mean(lambda (h - J))
    assert float(loss) == pytest.approx(initial * (budget - np.mean(signal)), rel=1e-6, abs=1e-8)
    assert int(updated.step) == 1


def test_projected_rule_reaches_zero_and_stays_feasible():
    state = new("projected", 0.5, 0.1)
    for _ in range(10):
        state, _ = multipliers.dual_step("projected", state, jnp.zeros(4), 1.0)
        assert lam("projected", state) >= 0.0
    assert lam("projected", state) == 0.0


def test_adam_rule_steps_log_lambda():
    lr = 0.01
    state = new("adam", 0.5, lr)
    np.testing.assert_allclose(state.params["value"], math.log(0.5), rtol=1e-6)
    assert lam("adam", state) == pytest.approx(0.5, rel=1e-6)
    # J > h: the gradient in log lambda is lambda (h - J) < 0, so Adam's first step raises
    # log lambda by lr (its first step is -lr sign(g)) and lambda grows by e^lr.
    up, loss = multipliers.dual_step("adam", state, jnp.asarray([2.0, 4.0]), 1.0)
    assert lam("adam", up) == pytest.approx(0.5 * math.exp(lr), rel=1e-5)
    assert float(loss) == pytest.approx(0.5 * (1.0 - 3.0), rel=1e-6)
    # J < h: lambda shrinks by e^-lr.
    down, _ = multipliers.dual_step("adam", state, jnp.asarray([0.2]), 1.0)
    assert lam("adam", down) == pytest.approx(0.5 * math.exp(-lr), rel=1e-5)


def test_adam_rule_keeps_lambda_positive_where_projected_hits_zero():
    def run(rule, steps=300):
        state = new(rule, 0.5, 0.1)

        def body(s, _):
            s, _ = multipliers.dual_step(rule, s, jnp.zeros(3), 1.0)  # J = 0 < h = 1
            return s, multipliers.value(rule, s.params["value"])

        _, trace = jax.lax.scan(body, state, None, length=steps)
        return np.asarray(trace)

    adam = run("adam")
    assert np.all(adam > 0.0) and np.all(np.diff(adam) < 0)  # always down, never to 0
    assert adam[-1] < 0.01  # far down from 0.5 (Adam slows as the gradient lambda (h - J) shrinks)
    assert run("projected")[-1] == 0.0


@pytest.mark.parametrize("rule", ["adam", "projected"])
def test_lambda_grows_while_the_constraint_is_violated(rule):
    state = new(rule, 0.2, 0.05)
    before = lam(rule, state)
    for _ in range(5):
        state, _ = multipliers.dual_step(rule, state, jnp.asarray([3.0, 5.0]), 1.0)
        assert lam(rule, state) > before
        before = lam(rule, state)


def test_signal_is_held_constant():
    state = new("adam", 0.5, 0.1)

    def dual_loss(signal):
        return multipliers.dual_step("adam", state, signal, 1.0)[1]

    assert float(jax.grad(dual_loss)(jnp.asarray(3.0))) == 0.0


def test_unknown_rule_is_rejected():
    with pytest.raises(ValueError, match="unknown multiplier rule 'pid'"):
        multipliers.multiplier_tx("pid", 0.1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown multiplier rule"):
        multipliers.create_multiplier("pid", 0.5, None)  # type: ignore[arg-type]
