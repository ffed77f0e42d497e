"""Train on a task written in JAX entirely on the device: `experiments.run --loop device`.

    python -m experiments.device_run --task DiffDriveCircle --algo algd --seeds 0 1 2 \\
        --total-steps 21000 --initial-steps 1000 --learning-starts 1000 --critic-hidden 64

is exactly `python -m experiments.run --loop device ...`: the same typed flags, run
directory, checkpoints and `--resume` as every run (`algd_jax.training.on_device`). Each
epoch (`--epoch-steps` env steps per seed after the `--initial-steps` warm-up, `--num-envs`
envs stepped together, `--updates-per-step` updates per iteration) is one compiled call
for all seeds.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from experiments import run


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return run.main(["--loop", "device", *argv])


if __name__ == "__main__":
    sys.exit(main())
