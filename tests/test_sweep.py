"""`experiments.sweep`: the tiny grid (2 tasks x 2 algorithms x 2 seeds) with the local
executor and with Ray, an idempotent re-run, a changed flag refused, a job and the sweep
killed and resumed to the same numbers, a failing cell reported with its log, and
`experiments.compare` on the sweep."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from algd_jax.checkpointing import FILE_DIGESTS
from algd_jax.sweep import grid
from algd_jax.train_config import RunError
from experiments import compare
from experiments.sweep import main
from tests.conftest import REPO, TINY, progress_rows

#: The tiny run flags without --progress (the sweep sets it).
RUN_FLAGS = [t for i, t in enumerate(TINY) if "--progress" not in TINY[max(0, i - 1) : i + 1]]
TASKS = ["ToyTwoModeBandit", "DiffDriveCircle"]
GRID = ["--tasks", *TASKS, "--algos", "algd", "lgd", "--seeds", "0-1", "--total-steps", "200"]
GRID += RUN_FLAGS
CELLS = [f"{t}/{a}/seeds0-1" for t in TASKS for a in ("algd", "lgd")]


def manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 400.0) -> None:
    """Poll `condition` until it holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sweeps") / "tiny"
    assert main([*GRID, "--out", str(out), "--jobs", "2"]) == 0
    return out


def test_local_sweep_completes_with_readable_folders(local_sweep: Path) -> None:
    data = manifest(local_sweep)
    assert sorted(data["jobs"]) == sorted(CELLS)
    for cell in CELLS:
        job = data["jobs"][cell]
        assert (job["status"], job["attempts"], job["exit_code"]) == ("finished", 1, 0)
        assert Path(job["log"]).is_file() and "--run-dir" in Path(job["log"]).read_text()
        for seed in (0, 1):
            seed_dir = local_sweep / "runs" / cell / f"seed{seed}"
            assert job["run_dirs"][seed] == str(seed_dir)
            assert json.loads((seed_dir / "finished.json").read_text())["env_steps"] == 200
            assert [r["epoch"] for r in progress_rows(seed_dir)] == ["1", "2"]
            assert json.loads((seed_dir / "config.json").read_text())["config"]["seed"] == seed


def test_rerun_skips_finished_jobs(local_sweep: Path, capsys) -> None:
    before = {c: (local_sweep / "runs" / c / "seed0" / "progress.csv").read_text() for c in CELLS}
    assert main([*GRID, "--out", str(local_sweep)]) == 0
    assert capsys.readouterr().out.count(": skipped") == len(CELLS)
    data = manifest(local_sweep)
    for cell in CELLS:
        job = data["jobs"][cell]
        assert (job["status"], job["attempts"], job["exit_code"]) == ("skipped", 1, 0)
        assert (local_sweep / "runs" / cell / "seed0" / "progress.csv").read_text() == before[cell]
    # a larger grid adds the new cells and leaves the finished ones as they are
    assert main([*GRID, "--seeds", "0-2", "--seeds-per-job", "2", "--out", str(local_sweep),
                 "--dry-run"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "ToyTwoModeBandit/algd/seeds0-1 [finished]" in out
    assert "ToyTwoModeBandit/algd/seeds2 [new]" in out


def test_changed_run_flag_is_refused_naming_cell_and_flag(local_sweep: Path, capsys) -> None:
    argv = [*GRID, "--out", str(local_sweep)]
    argv[argv.index("--batch-size") + 1] = "16"
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "cell ToyTwoModeBandit/algd/seeds0-1 was run with --batch-size 32" in err
    assert "gives 16" in err
    # another block size would train the cell's seeds a second time elsewhere
    assert main([*GRID, "--out", str(local_sweep), "--seeds-per-job", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "error: seed 0 of cell ToyTwoModeBandit/algd is already in job "
        "ToyTwoModeBandit/algd/seeds0-1; keep --seeds-per-job as it was (2)"
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--grid", "foo=1,2"], "--grid foo is not an option of algd"),
        (["--grid", "sac:rho=1"], "--grid sac:rho: sac is not among --algos algd lgd"),
        (["--grid", "rho=1,1"], "lists a value twice"),
        (["--grid", "mc-samples=2,4"], "--mc-samples is both a run flag and a --grid axis"),
        (["--run-dir", "x"], "--run-dir is set by the sweep for each job; use --out"),
        (["--seeds", "3-1"], "--seeds 3-1: the range ends before it starts"),
        (["--algos", "nope"], "unknown algorithm 'nope'"),
    ],
)
def test_bad_sweep_input_is_one_line(tmp_path: Path, capsys, extra, message) -> None:
    assert main([*GRID, "--out", str(tmp_path / "s"), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "s" / "manifest.json").exists()


def test_cell_folders_name_their_axis_values(tmp_path: Path) -> None:
    axes = [grid.parse_axis("mc-samples=2,4"), grid.parse_axis("algd:rho=0.5")]
    jobs = grid.expand(["PointPush1"], ["algd", "lgd"], [0, 1, 2], axes, [], tmp_path, 2)
    assert [j.id for j in jobs] == [
        f"PointPush1/{a}/mc-samples={n}{r}/{s}"
        for a, r in (("algd", ",rho=0.5"), ("lgd", ""))
        for n in (2, 4)
        for s in ("seeds0-1", "seeds2")
    ]
    with pytest.raises(RunError, match="--seeds-per-job must be a positive integer"):
        grid.expand(["PointPush1"], ["algd"], [0], [], [], tmp_path, 0)
    assert grid.parse_seeds(["0-2,7", "9"]) == [0, 1, 2, 7, 9]


def cache(local_sweep: Path) -> list[str]:
    """The local sweep's compilation cache, for the other sweeps of the same programs."""
    return ["--compile-cache", str(local_sweep / "jax-cache")]


def test_failing_cell_is_reported_with_its_log(local_sweep: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "f"
    argv = ["--tasks", "ToyTwoModeBandit", "--algos", "algd", "lgd", "--seeds", "0-1"]
    argv += ["--total-steps", "100", *RUN_FLAGS, "--grid", "lgd:rho=0", "--out", str(out)]
    argv += cache(local_sweep)
    assert main(argv) == 1
    captured = capsys.readouterr()
    bad = "ToyTwoModeBandit/lgd/rho=0/seeds0-1"
    log = out / "logs" / "ToyTwoModeBandit__lgd__rho=0__seeds0-1.log"
    why = "error: --rho 0.0: must be a finite number > 0"
    assert f"failed: {bad} (log {log}): {why}" in captured.err
    jobs = manifest(out)["jobs"]
    assert jobs[bad]["status"] == "failed" and jobs[bad]["attempts"] == 1  # no retry of a refusal
    assert jobs["ToyTwoModeBandit/algd/seeds0-1"]["status"] == "finished"
    assert why in log.read_text()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_killed_job_and_killed_sweep_resume_to_the_same_numbers(
    local_sweep: Path, tmp_path: Path
) -> None:
    out = tmp_path / "k"
    argv = ["--tasks", "ToyTwoModeBandit", "--algos", "algd", "lgd", "--seeds", "0-1"]
    # one thread per job as in the local sweep: XLA's threading changes float rounding
    argv += ["--total-steps", "400", *RUN_FLAGS, "--out", str(out), "--jobs", "1"]
    argv += ["--threads-per-job", "1", *cache(local_sweep)]
    cells = ["ToyTwoModeBandit/algd/seeds0-1", "ToyTwoModeBandit/lgd/seeds0-1"]

    def checkpointed(cell: str) -> bool:
        return (out / "runs" / cell / "seed1/checkpoints/last/100" / FILE_DIGESTS).is_file()

    def job(cell: str) -> dict:
        try:
            return manifest(out)["jobs"].get(cell, {})
        except (OSError, json.JSONDecodeError):
            return {}

    log = (tmp_path / "sweep.log").open("w")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "experiments.sweep", *argv]
    sweep = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        # 1. SIGKILL the first job's process after its first checkpoint: the sweep retries it
        wait_for(lambda: checkpointed(cells[0]) and job(cells[0]).get("pid"), "checkpoint 1")
        first_pid = job(cells[0])["pid"]
        os.kill(first_pid, signal.SIGKILL)
        # 2. SIGKILL the sweep itself during the second job: its job dies with it
        wait_for(lambda: checkpointed(cells[1]) and job(cells[1]).get("pid"), "checkpoint 2")
        second_pid = job(cells[1])["pid"]
        sweep.kill()
        sweep.wait(timeout=60)
        wait_for(lambda: not _alive(second_pid), "the orphaned job to end", timeout=60)
    finally:
        if sweep.poll() is None:
            sweep.kill()
    assert job(cells[0])["status"] == "finished" and job(cells[0])["attempts"] == 2
    assert job(cells[1])["status"] == "running"  # what the killed sweep left behind
    # 3. the same command again completes only what is missing
    assert main(argv) == 0
    jobs = manifest(out)["jobs"]
    assert jobs[cells[0]]["status"] == "skipped" and jobs[cells[0]]["attempts"] == 2
    assert jobs[cells[1]]["status"] == "finished" and jobs[cells[1]]["attempts"] == 2
    for cell in cells:
        assert (out / "logs" / (cell.replace("/", "__") + ".log")).read_text().count(
            "--resume"
        ) == 1
        for seed in (0, 1):
            got = progress_rows(out / "runs" / cell / f"seed{seed}")
            assert [r["epoch"] for r in got] == ["1", "2", "3", "4"]  # each epoch once
            # the same numbers as the uninterrupted 200-step sweep, epoch for epoch
            want = progress_rows(local_sweep / "runs" / cell / f"seed{seed}")
            for g, w in zip(got[:2], want, strict=True):
                assert g == w, {k: (g[k], w[k]) for k in w if g.get(k) != w[k]}


def test_compare_on_the_tiny_sweep(local_sweep: Path, tmp_path: Path) -> None:
    fig = tmp_path / "fig.png"
    assert compare.main([str(local_sweep), "--out", str(fig), "--resamples", "1000"]) == 0
    with (tmp_path / "fig_seeds.csv").open() as fh:
        seeds = list(csv.DictReader(fh))
    assert len(seeds) == 8
    with (tmp_path / "fig.csv").open() as fh:
        table = list(csv.DictReader(fh))
    assert [(r["task"], r["label"]) for r in table] == [
        (t, a) for t in TASKS for a in ("algd", "lgd")
    ]
    for row in table:
        mine = [s for s in seeds if (s["task"], s["label"]) == (row["task"], row["label"])]
        # the per-seed CSV holds the last evaluation of each seed's progress.csv
        for s in mine:
            last = progress_rows(Path(s["run_dir"]))[-1]
            assert float(s["return"]) == float(last["eval/return"])
            assert float(s["cost"]) == float(last[f"eval/{s['cost_kind']}"])
        rets = np.array([float(s["return"]) for s in mine])
        ci = stats.bootstrap(
            (rets,), np.mean, confidence_level=0.95, n_resamples=1000, method="percentile",
            random_state=np.random.default_rng(0),
        ).confidence_interval  # fmt: skip
        assert (float(row["ret_lo"]), float(row["ret_hi"])) == pytest.approx((ci.low, ci.high))
        if row["label"] == "lgd":
            ref = np.array(
                [
                    float(s["return"])
                    for s in seeds
                    if (s["task"], s["label"]) == (row["task"], "algd")
                ]
            )
            u = stats.mannwhitneyu(ref, rets, alternative="two-sided")
            assert float(row["p_reference_better"]) == pytest.approx(u.statistic / 4)
    assert fig.stat().st_size > 20_000


@pytest.fixture(scope="module")
def ray_runtime():
    ray = pytest.importorskip("ray")
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}},
    )
    yield ray
    ray.shutdown()


def test_ray_sweep_gives_the_local_numbers(ray_runtime, local_sweep: Path, tmp_path: Path) -> None:
    out = tmp_path / "ray"
    # one cell of the local grid (it must give the local numbers); one CPU per task, so one
    # XLA thread per job as in the local sweep
    argv = ["--tasks", TASKS[0], "--algos", "lgd", "--seeds", "0-1", "--total-steps", "200"]
    argv += [*RUN_FLAGS, "--out", str(out), "--executor", "ray", "--cpus-per-job", "1"]
    assert main([*argv, *cache(local_sweep)]) == 0
    data = manifest(out)
    assert sorted(data["jobs"]) == [f"{TASKS[0]}/lgd/seeds0-1"]
    for cell in data["jobs"]:
        job = data["jobs"][cell]
        assert (job["status"], job["executor"], job["exit_code"]) == ("finished", "ray", 0)
        for seed in (0, 1):
            got = progress_rows(out / "runs" / cell / f"seed{seed}")
            want = progress_rows(local_sweep / "runs" / cell / f"seed{seed}")
            assert len(got) == len(want) == 2
            for g, w in zip(got, want, strict=True):
                assert g == w, {k: (g[k], w[k]) for k in w if g.get(k) != w[k]}


def test_ray_missing_says_how_to_install(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    assert main([*GRID, "--out", str(tmp_path / "r"), "--executor", "ray"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and 'pip install -e ".[ray]"' in err, err
    assert not (tmp_path / "r").exists()
