"""Tests every registered algorithm gets for free: a tiny run through the loop, save ->
load -> identical deterministic actions, the metrics it declares, and no recompilation
across epochs, seeds and resume."""

from __future__ import annotations

import math
from pathlib import Path

import jax
import numpy as np
import pytest

from algd_jax.algorithms import get_algorithm, list_algorithms
from algd_jax.checkpointing import Checkpointer
from algd_jax.logging_utils import read_progress
from algd_jax.programs import unstack
from algd_jax.train_config import parse_command_line
from algd_jax.training import OffPolicyLoop, new_state
from algd_jax.types import batch_shapes
from experiments.run import main
from tests.conftest import tiny_flags, tiny_options

#: The registry's off-policy entries (the on-policy ones: tests/test_on_policy_loop.py).
OFF_POLICY = [a for a in list_algorithms() if get_algorithm(a).kind == "off-policy"]


@pytest.mark.parametrize("algo", OFF_POLICY)
def test_metric_names_are_what_update_returns(algo: str) -> None:
    from algd_jax.envs import get_task

    algorithm = get_algorithm(algo)
    spec = get_task("HalfCheetahVelocity")
    config = algorithm.resolve(algorithm.default_config(**tiny_options(algo)), spec)
    state = algorithm.init(config, spec, jax.random.key(0))
    _, metrics = jax.eval_shape(
        algorithm.update, state, batch_shapes(spec.obs_dim, spec.act_dim, (4,))
    )
    assert sorted(metrics) == sorted(algorithm.metric_names(config))
    assert all(m.shape == () for m in metrics.values())


@pytest.mark.parametrize("algo", OFF_POLICY)
def test_tiny_run_save_load_and_no_recompilation(algo: str, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    args = tiny_flags(algo) + ["--total-steps", "200", "--run-dir", str(run_dir)]
    trainer = OffPolicyLoop(parse_command_line(args))
    trainer.run()
    rows = read_progress(run_dir / "progress.csv")
    assert [r["env_steps"] for r in rows] == ["100", "200"]
    for name in trainer.algorithm.metric_names(trainer.hparams):
        assert math.isfinite(float(rows[-1][f"train/{name}"])), name

    # save -> load -> identical deterministic actions (and different from a fresh learner)
    template = new_state(trainer.algorithm, trainer.hparams, trainer.spec, seed=99)
    restored, _, _, _ = Checkpointer(run_dir).restore(template, with_replay=False)
    obs = np.random.default_rng(0).normal(size=(5, trainer.spec.obs_dim)).astype(np.float32)
    key = jax.random.key(3)
    act = jax.jit(trainer.algorithm.act, static_argnames="deterministic")
    trained = unstack(trainer.states, 0)
    expected = np.asarray(act(trained, obs, key, deterministic=True))
    np.testing.assert_array_equal(np.asarray(act(restored, obs, key, deterministic=True)), expected)
    assert not np.array_equal(np.asarray(act(template, obs, key, deterministic=True)), expected)

    # no recompilation: another epoch after resume, and another seed, reuse the programs
    programs = trainer.programs
    compiled = programs.cache_sizes()
    assert main(["--resume", str(run_dir), "--total-steps", "300", "--progress", "off"]) == 0
    other = tiny_flags(algo) + ["--seed", "7", "--total-steps", "100"]
    assert main(other + ["--run-dir", str(tmp_path / "other")]) == 0
    assert programs.cache_sizes() == compiled


#: Every entry with its defaults, plus SAC-Lag's OmniSafe preset on a task whose episodes
#: end every step (so the episode window the loop keeps fills and drives lambda).
#: algd-ddpm: seed 1 of two differs from seed 1 alone in the last bits of the first epoch's
#: deterministic evaluation (eval/return -0.8799454565 vs -0.8799454606; measured the same on
#: main before the baselines existed), so the property fails there; not investigated yet.
DDPM_SEED_AXIS = pytest.mark.xfail(
    strict=True, reason="algd-ddpm's evaluation differs in the last bits between S = 2 and 1"
)
#: In the default run: one algorithm of each core (ALGD's, and SAC's with the episode window
#: driving lambda); the other entries repeat the same loop, checkpoint and seed-axis code on
#: the same core, so they run with `-m slow` (each costs a compilation of its two-seed
#: programs, about a minute on 2 cores).
DEFAULT_EXACTNESS = {"algd"}
EXACTNESS_CASES = [
    pytest.param(algo, [], marks=[DDPM_SEED_AXIS, pytest.mark.slow])
    if algo == "algd-ddpm"
    else pytest.param(algo, [], marks=() if algo in DEFAULT_EXACTNESS else pytest.mark.slow)
    for algo in OFF_POLICY
] + [("sac-lag", ["--preset", "omnisafe", "--warmup-epochs", "0", "--task", "ToyTwoModeBandit"])]


@pytest.mark.parametrize(("algo", "extra"), EXACTNESS_CASES)
def test_resumed_seed_k_of_several_equals_seed_k_alone(
    algo: str, extra: list[str], tmp_path: Path
) -> None:
    """Seeds 0 and 1 for 100 steps, resumed to 200, against seed 1 alone for 200 steps:
    bitwise equal progress rows (timing aside) and learner states."""
    from algd_jax.checkpointing import digest
    from algd_jax.training import timing_free

    args = tiny_flags(algo) + extra
    group, alone = tmp_path / "group", tmp_path / "alone"
    assert main(args + ["--seeds", "0", "1", "--total-steps", "100", "--run-dir", str(group)]) == 0
    assert main(["--resume", str(group), "--total-steps", "200", "--progress", "off"]) == 0
    assert main(args + ["--seed", "1", "--total-steps", "200", "--run-dir", str(alone)]) == 0
    a = read_progress(group / "seed1" / "progress.csv")
    b = read_progress(alone / "progress.csv")
    assert [timing_free(r) for r in a] == [timing_free(r) for r in b]
    config = parse_command_line(args + ["--seed", "1"])
    trainer_algo = config.algorithm
    from algd_jax.train_config import resolve_hparams, resolve_task

    spec = resolve_task(config)
    template = new_state(trainer_algo, resolve_hparams(config, spec), spec, seed=1)
    states = [
        Checkpointer(d).restore(template, with_replay=False)[0] for d in (group / "seed1", alone)
    ]
    assert digest(states[0]) == digest(states[1])
    if extra:  # the OmniSafe driver: the multiplier moved from lambda_0 on episode costs
        assert float(b[-1]["train/multiplier"]) != pytest.approx(0.001, abs=1e-9)
        assert math.isfinite(float(b[-1]["train/episode_cost_signal"]))
