"""Check our ALGD numerics against a dump of the authors' PyTorch implementation.

    python -m experiments.check_reference tests/data/algd_reference_halfcheetah_seed0.npz

Prints one line per quantity (max absolute error, max relative error = max|ours - ref| /
max|ref|, tolerance) and exits 0 only if every quantity is within tolerance: 1e-5 relative
for network outputs, samplers, score targets and losses; 1e-4 relative for post-update
parameters and gradients (`upd.*`). Settings (M, N, K, batch, hidden sizes, budget, ...) come
from the dump's `config_json`, so dumps made with other settings work too.
"""

from __future__ import annotations

import argparse
import json
import sys
import zipfile
from pathlib import Path
from typing import NoReturn

import numpy as np


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line as one `error: ...` line (exit 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message}; see --help\n")


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(
        prog="python -m experiments.check_reference",
        description=__doc__.split("\n\n")[0],
        epilog="Tolerances: outputs, samplers, score targets, losses and log-multiplier: 1e-5 "
        "relative; post-update parameters and gradients (upd.*): 1e-4 relative. "
        "Relative error = max|ours - ref| / max|ref|.",
    )
    parser.add_argument("dump", type=Path, help="reference .npz (format of the fixture README)")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_info:
        return int(exit_info.code or 0)
    try:
        with args.dump.open("rb") as f:
            magic = f.read(4)
    except OSError as err:
        print(f"error: cannot read {args.dump}: {err.strerror}", file=sys.stderr)
        return 2
    if magic != b"PK\x03\x04":  # every .npz is a zip archive; we never unpickle
        print(
            f"error: {args.dump} is not an .npz file; pass an .npz reference dump", file=sys.stderr
        )
        return 2
    try:
        with np.load(args.dump, allow_pickle=False) as data:
            dump = {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        print(f"error: {args.dump} is not an .npz file we can read ({reason})", file=sys.stderr)
        return 2
    from algd_jax.reference import compare_dump, missing_quantities  # noqa: PLC0415

    try:
        rows = compare_dump(dump)
        missing = missing_quantities(dump, rows)
    except KeyError as err:
        print(
            f"error: {args.dump} lacks the array {err}; it is not a complete reference dump "
            "(see tests/data/README.md for the format).",
            file=sys.stderr,
        )
        return 2
    except json.JSONDecodeError as err:
        print(f"error: {args.dump}: config_json is not valid JSON ({err})", file=sys.stderr)
        return 2
    except (ValueError, TypeError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(
            f"error: {args.dump}: an array does not fit the dump's settings: {reason[:300]}",
            file=sys.stderr,
        )
        return 2
    width = max(len(r.name) for r in rows)
    print(f"{'quantity':{width}s}  {'max abs err':>11s}  {'max rel err':>11s}  {'tol':>7s}")
    for r in rows:
        flag = "ok" if r.ok else "FAIL"
        print(
            f"{r.name:{width}s}  {r.max_abs:11.3e}  {r.max_rel:11.3e}  {r.tolerance:7.0e}  {flag}"
        )
    failed = [r.name for r in rows if not r.ok]
    worst_out = max((r for r in rows if r.tolerance < 1e-4), key=lambda r: r.max_rel)
    worst_par = max((r for r in rows if r.tolerance >= 1e-4), key=lambda r: r.max_rel)
    print(
        f"\n{len(rows)} quantities compared; worst output {worst_out.name} "
        f"{worst_out.max_rel:.2e}; worst parameter {worst_par.name} {worst_par.max_rel:.2e}"
    )
    if missing:
        print(f"not recomputed: {', '.join(missing)}", file=sys.stderr)
    if failed or missing:
        print(f"FAILED: {len(failed)} outside tolerance", file=sys.stderr)
        return 1
    print("all within tolerance")
    return 0


if __name__ == "__main__":
    sys.exit(main())
