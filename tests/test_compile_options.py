"""The agent's XLA compiler options: applied on CPU, switchable off, harmless when nested,
and without effect on the numbers."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algd_jax import compile_options as co
from algd_jax.algorithms.algd import create_agent, draw_update_noise, select_action, update_with_noise
from algd_jax.algorithms.algd import ALGDConfig

DS, DA, B = 4, 2, 8
SMALL = ALGDConfig(
    ensemble_size=2, mc_samples=2, diffusion_steps=3, critic_hidden=16, score_hidden=16
)


def agent():
    return create_agent(SMALL, DS, -np.ones(DA), np.ones(DA), 0)


def batch():
    rng = np.random.default_rng(0)
    host = {
        "obs": rng.normal(size=(B, DS)),
        "action": rng.uniform(-1, 1, (B, DA)),
        "reward": rng.normal(size=B),
        "cost": rng.uniform(size=B),
        "next_obs": rng.normal(size=(B, DS)),
        "mask_r": np.ones(B),
        "mask_c": np.ones(B),
    }
    return {k: jnp.asarray(v, jnp.float32) for k, v in host.items()}


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
    state, obs = agent(), jnp.zeros((3, DS))
    key = jax.random.key(1)
    direct = select_action(state, obs, key)
    nested = jax.jit(lambda s, o, k: select_action(s, o, k))(state, obs, key)
    np.testing.assert_allclose(nested, direct, rtol=1e-6, atol=1e-7)


def test_options_do_not_change_the_update():
    state, data = agent(), batch()
    noise = draw_update_noise(jax.random.key(2), SMALL, B, DA)
    tuned = jax.jit(update_with_noise, compiler_options=co.CPU_COMPILER_OPTIONS)
    default = jax.jit(update_with_noise)
    (new_tuned, m_tuned), (new_default, m_default) = (
        tuned(state, data, noise),
        default(state, data, noise),
    )
    for a, b in zip(jax.tree.leaves(new_tuned), jax.tree.leaves(new_default), strict=True):
        if jnp.issubdtype(a.dtype, jax.dtypes.prng_key):
            continue
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    for k in m_tuned:
        np.testing.assert_allclose(m_tuned[k], m_default[k], rtol=1e-5, atol=1e-6)
