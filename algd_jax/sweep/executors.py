"""Running a sweep's jobs: on this machine (`run_local`) or as Ray core tasks (`run_ray`).

Each job is one `experiments.run` subprocess whose terminal output goes to its log file;
the job owns its run directory, its checkpoints and its resume. `run_job` is the whole of
one job, attempts included, and is what both executors call (Ray in a worker process):

- a finished run directory is skipped; a begun one is continued with `--resume`; one that
  stopped before any checkpoint is moved to `<out>/discarded/` and started again;
- a failed attempt is retried up to `retries` times (each retry resumes), except a refusal
  of the input (exit status 2, the same every time) or a user's interrupt (130).

Threads: the local executor gives each running job its own `threads` cores (CPU affinity,
which XLA's thread pool follows) and caps the BLAS/OpenMP pools to match, so J jobs do not
oversubscribe the machine.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from algd_jax.sweep.grid import Job
from algd_jax.sweep.manifest import now, run_state
from algd_jax.train_config import RunError

#: The repository root: jobs run `python -m experiments.run` from here.
REPO = Path(__file__).resolve().parents[2]
#: Exit statuses that a retry cannot change: the run refused its input, or a user stopped it.
NO_RETRY = {2: "refused its input", 130: "interrupted"}

#: Called as `on_event(job_id, **fields)` when a job starts or ends an attempt.
EventHook = Callable[..., None]


@dataclass
class JobResult:
    """How a job ended: `status` is finished, skipped, failed or interrupted."""

    job_id: str
    status: str
    attempts: int
    exit_code: int | None
    log: str
    last_line: str = ""
    wall_s: float = 0.0
    started: str | None = None
    ended: str | None = None


def thread_env(threads: int, share_gpu: bool, compile_cache: str | None = None) -> dict[str, str]:
    """Environment variables that keep one job within `threads` cores (XLA's CPU thread
    pool, BLAS, OpenMP), turn off JAX's preallocation of most of a GPU's memory when
    several jobs share one, and point JAX's persistent compilation cache at
    `compile_cache` (jobs of one cell, their retries and resumes then compile once)."""
    n = str(max(1, threads))
    env = {name: n for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    flags = os.environ.get("XLA_FLAGS", "")
    if threads == 1 and "xla_cpu_multi_thread_eigen" not in flags:
        flags = f"{flags} --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    env["XLA_FLAGS"] = flags.strip()
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p
    )
    env["PYTHONUNBUFFERED"] = "1"  # the log shows each epoch as it ends
    if share_gpu:
        env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    if compile_cache:
        env["JAX_COMPILATION_CACHE_DIR"] = compile_cache
        env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
        env["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
    return env


def _child_setup(cores: Sequence[int] | None) -> Callable[[], None]:
    """What a job's process does before `exec`: die with the sweep (Linux: a sweep killed
    with SIGKILL leaves no orphan writing into a run directory that a re-run resumes) and
    keep to its cores."""

    # looked up before the fork: the child only calls it
    prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None

    def setup() -> None:
        if prctl is not None:
            prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
        if cores:
            os.sched_setaffinity(0, cores)

    return setup


def _last_line(log: Path) -> str:
    """The last non-empty line of a log (a failed run's one-line reason)."""
    try:
        with log.open("rb") as fh:
            fh.seek(max(0, fh.seek(0, os.SEEK_END) - 4096))
            lines = [ln.strip() for ln in fh.read().decode(errors="replace").splitlines()]
    except OSError:
        return ""
    lines = [ln for ln in lines if ln and not ln.startswith("=== ")]
    return lines[-1] if lines else ""


def _discard(job: Job) -> Path:
    """Move a run directory that stopped before its first checkpoint out of the way."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = job.out / "discarded" / f"{job.id.replace('/', '__')}.{stamp}"
    n = 1
    while target.exists():
        target = target.with_name(f"{target.name}-{n}")
        n += 1
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(job.run_dir), str(target))
    return target


def run_job(
    job: Job,
    retries: int,
    threads: int = 1,
    cores: Sequence[int] | None = None,
    share_gpu: bool = False,
    on_event: EventHook | None = None,
    stop: threading.Event | None = None,
    compile_cache: str | None = None,
) -> JobResult:
    """Run one job to the end, retrying failed attempts (see the module docstring)."""
    emit = on_event or (lambda *_a, **_k: None)
    seeds = list(job.seeds)
    job.log.parent.mkdir(parents=True, exist_ok=True)
    started = now()
    t0 = time.perf_counter()
    attempts, code = 0, None
    while True:
        state = run_state(job.run_dir, seeds, job.total_steps)
        if state == "finished":
            status = "finished" if attempts else "skipped"
            break
        if stop is not None and stop.is_set():
            status = "interrupted"
            break
        if attempts > retries:
            status = "failed"
            break
        note = ""
        if state == "stale":
            note = f"; the previous attempt left no checkpoint, moved to {_discard(job)}"
        attempts += 1
        cmd = job.command(resume=state == "resumable")
        job.run_dir.parent.mkdir(parents=True, exist_ok=True)
        with job.log.open("a") as fh:
            fh.write(f"=== attempt {attempts} at {now()}{note}: {' '.join(cmd)}\n")
            fh.flush()
            env = dict(os.environ, **thread_env(threads, share_gpu, compile_cache))
            proc = subprocess.Popen(
                cmd,
                cwd=REPO,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=subprocess.STDOUT,
                preexec_fn=_child_setup(cores),
            )
            emit(
                job.id,
                status="running",
                attempts=attempts,
                pid=proc.pid,
                command=cmd,
                started=started,
                host=os.uname().nodename,
            )
            code = proc.wait()
            fh.write(f"=== attempt {attempts} ended with exit status {code} at {now()}\n")
        # 3: `--resume` of a run that already has its steps (it adds a missing marker)
        if code in (0, 3) and run_state(job.run_dir, seeds, job.total_steps) == "finished":
            status = "finished"
            break
        if code in NO_RETRY:
            status = "interrupted" if code == 130 else "failed"
            break
    result = JobResult(
        job.id,
        status,
        attempts,
        code,
        str(job.log),
        _last_line(job.log) if status in ("failed", "interrupted") else "",
        time.perf_counter() - t0,
        started,
        now(),
    )
    emit(job.id, **_ended_fields(result))
    return result


def _ended_fields(result: JobResult) -> dict[str, Any]:
    """The manifest fields of a job's end (a skipped job keeps those of the run that
    finished it)."""
    if result.status == "skipped":
        return {"status": "skipped", "checked": result.ended}
    return {
        "status": result.status,
        "attempts_this_sweep": result.attempts,
        "exit_code": result.exit_code,
        "log": result.log,
        "ended": result.ended,
        "wall_s": round(result.wall_s, 3),
        "reason": result.last_line,
    }


def run_local(
    jobs: Sequence[Job],
    workers: int,
    threads: int,
    retries: int,
    on_event: EventHook,
    on_result: Callable[[JobResult], None],
    compile_cache: str | None = None,
) -> list[JobResult]:
    """Run `jobs`, `workers` at a time, each pinned to its own `threads` cores (when the
    machine has that many). Ctrl-C stops starting jobs; running ones get the same SIGINT
    from the terminal, save a checkpoint and end; their results come back as interrupted."""
    available = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    slots: queue.Queue[list[int] | None] = queue.Queue()
    for i in range(workers):
        chunk = available[i * threads : (i + 1) * threads]
        slots.put(chunk if len(chunk) == threads else None)
    stop = threading.Event()

    def one(job: Job) -> JobResult:
        cores = slots.get()
        try:
            return run_job(job, retries, threads, cores, False, on_event, stop, compile_cache)
        finally:
            slots.put(cores)

    results: list[JobResult] = []
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers)
    try:
        futures = [pool.submit(one, job) for job in jobs]
        for future in concurrent.futures.as_completed(futures):
            result = future.result()
            on_result(result)
            results.append(result)
    except KeyboardInterrupt:
        stop.set()
        for future in futures:
            future.cancel()
        pool.shutdown(wait=True)
        raise
    pool.shutdown(wait=True)
    return results


RAY_INSTALL = 'pip install -e ".[ray]"'


def import_ray() -> Any:
    """The `ray` module, or `RunError` naming the command that installs it."""
    try:
        import ray
    except ImportError:
        raise RunError(
            f"--executor ray needs Ray, which is not installed; install it with {RAY_INSTALL} "
            f"(or pip install 'ray[default]')"
        ) from None
    return ray


def run_ray(
    jobs: Sequence[Job],
    address: str | None,
    cpus: float,
    gpus: float,
    retries: int,
    max_retries: int,
    on_event: EventHook,
    on_result: Callable[[JobResult], None],
    compile_cache: str | None = None,
) -> list[JobResult]:
    """Submit each job as a Ray core task (`num_cpus`, `num_gpus` (fractional allowed),
    `max_retries` for workers lost with their node) and collect the results as they end.

    Connects to `address` (`auto`, `HOST:PORT`) or, if None and no runtime is up, starts a
    local one for this sweep. Paths are absolute: on a cluster the sweep folder and the
    repository must be on storage every node sees at the same path.
    """
    ray = import_ray()
    started_here = False
    if not ray.is_initialized():
        runtime_env = {"env_vars": {"PYTHONPATH": str(REPO)}}
        try:
            ray.init(
                address=address,
                runtime_env=runtime_env,
                include_dashboard=False,
                log_to_driver=False,
            )
        except (ConnectionError, RuntimeError, ValueError) as err:
            raise RunError(f"--ray-address {address}: cannot connect to Ray ({err})") from None
        started_here = True
    threads = max(1, int(cpus))
    share_gpu = 0 < gpus < 1
    task = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=max_retries)(run_job)
    refs = {
        task.remote(job, retries, threads, None, share_gpu, None, None, compile_cache): job
        for job in jobs
    }
    for job in jobs:
        on_event(job.id, status="submitted", executor="ray", submitted=now())
    results: list[JobResult] = []
    try:
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            job = refs[done[0]]
            try:
                result = ray.get(done[0])
            except Exception as err:  # a task lost beyond max_retries, or a worker crash
                line = " ".join(str(err).split())[:300]
                result = JobResult(job.id, "failed", 0, None, str(job.log), line, ended=now())
            on_event(job.id, **_ended_fields(result))
            on_result(result)
            results.append(result)
    finally:
        if started_here:
            ray.shutdown()
    return results
