"""End-to-end training runs with tiny configurations: the files a run writes, exact resume
(after a clean stop and after Ctrl-C), save -> load -> identical actions, and the stop on a
non-finite loss."""

from __future__ import annotations

import csv
import importlib.util
import math
import os
import re
import signal
import struct
from pathlib import Path

import gymnasium
import jax
import numpy as np
import pytest

from algd_jax.algorithms.algd import select_action
from algd_jax.checkpointing import Checkpointer, digest
from algd_jax.programs import unstack
from algd_jax.train_config import parse_command_line, resolve_hparams, resolve_task
from algd_jax.training import LoopState, OffPolicyLoop, new_state, timing_free
from experiments.run import main
from tests.conftest import TINY


def rows(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "progress.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def tensorboard_scalars(run_dir: Path) -> dict[str, list[int]]:
    """tag -> env steps, read from the TFRecord event files (no TensorBoard needed)."""
    from tensorboardX.proto import event_pb2

    tags: dict[str, list[int]] = {}
    for path in (run_dir / "tb").glob("events.out.tfevents.*"):
        data, i = path.read_bytes(), 0
        while i < len(data):
            (length,) = struct.unpack("<Q", data[i : i + 8])
            event = event_pb2.Event.FromString(data[i + 12 : i + 12 + length])
            i += 12 + length + 4  # length, its crc, payload, payload crc
            for value in event.summary.value:
                assert math.isfinite(value.simple_value)
                tags.setdefault(value.tag, []).append(event.step)
    return tags


def check_run_files(
    run_dir: Path, expected_steps: list[int], episode_ended: bool = True
) -> list[dict[str, str]]:
    """Every file of a run exists; returns the progress rows."""
    import json

    config = json.loads((run_dir / "config.json").read_text())
    assert {"config", "agent_config", "task_spec", "algo"} <= set(config)
    progress = rows(run_dir)
    assert [int(r["env_steps"]) for r in progress] == expected_steps
    for row in progress:
        for key in ("eval/return", "eval/cost", "train/critic_loss", "train/actor_loss",
                    "train/multiplier", "train/score_target_norm", "train/violation",
                    "time/env_steps_per_s", "time/updates_per_s", "time/wall_s"):  # fmt: skip
            assert math.isfinite(float(row[key])), (key, row[key])
    # the last epoch completed a training episode: every column is finite
    if episode_ended:
        assert all(math.isfinite(float(v)) for v in progress[-1].values()), progress[-1]
    tags = tensorboard_scalars(run_dir)
    for tag in ("train/critic_loss", "eval/return", "eval/cost", "time/env_steps_per_s"):
        assert tag in tags
    assert not episode_ended or "train/episode_return" in tags
    assert sorted(set(tags["eval/return"])) == expected_steps
    steps = Checkpointer(run_dir).steps("last")
    assert steps == expected_steps[-3:]
    return progress


def test_end_to_end_halfcheetah(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    args = TINY + ["--total-steps", "1000", "--epoch-steps", "500", "--run-dir", str(run_dir)]
    assert main(args) == 0
    progress = check_run_files(run_dir, [500, 1000])
    # 1000-step episodes: none has ended after 500 steps, one after 1000
    assert progress[0]["train/episode_return"] == "nan"
    assert progress[1]["episodes"] == "1" and progress[1]["train/episode_length"] == "1000.0"
    assert progress[1]["updates"] == str(2 * (1000 - 50 + 1))


def test_end_to_end_navigation(tmp_path: Path) -> None:
    if importlib.util.find_spec("safety_gymnasium") is None:
        pytest.skip("safety-gymnasium is not installed")
    run_dir = tmp_path / "nav"
    args = TINY + [
        "--task", "SafetyPointGoal1-v0", "--paper-setting",
        "--total-steps", "400", "--epoch-steps", "200", "--run-dir", str(run_dir),
    ]  # fmt: skip
    assert main(args) == 0
    check_run_files(run_dir, [200, 400])
    import json

    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["config"]["cost_mask"] == "none"  # the task's preset
    assert saved["task_spec"]["max_episode_steps"] == 400
    assert saved["agent_config"]["cost_budget"] == pytest.approx(2.455123616812385)


def _restore_last(run_dir: Path, args: list[str], seed: int = 0) -> tuple[object, object, dict]:
    """(agent, loop state, replay arrays) of a run's newest checkpoint."""
    config = parse_command_line(args)
    spec = resolve_task(config)
    hparams = resolve_hparams(config, spec)
    template = new_state(config.algorithm, hparams, spec, seed)
    names = tuple(sorted(config.algorithm.metric_names(hparams)))
    loop = LoopState.create([seed], spec, names)
    loop = unstack(loop.replace(sums=jax.device_get(loop.sums)), 0)
    agent, loop, replay, _ = Checkpointer(run_dir).restore(template, loop_template=loop)
    return agent, loop, replay


def test_resume_reproduces_an_uninterrupted_run(tmp_path: Path) -> None:
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert main(TINY + ["--total-steps", "200", "--run-dir", str(straight)]) == 0
    assert main(TINY + ["--total-steps", "100", "--run-dir", str(split)]) == 0
    assert len(rows(split)) == 1
    assert main(["--resume", str(split), "--total-steps", "200", "--progress", "off"]) == 0

    assert [timing_free(r) for r in rows(split)] == [timing_free(r) for r in rows(straight)]
    a_state, a_loop, a_replay = _restore_last(straight, TINY)
    b_state, b_loop, b_replay = _restore_last(split, TINY)
    assert digest(a_state) == digest(b_state)
    assert digest(a_replay) == digest(b_replay)
    # everything but the machine-dependent wall time
    assert digest(a_loop.replace(wall_time=None)) == digest(b_loop.replace(wall_time=None))
    assert int(a_loop.env_step) == int(b_loop.env_step) == 200
    assert int(a_loop.episode[3]) == 200  # mid-episode: 200 actions to replay on resume


def test_save_load_gives_identical_actions(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    config = parse_command_line(TINY + ["--total-steps", "100", "--run-dir", str(run_dir)])
    trainer = OffPolicyLoop(config)
    trainer.run()
    template = new_state(trainer.algorithm, trainer.hparams, trainer.spec, seed=123)
    restored, _, _, _ = Checkpointer(run_dir).restore(template, with_replay=False)
    obs = np.random.default_rng(0).normal(size=(8, trainer.spec.obs_dim)).astype(np.float32)
    key = jax.random.key(7)
    trained = unstack(trainer.states, 0)
    for deterministic in (True, False):
        expected = np.asarray(select_action(trained, obs, key, deterministic))
        actual = np.asarray(select_action(restored, obs, key, deterministic))
        np.testing.assert_array_equal(actual, expected)
    assert not np.array_equal(
        np.asarray(select_action(template, obs, key, True)),
        np.asarray(select_action(restored, obs, key, True)),
    )


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "nan"
    # epoch 1 (steps 1-100) has no update; the first update (after step 150) diverges
    args = TINY + [
        "--initial-steps", "150", "--critic-lr", "1e30",
        "--total-steps", "300", "--run-dir", str(run_dir),
    ]  # fmt: skip
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert re.search(r"non-finite \w+ at update 0 \(after env step 150\)", err), err
    assert "Last good checkpoint: step 100" in err
    assert [r["env_steps"] for r in rows(run_dir)] == ["100"]
    assert Checkpointer(run_dir).steps() == [100]


def test_ctrl_c_saves_and_resume_is_exact(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGINT in the middle of an epoch and of an episode; resuming gives the numbers of a
    run that was never stopped.

    The signal is sent by the training env itself on its 137th step, so it lands at a known
    step; the handler runs in the main thread exactly as for Ctrl-C.
    """
    import algd_jax.training.off_policy as training

    class InterruptingEnv(gymnasium.Wrapper):
        def __init__(self, env: gymnasium.Env) -> None:
            super().__init__(env)
            self.steps = 0

        def step(self, action):  # type: ignore[no-untyped-def]
            self.steps += 1
            if self.steps == 137:
                os.kill(os.getpid(), signal.SIGINT)
            return self.env.step(action)

    made: list[gymnasium.Env] = []
    real_make_env = training.make_env

    def make_env(*args, **kwargs):  # type: ignore[no-untyped-def]
        env = real_make_env(*args, **kwargs)
        made.append(env)
        return InterruptingEnv(env) if len(made) == 1 else env  # the first is the train env

    stopped = tmp_path / "stopped"
    monkeypatch.setattr(training, "make_env", make_env)
    code = main(TINY + ["--total-steps", "100000", "--run-dir", str(stopped)])
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert code == 130, err
    assert "interrupted at env step 137; checkpoint saved" in err
    assert Checkpointer(stopped).steps() == [100, 137]
    assert [r["env_steps"] for r in rows(stopped)] == ["100"]

    assert main(["--resume", str(stopped), "--total-steps", "300", "--progress", "off"]) == 0
    straight = tmp_path / "straight"
    assert main(TINY + ["--total-steps", "300", "--run-dir", str(straight)]) == 0
    assert [timing_free(r) for r in rows(stopped)] == [timing_free(r) for r in rows(straight)]
    assert digest(_restore_last(stopped, TINY)[0]) == digest(_restore_last(straight, TINY)[0])


def test_multi_seed_run_writes_one_run_directory_per_seed(tmp_path: Path) -> None:
    import json

    group = tmp_path / "group"
    assert main(TINY + ["--total-steps", "200", "--seeds", "3", "5", "--run-dir", str(group)]) == 0
    assert json.loads((group / "group.json").read_text())["seeds"] == [3, 5]
    for seed in (3, 5):
        run_dir = group / f"seed{seed}"
        check_run_files(run_dir, [100, 200], episode_ended=False)
        saved = json.loads((run_dir / "config.json").read_text())["config"]
        assert saved["seed"] == seed and saved["seeds"] is None
    # seeds are independent learners: their numbers differ
    assert rows(group / "seed3")[-1]["eval/return"] != rows(group / "seed5")[-1]["eval/return"]


def test_seed_k_of_a_multi_seed_run_equals_seed_k_alone(tmp_path: Path) -> None:
    """A few hundred updates (U = 2 from step 50 to 300): bitwise equal rows and states,
    with the default seed axis (`map` on a CPU)."""
    group, alone = tmp_path / "group", tmp_path / "alone"
    args = TINY + ["--total-steps", "300"]
    assert main(args + ["--seeds", "0", "1", "2", "--run-dir", str(group)]) == 0
    assert main(args + ["--seed", "1", "--run-dir", str(alone)]) == 0
    assert int(rows(alone)[-1]["updates"]) == 2 * (300 - 50 + 1)
    assert [timing_free(r) for r in rows(group / "seed1")] == [timing_free(r) for r in rows(alone)]
    assert digest(_restore_last(group / "seed1", TINY, seed=1)[0]) == digest(
        _restore_last(alone, TINY, seed=1)[0]
    )


def test_multi_seed_resume_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    straight, split = tmp_path / "straight", tmp_path / "split"
    seeds = ["--seeds", "0", "1"]
    assert main(TINY + seeds + ["--total-steps", "200", "--run-dir", str(straight)]) == 0
    assert main(TINY + seeds + ["--total-steps", "100", "--run-dir", str(split)]) == 0
    assert main(["--resume", str(split), "--total-steps", "200", "--progress", "off"]) == 0
    for seed in (0, 1):
        a, b = straight / f"seed{seed}", split / f"seed{seed}"
        assert [timing_free(r) for r in rows(a)] == [timing_free(r) for r in rows(b)]
        assert digest(_restore_last(a, TINY, seed)[0]) == digest(_restore_last(b, TINY, seed)[0])


def test_a_goal_reached_step_ends_the_reward_bootstrap_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An env step that reports info["bootstrap_end"] (a goal reached on the paper's
    navigation tasks) is stored as terminal for the reward critic; with the navigation
    tasks' cost mask `none` the cost critic still bootstraps; the episode goes on."""
    import algd_jax.training.off_policy as training

    class GoalAtStep10(gymnasium.Wrapper):
        def __init__(self, env: gymnasium.Env) -> None:
            super().__init__(env)
            self.steps = 0

        def step(self, action):  # type: ignore[no-untyped-def]
            self.steps += 1
            obs, reward, terminated, truncated, info = self.env.step(action)
            return obs, reward, terminated, truncated, {**info, "bootstrap_end": self.steps == 10}

    real_make_env = training.make_env
    monkeypatch.setattr(training, "make_env", lambda *a, **k: GoalAtStep10(real_make_env(*a, **k)))
    args = TINY + ["--total-steps", "60", "--cost-mask", "none", "--eval-episodes", "0"]
    trainer = OffPolicyLoop(parse_command_line(args + ["--run-dir", str(tmp_path / "run")]))
    trainer.run()
    stored = trainer.replay.data["terminated"][0, :60]
    assert stored[9] == 1.0 and stored.sum() == 1.0
    assert int(trainer.loop.episode[0, 3]) == 60  # the episode did not end
    batch = trainer.replay.sample_block(1, 4096, step=1)
    picked = np.asarray(batch.obs[0, 0]) == trainer.replay.data["obs"][0, 9]
    rows = picked.all(axis=-1)
    assert rows.any()
    assert (np.asarray(batch.mask_r[0, 0])[rows] == 0).all()
    assert (np.asarray(batch.mask_c[0, 0])[rows] == 1).all()
    assert (np.asarray(batch.mask_r[0, 0])[~rows] == 1).all()


def test_paper_preset_sets_every_paper_value_and_flags_still_override() -> None:
    from algd_jax.algorithms.algd import PAPER_VALUES

    config = parse_command_line(["--preset", "paper", "--mc-samples", "3"])
    for name, value in PAPER_VALUES.items():
        expected = 3 if name == "mc_samples" else value
        assert getattr(config.hparams, name) == expected, name
    assert (
        parse_command_line(["--preset", "authors-code"]).hparams == parse_command_line([]).hparams
    )


def test_task_presets_of_the_run_length() -> None:
    assert parse_command_line([]).total_steps == 5000 + 200 * 1000
    if importlib.util.find_spec("safety_gymnasium") is not None:
        config = parse_command_line(["--task", "PointButton1"])
        assert (config.total_steps, config.epoch_steps, config.cost_mask) == (
            5000 + 250 * 400,
            400,
            "none",
        )
