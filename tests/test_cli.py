"""The command lines: --help, --list-tasks, every bad input's one-line message and exit
status, resume refusals, corrupt checkpoints, and `experiments.evaluate`."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import shutil
from pathlib import Path

import pytest

from algd_jax.algorithms import get_algorithm, list_algorithms
from algd_jax.checkpointing import Checkpointer
from algd_jax.train_config import TrainConfig
from experiments import evaluate
from experiments.run import main
from tests.conftest import TINY, run_module

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny two-epoch run; tests copy it before changing anything."""
    run_dir = tmp_path_factory.mktemp("runs") / "run"
    assert main(TINY + ["--total-steps", "200", "--run-dir", str(run_dir)]) == 0
    return run_dir


def error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    return err


def test_help_lists_every_field_with_its_default(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # undo the help's line wrapping
    flags = [f.name for f in dataclasses.fields(TrainConfig) if f.name != "hparams"]
    flags += list(get_algorithm("algd").option_names())
    for name in flags:
        assert f"--{name.replace('_', '-')}" in text, name
    assert "--cost-budget" not in text  # follows from the task and --cost-limit
    assert "algd options" in text  # the algorithm's own fields in their own section
    assert text.count("(default:") >= len(flags)
    assert "(default: 151.989)" not in text and "(default: 1000)" in text


def test_help_shows_the_chosen_tasks_presets(capsys: pytest.CaptureFixture[str]) -> None:
    if importlib.util.find_spec("safety_gymnasium") is None:
        pytest.skip("safety-gymnasium is not installed")
    with pytest.raises(SystemExit):
        main(["--task", "SafetyPointGoal1-v0", "--paper-setting", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: 400)" in text  # epoch steps of the paper's navigation setting
    assert "(default: none)" in text  # cost mask of navigation tasks


def test_list_tasks(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--list-tasks"]) == 0
    out = capsys.readouterr().out
    assert "HalfCheetahVelocity" in out and "SafetyPointGoal1-v0" in out
    assert "needs --cost-limit" in out  # Walker2dVelocity has no default budget


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--task", "HalfCheetah"], "unknown task 'HalfCheetah' (did you mean HalfCheetahVelocity"),
        (["--task", "Nope"], "list all tasks with `python -m experiments.run --list-tasks`"),
        (["--agent", "sac"], "unknown algorithm 'sac'"),
        (["--algo", "algdd"], "unknown algorithm 'algdd'; did you mean algd"),
        (["--seeds", "0", "1", "0"], "--seeds lists seed 0 twice"),
        (["--seeds", "0", "-1"], "--seeds -1: must be an integer in [0, 2147483647]"),
        (["--seed", "-1"], "--seed -1: must be an integer in [0, 2147483647]"),
        (["--seed", "18446744073709551616"], "must be an integer in [0, 2147483647]"),
        (["--seeds", "0", "1", "--seed", "2"], "pass either --seed K or --seeds K1 K2 ..."),
        (["--batch-size", "abc"], "--batch-size 'abc': expected an integer"),
        (["--rho", "x"], "--rho 'x': expected a number"),
        (["--progress", "loud"], "--progress 'loud': expected one of auto, bar, lines, off"),
        (["--batchsize", "3"], "unknown flag --batchsize; did you mean --batch-size?"),
        (["--batch-size", "0"], "--batch-size 0: must be an integer >= 1"),
        (["--updates-per-step", "0"], "--updates-per-step 0: must be an integer >= 1"),
        (["--mc-samples", "0"], "--mc-samples 0: must be an integer >= 1"),
        (["--ensemble-size", "-1"], "--ensemble-size -1: must be an integer >= 1"),
        (["--diffusion-steps", "0"], "--diffusion-steps 0: must be an integer >= 1"),
        (["--rho", "0"], "--rho 0.0: must be a finite number > 0"),
        (["--beta", "-1"], "--beta -1.0: must be a finite number > 0"),
        (["--task", "Walker2dVelocity"], "has no default cost budget"),
        (["--cost-limit", "-1"], "--cost-limit must be a finite number >= 0"),
        (["--resume", "/nonexistent/run"], "--resume /nonexistent/run: no such directory"),
    ],
)
def test_bad_input_gives_one_line_and_exit_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(args + ["--run-dir", str(tmp_path / "never")]) == 2
    assert message in error_line(capsys)
    assert not (tmp_path / "never").exists()


def test_bad_input_in_a_real_process_has_no_traceback() -> None:
    result = run_module("experiments.run", "--mc-samples", "0")
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert lines == ["error: --mc-samples 0: must be an integer >= 1"]
    assert "Traceback" not in result.stderr


def test_list_algos(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--list-algos"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in lines] == list_algorithms()
    assert all(len(line.split(maxsplit=1)) == 2 for line in lines)  # each has a description


def test_agent_is_an_alias_of_algo() -> None:
    from algd_jax.train_config import parse_command_line

    assert parse_command_line(["--agent", "lgd"]).algo == "lgd"
    assert parse_command_line(["--algo", "lgd"]).hparams.agent == "lgd"


def test_an_option_of_another_algorithm_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    """A throw-away second algorithm with an option ALGD does not have."""
    from algd_jax.algorithms import Algorithm, register, unregister

    @dataclasses.dataclass(frozen=True)
    class OtherConfig:
        temperature: float = 0.2

    algd = get_algorithm("algd")
    register(
        Algorithm(
            name="other-test-algo",
            description="test only",
            config_type=OtherConfig,
            init=algd.init,
            act=algd.act,
            update=algd.update,
            metric_names=lambda c: (),
            resolve=lambda c, s: c,
        )
    )
    try:
        assert main(["--temperature", "0.5"]) == 2
        err = error_line(capsys)
        assert "--temperature is an option of other-test-algo, not of algd" in err
        assert main(["--algo", "other-test-algo", "--rho", "2"]) == 2
        assert (
            "--rho is an option of algd, lgd, algd-ddpm, sac-auglag, not of other-test-algo"
            in error_line(capsys)
        )
    finally:
        unregister("other-test-algo")


def test_wrongly_typed_flag_in_a_real_process_is_one_line() -> None:
    result = run_module("experiments.run", "--batch-size", "abc")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["error: --batch-size 'abc': expected an integer"]


def test_resume_of_a_multi_seed_run_refuses_other_seeds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    group = tmp_path / "group"
    assert main(TINY + ["--total-steps", "100", "--seeds", "0", "1", "--run-dir", str(group)]) == 0
    capsys.readouterr()
    before = {p: p.read_bytes() for p in group.rglob("*") if p.is_file()}
    assert main(["--resume", str(group), "--total-steps", "200", "--seeds", "0", "2"]) == 2
    assert "--seeds 0 2 on the command line disagrees with 0 1 in its config.json" in (
        error_line(capsys)
    )
    assert {p: p.read_bytes() for p in group.rglob("*") if p.is_file()} == before


def test_resume_refuses_a_directory_that_is_not_a_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--resume", str(tmp_path)]) == 2
    assert "not a run directory (no config.json)" in error_line(capsys)


def test_resume_refuses_a_run_without_checkpoint(
    finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    early = tmp_path / "early"
    early.mkdir()
    shutil.copy(finished_run / "config.json", early / "config.json")
    assert main(["--resume", str(early), "--total-steps", "300"]) == 2
    assert "no checkpoint to resume from" in error_line(capsys)


@pytest.mark.parametrize(
    ("flag", "value", "saved"),
    [
        ("--seed", "3", "0"),
        ("--mc-samples", "4", "2"),
        ("--algo", "lgd", "algd"),
        ("--task", "HopperVelocity", "HalfCheetahVelocity"),
    ],  # fmt: skip
)
def test_resume_refuses_a_config_mismatch(
    finished_run: Path, flag: str, value: str, saved: str, capsys: pytest.CaptureFixture[str]
) -> None:
    before = (finished_run / "progress.csv").read_text()
    assert main(["--resume", str(finished_run), "--total-steps", "300", flag, value]) == 2
    err = error_line(capsys)
    assert f"{flag} {value} on the command line disagrees with {saved} in its config.json" in err
    assert (finished_run / "progress.csv").read_text() == before


def test_finished_run_says_so(finished_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--resume", str(finished_run)]) == 3
    assert "already has 200 env steps" in capsys.readouterr().err


def test_existing_run_dir_is_never_overwritten(
    finished_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = {p: p.read_bytes() for p in finished_run.rglob("*") if p.is_file()}
    assert main(TINY + ["--total-steps", "100", "--run-dir", str(finished_run)]) == 2
    assert "already exists" in error_line(capsys)
    assert {p: p.read_bytes() for p in finished_run.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_corrupt_checkpoint_is_reported(
    finished_run: Path, tmp_path: Path, damage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    step = Checkpointer(run).steps()[-1]
    # the largest data file of the agent item holds parameters
    data = max((run / "checkpoints/last" / str(step) / "agent").rglob("d/*"),
               key=lambda p: p.stat().st_size)  # fmt: skip
    raw = bytearray(data.read_bytes())
    if damage == "truncate":
        raw = raw[: len(raw) // 2]
    else:
        raw[len(raw) // 2] ^= 0xFF
    data.write_bytes(bytes(raw))
    assert main(["--resume", str(run), "--total-steps", "300"]) == 1
    err = error_line(capsys)
    assert f"checkpoint {run.absolute()}/checkpoints/last/{step} is corrupt" in err
    assert "move the damaged directory aside to resume from step 100" in err


def test_evaluate_prints_return_and_cost_against_the_limit(
    finished_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert evaluate.main([str(finished_run), "--episodes", "2"]) == 0
    out = capsys.readouterr().out
    assert "last checkpoint at env step 200, 2 deterministic episodes" in out
    assert "return " in out and "against the limit 151.989" in out
    assert evaluate.main([str(finished_run), "--checkpoint", "best", "--episodes", "1"]) == 0


def test_evaluate_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert evaluate.main([str(tmp_path / "missing")]) == 2
    assert "no such directory" in error_line(capsys)
    (tmp_path / "config.json").write_text(json.dumps({"hello": 1}))
    assert evaluate.main([str(tmp_path)]) == 2
    assert "does not describe a training run" in error_line(capsys)


@pytest.mark.slow
def test_evaluate_writes_a_video(finished_run: Path, tmp_path: Path) -> None:
    """About a minute: a 1000-frame episode rendered offscreen (EGL) and encoded as mp4."""
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    result = run_module("experiments.evaluate", str(run), "--episodes", "1", "--video")
    assert result.returncode == 0, result.stderr
    videos = list((run / "videos").glob("*.mp4"))
    assert len(videos) == 1 and videos[0].stat().st_size > 10_000
