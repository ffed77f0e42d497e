"""The agent's XLA compiler options: applied on CPU, switchable off, harmless when nested,
and without effect on the numbers."""

from __future__ import annotations

import dataclasses

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


def test_bf16_programs_choose_their_dot_path(monkeypatch):
    monkeypatch.delenv(co.TUNING_ENV_VAR, raising=False)
    monkeypatch.setenv(co.BF16_DOTS_ENV_VAR, "xla")
    assert co.compiler_options("bf16") == co.CPU_BF16_DOT_OPTIONS
    assert "xla_cpu_experimental_ynn_fusion_type" not in co.CPU_BF16_DOT_OPTIONS
    monkeypatch.setenv(co.BF16_DOTS_ENV_VAR, "eigen")
    assert co.compiler_options("bf16") == co.CPU_COMPILER_OPTIONS
    monkeypatch.setenv(co.BF16_DOTS_ENV_VAR, "auto")
    expected = co.CPU_BF16_DOT_OPTIONS if co.cpu_has_bf16_dots() else co.CPU_COMPILER_OPTIONS
    assert co.compiler_options("bf16") == expected
    assert co.compiler_options("f32") == co.CPU_COMPILER_OPTIONS  # f32 never changes
    monkeypatch.setenv(co.BF16_DOTS_ENV_VAR, "fast")
    with pytest.raises(ValueError, match="ALGD_JAX_BF16_DOTS='fast'.*auto .* eigen or xla"):
        co.compiler_options("bf16")


def test_program_precision_comes_from_the_agent_among_the_arguments():
    bf16 = new_agent(dataclasses.replace(SMALL, precision="bf16"))
    f32, data = new_agent(), make_batch(0)
    assert co.program_precision((bf16, data), {}) == "bf16"
    assert co.program_precision((f32, data), {}) == "f32"
    assert co.program_precision((data, (1, {"agents": bf16})), {}) == "bf16"  # nested
    assert co.program_precision((), {"state": bf16}) == "bf16"
    assert co.program_precision((jnp.ones(3),), {}) == "f32"  # no agent: f32 options


def test_bf16_and_f32_programs_of_one_function_keep_their_own_options(monkeypatch):
    monkeypatch.setenv(co.BF16_DOTS_ENV_VAR, "xla")
    fn = co.tuned_jit(lambda state, x: x @ x)
    x = jnp.ones((8, 8))
    bf16 = new_agent(dataclasses.replace(SMALL, precision="bf16"))
    fn(new_agent(), x)
    fn(bf16, x)
    assert fn._cache_size() == 2  # one program per option set
    text_f32 = fn.lower(new_agent(), x).compile().as_text()
    assert "ynn" not in text_f32  # Eigen for f32 ...
    assert fn._by_precision["bf16"] is not fn._by_precision["f32"]  # ... its own for bf16
