"""A sweep's record: `<out>/manifest.json` (rewritten atomically) and `<out>/events.jsonl`
(append-only history), plus what each run directory says about itself.

The manifest records the grid, each job's command, status, attempts, run directory, start
and end times, exit code and log path. It is a record, not the source of truth: whether a
job is finished is read from its run directory (`finished.json`, written atomically by the
training loop when it reached `--total-steps`), so a manifest lost or stale after a crash
cannot make a sweep skip or repeat work.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
from pathlib import Path
from typing import Any, Literal

from algd_jax.train_config import FINISHED_FILE, GROUP_FILE, RunError

MANIFEST_FILE = "manifest.json"
EVENTS_FILE = "events.jsonl"
#: Version of the manifest layout.
MANIFEST_FORMAT = 1

RunState = Literal["finished", "resumable", "stale", "new"]


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to a temporary file beside `path`, then rename it over `path` (a reader
    sees the old file or the new one, never half of one)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


class Manifest:
    """The manifest of one sweep folder; `update` is safe to call from several threads."""

    def __init__(self, out: Path) -> None:
        self.path = out / MANIFEST_FILE
        self.events = out / EVENTS_FILE
        self._lock = threading.Lock()
        self.data: dict[str, Any] = {"format": MANIFEST_FORMAT, "sweeps": [], "jobs": {}}
        if self.path.is_file():
            try:
                self.data = json.loads(self.path.read_text())
            except (OSError, json.JSONDecodeError) as err:
                raise RunError(
                    f"{self.path} is unreadable ({err}); move it aside and re-run (the run "
                    f"directories say which jobs finished)"
                ) from None
            if self.data.get("format") != MANIFEST_FORMAT:
                raise RunError(f"{self.path}: written by another version of algd-jax")

    def job(self, job_id: str) -> dict[str, Any] | None:
        return self.data["jobs"].get(job_id)

    def record_sweep(self, entry: dict[str, Any]) -> None:
        """Append one invocation of the sweep (its argv, grid and time)."""
        with self._lock:
            self.data["sweeps"].append(entry)
            self._write({"event": "sweep", **entry})

    def update(self, job_id: str, **fields: Any) -> None:
        """Merge `fields` into a job's entry; write the manifest and log the event."""
        with self._lock:
            self.data["jobs"].setdefault(job_id, {}).update(fields)
            self._write({"event": "job", "job": job_id, **fields})

    def _write(self, event: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.path, self.data)
        with self.events.open("a") as fh:
            fh.write(json.dumps({"time": now(), **event}) + "\n")


def _has_checkpoint(seed_dir: Path) -> bool:
    last = seed_dir / "checkpoints" / "last"
    return last.is_dir() and any(p.name.isdigit() for p in last.iterdir())


def finished_steps(run_dir: Path) -> int | None:
    """Env steps in a run directory's `finished.json` (None if it has none)."""
    path = run_dir / FINISHED_FILE
    try:
        return int(json.loads(path.read_text())["env_steps"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def run_state(run_dir: Path, seeds: list[int], total_steps: int | None) -> RunState:
    """What a job's run directory says: `finished` (reached `total_steps`, or its own
    `--total-steps` when None), `resumable` (every seed has a checkpoint), `stale` (begun,
    but stopped before a checkpoint every seed has) or `new` (absent)."""
    if not run_dir.exists():
        return "new"
    steps = finished_steps(run_dir)
    if steps is not None and (total_steps is None or steps >= total_steps):
        return "finished"
    seed_dirs = [run_dir / f"seed{s}" for s in seeds]
    if (run_dir / GROUP_FILE).is_file() and all(_has_checkpoint(d) for d in seed_dirs):
        return "resumable"
    return "stale"
