"""The one reader of a run directory's own files: `config.json`, `group.json` and
`progress.csv`, each validated before anyone uses it.

Every command that reads a run (`--resume`, `experiments.evaluate`, `plot`, `summarize`,
`landscape`, and any later one) reads it through here, so a damaged file is refused the
same way everywhere: one `RunError` line (exit status 2) naming the file, what is wrong
(the field, or the line of the CSV) and the fix, before anything is changed.

    config = read_run_config(run_dir)          # RunConfig: the raw JSON and a TrainConfig
    log = read_progress_file(run_dir / "progress.csv")   # ProgressFile: rows, header, torn

What is checked:

* `config.json` / `group.json`: valid UTF-8 JSON whose top level is an object with a
  `config` object; every field of `config` has the type `TrainConfig` declares (and every
  field of `config.hparams` the type of the algorithm's config), e.g.
  `config.json: config.seed 'zero': expected an integer`.
* `progress.csv`: UTF-8 text, a header, and rows with exactly one numeric value per
  column (`nan` allowed), whose `epoch` counts 1, 2, 3, ... and whose `env_steps` grow.
  A last line without its newline is the one damage a crash can leave (each row is
  written with one call, flushed and fsynced): it is not a row, `torn` says it was there
  and a resume cuts it. Any other damage (a short row, a value that is not a number, a
  repeated or missing row, bytes that are not UTF-8) is refused naming the line.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from algd_jax.options import field_type_problems
from algd_jax.train_config import GROUP_FILE, RunError, TrainConfig

#: Name of a run's progress log.
PROGRESS_FILE = "progress.csv"
#: Name of a run's configuration.
CONFIG_FILE = "config.json"

_RESTORE = "restore the original file or start a new run"


@dataclass(frozen=True)
class RunConfig:
    """A validated `config.json` (or a multi-seed run's `group.json`).

    Attributes:
        path: the file read.
        data: the whole JSON object (`config`, and for config.json `algo`,
            `agent_config`, `task_spec`, `versions`, `created`, `resumes`).
        config: `data["config"]` as a `TrainConfig`.
    """

    path: Path
    data: dict[str, Any]
    config: TrainConfig

    @property
    def is_group(self) -> bool:
        return self.path.name == GROUP_FILE


def _prefix(path: Path, label: str) -> str:
    return f"{label} {path}" if label else str(path)


def read_json(path: Path, label: str = "") -> dict[str, Any]:
    """A JSON file whose top level is an object; `RunError` naming the file otherwise."""
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as err:
        raise RunError(f"{_prefix(path, label)}: cannot read it ({err.strerror})") from None
    except UnicodeDecodeError as err:
        raise RunError(
            f"{_prefix(path, label)}: not UTF-8 text (byte {err.start}); {_RESTORE}"
        ) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise RunError(
            f"{_prefix(path, label)}: not valid JSON (line {err.lineno}, column {err.colno}: "
            f"{err.msg}); {_RESTORE}"
        ) from None
    if not isinstance(data, dict):
        raise RunError(
            f"{_prefix(path, label)}: expected a JSON object at the top, found "
            f"{type(data).__name__}; {_RESTORE}"
        )
    return data


def config_problems(data: dict[str, Any]) -> list[str]:
    """Why a config.json's `config` object does not describe a `TrainConfig` (field names
    as `config.NAME` and `config.hparams.NAME`); empty when it does."""
    from algd_jax.algorithms import UnknownAlgorithmError, get_algorithm

    config = data.get("config")
    if not isinstance(config, dict):
        if "config" not in data:
            return ["its config object is missing"]
        return [f"config: expected an object, found {type(config).__name__} {config!r:.40}"]
    problems = field_type_problems(TrainConfig, config, "config.")
    missing = [n for n in ("algo", "task", "seed", "hparams") if n not in config]
    problems += [f"config.{n}: missing" for n in missing]
    if problems:
        return problems
    hparams = config["hparams"]
    if not isinstance(hparams, dict):
        return [f"config.hparams {hparams!r:.40}: expected an object"]
    try:
        algorithm = get_algorithm(config["algo"])
    except UnknownAlgorithmError as err:
        return [f"config.algo: {err}"]
    return field_type_problems(algorithm.config_type, hparams, "config.hparams.")


def read_run_config(run_dir: Path, label: str = "") -> RunConfig:
    """The validated `config.json` of a run directory, or `group.json` of a multi-seed one.

    `label` (e.g. `--resume`) prefixes every message. Raises `RunError` when the
    directory, or its file, is missing, unreadable or does not describe a training run."""
    run_dir = Path(run_dir)
    where = _prefix(run_dir, label)
    if run_dir.is_file():
        raise RunError(f"{where}: is a file, not a run directory")
    if not run_dir.is_dir():
        raise RunError(f"{where}: no such directory")
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        path = run_dir / GROUP_FILE
    if not path.is_file():
        raise RunError(f"{where}: not a run directory (no {CONFIG_FILE})")
    data = read_json(path, label)
    problems = config_problems(data)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise RunError(
            f"{_prefix(path, label)} does not describe a training run of this version: "
            f"{problems[0]}{more}; {_RESTORE}"
        )
    return RunConfig(path, data, TrainConfig.from_dict(data["config"]))


# -- progress.csv ------------------------------------------------------------------------


@dataclass(frozen=True)
class ProgressFile:
    """A validated `progress.csv`.

    Attributes:
        path: the file.
        header: its column names (empty for a missing file).
        rows: one dict of strings per complete row, in order.
        lines: the line number (1-based, the header is line 1) of each row.
        torn: the file ended in a line without its newline (a crash mid-write), which is
            not in `rows`.
        exists: whether the file was there.
    """

    path: Path
    header: list[str]
    rows: list[dict[str, str]]
    lines: list[int]
    torn: bool
    exists: bool = True


def read_progress_file(path: Path, label: str = "") -> ProgressFile:
    """Read and validate a `progress.csv` (see the module docstring); a missing file reads
    as no rows (`exists` False). Raises `RunError` naming the line for any damage a crash
    cannot cause."""
    path = Path(path)
    where = _prefix(path, label)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return ProgressFile(path, [], [], [], torn=False, exists=False)
    except OSError as err:
        raise RunError(f"{where}: cannot read it ({err.strerror})") from None
    if not raw:
        raise RunError(
            f"{where} is empty (not even its header line); {_RESTORE}, or delete it if the run "
            f"has no checkpoint yet"
        )
    # Everything after the last newline is a line a crash tore mid-write; only it is left out.
    end = raw.rfind(b"\n") + 1
    torn = end < len(raw)
    try:
        text = raw[:end].decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise RunError(f"{where}: line {line} is not UTF-8 text; {_RESTORE}") from None
    records = list(csv.reader(io.StringIO(text, newline="")))
    if not records:  # only a torn header
        raise RunError(f"{where}: its header line is incomplete; {_RESTORE}")
    header = records[0]
    if len(set(header)) != len(header) or not header or "" in header:
        raise RunError(f"{where}: line 1 is not a header of distinct column names; {_RESTORE}")
    rows, lines = [], []
    previous: tuple[int, int] | None = None
    for number, record in enumerate(records[1:], start=2):
        if len(record) != len(header):
            raise RunError(
                f"{where}: line {number} has {len(record)} values for {len(header)} columns "
                f"(a damaged row in the middle of the file); {_RESTORE}"
            )
        for name, value in zip(header, record, strict=True):
            try:
                float(value)
            except ValueError:
                raise RunError(
                    f"{where}: line {number}, column {name}: {value!r} is not a number; {_RESTORE}"
                ) from None
        row = dict(zip(header, record, strict=True))
        current = _counters(row, where, number)
        if current is not None:
            _check_order(previous, current, where, number)
            previous = current
        rows.append(row)
        lines.append(number)
    return ProgressFile(path, header, rows, lines, torn)


def _counters(row: dict[str, str], where: str, number: int) -> tuple[int, int] | None:
    """(epoch, env_steps) of a row, both whole numbers; None if the log has neither."""
    if "epoch" not in row or "env_steps" not in row:
        return None
    out = []
    for name in ("epoch", "env_steps"):
        value = float(row[name])
        if not (math.isfinite(value) and value.is_integer()):
            raise RunError(
                f"{where}: line {number}, column {name}: {row[name]!r} is not a whole number; "
                f"{_RESTORE}"
            )
        out.append(int(value))
    return out[0], out[1]


def _check_order(
    previous: tuple[int, int] | None, current: tuple[int, int], where: str, number: int
) -> None:
    """Epochs count 1, 2, 3, ...; env steps grow: a repeated or missing row is damage."""
    epoch, steps = current
    expected = 1 if previous is None else previous[0] + 1
    if previous is not None and epoch == previous[0]:
        raise RunError(
            f"{where}: line {number} repeats epoch {epoch} of line {number - 1} (a duplicated "
            f"row); delete the duplicate or {_RESTORE}"
        )
    if epoch != expected:
        raise RunError(
            f"{where}: line {number} is epoch {epoch} where epoch {expected} belongs (a row "
            f"is missing or out of order); {_RESTORE}"
        )
    if previous is not None and steps <= previous[1]:
        raise RunError(
            f"{where}: line {number} has env step {steps}, not after {previous[1]} on line "
            f"{number - 1}; {_RESTORE}"
        )


def read_progress(path: Path) -> list[dict[str, str]]:
    """The validated rows of a `progress.csv` (empty for a missing file); a torn last line
    is left out."""
    return read_progress_file(path).rows


def seed_run_dirs(run_dir: Path, config: TrainConfig) -> list[Path]:
    """The directory of each seed of a run: itself, or `seed<k>/` of a multi-seed run."""
    if config.seeds is None:
        return [Path(run_dir)]
    return [Path(run_dir) / f"seed{s}" for s in config.seeds]


def check_run(run_dir: Path, label: str = "") -> RunConfig:
    """Validate every file of a run this reader knows (its config, and of each seed its
    config.json and progress.csv) before a command uses any; returns the run's config.
    Raises `RunError` for the first damaged file."""
    run = read_run_config(run_dir, label)
    for seed_dir in seed_run_dirs(run_dir, run.config):
        if run.is_group:
            read_run_config(seed_dir, label)
        read_progress_file(seed_dir / PROGRESS_FILE, label)
    return run
