"""A run's directory: its name, the seed directories, the checks before anything is written,
creation and clean-up, `config.json` / `group.json`, the resume records and the finished
marker. Every loop writes its run through these functions, so every run has one layout:

    RUN/                      one --seed: RUN is the seed's directory
      config.json             the resolved configuration (`write_config`)
      progress.csv, tb/       one row per epoch (`algd_jax.logging_utils.ProgressLog`)
      checkpoints/{last,best} (`algd_jax.checkpointing.Checkpointer`)
      finished.json           written last, once --total-steps is reached
    RUN/group.json + RUN/seed<k>/...   several --seeds
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import platform
import shutil
import tempfile
from pathlib import Path
from typing import Any

import flax
import jax
import numpy as np

from algd_jax.envs import TaskSpec
from algd_jax.train_config import FINISHED_FILE, GROUP_FILE, RunError, TrainConfig


def now() -> str:
    """The local time, to the second, as the run's files record it."""
    return dt.datetime.now().isoformat(timespec="seconds")


def default_run_dir(config: TrainConfig, root: Path = Path("runs")) -> Path:
    """`runs/<algo>-<task>/seed<k>-<timestamp>/` (several seeds: `seeds<a>-<b>-...-`),
    with a suffix if that already exists."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    seeds = config.seed_list
    label = f"seed{seeds[0]}" if config.seeds is None else "seeds" + "-".join(map(str, seeds))
    base = root / f"{config.algo}-{config.task}" / f"{label}-{stamp}"
    candidate, n = base, 1
    while candidate.exists():
        candidate = base.with_name(f"{base.name}-{n}")
        n += 1
    return candidate


def seed_dirs(root: Path, config: TrainConfig) -> list[Path]:
    """The run directory of each seed: `root` itself for one `--seed`, `root/seed<k>/` for
    `--seeds`."""
    if config.seeds is None:
        return [root]
    return [root / f"seed{s}" for s in config.seeds]


def check_new_run_dir(path: Path) -> None:
    """Refuse a run directory that already holds something: never overwrite a run."""
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise RunError(
            f"--run-dir {path} already exists; choose a new directory or continue that run "
            f"with --resume {path}"
        )


def check_writable(path: Path) -> None:
    """Refuse a run directory that cannot be created, before any slow set-up: probe the
    nearest existing ancestor with a temporary directory (removed at once)."""
    ancestor = path.absolute()
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise RunError(f"--run-dir {path}: {ancestor} is a file, not a directory")
    try:
        os.rmdir(tempfile.mkdtemp(dir=ancestor, prefix=".algd-probe-"))
    except OSError as err:
        raise RunError(
            f"--run-dir {path}: cannot create a directory in {ancestor} "
            f"({err.strerror or type(err).__name__}); choose a writable place"
        ) from None


def versions() -> dict[str, str]:
    """The package versions a run records in its config.json."""
    return {
        "python": platform.python_version(),
        "jax": jax.__version__,
        "flax": flax.__version__,
        "numpy": np.__version__,
    }


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write `data` to `path` atomically (a temporary file, then a rename)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def write_config(
    run_dir: Path,
    config: TrainConfig,
    hparams: Any,
    spec: TaskSpec,
    created: str | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    """The resolved configuration of one seed's run, as `run_dir/config.json` (atomically;
    `extra`: further top-level entries, e.g. the on-device loop's schedule)."""
    write_json(
        run_dir / "config.json",
        {
            "config": config.to_dict(),
            "algo": config.algo,
            "agent_config": dataclasses.asdict(hparams),
            "task_spec": dataclasses.asdict(spec),
            "versions": versions(),
            "created": created or now(),
            **(extra or {}),
        },
    )


def create_run_dirs(
    config: TrainConfig,
    run_dir: Path,
    hparams: Any,
    spec: TaskSpec,
    extra: dict[str, Any] | None = None,
) -> TrainConfig:
    """Create a new run's directories with their config.json (and group.json for several
    seeds); returns `config` with `run_dir` set."""
    config = dataclasses.replace(config, run_dir=run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    created = now()
    if config.seeds is not None:
        write_json(
            run_dir / GROUP_FILE,
            {
                "config": config.to_dict(),
                "seeds": list(config.seeds),
                "created": created,
                **(extra or {}),
            },
        )
    for seed, path in zip(config.seed_list, seed_dirs(run_dir, config), strict=True):
        path.mkdir(parents=True, exist_ok=True)
        one = dataclasses.replace(config, seed=seed, seeds=None, run_dir=path)
        write_config(path, one, hparams, spec, created, extra)
    return config


def remove_failed_start(run_dir: Path, run_dirs: list[Path], existed: bool) -> None:
    """Remove what a new run created before it failed to start (an empty --run-dir given
    by the user stays)."""
    for d in run_dirs if existed else [run_dir]:
        shutil.rmtree(d, ignore_errors=True)
    if existed:
        (run_dir / GROUP_FILE).unlink(missing_ok=True)


def record_resume(config: TrainConfig, run_dir: Path, run_dirs: list[Path], env_step: int) -> None:
    """Note a resume that trains in each config.json (and group.json): the new
    --total-steps and an appended `resumes` entry; the creation time stays."""
    record = {"at": now(), "from_env_step": env_step, "total_steps": config.total_steps}
    paths = [d / "config.json" for d in run_dirs]
    if config.seeds is not None:
        paths.append(run_dir / GROUP_FILE)
    for path in paths:
        data = json.loads(path.read_text())
        data["config"]["total_steps"] = config.total_steps
        data.setdefault("resumes", []).append(record)
        write_json(path, data)


def mark_finished(
    run_dir: Path, run_dirs: list[Path], env_steps: int, total_steps: int, seeds: list[int]
) -> None:
    """Say in each seed's directory (and a multi-seed run's root) that the run reached
    `--total-steps`: `finished.json`, written atomically last, so a sweep knows a run
    that stopped anywhere before it from one that completed."""
    marker = {
        "env_steps": env_steps,
        "total_steps": total_steps,
        "seeds": seeds,
        "finished": now(),
    }
    roots = [run_dir] if run_dirs != [run_dir] else []
    for d in [*run_dirs, *roots]:
        write_json(d / FINISHED_FILE, marker)
