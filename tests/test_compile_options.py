"""The agent's XLA compiler options: applied on CPU, switchable off, harmless when nested,
and without effect on the numbers."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algd_jax import compile_options as co
from algd_jax.algorithms.algd import draw_update_noise, select_action, update_with_noise
from tests.conftest import DA, DS, SMALL, B, leaves, make_batch, new_agent


def test_cpu_gets_the_tuned_options_unless_switched_off(monkeypatch):
    assert jax.default_backend() == "cpu"
    monkeypatch.delenv(co.TUNING_ENV_VAR, raising=False)
    assert co.compiler_options() == co.CPU_COMPILER_OPTIONS
    monkeypatch.setenv(co.TUNING_ENV_VAR, "0")
    assert co.compiler_options() is None


def test_unknown_switch_value_is_one_clear_error(monkeypatch):
    monkeypatch.setenv(co.TUNING_ENV_VAR, "yes")
    with pytest.raises(ValueError, match="ALGD_JAX_CPU_TUNING='yes'.*use 1 .* or 0"):
        co.compiler_options()


def test_tuned_program_leaves_matrix_products_to_eigen(monkeypatch):
    monkeypatch.delenv(co.TUNING_ENV_VAR, raising=False)
    square = co.tuned_jit(lambda x: jnp.tanh(x @ x))
    x = jnp.ones((64, 64))
    text = square.lower(x).compile().as_text()
    assert "dot(" in text and "ynn" not in text


def test_tuned_function_can_be_called_inside_another_jit():
    state, obs = new_agent(), jnp.zeros((3, DS))
    key = jax.random.key(1)
    direct = select_action(state, obs, key)
    nested = jax.jit(lambda s, o, k: select_action(s, o, k))(state, obs, key)
    np.testing.assert_allclose(nested, direct, rtol=1e-6, atol=1e-7)


def test_options_do_not_change_the_update():
    state, data = new_agent(), make_batch(0)
    noise = draw_update_noise(jax.random.key(2), SMALL, B, DA)
    tuned = jax.jit(update_with_noise, compiler_options=co.CPU_COMPILER_OPTIONS)
    default = jax.jit(update_with_noise)
    (new_tuned, m_tuned), (new_default, m_default) = (
        tuned(state, data, noise),
        default(state, data, noise),
    )
    for a, b in zip(leaves(new_tuned), leaves(new_default), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    for k in m_tuned:
        np.testing.assert_allclose(m_tuned[k], m_default[k], rtol=1e-5, atol=1e-6)
