"""The seed axis sharded over several devices (`algd_jax.programs.seed_mesh`): on a CPU
forced to 2 devices (`XLA_FLAGS=--xla_force_host_platform_device_count=2`) a tiny two-seed
training run keeps each seed's learner on its own device and writes the progress.csv
numbers of the same seeds on one device: the counters exactly, the float columns to float
rounding (XLA fuses the two-device program differently, which moves the last bits); a seed
count the devices do not divide is said in one line. Each run is a subprocess: the device
count is fixed when JAX starts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, progress_rows, tiny_flags

FORCE = "--xla_force_host_platform_device_count="

#: In one process on 2 devices: a tiny two-seed run (sharded, argv[1]/two) and each seed
#: alone (one seed: one device, argv[1]/alone<k>), through the loop; prints where the
#: two-seed run's learner states live and what `seed_mesh` makes of 3 seeds. A seed alone
#: has bitwise the numbers of that seed in an unsharded multi-seed run (seed independence,
#: tests/test_seed_independence.py), so it stands for the unsharded run.
SCRIPT = """
import json, sys
from pathlib import Path
import jax
from algd_jax.programs import seed_mesh
from algd_jax.train_config import parse_command_line
from algd_jax.training import OffPolicyLoop

root, args = Path(sys.argv[1]), sys.argv[2:]
two = ["--seeds", "0", "1", "--run-dir", str(root / "two")]
sharded = OffPolicyLoop(parse_command_line(args + two))
sharded.run()
for seed in (0, 1):
    alone = ["--seed", str(seed), "--run-dir", str(root / f"alone{seed}")]
    OffPolicyLoop(parse_command_line(args + alone)).run()
leaves = jax.tree.leaves(sharded.states)
print(json.dumps({
    "devices": jax.device_count(),
    "specs": sorted({"/".join(map(str, x.sharding.spec)) for x in leaves}),
    "state_devices": sorted({len(x.sharding.device_set) for x in leaves}),
    "three": seed_mesh(3) is None,
}))
"""


def _train(root: Path) -> tuple[dict, str]:
    flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if not f.startswith(FORCE)]
    env = dict(os.environ, PYTHONPATH=str(REPO), XLA_FLAGS=" ".join([f"{FORCE}2", *flags]))
    args = [*tiny_flags("sac-lag"), "--task", "ToyTwoModeBandit", "--total-steps", "200"]
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(root), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def test_sharded_seed_axis_gives_the_numbers_of_one_device(tmp_path: Path) -> None:
    info, err = _train(tmp_path)
    assert info["devices"] == 2
    # every leaf of the learner states is split on its seed axis over both devices
    assert info["specs"] == ["seed"] and info["state_devices"] == [2]
    for seed in (0, 1):
        got = progress_rows(tmp_path / "two" / f"seed{seed}")
        want = progress_rows(tmp_path / f"alone{seed}")
        assert [r["env_steps"] for r in got] == [r["env_steps"] for r in want] == ["100", "200"]
        for g, w in zip(got, want, strict=True):
            assert g.keys() == w.keys()
            for key in ("epoch", "env_steps", "updates", "episodes", "train/episode_length"):
                assert g[key] == w[key], key
            close = {k: float(g[k]) == pytest.approx(float(w[k]), rel=1e-5, abs=1e-7) for k in w}
            assert all(close.values()), {k: (g[k], w[k]) for k in w if not close[k]}
            # not equal by accident: the learners did train
            assert float(g["train/critic_loss"]) != 0.0
    # 3 seeds do not split over 2 devices: one line says so, and they stay on one
    assert info["three"] is True
    [line] = [ln for ln in err.splitlines() if ln.startswith("3 seed(s) on 2 cpu devices")]
    assert "sharded over one device" in line and "multiple of 2 seeds" in line
    # a lone seed on 2 devices is said the same way (once)
    assert sum(ln.startswith("1 seed(s) on 2 cpu devices") for ln in err.splitlines()) == 1
