"""A run's data is never changed by a command that fails or refuses, and no input ends in a
traceback: every case is run through the command lines, and the run directory is hashed
before and after."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest

from algd_jax.logging_utils import read_progress
from algd_jax.train_config import RunError
from algd_jax.training import timing_free
from experiments import check_reference, evaluate, plot
from experiments.run import main
from tests.conftest import TINY, run_modules

REPO = Path(__file__).resolve().parents[1]


def tree_hash(path: Path) -> dict[str, str]:
    """Every file under `path` (relative name -> content hash), directories included."""
    out = {}
    for p in sorted(path.rglob("*")):
        rel = str(p.relative_to(path))
        out[rel] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
    return out


def one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    return err


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 300-step run with checkpoints at 100, 200 and 300 (copied by each test)."""
    run_dir = tmp_path_factory.mktemp("runs") / "run"
    assert main(TINY + ["--total-steps", "300", "--run-dir", str(run_dir)]) == 0
    return run_dir


@pytest.fixture
def run(finished: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(finished, copy)
    return copy


# -- refusals touch nothing -------------------------------------------------------------


def test_refused_resume_after_a_lost_checkpoint_touches_nothing(
    run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.rmtree(run / "checkpoints/last/300")
    before = tree_hash(run)
    assert main(["--resume", str(run), "--total-steps", "200"]) == 3
    assert "already has 200 env steps (--total-steps 200); raise" in one_line(capsys)
    assert tree_hash(run) == before


def test_refused_resume_of_a_finished_run_touches_nothing(
    run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = tree_hash(run)
    assert main(["--resume", str(run), "--total-steps", "100"]) == 3
    assert "already has 300 env steps" in one_line(capsys)
    assert tree_hash(run) == before


def test_resume_keeps_the_creation_time_and_appends_its_history(
    run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.rmtree(run / "checkpoints/last/300")
    created = json.loads((run / "config.json").read_text())["created"]
    assert main(["--resume", str(run), "--total-steps", "400", "--progress", "off"]) == 0
    err = capsys.readouterr().err
    assert "dropping 1 row(s) logged after the checkpoint (env steps 300)" in err
    saved = json.loads((run / "config.json").read_text())
    assert saved["created"] == created
    assert saved["config"]["total_steps"] == 400
    assert [(r["from_env_step"], r["total_steps"]) for r in saved["resumes"]] == [(200, 400)]
    assert [r["env_steps"] for r in read_progress(run / "progress.csv")] == [
        "100",
        "200",
        "300",
        "400",
    ]


def test_torn_last_row_is_repaired_and_the_run_continues_exactly(
    run: Path, finished: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = run / "progress.csv"
    text = path.read_text()
    cut = text.rfind("\n", 0, len(text) - 1) + 40  # 40 characters into the last row
    path.write_text(text[:cut])
    assert main(["--resume", str(run), "--total-steps", "300", "--progress", "off"]) == 0
    err = capsys.readouterr().err
    assert "cut off mid-write" in err and "resuming from the checkpoint at env step 200" in err
    assert path.read_text().endswith("\n")
    # the repeated epoch gives the row the crash tore, to the last digit
    assert [timing_free(r) for r in read_progress(path)] == [
        timing_free(r) for r in read_progress(finished / "progress.csv")
    ]


@pytest.mark.parametrize(
    ("task", "field"),
    [("SafetyHalfCheetahVelocity-v1", "task"), ("HopperVelocity", "task")],
)
def test_an_edited_config_is_refused_naming_the_change(
    run: Path, task: str, field: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = run / "config.json"
    data = json.loads(path.read_text())
    data["config"]["task"] = task
    path.write_text(json.dumps(data))
    before = tree_hash(run)
    assert main(["--resume", str(run), "--total-steps", "400"]) == 2
    err = one_line(capsys)
    assert "does not match the configuration its checkpoint at step 300" in err
    assert f"{field} 'HalfCheetahVelocity' -> '{task}'" in err
    assert "corrupt" not in err
    assert tree_hash(run) == before


def test_a_deleted_progress_csv_is_refused(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (run / "progress.csv").unlink()
    before = tree_hash(run)
    assert main(["--resume", str(run), "--total-steps", "400"]) == 2
    assert "progress.csv is missing" in one_line(capsys)
    assert tree_hash(run) == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--replay-size", "10"], "--replay-size 10 can never hold the --learning-starts 50"),
        (["--learning-starts", "16", "--initial-steps", "16"], "smaller than --batch-size 32"),
        (["--total-steps", "40"], "--total-steps 40 ends before the first update"),
        (["--replay-size", "1000000000000"], "lower --replay-size (at most"),
        (["--seed", "-1"], "--seed -1: must be an integer in [0, 2147483647]"),
        (["--seed", "18446744073709551616"], "must be an integer in [0, 2147483647]"),
    ],
)
def test_impossible_runs_are_refused_before_anything_is_created(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "never"
    assert main(TINY + ["--total-steps", "300", *args, "--run-dir", str(target)]) == 2
    assert message in one_line(capsys)
    assert not target.exists()


# -- no tracebacks -------------------------------------------------------------------------


def test_unwritable_run_dirs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(TINY + ["--run-dir", "/proc/algd-x"]) == 2
    assert "cannot create a directory in /proc" in one_line(capsys)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(TINY + ["--run-dir", str(blocker / "run")]) == 2
    assert f"{blocker} is a file, not a directory" in one_line(capsys)


def test_resume_of_a_file_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "file"
    path.write_text("x")
    assert main(["--resume", str(path)]) == 2
    assert "is a file, not a run directory" in one_line(capsys)


def damage_checkpoint(checkpoint: Path, damage: str) -> None:
    """Damage one saved checkpoint directory (`.../checkpoints/last/300`) in place:
    "manifest" truncates orbax's agent manifest, "metadata" its _CHECKPOINT_METADATA, and
    "no-files-json" deletes our record of the files and truncates the largest data file."""
    if damage == "manifest":
        path = checkpoint / "agent" / "manifest.ocdbt"
        path.write_bytes(path.read_bytes()[:10])
    elif damage == "metadata":
        path = checkpoint / "_CHECKPOINT_METADATA"
        path.write_bytes(path.read_bytes()[:20])
    elif damage == "no-files-json":
        (checkpoint / "files.json").unlink()
        data = max((checkpoint / "agent").rglob("d/*"), key=lambda p: p.stat().st_size)
        data.write_bytes(data.read_bytes()[:100])
    else:
        raise ValueError(damage)


#: The damaged-checkpoint cases that must go through a real process (its exit status, and
#: a stderr that holds only our line, whatever orbax or absl print), each on its own copy
#: of the finished run (`in_process`).
PROCESS_CASES = ("manifest-resume", "manifest-evaluate", "no-files-json", "metadata")


@pytest.fixture(scope="module")
def in_process(finished: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Each case of `PROCESS_CASES` on its own damaged copy of the finished run, all run in
    one separate process (one start-up of JAX): name -> (result, run, hash before)."""
    root = tmp_path_factory.mktemp("damaged")
    runs, commands = {}, []
    for name in PROCESS_CASES:
        run = root / name
        shutil.copytree(finished, run)
        damage_checkpoint(
            run / "checkpoints/last/300", "manifest" if name.startswith("manifest") else name
        )
        if name == "manifest-evaluate":
            commands.append(("experiments.evaluate", [str(run), "--episodes", "1"]))
        else:
            commands.append(("experiments.run", ["--resume", str(run), "--total-steps", "400"]))
        runs[name] = (run, tree_hash(run))
    results = run_modules(*commands)
    return {n: (r, *runs[n]) for n, r in zip(PROCESS_CASES, results, strict=True)}


@pytest.mark.parametrize("command", ["resume", "evaluate"])
def test_truncated_agent_manifest_is_one_clean_line(in_process: dict, command: str) -> None:
    done, run, before = in_process[f"manifest-{command}"]
    assert done.returncode == 1, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and "is corrupt or truncated" in errors[0], done.stderr
    assert "bound method" not in errors[0] and "Traceback" not in done.stderr
    assert tree_hash(run) == before


def test_ctrl_c_during_start_up_leaves_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import algd_jax.training.off_policy as training

    def interrupted(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "make_env", interrupted)
    target = tmp_path / "run"
    assert main(TINY + ["--run-dir", str(target)]) == 130
    assert "interrupted during start-up; nothing was trained" in one_line(capsys)
    assert not target.exists()


def test_suggested_resume_command_quotes_a_path_with_spaces(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import algd_jax.training.off_policy as training

    real = training.OffPolicyLoop._record
    calls = []

    def record(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 120:
            os.kill(os.getpid(), signal.SIGINT)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(training.OffPolicyLoop, "_record", record)
    target = tmp_path / "my runs" / "a b"
    assert main(TINY + ["--total-steps", "300", "--run-dir", str(target)]) == 130
    err = capsys.readouterr().err
    assert f"--resume '{target}'" in err


def test_huge_actor_learning_rate_names_the_parameters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = TINY + ["--actor-lr", "1e30", "--total-steps", "300", "--run-dir", str(tmp_path / "r")]
    assert main(args) == 1
    err = one_line(capsys)
    assert "non-finite" in err
    assert "actor parameters became non-finite within updates" in err or "at update" in err


def test_plot_errors_are_one_line(run: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert plot.main([str(run), "--out", str(tmp_path / "fig.xyz")]) == 2
    assert "unknown image format" in one_line(capsys)
    assert plot.main([str(run), "--out", "/proc/algd/fig.png"]) == 2
    assert "cannot write" in one_line(capsys)
    # a torn last line is left out, not a traceback
    path = run / "progress.csv"
    text = path.read_text()
    path.write_text(text[: len(text) - 25])
    out = tmp_path / "fig.png"
    assert plot.main([str(run), "--out", str(out)]) == 0
    assert out.stat().st_size > 1000


def test_check_reference_errors_are_one_line(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    assert check_reference.main([str(empty)]) == 2
    assert "not an .npz file" in one_line(capsys)
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    assert check_reference.main([str(text)]) == 2
    err = one_line(capsys)
    assert "not an .npz file" in err and "pickle" not in err
    fixture = REPO / "tests/data/algd_reference_halfcheetah_seed0.npz"
    with np.load(fixture) as data:
        arrays = {k: data[k] for k in data.files}
    bad_json = dict(arrays, config_json=np.asarray("{not json"))
    np.savez(tmp_path / "bad_json.npz", **bad_json)
    assert check_reference.main([str(tmp_path / "bad_json.npz")]) == 2
    assert "config_json is not valid JSON" in one_line(capsys)
    name = next(k for k in arrays if k.startswith("out."))
    bad_shape = dict(arrays, **{name: np.zeros((3, 3, 3), np.float32)})
    np.savez(tmp_path / "bad_shape.npz", **bad_shape)
    assert check_reference.main([str(tmp_path / "bad_shape.npz")]) == 2
    assert f"{name} has shape (3, 3, 3)" in one_line(capsys)


def test_evaluate_missing_checkpoint(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.rmtree(run / "checkpoints")
    before = tree_hash(run)
    assert evaluate.main([str(run), "--episodes", "1"]) == 2
    assert "no last checkpoint" in one_line(capsys)
    assert tree_hash(run) == before


def test_a_field_added_by_a_later_version_at_its_default_does_not_block_resume(
    run: Path,
) -> None:
    """Checkpoints made before a config field existed resume while it keeps its default."""
    from algd_jax.checkpointing import Checkpointer

    checkpointer = Checkpointer(run)
    meta = checkpointer.read_meta("last", 300)
    checkpointer.close()
    saved = dict(meta["config"])
    assert saved.pop("algorithm.target_update_every") == 2
    # pretend the checkpoint predates the field: rewrite its meta and file digests
    path = run / "checkpoints/last/300/meta/metadata"
    path.write_text(json.dumps({**meta, "config": saved, "config_digest": "old"}))
    from algd_jax.checkpointing import _write_file_digests

    _write_file_digests(run / "checkpoints/last/300")
    assert main(["--resume", str(run), "--total-steps", "400", "--progress", "off"]) == 0
    # a value other than the default is still a change
    (run / "checkpoints/last/400/meta/metadata").write_text(
        json.dumps({**meta, "config": saved, "config_digest": "old", "env_step": 400})
    )
    _write_file_digests(run / "checkpoints/last/400")
    data = json.loads((run / "config.json").read_text())
    data["config"]["hparams"]["target_update_every"] = 3
    (run / "config.json").write_text(json.dumps(data))
    assert main(["--resume", str(run), "--total-steps", "500"]) == 2


# -- a run's own files, damaged: one line from every command that reads them -------------


# The damaged-config and damaged-CSV cases of every loop: tests/test_loop_matrix.py.


@pytest.mark.parametrize("damage", ["no-files-json", "metadata"])
def test_damaged_checkpoint_is_one_line_naming_the_file_and_the_fallback(
    in_process: dict, damage: str
) -> None:
    done, run, before = in_process[damage]
    checkpoint = run / "checkpoints/last/300"
    if damage == "metadata":  # _CHECKPOINT_METADATA truncated
        named = "_CHECKPOINT_METADATA differs from what was saved"
    else:  # files.json deleted and the largest data file truncated
        named = "files.json, the record of its files, is missing"
    assert done.returncode == 1
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert f"checkpoint {checkpoint.absolute()} is corrupt or truncated ({named})" in lines[0]
    assert "other checkpoints: steps [100, 200]" in lines[0]
    assert "resume from step 200" in lines[0]
    assert tree_hash(run) == before


def test_non_finite_evaluation_action_stops_like_a_non_finite_loss(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A policy whose actions become non-finite only in the deterministic evaluation (the
    losses still finite) stops with the one-line shape of a non-finite loss, before the
    simulator sees the action."""
    import algd_jax.training.off_policy as training
    from algd_jax.train_config import RunError, parse_command_line

    config = parse_command_line(TINY + ["--total-steps", "100", "--run-dir", str(tmp_path / "r")])
    trainer = training.OffPolicyLoop(config)
    real_act = trainer.programs.act

    def act(states, obs, keys, step, deterministic):  # type: ignore[no-untyped-def]
        actions = np.asarray(real_act(states, obs, keys, step, deterministic))
        return np.full_like(actions, np.nan) if deterministic else actions

    monkeypatch.setattr(trainer.programs, "act", act)
    with pytest.raises(training.NonFiniteLoss) as stopped:
        trainer.run()
    message = str(stopped.value)
    assert isinstance(stopped.value, RunError) and stopped.value.exit_code == 1
    assert len(message.splitlines()) == 1
    assert message.startswith("non-finite action in the evaluation after env step 100;")
    assert "training stopped. Last good checkpoint: none yet" in message


# -- the disk and signals during start-up ------------------------------------------------


def test_ctrl_c_during_the_start_up_repair_completes_it_and_says_so(
    run: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:

    shutil.rmtree(run / "checkpoints/last/300")  # the resume repairs: drops row 300
    from algd_jax.training.lifecycle import RunLifecycle

    real = RunLifecycle.record_resume

    def record(self):  # type: ignore[no-untyped-def]
        os.kill(os.getpid(), signal.SIGINT)  # in the middle of the repair
        return real(self)

    monkeypatch.setattr(RunLifecycle, "record_resume", record)
    assert main(["--resume", str(run), "--total-steps", "400", "--progress", "off"]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert "interrupted during start-up, after the run's files were made ready" in err[-1]
    assert f"--resume {run}" in err[-1]
    # the repair is whole: log cut back to the checkpoint, resume noted, no stray file
    assert [r["env_steps"] for r in read_progress(run / "progress.csv")] == ["100", "200"]
    assert [r["from_env_step"] for r in json.loads((run / "config.json").read_text())["resumes"]]
    assert not list(run.glob("*.tmp"))


def test_a_full_disk_while_checkpointing_stops_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from algd_jax.checkpointing import Checkpointer

    real = Checkpointer.save

    def save(self, step, *args, **kwargs):  # type: ignore[no-untyped-def]
        if step == 200:
            (self.root / "last" / "200" / "agent").mkdir(parents=True)  # a partial write
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, step, *args, **kwargs)

    monkeypatch.setattr(Checkpointer, "save", save)
    target = tmp_path / "run"
    assert main(TINY + ["--total-steps", "300", "--run-dir", str(target)]) == 1
    line = one_line(capsys)
    assert line.startswith(
        f"error: could not write the checkpoint at env step 200 in {target} (No space left on "
        f"device); the disk is full or not writable; training stopped at env step 200; free "
        f"space, then continue from step 100 with --resume {target}"
    ), line
    assert sorted(p.name for p in (target / "checkpoints/last").iterdir()) == ["100"]


def test_resume_on_a_read_only_file_system_is_refused_before_any_change(
    run: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    import algd_jax.faults as faults

    def read_only(directory: Path) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(faults, "_probe", read_only)
    before = tree_hash(run)
    assert main(["--resume", str(run), "--total-steps", "400"]) == 2
    assert one_line(capsys) == (
        f"error: --resume {run}: cannot write in it (Read-only file system); the run needs a "
        f"writable directory (copy it to one, or remount its file system read-write)"
    )
    assert tree_hash(run) == before


# -- memory ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "shape"), [("--ensemble-size", "[1000000000, "), ("--mc-samples", "32000000032")]
)
def test_an_update_that_cannot_fit_is_refused_naming_the_option(
    flag: str, shape: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "never"
    assert main(TINY + [flag, "1000000000", "--run-dir", str(target)]) == 2
    line = one_line(capsys)
    assert line.startswith("error: the run needs at least") and shape in line, line
    assert line.endswith(f"available; lower {flag} 1000000000"), line
    assert not target.exists()


def test_out_of_memory_during_a_run_stops_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import algd_jax.training.off_policy as training
    from algd_jax.train_config import parse_command_line

    target = tmp_path / "run"
    trainer = training.OffPolicyLoop(
        parse_command_line(TINY + ["--total-steps", "300", "--run-dir", str(target)])
    )
    real_train = trainer.programs.train

    def train(states, sums, batch, first, env_step, *info):  # type: ignore[no-untyped-def]
        if env_step > 150:
            raise RuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating 8589934592 bytes.")
        return real_train(states, sums, batch, first, env_step, *info)

    monkeypatch.setattr(trainer.programs, "train", train)
    with pytest.raises(RunError) as stopped:
        trainer.run()
    message = str(stopped.value)
    assert stopped.value.exit_code == 1 and len(message.splitlines()) == 1
    assert message.startswith(
        "out of memory at env step 151 (Out of memory allocating 8589934592 bytes.); training "
        f"stopped. Last good checkpoint: step 100 in {target.absolute()}/checkpoints/last"
    ), message
    assert [r["env_steps"] for r in read_progress(target / "progress.csv")] == ["100"]
