"""Tiny ALGD configurations, agents and batches shared by the test files.

Import what a test needs from here (`from tests.conftest import SMALL, make_batch, ...`):
they are plain helpers with arguments, not fixtures.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from algd_jax.algorithms.algd import AgentState, ALGDConfig, create_agent
from algd_jax.types import Batch

#: The loop's flags of a training run small enough for the default test run, for any
#: algorithm.
LOOP_TINY = [
    "--epoch-steps", "100",
    "--initial-steps", "50",
    "--learning-starts", "50",
    "--updates-per-step", "2",
    "--batch-size", "32",
    "--progress", "off",
]  # fmt: skip

#: Small sizes of an algorithm's options, each passed to the algorithms that have it.
TINY_OPTIONS = {
    "ensemble_size": 2,
    "mc_samples": 2,
    "diffusion_steps": 2,
    "critic_hidden": 16,
    "score_hidden": 16,
    "actor_hidden": 16,
    "multiplier_hidden": 16,
}


def tiny_options(algo: str) -> dict[str, int]:
    """The `TINY_OPTIONS` that algorithm `algo` has (config field -> value)."""
    from algd_jax.algorithms import get_algorithm

    names = set(get_algorithm(algo).option_names())
    return {k: v for k, v in TINY_OPTIONS.items() if k in names}


def tiny_flags(algo: str) -> list[str]:
    """`--algo ALGO`, the loop's tiny flags and that algorithm's tiny sizes: about a second
    per 100 env steps on a 2-core CPU."""
    flags = ["--algo", algo, *LOOP_TINY]
    for name, value in tiny_options(algo).items():
        flags += ["--" + name.replace("_", "-"), str(value)]
    return flags


#: Flags of a tiny ALGD run (`tiny_flags("algd")` without `--algo`): used by every
#: command-line and training test of the default algorithm.
TINY = [
    *LOOP_TINY[:-2],
    "--ensemble-size", "2",
    "--mc-samples", "2",
    "--diffusion-steps", "2",
    "--critic-hidden", "16",
    "--score-hidden", "16",
    "--progress", "off",
]  # fmt: skip

REPO = Path(__file__).resolve().parents[1]


def run_module(*args: str) -> subprocess.CompletedProcess[str]:
    """`python -m ARGS` in a separate process from the repository root (stdout and stderr
    captured as text): what a user's shell would run."""
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        capture_output=True,
        text=True,
    )


#: Runs each `(module, argv)` of `sys.argv[1]` (JSON) as `module.main(argv)` with the
#: process's stdout and stderr (file descriptors 1 and 2, so library logging too) sent to
#: files of its own; an uncaught exception prints its traceback there and counts as exit 1,
#: as in a process of its own. Prints the results as JSON.
_CASES_DRIVER = """
import importlib, json, os, sys, tempfile, traceback
results = []
for module, argv in json.loads(sys.argv[1]):
    files = [tempfile.TemporaryFile() for _ in range(2)]
    saved = [os.dup(1), os.dup(2)]
    sys.stdout.flush(); sys.stderr.flush()
    os.dup2(files[0].fileno(), 1); os.dup2(files[1].fileno(), 2)
    try:
        code = importlib.import_module(module).main(argv)
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush(); sys.stderr.flush()
        os.dup2(saved[0], 1); os.dup2(saved[1], 2)
    texts = []
    for f in files:
        f.seek(0)
        texts.append(f.read().decode(errors="replace"))
    results.append({"returncode": code, "stdout": texts[0], "stderr": texts[1]})
print(json.dumps(results))
"""


def run_modules(*cases: tuple[str, list[str]]) -> list[subprocess.CompletedProcess[str]]:
    """Several `python -m MODULE ARGS` commands in one separate process, one after the
    other (one start-up of Python and JAX for all): each result has that command's own exit
    status, stdout and stderr, as `run_module` gives them."""
    import json

    done = subprocess.run(
        [sys.executable, "-c", _CASES_DRIVER, json.dumps([[m, list(a)] for m, a in cases])],
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    return [
        subprocess.CompletedProcess([m, *a], r["returncode"], r["stdout"], r["stderr"])
        for (m, a), r in zip(cases, results, strict=True)
    ]


#: Observation and action sizes and the batch size of the tiny test problems.
DS, DA, B = 5, 3, 16

#: A small ALGD learner: every part of the update (M = 3 cost critics, N = 3 Monte-Carlo
#: samples, K = 4 diffusion steps) at sizes that compile and run in seconds.
SMALL = ALGDConfig(
    ensemble_size=3,
    mc_samples=3,
    diffusion_steps=4,
    critic_hidden=32,
    score_hidden=32,
    cost_budget=0.5,
)


def make_batch(seed: int, leading: tuple[int, ...] = (), rows: int = B) -> Batch:
    """A random float32 `Batch` with leaves `[*leading, rows, ...]`; actions in [-1, 1]^DA,
    about 10 % of the reward masks 0."""
    rng = np.random.default_rng(seed)
    shape = (*leading, rows)
    batch = Batch(
        obs=rng.normal(size=(*shape, DS)),
        action=rng.uniform(-1, 1, (*shape, DA)),
        reward=rng.normal(size=shape),
        cost=rng.uniform(0, 1, shape),
        next_obs=rng.normal(size=(*shape, DS)),
        mask_r=rng.uniform(size=shape) > 0.1,
        mask_c=np.ones(shape),
    )
    return jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), batch)


def new_agent(config: ALGDConfig = SMALL, seed: int = 0) -> AgentState:
    """A fresh learner for `[DS]` observations and actions in [-1, 1]^DA."""
    return create_agent(config, DS, -np.ones(DA), np.ones(DA), seed)


def leaves(tree) -> list[np.ndarray]:
    """The numeric leaves of a pytree as numpy arrays (PRNG keys left out)."""
    return [
        np.asarray(x)
        for x in jax.tree.leaves(tree)
        if hasattr(x, "dtype") and not jnp.issubdtype(x.dtype, jax.dtypes.prng_key)
    ]


def flat(tree) -> np.ndarray:
    """Every numeric leaf of a pytree, raveled and concatenated."""
    return np.concatenate([np.ravel(x) for x in leaves(tree)])


def assert_states_close(a, b, rtol: float = 2e-5, atol: float = 1e-6) -> None:
    for x, y in zip(leaves(a), leaves(b), strict=True):
        np.testing.assert_allclose(x, y, rtol=rtol, atol=atol)


def progress_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a progress.csv (a run directory or the file itself) without the
    machine-speed columns, for comparing two runs' numbers."""
    from algd_jax.training import timing_free

    path = path / "progress.csv" if path.is_dir() else path
    with path.open(newline="") as f:
        return [timing_free(r) for r in csv.DictReader(f)]
