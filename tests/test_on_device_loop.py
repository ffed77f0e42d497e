"""The on-device loop (`--loop device`) inside the run lifecycle every loop shares: exact
resume, refused resumes that leave the run byte-identical, one-line refusals of schedules
it cannot run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from experiments.run import main
from tests.conftest import progress_rows
from tests.test_run_data_safety import one_line, tree_hash

#: Two DiffDriveCircle seeds, 100 warm-up steps then two 200-step epochs, tiny ALGD.
DEVICE_TINY = [
    "--task", "DiffDriveCircle", "--loop", "device", "--seeds", "0", "1", "--seed-axis", "map",
    "--total-steps", "500", "--epoch-steps", "200", "--initial-steps", "100",
    "--learning-starts", "100", "--num-envs", "2", "--updates-per-step", "2",
    "--batch-size", "32", "--replay-size", "1000", "--eval-episodes", "2", "--progress", "off",
    "--ensemble-size", "2", "--mc-samples", "2", "--diffusion-steps", "2",
    "--critic-hidden", "16", "--score-hidden", "16",
]  # fmt: skip


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("device") / "run"
    assert main(DEVICE_TINY + ["--run-dir", str(run_dir)]) == 0
    return run_dir


def test_a_resumed_device_run_equals_an_uninterrupted_one(
    uninterrupted: Path, tmp_path: Path
) -> None:
    """Stopped after its first epoch (--total-steps 300), then resumed to 500: the same CSV
    rows (timing aside) as the run that was never stopped, and the finished marker."""
    run_dir = tmp_path / "run"
    short = [*DEVICE_TINY]
    short[short.index("--total-steps") + 1] = "300"
    assert main(short + ["--run-dir", str(run_dir)]) == 0
    assert len(progress_rows(run_dir / "seed0")) == 1
    assert main(["--resume", str(run_dir), "--total-steps", "500", "--progress", "off"]) == 0
    for seed in ("seed0", "seed1"):
        resumed = progress_rows(run_dir / seed)
        assert resumed == progress_rows(uninterrupted / seed)
        assert [r["env_steps"] for r in resumed] == ["300", "500"]
        assert (run_dir / seed / "finished.json").is_file()


def test_refused_resumes_of_a_device_run_leave_it_byte_identical(
    uninterrupted: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(uninterrupted, run_dir)
    before = tree_hash(run_dir)
    # already at --total-steps: exit 3, one line
    assert main(["--resume", str(run_dir), "--progress", "off"]) == 3
    assert "already has 500 env steps" in one_line(capsys)
    # a flag that changes the numbers: refused before anything is read
    assert main(["--resume", str(run_dir), "--total-steps", "700", "--batch-size", "64"]) == 2
    assert "--batch-size" in one_line(capsys)
    # a checkpoint of the on-device loop is not continued by the host loop
    originals = {}
    for path in [
        run_dir / "group.json",
        *(run_dir / s / "config.json" for s in ("seed0", "seed1")),
    ]:
        originals[path] = path.read_bytes()
        data = json.loads(originals[path])
        data["config"].update(loop="host", num_envs=1)
        path.write_text(json.dumps(data))
    changed = tree_hash(run_dir)
    assert main(["--resume", str(run_dir), "--total-steps", "700", "--progress", "off"]) != 0
    line = one_line(capsys)
    assert "on-device loop" in line and "Traceback" not in line
    assert tree_hash(run_dir) == changed
    for path, data in originals.items():
        path.write_bytes(data)
    assert tree_hash(run_dir) == before


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--task", "HalfCheetahVelocity"], "has no JAX implementation"),
        (["--initial-steps", "101"], "is not a multiple of --num-envs 2"),
        (["--total-steps", "450"], "must be a positive multiple of --epoch-steps"),
        (["--learning-starts", "200"], "exceeds --initial-steps"),
        # issue 22's cases of the on-device command: refused before a file is written
        (["--replay-size", "-1"], "--replay-size -1: must be"),
        (["--replay-size", "0"], "--replay-size 0: must be"),
        (["--keep-checkpoints", "-1"], "--keep-checkpoints -1: must be"),
    ],
)
def test_schedules_the_device_loop_cannot_run_are_refused_before_anything_is_written(
    flags: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [*DEVICE_TINY]
    for flag, value in zip(flags[::2], flags[1::2], strict=True):
        if flag in args:
            args[args.index(flag) + 1] = value
        else:
            args += [flag, value]
    target = tmp_path / "run"
    assert main(args + ["--run-dir", str(target)]) == 2
    assert message in one_line(capsys)
    assert not target.exists()


def test_a_device_run_dir_that_cannot_be_created_is_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(DEVICE_TINY + ["--run-dir", "/proc/algd-run"]) == 2
    line = one_line(capsys)
    assert "--run-dir /proc/algd-run" in line and "writable" in line, line
