"""A run's identity: the values that decide its numbers, their digest, the checkpoint
format, and the checks `--resume` makes before it trusts a checkpoint.

Every checkpoint's meta holds `{"format", "env_step", "loop", "config_digest", "config"}`;
a resume refuses, with one line, a checkpoint of another format, of another loop, or made
under other values than the run's config.json now says.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

from algd_jax.envs import TaskSpec
from algd_jax.train_config import RESUMABLE_OVERRIDES, RunError, TrainConfig

#: Version of the checkpoint layout the loops write and read (3: the episode window).
CHECKPOINT_FORMAT = 3


def config_values(config: TrainConfig, hparams: Any, spec: TaskSpec, seed: int) -> dict[str, Any]:
    """Everything that decides one seed's numbers (not the run's length, paths, terminal
    output or how many other seeds train beside it), flattened to `name: value`."""
    data = config.to_dict()
    for key in (*RESUMABLE_OVERRIDES, "seeds"):
        data.pop(key, None)
    # the options' values are in `hparams`, however they were chosen
    for key in ("hparams", "preset", "list_tasks", "list_algos"):
        data.pop(key, None)
    data["seed"] = seed
    values = {f"config.{k}": v for k, v in data.items()}
    values.update({f"algorithm.{k}": v for k, v in dataclasses.asdict(hparams).items()})
    values.update({f"task.{k}": v for k, v in dataclasses.asdict(spec).items()})
    return json.loads(json.dumps(values, default=str))


def field_defaults(config: TrainConfig, hparams: Any) -> dict[str, Any]:
    """The default of every `config_values` key that has one (dataclass field defaults)."""
    out: dict[str, Any] = {}
    for prefix, cls in (("config", TrainConfig), ("algorithm", type(hparams))):
        for f in dataclasses.fields(cls):
            if f.default is not dataclasses.MISSING:
                out[f"{prefix}.{f.name}"] = json.loads(json.dumps(f.default, default=str))
    return out


def config_digest(values: dict[str, Any]) -> str:
    """A digest of `config_values`, stored with each checkpoint."""
    blob = json.dumps(values, sort_keys=True, default=str)
    return hashlib.blake2b(blob.encode(), digest_size=16).hexdigest()


def checkpoint_meta(values: dict[str, Any], env_step: int, loop: str) -> dict[str, Any]:
    """The meta saved with a checkpoint of the loop `loop` at `env_step`."""
    return {
        "format": CHECKPOINT_FORMAT,
        "env_step": env_step,
        "loop": loop,
        "config_digest": config_digest(values),
        "config": values,
    }


def check_checkpoint(
    meta: dict[str, Any],
    seed_dir: Path,
    step: int,
    loop: str,
    values: dict[str, Any],
    defaults: dict[str, Any],
) -> None:
    """Refuse a checkpoint (its `meta`) that this loop cannot continue: another format,
    another loop, or a configuration other than `values` (config.json's).

    A field the checkpoint does not know (added by a later version) counts as unchanged
    while it holds its default value (`defaults`, from `field_defaults`)."""
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise RunError(
            f"--resume {seed_dir}: its checkpoints were written by another version of "
            f"algd-jax (format {meta.get('format')}, this version reads {CHECKPOINT_FORMAT}); "
            f"resume it with the version that started it",
            exit_code=1,
        )
    # checkpoints from before the loops shared this module are the off-policy loop's
    saved_loop = meta.get("loop", "off-policy")
    if saved_loop != loop:
        raise RunError(
            f"--resume {seed_dir}: its checkpoint at step {step} was written by the {saved_loop} "
            f"loop, not the {loop} loop this configuration trains with; resume it with the "
            f"command that started it",
            exit_code=1,
        )
    if meta.get("config_digest") == config_digest(values):
        return
    saved = meta.get("config", {})
    changed = sorted(
        n
        for n in set(saved) | set(values)
        if saved.get(n) != values.get(n)
        and not (n not in saved and n in defaults and values.get(n) == defaults[n])
    )
    if not changed:
        return
    shown = ", ".join(
        f"{n.split('.', 1)[1]} {saved.get(n)!r} -> {values.get(n)!r}" for n in changed[:4]
    )
    more = f" and {len(changed) - 4} more" if len(changed) > 4 else ""
    raise RunError(
        f"--resume {seed_dir}: its config.json does not match the configuration its "
        f"checkpoint at step {step} was trained with ({shown}{more}); restore the original "
        f"config.json",
        exit_code=2,
    )
