"""Run a grid of trainings: tasks x algorithms x hyper-parameter axes x seeds, resumably.

    python -m experiments.sweep --tasks HalfCheetahVelocity PointButton1 --algos algd lgd \\
        --seeds 0-9 --out sweeps/NAME --total-steps 200000
    python -m experiments.sweep ... --grid mc-samples=2,4,8 ensemble-size=2,6   # ablation axes
    python -m experiments.sweep ... --grid algd:rho=0.1,1                        # one algorithm's
    python -m experiments.sweep ... --executor ray --ray-address auto --gpus-per-job 0.25

Every flag the sweep does not know is a run flag, passed to each job's `experiments.run`
(`--wandb PROJECT` too: the jobs' W&B runs are grouped under the sweep's folder name).
A job is one (task, algorithm, axis values) cell and a block of its seeds (`--seeds-per-job`,
default all), trained in one process. Re-running the same command is idempotent: finished
jobs are skipped, interrupted ones resume from their last checkpoint, failed ones are retried
(`--retries`); new cells are added, and a changed run flag for an existing cell is refused.
The sweep ends with a table of job statuses and exits 1 if any job failed. See docs/sweeps.md.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from algd_jax.sweep.executors import JobResult, run_local, run_ray
from algd_jax.sweep.grid import (
    Job,
    expand,
    first_difference,
    flag_values,
    parse_axis,
    parse_seeds,
)
from algd_jax.sweep.manifest import Manifest, now, run_state
from algd_jax.train_config import WANDB_MISSING, RunError, wandb_installed


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m experiments.sweep",
        description=__doc__.split("\n\n")[0],
        epilog="Any other flag is passed to every job's `python -m experiments.run`.",
        allow_abbrev=False,
    )
    p.add_argument("--tasks", nargs="+", required=True, help="task names (--list-tasks of run)")
    p.add_argument("--algos", nargs="+", required=True, help="registered algorithm names")
    p.add_argument("--seeds", nargs="+", default=["0"], help="seeds: 0-9, 0 1 2 or 0-3,7")
    p.add_argument("--out", type=Path, required=True, help="the sweep's folder (reused)")
    p.add_argument(
        "--grid",
        nargs="+",
        default=[],
        metavar="AXIS",
        help="axes NAME=V1,V2 (any option of the algorithms, or a loop option such as "
        "cost-limit); ALGO:NAME=V1,V2 varies it for that algorithm only",
    )
    p.add_argument("--seeds-per-job", type=int, default=None, help="seeds per job (all)")
    p.add_argument("--executor", choices=("local", "ray"), default="local")
    p.add_argument("--jobs", type=int, default=None, help="local: jobs at a time (cores)")
    p.add_argument(
        "--threads-per-job", type=int, default=None, help="local: cores per job (cores / jobs)"
    )
    p.add_argument("--retries", type=int, default=2, help="retries of a failed job (2)")
    p.add_argument("--ray-address", default=None, help="ray: auto or HOST:PORT (local runtime)")
    p.add_argument("--cpus-per-job", type=float, default=1.0, help="ray: num_cpus of a job")
    p.add_argument("--gpus-per-job", type=float, default=0.0, help="ray: num_gpus (fractions ok)")
    p.add_argument(
        "--max-task-retries", type=int, default=3, help="ray: max_retries for a lost worker"
    )
    p.add_argument(
        "--compile-cache",
        default=None,
        help="JAX compilation cache shared by the jobs (default OUT/jax-cache; none: off)",
    )
    p.add_argument("--dry-run", action="store_true", help="print the jobs' commands and exit")
    return p


class ArgumentError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, no usage block
        raise ArgumentError(message)


def parse(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    base = parser()
    p = _Parser(
        prog=base.prog,
        description=base.description,
        epilog=base.epilog,
        allow_abbrev=False,
        parents=[base],
        add_help=False,
    )
    try:
        args, run_flags = p.parse_known_args(list(argv))
    except ArgumentError as err:
        raise RunError(f"{err}; see python -m experiments.sweep --help") from None
    return args, run_flags


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def check_unchanged(jobs: Sequence[Job], manifest: Manifest) -> None:
    """Refuse a job whose cell ran before with other flags (one line naming cell and flag),
    and a new block of seeds that overlaps a block the cell already has."""
    blocks: dict[str, dict[int, str]] = {}
    for job_id, entry in manifest.data["jobs"].items():
        if Path(entry.get("run_dir", "")).exists():
            for seed in entry.get("seeds", []):
                blocks.setdefault(job_id.rsplit("/", 1)[0], {})[seed] = job_id
    for job in jobs:
        if manifest.job(job.id) is None:
            for seed in job.seeds:
                other = blocks.get(job.cell, {}).get(seed)
                if other is not None:
                    raise RunError(
                        f"seed {seed} of cell {job.cell} is already in job {other}; keep "
                        f"--seeds-per-job as it was ({len(manifest.job(other)['seeds'])})"
                    )
        entry = manifest.job(job.id)
        if entry is None or "identity" not in entry or not job.run_dir.exists():
            continue
        name = first_difference(entry["identity"], job.identity())
        if name is not None:
            old = " ".join(entry["identity"].get(name, ["(unset)"])) or "(on)"
            new = " ".join(job.identity().get(name, ["(unset)"])) or "(on)"
            raise RunError(
                f"cell {job.id} was run with {name} {old}, this command gives {new}; "
                f"use another --out for the new setting, or the flags it ran with"
            )


def status_table(jobs: Sequence[Job], results: dict[str, JobResult]) -> str:
    """One line per job: status, attempts, exit status, wall time, log."""
    rows = [("job", "status", "attempts", "exit", "wall s", "log")]
    for job in jobs:
        r = results.get(job.id)
        if r is None:
            rows.append((job.id, "not run", "", "", "", str(job.log)))
            continue
        code = "" if r.exit_code is None else str(r.exit_code)
        rows.append((job.id, r.status, str(r.attempts), code, f"{r.wall_s:.0f}", r.log))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1]
        for row in rows
    )


def with_wandb_group(run_flags: Sequence[str], out: Path) -> list[str]:
    """`run_flags` with `--wandb-group <the sweep's folder name>` added when they log to
    W&B (`--wandb PROJECT`) without a group of their own: the W&B runs of one sweep form
    one group (job type `<task>/<algo>` within it)."""
    given = flag_values(run_flags)
    if "--wandb" in given and "--wandb-group" not in given:
        return [*run_flags, "--wandb-group", out.absolute().name]
    return list(run_flags)


def lock(out: Path) -> Any:
    """Hold `<out>/.lock` for this process (released on any exit, SIGKILL included)."""
    out.mkdir(parents=True, exist_ok=True)
    fh = (out / ".lock").open("a+")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise RunError(
            f"another sweep is running in {out}; wait for it or use another --out"
        ) from None
    return fh


def sweep(argv: Sequence[str]) -> int:
    args, run_flags = parse(argv)
    seeds = parse_seeds(args.seeds)
    axes = [parse_axis(text) for text in args.grid]
    for name, value in (("--retries", args.retries), ("--max-task-retries", args.max_task_retries)):
        if value < 0:
            raise RunError(f"{name} must be >= 0, got {value}")
    run_flags = with_wandb_group(run_flags, args.out)
    jobs = expand(args.tasks, args.algos, seeds, axes, run_flags, args.out, args.seeds_per_job)
    if args.dry_run:
        for job in jobs:
            state = run_state(job.run_dir, list(job.seeds), job.total_steps)
            print(f"{job.id} [{state}]: {shlex.join(job.command(resume=state == 'resumable'))}")
        return 0
    cores = _cores()
    workers = args.jobs or max(1, cores // (args.threads_per_job or 1))
    threads = args.threads_per_job or max(1, cores // workers)
    if workers < 1 or threads < 1:
        raise RunError("--jobs and --threads-per-job must be positive integers")
    if args.executor == "ray":
        if args.cpus_per_job <= 0 or args.gpus_per_job < 0:
            raise RunError("--cpus-per-job must be > 0 and --gpus-per-job >= 0")
        from algd_jax.sweep.executors import import_ray

        import_ray()  # say how to install it before touching the folder
    if "--wandb" in flag_values(run_flags) and not wandb_installed():
        raise RunError(WANDB_MISSING)
    held = lock(args.out)
    cache = args.compile_cache or str(args.out.absolute() / "jax-cache")
    cache = None if cache == "none" else str(Path(cache).absolute())
    manifest = Manifest(args.out.absolute())
    check_unchanged(jobs, manifest)
    manifest.record_sweep(
        {
            "argv": list(argv),
            "started": now(),
            "tasks": args.tasks,
            "algos": args.algos,
            "seeds": seeds,
            "grid": [{"name": a.name, "values": list(a.values), "algo": a.algo} for a in axes],
            "run_flags": run_flags,
            "executor": args.executor,
        }
    )
    base_attempts = {job.id: int((manifest.job(job.id) or {}).get("attempts", 0)) for job in jobs}
    for job in jobs:
        manifest.update(
            job.id,
            task=job.task,
            algo=job.algo,
            axes=dict(job.axes),
            seeds=list(job.seeds),
            identity=job.identity(),
            run_dir=str(job.run_dir),
            run_dirs=[str(job.run_dir / f"seed{s}") for s in job.seeds],
            log=str(job.log),
            status=(manifest.job(job.id) or {}).get("status", "pending"),
        )

    def on_event(job_id: str, **fields: Any) -> None:
        if "attempts" in fields:
            fields["attempts"] = base_attempts[job_id] + fields["attempts"]
        if "attempts_this_sweep" in fields:
            fields["attempts"] = base_attempts[job_id] + fields["attempts_this_sweep"]
        manifest.update(job_id, **fields)

    results: dict[str, JobResult] = {}

    def on_result(result: JobResult) -> None:
        results[result.job_id] = result
        print(
            f"[{len(results)}/{len(jobs)}] {result.job_id}: {result.status}"
            + (f" ({result.last_line})" if result.last_line else ""),
            flush=True,
        )

    try:
        if args.executor == "local":
            run_local(jobs, workers, threads, args.retries, on_event, on_result, cache)
        else:
            run_ray(
                jobs,
                args.ray_address,
                args.cpus_per_job,
                args.gpus_per_job,
                args.retries,
                args.max_task_retries,
                on_event,
                on_result,
                cache,
            )
    except KeyboardInterrupt:
        print(status_table(jobs, results))
        print("sweep interrupted; re-run the same command to continue it", file=sys.stderr)
        return 130
    finally:
        held.close()
    print(status_table(jobs, results))
    failed = [r for r in results.values() if r.status in ("failed", "interrupted")]
    for r in failed:
        reason = f": {r.last_line}" if r.last_line else ""
        print(f"{r.status}: {r.job_id} (log {r.log}){reason}", file=sys.stderr)
    if failed:
        print(
            f"{len(failed)} of {len(jobs)} jobs did not finish; fix them and re-run the "
            f"same command (finished jobs are skipped)",
            file=sys.stderr,
        )
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        parser().print_help()
        return 0
    try:
        return sweep(argv)
    except RunError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code


if __name__ == "__main__":
    sys.exit(main())
