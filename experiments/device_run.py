"""Train on a JAX-native task entirely on the device (`algd_jax.device_loop`).

    python -m experiments.device_run --task DiffDriveCircle --algo algd --seeds 0 1 2 \\
        --total-steps 21000 --set critic_hidden=64 --run-dir runs/dd-algd

Each epoch (`--epoch-steps` env steps per seed after the warm-up) is one compiled call for
all seeds (vmapped, or `lax.map`ped with `--seed-axis map`); the host only writes the
epoch's rows. The run directory has the host loop's layout (`config.json`, `progress.csv`,
`tb/`, `checkpoints/{last,best}` with the agent; `seed<k>/` per seed for several seeds), so
`experiments.evaluate`, `experiments.plot` and `experiments.landscape` read it. Runs of
the on-device loop cannot be resumed. Tasks: those with a JAX implementation
(`algd_jax.device_loop.JAX_TASKS`). Bad input: one line `error: ...`, exit status 2.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m experiments.device_run", description=__doc__.splitlines()[0])
    p.add_argument("--task", default="DiffDriveCircle")
    p.add_argument("--algo", default="algd")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--total-steps", type=int, default=21_000)
    p.add_argument("--epoch-steps", type=int, default=1000)
    p.add_argument("--warmup-steps", type=int, default=1000)
    p.add_argument("--num-envs", type=int, default=1)
    p.add_argument("--updates-per-iteration", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--replay-size", type=int, default=None)
    p.add_argument("--eval-episodes", type=int, default=4)
    p.add_argument("--warmup", choices=("uniform", "policy"), default="uniform")
    p.add_argument("--seed-axis", choices=("auto", "map", "vmap"), default="auto")
    p.add_argument("--cost-limit", type=float, default=None)
    p.add_argument("--run-dir", type=Path, default=None)
    p.add_argument(
        "--keep-checkpoints", type=int, default=3, help="epoch checkpoints kept (0: all)"
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an algorithm option, e.g. --set critic_hidden=64 (repeatable)",
    )
    return p


def _options(algorithm: Any, pairs: list[str]) -> dict[str, Any]:
    """`NAME=VALUE` strings as typed config values; `ValueError` names a bad one."""
    hints = typing.get_type_hints(algorithm.config_type)
    allowed = set(algorithm.option_names())
    out: dict[str, Any] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or name not in allowed:
            raise ValueError(
                f"--set {pair!r}: expected NAME=VALUE with NAME one of {', '.join(sorted(allowed))}"
            )
        kind = hints[name]
        if kind is bool:
            out[name] = text.lower() in ("1", "true", "yes")
        elif kind is int:
            out[name] = int(text)
        elif kind is float:
            out[name] = float(text)
        else:
            out[name] = text
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exit_info:
        return int(exit_info.code or 0)
    from algd_jax.algorithms import UnknownAlgorithmError, get_algorithm
    from algd_jax.device_loop import DeviceRun, train_on_device
    from algd_jax.programs import resolve_seed_axis
    from algd_jax.train_config import RunError, check_seeds

    try:
        check_seeds(args.seeds)
        algorithm = get_algorithm(args.algo)
        hparams = algorithm.default_config(**_options(algorithm, args.set))
        validate = getattr(hparams, "validate", None)
        if validate is not None:
            validate()
        run = DeviceRun(
            total_steps=args.total_steps,
            epoch_steps=args.epoch_steps,
            warmup_steps=args.warmup_steps,
            num_envs=args.num_envs,
            updates_per_iteration=args.updates_per_iteration,
            batch_size=args.batch_size,
            replay_size=args.replay_size,
            eval_episodes=args.eval_episodes,
            warmup=args.warmup,
            keep_checkpoints=args.keep_checkpoints or None,
        ).validate()
        run_dir = args.run_dir
        if run_dir is None:
            stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
            label = "seeds" + "-".join(map(str, args.seeds))
            run_dir = Path("runs") / f"device-{args.algo}-{args.task}" / f"{label}-{stamp}"
        result = train_on_device(
            args.task,
            hparams,
            list(args.seeds),
            run,
            algo=args.algo,
            seed_axis=resolve_seed_axis(args.seed_axis),
            run_dir=run_dir,
            cost_limit=args.cost_limit,
            log=lambda line: print(line, flush=True),
        )
    except (ValueError, FileExistsError, UnknownAlgorithmError, TypeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except RunError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except FloatingPointError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(
        f"done: {args.total_steps} env steps x {len(args.seeds)} seeds; compile + first epoch "
        f"{result.compile_s:.1f} s, then {result.env_steps_per_s:,.0f} env steps/s (all "
        f"seeds); run directory {run_dir}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
