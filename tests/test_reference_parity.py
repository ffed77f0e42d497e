"""Parity with the authors' PyTorch implementation on the shipped reference dump."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from algd_jax.reference import compare_dump, missing_quantities

DUMP = Path(__file__).parent / "data" / "algd_reference_halfcheetah_seed0.npz"


@pytest.fixture(scope="module")
def dump() -> dict[str, np.ndarray]:
    with np.load(DUMP) as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def rows(dump):
    return {r.name: r for r in compare_dump(dump)}


def test_every_reference_quantity_is_recomputed(dump, rows):
    expected = [
        k
        for k in dump
        if k.startswith(
            ("out.", "active.", "upd.policy", "upd.critic.", "upd.critic_target.", "upd.safety")
        )
    ]
    assert missing_quantities(dump, list(rows.values())) == []
    assert set(expected) - {"active.target_cost"} <= set(rows)
    assert {"upd.losses", "upd.log_lam"} <= set(rows)
    assert len(rows) >= 76


@pytest.mark.parametrize("prefix", ["out.", "active."])
def test_outputs_within_1e5(rows, prefix):
    bad = {n: r.max_rel for n, r in rows.items() if n.startswith(prefix) and r.max_rel > 1e-5}
    assert not bad


def test_update_losses_multiplier_and_parameters(rows):
    assert rows["upd.losses"].max_rel < 1e-5
    assert rows["upd.log_lam"].max_rel < 1e-5
    bad = {n: r.max_rel for n, r in rows.items() if n.startswith("upd.") and r.max_rel > 1e-4}
    assert not bad


def test_checker_detects_a_wrong_quantity(dump):
    broken = dict(dump)
    broken["out.score"] = dump["out.score"] * 1.001
    rows = {r.name: r for r in compare_dump(broken)}
    assert not rows["out.score"].ok
    assert rows["out.Q1"].ok


def test_check_reference_cli_exit_codes(tmp_path, capsys):
    from experiments.check_reference import main

    assert main([str(DUMP)]) == 0
    out = capsys.readouterr().out
    assert "upd.policy_grad.mlp.0.weight" in out and "all within tolerance" in out
    corrupt = tmp_path / "bad.npz"
    corrupt.write_bytes(b"not a zip")
    assert main([str(corrupt)]) == 2
    assert "is not an .npz file" in capsys.readouterr().err
