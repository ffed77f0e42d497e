"""Training: one run lifecycle shared by every loop, and one module per loop shape.

    streams      the run's random streams (pure functions of the seed and counters)
    run_dir      naming, seed directories, checks, creation and clean-up, config.json /
                 group.json, resume records, the finished marker
    identity     the values that decide a run's numbers, their digest, the checkpoint
                 format and the checks `--resume` makes
    lifecycle    `RunLifecycle`: checkpointers, best checkpoint, progress.csv/TensorBoard,
                 display, signals, out-of-memory stops, wall clock; `TrainResult`
    epoch_row    the epoch row every loop writes and the non-finite stop
    episodes     the window of finished episodes handed to algorithms (`LoopInfo`)
    evaluation   deterministic evaluation episodes on host environments
    off_policy   host env stepping + replay + fused updates (`OffPolicyLoop`)
    on_policy    S seeds x E host vector envs, T-step rollouts, one compiled update phase
                 per rollout (`OnPolicyLoop`)
    on_device    the whole loop on the device, for tasks written in JAX (`OnDeviceLoop`),
                 and the fused bandit trainer (`train_bandit`)

`train(config)` picks the loop by the algorithm's `kind`.
"""

from __future__ import annotations

from pathlib import Path

from algd_jax.programs import new_state
from algd_jax.train_config import TrainConfig
from algd_jax.training.episodes import loop_info, push_episode
from algd_jax.training.epoch_row import (
    EPISODE_COLUMNS,
    TIMING_COLUMNS,
    NonFiniteLoss,
    progress_columns,
    timing_free,
)
from algd_jax.training.identity import CHECKPOINT_FORMAT, config_digest, config_values
from algd_jax.training.lifecycle import (
    Interrupted,
    RunLifecycle,
    TrainResult,
    available_memory,
    human_bytes,
)
from algd_jax.training.off_policy import LoopState, OffPolicyLoop, PhaseClock, planned_updates
from algd_jax.training.run_dir import default_run_dir, seed_dirs, write_config
from algd_jax.training.streams import stream_seed, uniform_actions

__all__ = [
    "CHECKPOINT_FORMAT",
    "EPISODE_COLUMNS",
    "TIMING_COLUMNS",
    "Interrupted",
    "LoopState",
    "NonFiniteLoss",
    "OffPolicyLoop",
    "PhaseClock",
    "RunLifecycle",
    "TrainResult",
    "available_memory",
    "config_digest",
    "config_values",
    "default_run_dir",
    "human_bytes",
    "loop_info",
    "new_state",
    "planned_updates",
    "progress_columns",
    "push_episode",
    "seed_dirs",
    "stream_seed",
    "timing_free",
    "train",
    "uniform_actions",
    "write_config",
]


def train(config: TrainConfig, run_root: Path = Path("runs")) -> TrainResult:
    """Run (or, with `config.resume`, continue) one training run with the loop it needs:
    `--loop device` the on-device loop, otherwise the loop of the algorithm's `kind`
    (off-policy: `OffPolicyLoop`; on-policy: `OnPolicyLoop`)."""
    if config.loop == "device":
        from algd_jax.training.on_device import OnDeviceLoop

        return OnDeviceLoop(config, run_root=run_root).run()
    if config.algorithm.kind == "on-policy":
        from algd_jax.training.on_policy import OnPolicyLoop

        return OnPolicyLoop(config, run_root=run_root).run()
    return OffPolicyLoop(config, run_root=run_root).run()
