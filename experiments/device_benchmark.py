"""Env steps per second of the on-device loop against the host loop on DiffDriveCircle.

    python -m experiments.device_benchmark [--seeds 1 8] [--out docs/results/device_loop.json]

Both loops train the same learner (ALGD, critics and score net 64 wide, M = 2, U = 2 updates
per env step, batch 128) on one env per seed, for `--warmup` steps then `--epochs` epochs of
`--epoch-steps` env steps. The speed is measured after the first epoch (which compiles):
the host loop's `time/env_steps_per_s` rows (per seed, times the seeds), the on-device
loop's steady epochs. Prints one line per configuration and writes them as JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

HPARAMS = {
    "critic_hidden": 64,
    "score_hidden": 64,
    "ensemble_size": 2,
    "critic_lr": 1e-3,
    "cost_critic_lr": 1e-3,
}


def host(seeds: int, warmup: int, epoch_steps: int, epochs: int) -> dict[str, Any]:
    """Host loop: env steps/s over the epochs after the first (all seeds together)."""
    from algd_jax.logging_utils import read_progress
    from experiments.run import main

    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        flags = [f"--{k.replace('_', '-')}={v}" for k, v in HPARAMS.items()]
        args = [
            "--task", "DiffDriveCircle", "--seeds", *map(str, range(seeds)),
            "--total-steps", str(warmup + epochs * epoch_steps),
            "--initial-steps", str(warmup), "--learning-starts", str(warmup),
            "--epoch-steps", str(epoch_steps), "--updates-per-step", "2",
            "--batch-size", "128", "--eval-episodes", "1", "--progress", "off",
            "--run-dir", str(run_dir), *flags,
        ]  # fmt: skip
        start = time.perf_counter()
        assert main(args) == 0
        wall = time.perf_counter() - start
        rows = read_progress(run_dir / "seed0" / "progress.csv")  # --seeds: seed<k>/ dirs
    speeds = [float(r["time/env_steps_per_s"]) for r in rows[1:]]
    return {"env_steps_per_s": float(np.mean(speeds)) * seeds, "wall_s": wall}


def device(seeds: int, warmup: int, epoch_steps: int, epochs: int, axis: str) -> dict[str, Any]:
    """On-device loop (`--loop device`), same schedule and warm-up (the policy's, like the
    host's); one more epoch than the host loop, whose first call compiles."""
    from algd_jax.logging_utils import read_progress
    from experiments.run import main

    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        flags = [f"--{k.replace('_', '-')}={v}" for k, v in HPARAMS.items()]
        args = [
            "--task", "DiffDriveCircle", "--loop", "device", "--seed-axis", axis,
            "--seeds", *map(str, range(seeds)),
            "--total-steps", str(warmup + (epochs + 1) * epoch_steps),
            "--initial-steps", str(warmup), "--learning-starts", str(warmup),
            "--epoch-steps", str(epoch_steps), "--updates-per-step", "2",
            "--batch-size", "128", "--eval-episodes", "1", "--progress", "off",
            "--replay-size", str(warmup + (epochs + 1) * epoch_steps),
            "--run-dir", str(run_dir), *flags,
        ]  # fmt: skip
        start = time.perf_counter()
        assert main(args) == 0
        wall = time.perf_counter() - start
        rows = read_progress(run_dir / "seed0" / "progress.csv")
    speeds = [float(r["time/env_steps_per_s"]) for r in rows[1:]]
    return {"env_steps_per_s": float(np.mean(speeds)) * seeds, "wall_s": wall}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.device_benchmark")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--epoch-steps", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    import jax

    results = []
    for seeds in args.seeds:
        schedule = (args.warmup, args.epoch_steps, args.epochs)
        for name in ("host", "device-vmap", "device-map"):
            if name == "device-map" and seeds == 1:
                continue
            if name == "host":
                measured = host(seeds, *schedule)
            else:
                measured = device(seeds, *schedule, name.removeprefix("device-"))
            out = {"loop": name, "seeds": seeds, **measured}
            results.append(out)
            print(
                f"{name:<12} {seeds} seed(s): {out['env_steps_per_s']:8.1f} env steps/s "
                f"(all seeds), wall {out['wall_s']:.0f} s",
                flush=True,
            )
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        meta = {"backend": jax.default_backend(), "machine": platform.processor() or "cpu"}
        args.out.write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
