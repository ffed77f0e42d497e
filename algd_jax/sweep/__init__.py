"""Sweeps over tasks x algorithms x hyper-parameter axes x seeds (`experiments.sweep`).

`grid` expands a sweep into jobs and names their folders, `manifest` records them and reads
what each run directory says, `executors` runs them here or on a Ray cluster.
"""

from algd_jax.sweep.grid import Axis, Job, expand, parse_axis, parse_seeds
from algd_jax.sweep.manifest import Manifest, run_state

__all__ = ["Axis", "Job", "Manifest", "expand", "parse_axis", "parse_seeds", "run_state"]
