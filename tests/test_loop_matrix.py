"""Issue 22's guarantees for every loop: the host off-policy loop, the on-policy loop
(`--algo ppo-lag`) and the on-device loop (`--loop device`) each write a tiny finished run
of three epochs, and each family of bad input or damage is tried on a copy of it:

* refusals exit non-zero (`--resume` of a finished run, a `--total-steps` below the run's,
  a flag that changes the numbers) and leave the run byte-identical;
* a damaged `config.json` or `progress.csv` is refused by `--resume`, `plot`, `summarize`
  (and `evaluate`, which reads the config) with one line naming the file and the fix;
* a damaged checkpoint is one line naming the file and the checkpoints to fall back on;
* an update that cannot fit in memory is refused before anything is written;
* on a real file system: a full disk (a small tmpfs filled just before a checkpoint) stops
  the run with one line, and `--resume` after freeing space gives the uninterrupted run's
  CSV; `--resume` on a read-only mount is refused with the run untouched, while `evaluate`,
  `plot` and `summarize` still read it.

The real-file-system cases need `mount` (root with CAP_SYS_ADMIN) and are skipped where it
is not allowed; `tests/test_run_data_safety.py` checks the same messages there with the
failing write simulated.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from experiments import evaluate, plot, summarize
from experiments.run import main
from tests.conftest import REPO, progress_rows, run_modules
from tests.test_run_data_safety import damage_checkpoint, one_line, tree_hash

COMMON = ["--task", "DiffDriveCircle", "--seed", "0", "--eval-episodes", "1", "--progress", "off"]
TINY_ALGD = [
    "--updates-per-step", "2", "--batch-size", "32", "--ensemble-size", "2",
    "--mc-samples", "2", "--diffusion-steps", "2", "--critic-hidden", "16",
    "--score-hidden", "16",
]  # fmt: skip

#: loop -> (flags of a run of three epochs, its env steps, the env step of its second
#: checkpoint, a flag value whose update cannot fit in memory)
LOOPS: dict[str, tuple[list[str], int, int, list[str]]] = {
    "host": (
        [*COMMON, *TINY_ALGD, "--epoch-steps", "100", "--initial-steps", "50",
         "--learning-starts", "50"],
        300, 200, ["--ensemble-size", "1000000000"],
    ),
    "on-policy": (
        [*COMMON, "--algo", "ppo-lag", "--num-envs", "2", "--steps-per-epoch", "100",
         "--update-iters", "2", "--minibatch-size", "25", "--actor-hidden", "16",
         "--critic-hidden", "16", "--episode-window", "4"],
        300, 200, ["--actor-hidden", "1000000000"],
    ),
    "device": (
        [*COMMON, *TINY_ALGD, "--loop", "device", "--epoch-steps", "100",
         "--initial-steps", "100", "--learning-starts", "100", "--num-envs", "2",
         "--replay-size", "1000"],
        400, 300, ["--mc-samples", "1000000000"],
    ),
}  # fmt: skip


def flags(loop: str) -> list[str]:
    args, steps, _, _ = LOOPS[loop]
    return [*args, "--total-steps", str(steps)]


@pytest.fixture(scope="module", params=list(LOOPS))
def finished(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    """(loop, a finished run of three epochs of that loop); tests work on copies."""
    loop = request.param
    run_dir = tmp_path_factory.mktemp(loop) / "run"
    assert main(flags(loop) + ["--run-dir", str(run_dir)]) == 0
    assert len(progress_rows(run_dir)) == 3
    return loop, run_dir


@pytest.fixture
def run(finished: tuple, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(finished[1], copy)
    return copy


# -- refusals exit non-zero and touch nothing ---------------------------------------------


def test_refusals_exit_non_zero_and_leave_the_run_byte_identical(
    finished: tuple, run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    loop = finished[0]
    steps = LOOPS[loop][1]
    before = tree_hash(run)
    assert main(["--resume", str(run)]) == 3
    assert f"already has {steps} env steps (--total-steps {steps})" in one_line(capsys)
    below = LOOPS[loop][2]
    assert main(["--resume", str(run), "--total-steps", str(below)]) == 3
    assert f"already has {steps} env steps (--total-steps {below}); raise" in one_line(capsys)
    more = str(steps + 100)
    assert main(["--resume", str(run), "--total-steps", more, "--batch-size", "64"]) == 2
    assert "--batch-size 64 on the command line disagrees with" in one_line(capsys)
    assert main(["--resume", str(run), "--total-steps", more, "--seed", "5"]) == 2
    assert "--seed 5" in one_line(capsys)
    assert tree_hash(run) == before


# -- damaged run files ----------------------------------------------------------------------


def _lines(raw: bytes) -> list[bytes]:
    return raw.splitlines(keepends=True)


def _with_field(raw: bytes, line: int, column: int, value: bytes) -> bytes:
    """`raw` with field `column` of line `line` (1-based; line 1 is the header) replaced."""
    lines = _lines(raw)
    fields = lines[line - 1].rstrip(b"\n").split(b",")
    fields[column] = value
    lines[line - 1] = b",".join(fields) + b"\n"
    return b"".join(lines)


#: name -> (file, change of its bytes, what the one line says)
DAMAGE: dict[str, tuple[str, Callable[[bytes], bytes], str]] = {
    "config-not-an-object": (
        "config.json",
        lambda b: json.dumps({**json.loads(b), "config": "x"}).encode(),
        "config: expected an object, found str 'x'",
    ),
    "seed-of-the-wrong-type": (
        "config.json",
        lambda b: json.dumps(
            {**json.loads(b), "config": {**json.loads(b)["config"], "seed": "zero"}}
        ).encode(),
        "config.seed 'zero': expected an integer",
    ),
    "non-numeric": (
        "progress.csv",
        lambda b: _with_field(b, 2, 1, b"garbage"),
        "line 2, column env_steps: 'garbage' is not a number",
    ),
    "invalid-utf8": (
        "progress.csv",
        lambda b: _with_field(b, 3, 1, b"\xff\xfe"),
        "line 3 is not UTF-8",
    ),
    "short-row-in-the-middle": (
        "progress.csv",
        lambda b: b"".join(_lines(b)[:2] + [b"2,200,302\n"] + _lines(b)[3:]),
        "line 3 has 3 values for",
    ),
    "duplicated-row": (
        "progress.csv",
        lambda b: b"".join(_lines(b)[:3] + _lines(b)[2:]),
        "line 4 repeats epoch 2 of line 3",
    ),
    "empty": ("progress.csv", lambda b: b"", "progress.csv is empty"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_run_files_are_refused_by_every_command(
    finished: tuple, run: Path, damage: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name, change, message = DAMAGE[damage]
    path = run / name
    path.write_bytes(change(path.read_bytes()))
    before = tree_hash(run)
    more = str(LOOPS[finished[0]][1] + 100)
    commands = {
        "resume": lambda: main(["--resume", str(run), "--total-steps", more]),
        "plot": lambda: plot.main([str(run), "--out", str(tmp_path / "fig.png")]),
        "summarize": lambda: summarize.main([str(run)]),
    }
    if name == "config.json":  # evaluate reads the config, not the log
        commands["evaluate"] = lambda: evaluate.main([str(run), "--episodes", "1"])
    for command_name, command in commands.items():
        assert command() == 2, command_name
        line = one_line(capsys)
        assert message in line and "restore the original file" in line, (command_name, line)
    assert tree_hash(run) == before
    assert not (tmp_path / "fig.png").exists()


CHECKPOINT_DAMAGE = {
    "manifest": "agent/manifest.ocdbt differs from what was saved",
    "metadata": "_CHECKPOINT_METADATA differs from what was saved",
    "no-files-json": "files.json, the record of its files, is missing",
}


def test_a_damaged_checkpoint_is_one_line_naming_the_file_and_the_fallback(
    finished: tuple, tmp_path: Path
) -> None:
    """Each damage on its own copy, resumed (and once evaluated) in one real process: exit
    1, stderr only our line, the run untouched."""
    loop, source = finished
    if loop == "host":
        pytest.skip("the host loop's cases are in test_run_data_safety (in_process)")
    steps = LOOPS[loop][1]
    cases, runs = [], []
    for damage in [*CHECKPOINT_DAMAGE, "evaluate"]:
        run = tmp_path / damage
        shutil.copytree(source, run)
        damage_checkpoint(
            run / "checkpoints/last" / str(steps), damage.replace("evaluate", "manifest")
        )
        if damage == "evaluate":
            cases.append(("experiments.evaluate", [str(run), "--episodes", "1"]))
        else:
            cases.append(
                ("experiments.run", ["--resume", str(run), "--total-steps", str(steps + 100)])
            )
        runs.append((damage, run, tree_hash(run)))
    fallback = sorted(int(p.name) for p in (source / "checkpoints/last").iterdir())[:-1]
    for (damage, run, before), done in zip(runs, run_modules(*cases), strict=True):
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert done.returncode == 1 and len(lines) == 1, (damage, done.stderr)
        named = CHECKPOINT_DAMAGE[damage.replace("evaluate", "manifest")]
        checkpoint = (run / "checkpoints/last" / str(steps)).absolute()
        assert f"checkpoint {checkpoint} is corrupt or truncated ({named})" in lines[0], lines
        assert f"other checkpoints: steps {fallback}" in lines[0], lines
        assert f"resume from step {fallback[-1]}" in lines[0], lines
        assert tree_hash(run) == before, damage


# -- memory ---------------------------------------------------------------------------------


def test_an_update_that_cannot_fit_is_refused_before_anything_is_written(
    finished: tuple, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    loop = finished[0]
    option = LOOPS[loop][3]
    target = tmp_path / "never"
    assert main(flags(loop) + option + ["--run-dir", str(target)]) == 2
    line = one_line(capsys)
    assert line.startswith("error: the run needs at least"), line
    assert line.endswith(f"available; lower {' '.join(option)}"), line
    assert not target.exists()


# -- a real file system: full, and read-only --------------------------------------------------


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs mounted for the test (skipped where mounting is not allowed)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or done.returncode})")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


#: `experiments.run ARGS` with the disk filled (a file written until ENOSPC) just before
#: the `last` checkpoint at env step FILL_AT is written: the real write then fails.
FILL_THE_DISK = textwrap.dedent(
    """
    import os, sys
    from algd_jax.checkpointing import Checkpointer
    from experiments.run import main

    real = Checkpointer.save

    def save(self, step, *args, **kwargs):
        if step == int(os.environ["FILL_AT"]) and kwargs.get("which", "last") == "last":
            with open(os.environ["FILLER"], "wb") as f:
                try:
                    while True:
                        f.write(bytes(1 << 16))
                except OSError:
                    pass
        return real(self, step, *args, **kwargs)

    Checkpointer.save = save
    sys.exit(main(sys.argv[1:]))
    """
)


def test_a_full_disk_stops_the_run_with_one_line_and_resume_completes_it(
    finished: tuple, tmpfs: Path
) -> None:
    loop, uninterrupted = finished
    _, steps, second, _ = LOOPS[loop]
    first = second - 100
    run_dir, filler = tmpfs / "run", tmpfs / "filler"
    done = subprocess.run(
        [sys.executable, "-c", FILL_THE_DISK, *flags(loop), "--run-dir", str(run_dir)],
        cwd=REPO,
        env={**os.environ, "FILL_AT": str(second), "FILLER": str(filler)},
        capture_output=True,
        text=True,
    )
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 1 and len(lines) == 1, done.stderr
    assert lines[0] == (
        f"error: could not write the checkpoint at env step {second} in {run_dir} (No space "
        f"left on device); the disk is full or not writable; training stopped at env step "
        f"{second}; free space, then continue from step {first} with --resume {run_dir}"
    )
    assert sorted(p.name for p in (run_dir / "checkpoints/last").iterdir()) == [str(first)]
    filler.unlink()
    assert main(["--resume", str(run_dir)]) == 0
    assert progress_rows(run_dir) == progress_rows(uninterrupted)
    assert (run_dir / "finished.json").is_file()


def test_a_run_on_a_read_only_file_system_is_read_but_not_resumed(
    finished: tuple, tmpfs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    loop, source = finished
    run = tmpfs / "run"
    shutil.copytree(source, run)
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    before = tree_hash(run)
    more = str(LOOPS[loop][1] + 100)
    assert main(["--resume", str(run), "--total-steps", more]) == 2
    assert one_line(capsys) == (
        f"error: --resume {run}: cannot write in it (Read-only file system); the run needs a "
        f"writable directory (copy it to one, or remount its file system read-write)"
    )
    assert main(flags(loop) + ["--run-dir", str(tmpfs / "new")]) == 2
    assert "(Read-only file system); choose a writable place" in one_line(capsys)
    # reading it still works and writes nothing into it
    assert evaluate.main([str(run), "--episodes", "1"]) == 0
    assert plot.main([str(run), "--out", str(tmp_path / "fig.png")]) == 0
    assert summarize.main([str(run)]) == 0
    assert (tmp_path / "fig.png").stat().st_size > 0
    assert tree_hash(run) == before


# -- non-finite values ------------------------------------------------------------------------


def test_a_non_finite_update_stops_the_run_with_one_line(
    finished: tuple, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An infinite-making learning rate: one line naming what became non-finite and the
    last good checkpoint, status 1, whatever the loop."""
    loop = finished[0]
    if loop == "host":
        pytest.skip("the host loop's case is test_run_data_safety's huge actor learning rate")
    target = tmp_path / "run"
    assert main(flags(loop) + ["--actor-lr", "1e30", "--run-dir", str(target)]) == 1
    line = one_line(capsys)
    assert line.startswith("error: non-finite "), line
    assert "training stopped. Last good checkpoint: " in line, line
    assert line.endswith(f"logs kept in {target}"), line
