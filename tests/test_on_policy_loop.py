"""The on-policy loop (`--algo ppo-lag`) inside the run lifecycle every loop shares: the
registry's properties for an on-policy entry (a tiny run, save -> load -> identical
actions, no recompilation, seed k alone = seed k among others), exact resume after a
SIGKILL in the middle of a rollout, and refused resumes that leave the run byte-identical.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest

from algd_jax.checkpointing import Checkpointer, digest
from algd_jax.programs import new_state, unstack
from algd_jax.train_config import parse_command_line, resolve_hparams, resolve_task
from algd_jax.training.on_policy import OnPolicyLoop
from experiments.run import main
from tests.conftest import REPO, progress_rows
from tests.test_run_data_safety import one_line, tree_hash

#: DiffDriveCircle (100-step episodes, so episodes end inside rollouts), 2 envs per seed,
#: rollouts of 100 env steps per seed (T = 50), a tiny PPO-Lag.
PPO_TINY = [
    "--algo", "ppo-lag", "--task", "DiffDriveCircle", "--num-envs", "2",
    "--steps-per-epoch", "100", "--update-iters", "2", "--minibatch-size", "25",
    "--actor-hidden", "16", "--critic-hidden", "16", "--episode-window", "4",
    "--eval-episodes", "1", "--progress", "off",
]  # fmt: skip


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Seeds 0 and 1, 300 env steps (three rollouts) without a stop."""
    run_dir = tmp_path_factory.mktemp("ppo") / "run"
    args = PPO_TINY + ["--seeds", "0", "1", "--total-steps", "300", "--run-dir", str(run_dir)]
    assert main(args) == 0
    return run_dir


def test_tiny_run_save_load_and_no_recompilation(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    loop = OnPolicyLoop(
        parse_command_line(PPO_TINY + ["--total-steps", "200", "--run-dir", str(run_dir)])
    )
    loop.run()
    progress = progress_rows(run_dir)
    assert [r["env_steps"] for r in progress] == ["100", "200"]
    assert [r["updates"] for r in progress] == ["1", "2"]
    # 2 envs x 50 steps per rollout on 100-step episodes: both envs end one in rollout 2
    assert [r["episodes"] for r in progress] == ["0", "2"]
    assert float(progress[-1]["train/episode_length"]) == 100.0
    for name in loop.metric_names:
        assert np.isfinite(float(progress[-1][f"train/{name}"])), name

    # save -> load -> identical deterministic actions (and different from a fresh learner)
    template = new_state(loop.algorithm, loop.hparams, loop.spec, seed=99)
    restored, _, _, _ = Checkpointer(run_dir).restore(template, with_replay=False)
    obs = np.random.default_rng(0).normal(size=(5, loop.spec.obs_dim)).astype(np.float32)
    act = jax.jit(loop.algorithm.act, static_argnames="deterministic")
    key = jax.random.key(3)
    expected = np.asarray(act(unstack(loop.states, 0), obs, key, deterministic=True))
    np.testing.assert_array_equal(np.asarray(act(restored, obs, key, deterministic=True)), expected)
    assert not np.array_equal(np.asarray(act(template, obs, key, deterministic=True)), expected)

    # no recompilation: a resumed rollout and another seed reuse the compiled programs
    compiled = loop.programs.cache_sizes()
    assert main(["--resume", str(run_dir), "--total-steps", "300", "--progress", "off"]) == 0
    other = PPO_TINY + ["--seed", "7", "--total-steps", "100", "--run-dir", str(tmp_path / "o")]
    assert main(other) == 0
    assert loop.programs.cache_sizes() == compiled


def test_resumed_seed_k_of_several_equals_seed_k_alone(uninterrupted: Path, tmp_path: Path) -> None:
    """Seeds 0 and 1 for 100 steps, resumed to 300, and seed 1 alone for 300 steps: the
    same rows (timing aside) and learner states, bitwise, as the uninterrupted pair."""
    group, alone = tmp_path / "group", tmp_path / "alone"
    assert (
        main(PPO_TINY + ["--seeds", "0", "1", "--total-steps", "100", "--run-dir", str(group)]) == 0
    )
    assert main(["--resume", str(group), "--total-steps", "300", "--progress", "off"]) == 0
    assert main(PPO_TINY + ["--seed", "1", "--total-steps", "300", "--run-dir", str(alone)]) == 0
    expected = progress_rows(uninterrupted / "seed1")
    assert progress_rows(group / "seed1") == expected
    assert progress_rows(alone) == expected
    assert progress_rows(group / "seed0") == progress_rows(uninterrupted / "seed0")
    config = parse_command_line(PPO_TINY + ["--seed", "1"])
    spec = resolve_task(config)
    template = new_state(config.algorithm, resolve_hparams(config, spec), spec, seed=1)
    states = [
        Checkpointer(d).restore(template, with_replay=False)[0]
        for d in (group / "seed1", alone, uninterrupted / "seed1")
    ]
    assert digest(states[0]) == digest(states[1]) == digest(states[2])


KILLED_MID_ROLLOUT = textwrap.dedent(
    """
    import os, signal, sys
    import gymnasium
    import algd_jax.training.on_policy as on_policy
    from experiments.run import main

    class KillAt(gymnasium.Wrapper):
        steps = 0  # env steps of all envs of the process

        def step(self, action):
            KillAt.steps += 1
            # every env of the process counts: rollout 1 is 2 seeds x 2 envs x 50 steps, its
            # evaluation 2 x 100 steps; step 487 is in the middle of rollout 2
            if KillAt.steps == 487:
                os.kill(os.getpid(), signal.SIGKILL)
            return self.env.step(action)

    real = on_policy.make_env
    on_policy.make_env = lambda *a, **k: KillAt(real(*a, **k))
    sys.exit(main(sys.argv[1:]))
    """
)


def test_sigkill_mid_rollout_then_resume_equals_an_uninterrupted_run(
    uninterrupted: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    args = PPO_TINY + ["--seeds", "0", "1", "--total-steps", "300", "--run-dir", str(run_dir)]
    done = subprocess.run(
        [sys.executable, "-c", KILLED_MID_ROLLOUT, *args], cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == -9, done.stderr
    # killed in the second rollout: its first epoch is logged and checkpointed, no more
    assert [r["env_steps"] for r in progress_rows(run_dir / "seed0")] == ["100"]
    assert main(["--resume", str(run_dir), "--progress", "off"]) == 0
    for seed in ("seed0", "seed1"):
        assert progress_rows(run_dir / seed) == progress_rows(uninterrupted / seed)


def test_refused_resumes_of_an_on_policy_run_leave_it_byte_identical(
    uninterrupted: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(uninterrupted, run_dir)
    before = tree_hash(run_dir)
    assert main(["--resume", str(run_dir), "--progress", "off"]) == 3
    assert "already has 300 env steps" in one_line(capsys)
    assert main(["--resume", str(run_dir), "--total-steps", "400", "--update-iters", "3"]) == 2
    assert "--update-iters" in one_line(capsys)
    # a damaged collector state in the checkpoint: one line, nothing changed
    meta = run_dir / "seed0" / "config.json"
    data = json.loads(meta.read_text())
    data["config"]["num_envs"] = 3
    original = meta.read_bytes()
    meta.write_text(json.dumps(data))
    group = run_dir / "group.json"
    group_original = group.read_bytes()
    gdata = json.loads(group_original)
    gdata["config"]["num_envs"] = 3
    group.write_text(json.dumps(gdata))
    changed = tree_hash(run_dir)
    assert main(["--resume", str(run_dir), "--total-steps", "400", "--progress", "off"]) != 0
    line = one_line(capsys)
    assert "num_envs" in line or "--num-envs" in line, line
    assert tree_hash(run_dir) == changed
    meta.write_bytes(original)
    group.write_bytes(group_original)
    assert tree_hash(run_dir) == before


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--total-steps", "250"], "is not a whole number of rollouts"),
        (["--num-envs", "3"], "not a multiple of --num-envs 3"),
        (["--loop", "device"], "on-policy"),
    ],
)
def test_schedules_the_on_policy_loop_cannot_run_are_refused_before_anything_is_written(
    flags: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = PPO_TINY + ["--total-steps", "200"]
    for flag, value in zip(flags[::2], flags[1::2], strict=True):
        if flag in args:
            args[args.index(flag) + 1] = value
        else:
            args += [flag, value]
    target = tmp_path / "run"
    assert main(args + ["--run-dir", str(target)]) == 2
    assert message in one_line(capsys)
    assert not target.exists()
