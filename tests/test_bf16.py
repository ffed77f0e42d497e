"""Mixed precision (`ALGDConfig.precision = "bf16"`): bfloat16 inputs to every matrix product
of the networks, float32 accumulation, everything else float32.

* the product and its gradient are exactly float32 products of bf16-rounded inputs;
* the compiled update has no other kind of product; parameters and states stay float32;
* parity: the bf16 recompute of the authors' reference dump is within the error that bf16
  inputs cause (bounds derived below), measured against our float32 recompute of it;
* fused = sequential and no recompilation in bf16 too; a bad value is one clear error.

Float32 itself is unchanged: `tests/test_reference_parity.py` and `check_reference` run it.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import jax
import jax.extend.core
import jax.numpy as jnp
import numpy as np
import pytest

from algd_jax.algorithms.algd import ALGDConfig, update, update_from_key, update_many
from algd_jax.networks import bf16_matmul
from algd_jax.reference import config_from_dump, recompute, recomputed_shapes
from tests.conftest import SMALL, assert_states_close, flat, leaves, make_batch, new_agent

BF16 = dataclasses.replace(SMALL, precision="bf16")
DUMP = Path(__file__).parent / "data" / "algd_reference_halfcheetah_seed0.npz"


def _round(x: jax.Array) -> jax.Array:
    return x.astype(jnp.bfloat16).astype(jnp.float32)


def test_bf16_product_and_its_gradient_are_float32_products_of_rounded_inputs():
    x = jax.random.normal(jax.random.key(0), (3, 5, 9))
    w = jax.random.normal(jax.random.key(1), (9, 4))
    y = bf16_matmul(x, w)
    assert y.dtype == jnp.float32
    np.testing.assert_allclose(y, _round(x) @ _round(w), rtol=1e-6, atol=1e-6)
    g = jax.random.normal(jax.random.key(2), y.shape)
    dx, dw = jax.vjp(bf16_matmul, x, w)[1](g)
    assert dx.dtype == dw.dtype == jnp.float32
    np.testing.assert_allclose(dx, _round(g) @ _round(w).T, rtol=1e-6, atol=1e-6)
    rows = lambda a: a.reshape(-1, a.shape[-1])  # noqa: E731
    np.testing.assert_allclose(dw, rows(_round(x)).T @ rows(_round(g)), rtol=1e-6, atol=1e-5)
    # ... and it is not the float32 product
    assert not np.allclose(y, x @ w, rtol=1e-6, atol=1e-6)


def _dots(jaxpr) -> list:
    found = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            found.append(eqn)
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            found += _dots(sub)
    return found


@pytest.mark.parametrize("precision", ["f32", "bf16"])
def test_every_product_of_the_update_has_the_configured_inputs(precision):
    config = dataclasses.replace(SMALL, precision=precision)
    state = new_agent(config)
    dots = _dots(jax.make_jaxpr(update_from_key)(state, make_batch(0)).jaxpr)
    assert len(dots) >= 30  # forward and backward products of both critics and the score net
    expected = jnp.bfloat16 if precision == "bf16" else jnp.float32
    for eqn in dots:
        assert [v.aval.dtype for v in eqn.invars] == [expected, expected], eqn
        assert eqn.outvars[0].aval.dtype == jnp.float32
    new, metrics = update(state, make_batch(1))
    assert {x.dtype for x in leaves(new)} <= {np.dtype(np.float32), np.dtype(np.int32)}
    assert all(m.dtype == jnp.float32 for m in metrics.values())


def test_precisions_share_parameters_and_initial_values():
    for a, b in zip(leaves(new_agent(SMALL)), leaves(new_agent(BF16)), strict=True):
        np.testing.assert_array_equal(a, b)
    assert jax.tree.structure(new_agent(SMALL).actor.params) == jax.tree.structure(
        new_agent(BF16).actor.params
    )


@pytest.mark.slow  # the bf16 repeat of the f32 fused = sequential test: ~15 s on 2 cores
def test_bf16_fused_scan_equals_sequential_updates_without_recompiling():
    num = 4
    batch = make_batch(0, (num,))
    fused, _ = update_many(new_agent(BF16), batch)
    state = new_agent(BF16)
    for u in range(num):
        state, _ = update(state, jax.tree.map(lambda x, u=u: x[u], batch))
    assert_states_close(fused, state)
    # and bf16 is not float32 in disguise
    f32, _ = update_many(new_agent(SMALL), batch)
    assert not np.allclose(flat(f32.actor.params), flat(fused.actor.params), rtol=0, atol=1e-7)
    compiled = update_many._cache_size()
    update_many(fused, make_batch(5, (num,)))  # new data, same shapes: no new program
    assert update_many._cache_size() == compiled


def test_unknown_precision_is_one_clear_error(capsys):
    with pytest.raises(ValueError, match=r"^--precision must be one of f32, bf16, got 'fp8'$"):
        ALGDConfig(precision="fp8").validate()  # type: ignore[arg-type]
    from experiments.run import main

    assert main(["--precision", "fp8"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--precision" in err[0] and "fp8" in err[0], err
    assert "f32" in err[0] and "bf16" in err[0]


# ----------------------------------------------------------------------------- parity
#
# The error bf16 inputs cause, and the tolerances derived from it. u = 2^-8 is bfloat16's
# unit roundoff (8 significant bits, round to nearest): each input of a product is off by a
# relative error |d| <= u, so each term x_k w_k by |d_x + d_w| <= 2u; the float32 accumulation
# adds at most k 2^-24 (1.5e-5 at k = 256), negligible. The rounding errors are independent
# and uniform in [-u, u] (standard deviation u / sqrt(3)), so one product's output y_j has an
# error of standard deviation u sqrt(2/3) ||x o w_j||_2, about 0.82 u of a typical |y_j|
# (a sum of k terms of either sign is of the size of their 2-norm). A quantity that passes
# through p products collects p such independent errors (the layers in between have gain
# about 1): relative RMS error 0.82 u sqrt(p). The checks use the norm-wise measure of
# `compare_dump`, max|bf16 - f32| / max|f32|; over these arrays (at most 4k entries) the
# largest of Gaussian errors is < 4.5 RMS while max|f32| is > 1 RMS of the values, so
#
#     T(p) = 4.5 * 0.82 u sqrt(p) = 3.7 u sqrt(p)
#
# Action gradients (score targets, policy gradients) also pass through ReLU derivatives,
# which rounding can switch where a pre-activation is within its error of 0. Each switched
# unit changes the gradient by one of the H terms of its sum, about 1/sqrt(H) of it (terms of
# either sign); the bound allows two per row: + 2 / sqrt(H).
#
# Post-update parameters: the fixture's update is the first Adam step, theta - lr g /
# (|g| + eps) with bias correction, which moves every entry by at most lr against the sign
# of its gradient. bf16 can change an entry's step only by flipping that sign, so
# |bf16 - f32| <= 2 lr (targets: 2 lr * polyak), and only where |g| is below its own
# rounding error: a small minority of the entries (a wrong gradient flips about half).

U = 2.0**-8


def T(products: int) -> float:
    return 4.5 * math.sqrt(2.0 / 3.0) * U * math.sqrt(products)


CRITIC = T(3)  # Dense-act-Dense-act-Dense
SCORE = T(4)  # three hidden layers and a head
K = 5  # the fixture's diffusion steps: its samplers chain K score-net evaluations
SAMPLER = T(4 * K)
SCORE_TARGET = T(6) + 2.0 / math.sqrt(256)  # critic forward and backward, ReLU critic H=256
POLICY_GRAD = T(3 + 3 + 4 + 4) + 2.0 / math.sqrt(128)  # + score net backward/forward, H=128
FLIPPED_FRACTION = 0.10

GROUPS = {
    CRITIC: ("Q1", "Q2", "QCs", "Q_min", "qc_risk", "LA"),
    SCORE: ("score",),
    SAMPLER: ("sample_deterministic", "p_sample_loop", "swt_a0", "swt_a_tau"),
    SCORE_TARGET: ("score_target_mc",),
}


def _tolerance(name: str) -> float | None:
    base = name.split(".", 1)[1]
    if base == "p_sample_loop_latents":
        return SAMPLER
    for tol, names in GROUPS.items():
        if base in names:
            return tol
    return None


@pytest.fixture(scope="module")
def recomputed() -> tuple[dict, dict, dict]:
    with np.load(DUMP) as data:
        dump = {k: data[k] for k in data.files}
    # compiled: eager bf16 operations would each compile on first use (~50 s on 2 cores)
    return dump, recompute(dump, "f32", jit=True), recompute(dump, "bf16", jit=True)


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def test_bf16_outputs_samplers_and_score_targets_within_rounding_bounds(recomputed):
    dump, f32, bf16 = recomputed
    assert config_from_dump(dump)[0].diffusion_steps == K
    checked, bad = [], {}
    for name in f32:
        if not name.startswith(("out.", "active.")) or name.endswith("swt_taus"):
            continue
        tol = _tolerance(name)
        assert tol is not None, f"no bound for {name}"
        err = _rel(bf16[name], f32[name])
        checked.append(name)
        if not err <= tol:
            bad[name] = (err, tol)
    assert len(checked) >= 17 and not bad, bad
    # the two precisions do differ (the comparison can fail)
    assert _rel(bf16["out.Q1"], f32["out.Q1"]) > 1e-5


def test_bf16_losses_and_policy_gradient_within_rounding_bounds(recomputed):
    _, f32, bf16 = recomputed
    assert _rel(bf16["upd.losses"], f32["upd.losses"]) <= CRITIC
    grads = [n for n in f32 if n.startswith("upd.policy_grad.")]
    assert len(grads) >= 9
    bad = {n: _rel(bf16[n], f32[n]) for n in grads if _rel(bf16[n], f32[n]) > POLICY_GRAD}
    assert not bad, bad


def test_bf16_update_moves_parameters_within_the_first_adam_step_bound(recomputed):
    dump, f32, bf16 = recomputed
    config = config_from_dump(dump)[0]
    params = [
        n for n in f32 if n.startswith("upd.") and n not in ("upd.losses",) and "grad" not in n
    ]
    assert len(params) >= 40
    bad = {}
    for name in params:
        target = "_target" in name
        lr = config.cost_critic_lr if "safety" in name else config.critic_lr
        if name.startswith("upd.policy"):
            lr = config.actor_lr
        if name == "upd.log_lam":
            lr = config.multiplier_lr
        step = lr * (config.polyak if target else 1.0)  # the largest move of one entry
        bound = 2.0 * step * 1.001 + 1e-7
        diff = np.abs(np.asarray(bf16[name], np.float64) - np.asarray(f32[name], np.float64))
        flipped = float(np.mean(diff > 0.5 * step))
        if diff.max() > bound or flipped > FLIPPED_FRACTION:
            bad[name] = (float(diff.max()), bound, flipped)
    assert not bad, bad


def test_traced_shapes_are_the_recomputed_shapes(recomputed):
    """`recomputed_shapes` (tracing only; `compare_dump` refuses a malformed dump with it
    before any arithmetic) agrees with what the recomputation returns."""
    dump, f32, _ = recomputed
    assert recomputed_shapes(dump) == {k: v.shape for k, v in f32.items()}
