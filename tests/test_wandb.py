"""`--wandb PROJECT`: each epoch's row and the resolved config logged to a Weights & Biases
run per seed, grouped by sweep, task and algorithm; a resumed run continues the same W&B run
and logs each epoch once; without the package, one line and exit 2 before anything is
written. Runs in W&B's offline mode (`WANDB_MODE=offline`, files under `tmp_path`), read
back from the offline run's transaction log (`run-<id>.wandb`)."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import struct
import sys
from pathlib import Path
from typing import Any

import pytest

from algd_jax.logging_utils import WANDB_FILE, ProgressLog, plan_resume
from algd_jax.train_config import TrainConfig, parse_command_line
from experiments import run as run_cmd
from experiments import sweep as sweep_cmd
from tests.conftest import TINY, tiny_flags

wandb = pytest.importorskip("wandb")

#: Blocks of W&B's transaction log: LevelDB's log format (a 7-byte header per chunk:
#: CRC-32C, length, type), after a 7-byte file header `:W&B`, magic, version.
BLOCK, FULL, FIRST, MIDDLE, LAST = 32768, 1, 2, 3, 4


def wandb_records(path: Path) -> list[Any]:
    """The protobuf `Record`s of an offline run's `.wandb` file, in order."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", data[:7]
    pos, chunks, partial = 7, [], b""
    while pos + 7 <= len(data):
        left = BLOCK - pos % BLOCK
        if left < 7:  # a block's tail too short for a header is padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0 and length == 0:  # zero padding to the end of the block
            pos += left
            continue
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == FULL:
            chunks.append(chunk)
        elif kind == FIRST:
            partial = chunk
        elif kind == MIDDLE:
            partial += chunk
        elif kind == LAST:
            chunks.append(partial + chunk)
    records = []
    for chunk in chunks:
        record = wandb_internal_pb2.Record()
        record.ParseFromString(chunk)
        records.append(record)
    return records


@dataclasses.dataclass
class OfflineRun:
    """What one offline W&B session wrote: the run record and the history rows."""

    run_id: str
    project: str
    group: str
    job_type: str
    name: str
    tags: list[str]
    config: dict[str, Any]
    history: list[dict[str, Any]]


def offline_runs(wandb_dir: Path) -> list[OfflineRun]:
    """Every offline session under `wandb_dir` (`$WANDB_DIR`), oldest first."""
    wandb.teardown()  # waits until W&B's service has written all it was sent
    out = []
    for path in sorted((wandb_dir / "wandb").glob("offline-run-*/run-*.wandb")):
        run, history = None, []
        for record in wandb_records(path):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                run = record.run
            elif kind == "history":
                history.append(
                    {
                        item.key or "/".join(item.nested_key): json.loads(item.value_json)
                        for item in record.history.item
                    }
                )
        assert run is not None, path
        config = {u.key: json.loads(u.value_json) for u in run.config.update}
        out.append(
            OfflineRun(
                run.run_id,
                run.project,
                run.run_group,
                run.job_type,
                run.display_name,
                list(run.tags),
                config,
                history,
            )
        )
    return sorted(out, key=lambda r: r.history[0]["_step"] if r.history else -1)


def logged(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """History rows without W&B's own keys (`_step`, `_runtime`, `_timestamp`)."""
    return [{k: v for k, v in h.items() if not k.startswith("_")} for h in history]


@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    where = tmp_path / "wandb-files"
    where.mkdir()
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(where))
    monkeypatch.setenv("WANDB_SILENT", "true")
    return where


COLUMNS = ["epoch", "env_steps", "updates", "episodes", "train/episode_return", "eval/return"]


def _row(epoch: int, value: float) -> dict[str, float]:
    return {
        "epoch": epoch,
        "env_steps": 100 * epoch,
        "updates": 10 * epoch,
        "episodes": epoch,
        "train/episode_return": value,
        "eval/return": math.nan,  # not finite: left out, as TensorBoard leaves it out
    }


def _run_dir(tmp_path: Path, config: TrainConfig) -> Path:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    data = {"config": config.to_dict(), "algo": config.algo, "agent_config": {"rho": 1.5}}
    (run_dir / "config.json").write_text(json.dumps(data))
    return run_dir


def test_progress_log_sends_rows_and_config_and_a_resume_continues_the_run(
    tmp_path: Path, offline: Path
) -> None:
    config = TrainConfig(task="ToyTwoModeBandit", algo="lgd", seed=3, wandb="proj")
    run_dir = _run_dir(tmp_path, config)
    log = ProgressLog(run_dir, COLUMNS, config=config)
    for epoch, value in ((1, 0.5), (2, -1.25)):
        log.write(_row(epoch, value))
    log.close()
    saved = json.loads((run_dir / WANDB_FILE).read_text())
    assert saved["last_step"] == 200 and saved["project"] == "proj"
    [first] = offline_runs(offline)
    assert first.run_id == saved["id"]
    assert (first.project, first.group, first.job_type) == (
        "proj",
        "ToyTwoModeBandit/lgd",
        "ToyTwoModeBandit/lgd",
    )
    assert first.name == "ToyTwoModeBandit/lgd/seed3"
    assert first.tags == ["ToyTwoModeBandit", "lgd"]
    assert first.config["config"]["seed"] == 3 and first.config["agent_config"] == {"rho": 1.5}
    assert first.config["config"]["wandb"] == "proj"
    assert [h["_step"] for h in first.history] == [100, 200]
    assert logged(first.history) == [
        {"epoch": 1, "updates": 10, "episodes": 1, "train/episode_return": 0.5},
        {"epoch": 2, "updates": 20, "episodes": 2, "train/episode_return": -1.25},
    ]

    # a resume from the checkpoint at step 100, after a crash that had logged epoch 2:
    # the CSV is cut back to epoch 1, training repeats epoch 2 (the same numbers), W&B
    # gets it once, in the same W&B run
    plan = plan_resume(run_dir, COLUMNS, step=100, epochs=1)
    assert [r["epoch"] for r in plan.dropped] == ["2"]
    log = ProgressLog(run_dir, COLUMNS, resume=plan, resume_step=100, config=config)
    for epoch, value in ((2, -1.25), (3, 4.0)):
        log.write(_row(epoch, value))
    log.close()
    first_again, second = offline_runs(offline)
    assert first_again == first
    assert second.run_id == first.run_id
    assert [h["_step"] for h in second.history] == [300]
    assert logged(second.history)[0]["train/episode_return"] == 4.0
    assert json.loads((run_dir / WANDB_FILE).read_text())["last_step"] == 300


def test_wandb_added_on_resume_logs_the_earlier_rows_first(tmp_path: Path, offline: Path) -> None:
    config = TrainConfig(task="ToyTwoModeBandit", algo="algd", wandb_group="sweep-a")
    run_dir = _run_dir(tmp_path, config)
    log = ProgressLog(run_dir, COLUMNS, config=config)  # no --wandb: nothing sent
    log.write(_row(1, 2.0))
    log.close()
    assert not (run_dir / WANDB_FILE).exists() and not (offline / "wandb").exists()
    plan = plan_resume(run_dir, COLUMNS, step=100, epochs=1)
    config = dataclasses.replace(config, wandb="proj")
    log = ProgressLog(run_dir, COLUMNS, resume=plan, resume_step=100, config=config)
    log.write(_row(2, 3.0))
    log.close()
    [run] = offline_runs(offline)
    assert (run.group, run.job_type) == ("sweep-a", "ToyTwoModeBandit/algd")
    assert run.tags == ["ToyTwoModeBandit", "algd", "sweep-a"]
    assert [(h["_step"], h["train/episode_return"]) for h in run.history] == [
        (100, 2.0),
        (200, 3.0),
    ]


def test_training_run_logs_what_progress_csv_holds(tmp_path: Path, offline: Path) -> None:
    """A tiny two-seed run through `training.train`: the W&B history of each seed equals
    its progress.csv, in one W&B run per seed; `--resume` keeps `--wandb` (and may change
    it: it is not part of the run's configuration). The run lifecycle passes its config
    to `ProgressLog` (`config=`)."""
    from algd_jax import training

    run_dir = tmp_path / "two"
    args = [*tiny_flags("sac-lag"), "--task", "ToyTwoModeBandit", "--seeds", "0", "1"]
    args += ["--wandb", "proj", "--total-steps", "200", "--run-dir", str(run_dir)]
    config = parse_command_line(args)
    training.train(config)

    runs = offline_runs(offline)
    assert sorted(r.name for r in runs) == [f"ToyTwoModeBandit/sac-lag/seed{s}" for s in (0, 1)]
    for seed in (0, 1):
        seed_dir = run_dir / f"seed{seed}"
        [run] = [r for r in runs if r.name.endswith(f"seed{seed}")]
        assert run.run_id == json.loads((seed_dir / WANDB_FILE).read_text())["id"]
        assert run.config["config"]["seed"] == seed
        assert run.config["agent_config"]["critic_hidden"] == 16
        with (seed_dir / "progress.csv").open() as fh:
            csv_rows = list(csv.DictReader(fh))
        assert [h["_step"] for h in run.history] == [int(r["env_steps"]) for r in csv_rows]
        assert [h["_step"] for h in run.history] == [100, 200]
        for h, row in zip(run.history, csv_rows, strict=True):
            for key, value in row.items():
                if key == "env_steps" or not math.isfinite(float(value)):
                    assert key not in h
                else:
                    assert h[key] == pytest.approx(float(value), rel=1e-12), key
    resumed = parse_command_line(["--resume", str(run_dir), "--total-steps", "300"])
    assert (resumed.wandb, resumed.wandb_group) == ("proj", None)
    moved = parse_command_line(
        ["--resume", str(run_dir), "--wandb", "other", "--total-steps", "300"]
    )
    assert moved.wandb == "other"


def test_missing_wandb_is_one_line_before_anything_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` raises ImportError
    run_dir = tmp_path / "r"
    code = run_cmd.main([*TINY, "--wandb", "proj", "--run-dir", str(run_dir)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert 'pip install -e ".[wandb]"' in err
    assert not run_dir.exists()
    out = tmp_path / "s"
    argv = ["--tasks", "ToyTwoModeBandit", "--algos", "algd", "--out", str(out), "--wandb", "p"]
    assert sweep_cmd.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and 'pip install -e ".[wandb]"' in err, err
    assert not out.exists()


def test_sweep_groups_its_runs_by_its_name_and_keeps_wandb_out_of_identity(
    tmp_path: Path,
) -> None:
    from algd_jax.sweep.grid import expand

    out = tmp_path / "fig3"
    flags = sweep_cmd.with_wandb_group(["--batch-size", "32", "--wandb", "proj"], out)
    assert flags[-2:] == ["--wandb-group", "fig3"]
    own = ["--wandb", "proj", "--wandb-group", "mine"]
    assert sweep_cmd.with_wandb_group(own, out) == own
    [job] = expand(["ToyTwoModeBandit"], ["algd"], [0], [], flags, out)
    assert job.identity() == {
        "--task": ["ToyTwoModeBandit"],
        "--algo": ["algd"],
        "--batch-size": ["32"],
    }
    command = job.command(resume=False)
    assert command[command.index("--wandb") + 1] == "proj"
    assert command[command.index("--wandb-group") + 1] == "fig3"
