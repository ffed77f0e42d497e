"""The one reader of a run's files (`algd_jax.run_files`) on hand-made files: every kind of
damage is one line naming the file, the line or field, and the fix; a torn last line is
the one damage it reads through. (The commands that use it: test_run_data_safety.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from algd_jax.run_files import check_run, read_progress_file, read_run_config
from algd_jax.train_config import RunError, TrainConfig

HEADER = "epoch,env_steps,eval/return\n"
ROWS = ["1,100,1.5\n", "2,200,nan\n", "3,300,-2e3\n"]


def _csv(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "progress.csv"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def test_a_whole_log_reads_with_line_numbers(tmp_path: Path) -> None:
    log = read_progress_file(_csv(tmp_path, HEADER + "".join(ROWS)))
    assert log.header == ["epoch", "env_steps", "eval/return"]
    assert [r["env_steps"] for r in log.rows] == ["100", "200", "300"]
    assert log.lines == [2, 3, 4] and not log.torn and log.exists


def test_a_torn_last_line_is_left_out(tmp_path: Path) -> None:
    log = read_progress_file(_csv(tmp_path, HEADER + "".join(ROWS) + "4,40"))
    assert [r["epoch"] for r in log.rows] == ["1", "2", "3"] and log.torn
    # a torn line may even end inside a multi-byte character: still only the torn line
    log = read_progress_file(_csv(tmp_path, (HEADER + ROWS[0]).encode() + b"2,\xc3"))
    assert len(log.rows) == 1 and log.torn


def test_a_missing_file_has_no_rows(tmp_path: Path) -> None:
    log = read_progress_file(tmp_path / "progress.csv")
    assert log.rows == [] and not log.exists


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"", "progress.csv is empty (not even its header line)"),
        (b"epoch,env_st", "its header line is incomplete"),
        (HEADER + "1,100,1.5\n2,200\n3,300,1\n", "line 3 has 2 values for 3 columns"),
        (HEADER + "1,garbage,1.5\n", "line 2, column env_steps: 'garbage' is not a number"),
        ((HEADER + ROWS[0]).encode() + b"2,200,\xff\xfe\n", "line 3 is not UTF-8 text"),
        (HEADER + ROWS[0] + ROWS[0] + ROWS[1], "line 3 repeats epoch 1 of line 2"),
        (HEADER + ROWS[0] + ROWS[2], "line 3 is epoch 3 where epoch 2 belongs"),
        (HEADER + "2,100,1\n", "line 2 is epoch 2 where epoch 1 belongs"),
        (HEADER + "1,100,1\n2,100,1\n", "line 3 has env step 100, not after 100 on line 2"),
        (HEADER + "1.5,100,1\n", "line 2, column epoch: '1.5' is not a whole number"),
        ("epoch,epoch\n", "line 1 is not a header of distinct column names"),
    ],
)
def test_damage_is_one_line_naming_the_line(
    tmp_path: Path, text: str | bytes, message: str
) -> None:
    path = _csv(tmp_path, text)
    with pytest.raises(RunError) as refused:
        read_progress_file(path, "--resume")
    line = str(refused.value)
    assert len(line.splitlines()) == 1 and refused.value.exit_code == 2
    assert line.startswith(f"--resume {path}")
    assert message in line, line
    assert "restore the original file" in line


def _config_json(tmp_path: Path, data: object) -> Path:
    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    text = data if isinstance(data, str) else json.dumps(data)
    (run / "config.json").write_text(text)
    return run


def _good() -> dict:
    config = TrainConfig(task="DiffDriveCircle", seed=3).with_hparams()
    return {"config": config.to_dict(), "algo": "algd"}


def test_a_good_config_reads_back(tmp_path: Path) -> None:
    run = _config_json(tmp_path, _good())
    read = read_run_config(run)
    assert read.config.seed == 3 and read.config.task == "DiffDriveCircle"
    assert read.config.hparams.rho == 1.0 and not read.is_group
    assert check_run(run).config == read.config  # no progress.csv yet is fine


def _with(path: tuple[str, ...], value: object) -> dict:
    data = _good()
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return data


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"config": "x"}, "config: expected an object, found str 'x'"),
        ({"hello": 1}, "its config object is missing"),
        ([1, 2], "expected a JSON object at the top, found list"),
        ("{not json", "not valid JSON (line 1, column 2"),
        (_with(("config", "seed"), "zero"), "config.seed 'zero': expected an integer"),
        (_with(("config", "seeds"), [0, "1"]), "config.seeds [0, '1']: an element '1'"),
        (_with(("config", "seed_axis"), "pmap"), "config.seed_axis 'pmap': expected one of"),
        (_with(("config", "hparams", "rho"), "big"), "config.hparams.rho 'big': expected a number"),
        (_with(("config", "hparams"), 3), "config.hparams 3: expected an object"),
        (_with(("config", "colour"), 1), "config.colour: not a field of this version"),
        (_with(("config", "algo"), "sac9"), "config.algo: unknown algorithm 'sac9'"),
    ],
)
def test_a_damaged_config_names_the_field(tmp_path: Path, data: object, message: str) -> None:
    run = _config_json(tmp_path, data)
    with pytest.raises(RunError) as refused:
        read_run_config(run, "--resume")
    line = str(refused.value)
    assert len(line.splitlines()) == 1 and refused.value.exit_code == 2
    assert line.startswith(f"--resume {run / 'config.json'}"), line
    assert message in line, line


def test_invalid_utf8_config(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_bytes(b'{"config": "\xff"}')
    with pytest.raises(RunError, match="config.json: not UTF-8 text"):
        read_run_config(run)


def test_check_run_reads_every_seed(tmp_path: Path) -> None:
    run = tmp_path / "group"
    config = TrainConfig(task="DiffDriveCircle", seeds=(0, 1)).with_hparams()
    run.mkdir()
    (run / "group.json").write_text(json.dumps({"config": config.to_dict(), "seeds": [0, 1]}))
    for k in (0, 1):
        seed = run / f"seed{k}"
        seed.mkdir()
        one = TrainConfig(task="DiffDriveCircle", seed=k).with_hparams()
        (seed / "config.json").write_text(json.dumps({"config": one.to_dict()}))
        (seed / "progress.csv").write_text(HEADER + ROWS[0])
    assert check_run(run).is_group
    (run / "seed1" / "progress.csv").write_text(HEADER + ROWS[0] + ROWS[0])
    with pytest.raises(RunError, match=r"seed1/progress.csv: line 3 repeats epoch 1"):
        check_run(run)
