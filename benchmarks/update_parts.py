"""What limits an update: its matrix products timed alone, against the whole update.

    python -m benchmarks.update_parts [--algo NAME] [--size M] [--batch-size B] [--reps R]
                                      [--out FILE.json] [--quick]

For the single jitted update of a registered algorithm (HalfCheetah sizes: observation 17,
action 6; batch 256; ensemble size M, default 6; the ALGD family at (M, N) = (M, M)), the
optimised HLO that XLA runs lists every matrix product (`dot`) with its operand shapes.
This benchmark

1. counts their FLOPs (2 x output elements x contracted elements; a product inside a
   `while` loop counts its known trip count times) against XLA's cost analysis of the
   whole update: the rest is elementwise work, reductions and the optimisers;
2. compiles one program of exactly those products (fresh random inputs of the same
   shapes for every product, so that XLA can neither merge nor deduplicate them; every
   output returned) and times it interleaved with the update: the update's
   matrix-product time on this machine for these shapes. `update - products` is the time
   of everything else (elementwise ops, reductions, Adam, RNG, the call's dispatch);
3. times each distinct product shape in a program of enough copies of it (at least
   about 0.2 GFLOP, at most 64 MiB of operands), giving the rate that shape runs at, and
   its share `count x time per product` of the products' time.

The single and the fused (U = 10 updates in one `lax.scan`, as the loop runs them) update
are timed too. Every timed program is called in turn with the float32 `1024x256x256` matmul
of `benchmarks.train_step`'s peak, one call of each per repetition, and each rate is taken
relative to the matmul's rate in the same repetition (median over repetitions): on a
machine that other jobs load, both see the same load. Times are medians of wall-clock calls;
process CPU time is recorded beside them (steadier on a loaded machine).
"""

from __future__ import annotations

import math
import re
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import jax
import numpy as np

from algd_jax.algorithms import get_algorithm, list_algorithms
from algd_jax.algorithms.algd import ALGDConfig
from algd_jax.compile_options import tuned_jit
from benchmarks.common import (
    base_parser,
    block,
    cost_flops,
    device_line,
    format_table,
    machine_info,
    make_batch,
    write_result,
)

#: Each shape's program holds enough copies for this many FLOPs (dispatch amortised)...
SHAPE_PROGRAM_FLOPS = 2e8
#: ...but no more operand bytes than this, and no more than this many copies.
SHAPE_PROGRAM_BYTES = 64 * 2**20
SHAPE_PROGRAM_COPIES = 256


# ----------------------------------------------------------------------------- HLO products


@dataclass(frozen=True)
class Product:
    """One `dot` of an HLO module: operand shapes and dimension numbers."""

    lhs: tuple[int, ...]
    rhs: tuple[int, ...]
    lhs_contracting: tuple[int, ...]
    rhs_contracting: tuple[int, ...]
    lhs_batch: tuple[int, ...]
    rhs_batch: tuple[int, ...]

    @property
    def flops(self) -> float:
        """2 x batch x free(lhs) x free(rhs) x contracted elements."""
        contracted = math.prod(self.lhs[d] for d in self.lhs_contracting)
        return 2.0 * math.prod(self.lhs) * math.prod(self.rhs) / contracted / self.batch_size

    @property
    def batch_size(self) -> int:
        return math.prod(self.lhs[d] for d in self.lhs_batch)

    def label(self) -> str:
        """`[b] m x k x n (XY)` with every free and contracted dimension multiplied out; X
        and Y are N where the operand is contracted along its usual axis (the lhs's last,
        the rhs's first after the batch axes) and T where it is transposed (a backward
        pass's products: NT for input gradients, TN for weight gradients)."""
        k = math.prod(self.lhs[d] for d in self.lhs_contracting)
        m = math.prod(self.lhs) // (k * self.batch_size)
        n = math.prod(self.rhs) // (k * self.batch_size)
        batch = f"[{self.batch_size}] " if self.lhs_batch else ""
        lhs = "N" if self.lhs_contracting == (len(self.lhs) - 1,) else "T"
        rhs = "N" if self.rhs_contracting == (len(self.rhs_batch),) else "T"
        return f"{batch}{m}x{k}x{n} ({lhs}{rhs})"

    def operand_bytes(self) -> int:
        """Bytes of both operands and the output (float32)."""
        return 4 * int(math.prod(self.lhs) + math.prod(self.rhs) + self.flops / (2 * self.k()))

    def k(self) -> int:
        return math.prod(self.lhs[d] for d in self.lhs_contracting)


_SHAPE = r"f32\[([\d,]*)\](?:\{[^}]*\})?"
_DEFINITION = re.compile(r"^\s*(?:ROOT\s+)?%([\w.\-]+)\s*=\s*\w+\[([\d,]*)\]")
_OPERAND = rf"(?:{_SHAPE}\s+)?%([\w.\-]+)"
_DOT = re.compile(rf"=\s*{_SHAPE}\s+dot\({_OPERAND},\s*{_OPERAND}\)(.*)$")
_COMPUTATION = re.compile(r"^(?:ENTRY\s+)?%([\w.\-]+)\s.*\{\s*$")
_CALLS = re.compile(r"(?:calls|to_apply|body|condition)=%([\w.\-]+)")
_BRANCHES = re.compile(r"branch_computations=\{([^}]*)\}")
_TRIP = re.compile(r'"known_trip_count":\{"n":"(\d+)"\}')


def _dims(attributes: str, name: str) -> tuple[int, ...]:
    match = re.search(rf"{name}=\{{([\d,]*)\}}", attributes)
    if match is None or not match.group(1):
        return ()
    return tuple(int(d) for d in match.group(1).split(","))


def _shape(text: str) -> tuple[int, ...]:
    return tuple(int(d) for d in text.split(",")) if text else ()


def hlo_products(hlo: str) -> tuple[list[tuple[Product, int]], list[str]]:
    """The float32 `dot`s of an optimised HLO module with how often each runs per call.

    Returns `(products, problems)`: `(product, count)` pairs, a product's count being the
    product of the known trip counts of the `while` loops around it (each branch of a
    conditional counted once: the products of the branch that runs), and lines naming
    what could not be counted exactly (loops of unknown trip count, counted once;
    operands of unknown shape, left out)."""
    computations: dict[str, list[str]] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    entry, current = None, None
    for line in hlo.splitlines():
        head = _COMPUTATION.match(line)
        if head:
            current = head.group(1)
            computations[current] = []
            if line.startswith("ENTRY"):
                entry = current
            continue
        definition = _DEFINITION.match(line)
        if definition:
            shapes[definition.group(1)] = _shape(definition.group(2))
        if current is not None:
            computations[current].append(line)
    if entry is None:
        raise ValueError("no ENTRY computation in the HLO text")
    problems: list[str] = []
    multiplicity: Counter[str] = Counter()

    def visit(name: str, times: int) -> None:
        multiplicity[name] += times
        for line in computations.get(name, []):
            trip = 1
            if " while(" in line:
                found = _TRIP.search(line)
                if found:
                    trip = int(found.group(1))
                else:
                    problems.append(f"while loop of unknown trip count in {name}")
            called = _CALLS.findall(line)
            for branches in _BRANCHES.findall(line):
                called += [b.strip().lstrip("%") for b in branches.split(",") if b.strip()]
            for callee in called:
                is_body = f"body=%{callee}" in line
                visit(callee, times * (trip if is_body else 1))

    visit(entry, 1)
    products: list[tuple[Product, int]] = []
    for name, lines in computations.items():
        for line in lines:
            match = _DOT.search(line)
            if not (match and multiplicity[name]):
                continue
            _, lhs_shape, lhs_name, rhs_shape, rhs_name, attributes = match.groups()
            lhs = _shape(lhs_shape) if lhs_shape is not None else shapes.get(lhs_name)
            rhs = _shape(rhs_shape) if rhs_shape is not None else shapes.get(rhs_name)
            if lhs is None or rhs is None:
                problems.append(f"a product in {name} with operands of unknown shape")
                continue
            product = Product(
                lhs=lhs,
                rhs=rhs,
                lhs_contracting=_dims(attributes, "lhs_contracting_dims"),
                rhs_contracting=_dims(attributes, "rhs_contracting_dims"),
                lhs_batch=_dims(attributes, "lhs_batch_dims"),
                rhs_batch=_dims(attributes, "rhs_batch_dims"),
            )
            products.append((product, multiplicity[name]))
    return products, problems


def products_program(products: Sequence[Product]) -> tuple[Callable[..., Any], list[Any]]:
    """A jitted program computing every product of `products` once on its own random
    inputs (seed 0), and those inputs."""
    rng = np.random.default_rng(0)
    inputs = []
    for p in products:
        inputs.append(rng.standard_normal(p.lhs, np.float32))
        inputs.append(rng.standard_normal(p.rhs, np.float32))
    inputs = [jax.device_put(x) for x in inputs]

    def run(*operands: jax.Array) -> tuple[jax.Array, ...]:
        out = []
        for i, p in enumerate(products):
            dims = ((p.lhs_contracting, p.rhs_contracting), (p.lhs_batch, p.rhs_batch))
            out.append(jax.lax.dot_general(operands[2 * i], operands[2 * i + 1], dims))
        return tuple(out)

    return tuned_jit(run), inputs


# ----------------------------------------------------------------------------- timing


def _interleaved(calls: dict[str, Callable[[], Any]], reps: int, warmup: int = 2) -> dict[str, Any]:
    """Wall and process CPU seconds of each call, one call of each in turn per repetition,
    so that all of them see the same outside load: `{name: (wall [reps], cpu [reps])}`."""
    for _ in range(warmup):
        for call in calls.values():
            call()
    out: dict[str, Any] = {name: ([], []) for name in calls}
    for _ in range(reps):
        for name, call in calls.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            call()
            out[name][0].append(time.perf_counter() - start)
            out[name][1].append(time.process_time() - start_cpu)
    return {name: (np.asarray(w), np.asarray(c)) for name, (w, c) in out.items()}


def _ms(times: tuple[np.ndarray, np.ndarray], divisor: int = 1) -> dict[str, float]:
    wall, cpu = times
    return {
        "median_ms": float(np.median(wall)) * 1e3 / divisor,
        "cpu_median_ms": float(np.median(cpu)) * 1e3 / divisor,
    }


def _paired_ratio(
    times: tuple[np.ndarray, np.ndarray],
    flops: float,
    peak: tuple[np.ndarray, np.ndarray],
    divisor: int = 1,
) -> dict[str, float]:
    """The rate of a program over the reference matmul's, call by call (each pair timed
    back to back), median over the pairs: wall clock and process CPU time."""
    out = {}
    for i, key in ((0, "ratio_to_peak"), (1, "cpu_ratio_to_peak")):
        rate = flops * divisor / times[i]
        out[key] = float(np.median(rate / (PEAK_FLOPS / peak[i])))
    return out


#: The reference product: one float32 `1024x256x256` matmul (`benchmarks.common.matmul_peak`).
PEAK_SHAPE = (1024, 256, 256)
PEAK_FLOPS = 2.0 * math.prod(PEAK_SHAPE)


def _peak_call() -> Callable[[], Any]:
    """The reference matmul, compiled with the agent's options, as a blocking call."""
    rng = np.random.default_rng(0)
    m, k, n = PEAK_SHAPE
    a = jax.device_put(rng.standard_normal((m, k), np.float32))
    b = jax.device_put(rng.standard_normal((k, n), np.float32))
    compiled = tuned_jit(jax.numpy.matmul).lower(a, b).compile()
    return lambda: block(compiled(a, b))


def _programs(
    algo: str, size: int, batch_size: int, updates: int, quick: bool
) -> tuple[Any, Any, Any, Any, Any, Any]:
    """`(single update, fused U-update program, state, its twin, batch [B], batch [U, B])`
    for `algo`, jitted with the state donated as the loop runs them."""
    rng = np.random.default_rng(0)
    one, many = make_batch(rng, batch_size), make_batch(rng, batch_size, (updates,))
    algorithm = get_algorithm(algo)
    if algorithm.config_type is ALGDConfig:
        from algd_jax.algorithms.algd import update, update_many
        from benchmarks.common import make_agent, paper_config, quick_config

        make = quick_config if quick else paper_config
        config = make(ensemble_size=size, mc_samples=size, agent=algo)
        single = tuned_jit(update, donate_argnums=0)
        fused = tuned_jit(update_many, donate_argnums=0)
        return single, fused, make_agent(config), make_agent(config), one, many
    from benchmarks.train_step import registry_programs

    make_state, single, fused = registry_programs(algo)
    small = {"critic_hidden": 16, "actor_hidden": 16} if quick else {}
    config = algorithm.default_config(ensemble_size=size, **small)
    return single, fused, make_state(config), make_state(config), one, many


def _stateful(program: Any, state: Any, batch: Any) -> Callable[[], Any]:
    """A blocking call of `state, metrics = program(state, batch)` that feeds each call the
    state the previous one returned (the state is donated)."""
    holder = [state]

    def call() -> None:
        new, metrics = program(holder[0], batch)
        holder[0] = block(new)
        block(metrics)

    return call


def measure(
    algo: str, size: int, batch_size: int, updates: int, reps: int, quick: bool
) -> dict[str, Any]:
    """The products of `algo`'s update, their time alone and per shape, and the update's
    (single and fused), each against the reference matmul timed beside it."""
    single, fused, state, twin, one, many = _programs(algo, size, batch_size, updates, quick)
    compiled = single.lower(state, one).compile()
    fused.lower(twin, many).compile()
    total_flops = cost_flops(compiled)
    found, problems = hlo_products(compiled.as_text())
    instances = [p for p, count in found for _ in range(count)]
    product_flops = sum(p.flops for p in instances)
    program, inputs = products_program(instances)
    products = program.lower(*inputs).compile()
    peak = _peak_call()
    times = _interleaved(
        {
            "peak": peak,
            "single": _stateful(single, state, one),
            "fused": _stateful(fused, twin, many),
            "products": lambda: block(products(*inputs)),
        },
        reps,
    )
    entries = {
        "single": {
            **_ms(times["single"]),
            **_paired_ratio(times["single"], total_flops, times["peak"]),
        },
        "fused": {
            **_ms(times["fused"], updates),
            **_paired_ratio(times["fused"], total_flops, times["peak"], updates),
            "updates_per_call": updates,
        },
        "products": {
            **_ms(times["products"]),
            **_paired_ratio(times["products"], product_flops, times["peak"]),
        },
        "peak": {
            **_ms(times["peak"]),
            "gflops": PEAK_FLOPS / (_ms(times["peak"])["median_ms"] * 1e6),
        },
    }
    for name in ("single", "fused", "products"):
        flops = product_flops if name == "products" else total_flops
        entries[name]["gflops"] = flops / (entries[name]["median_ms"] * 1e6)

    groups: dict[Product, int] = defaultdict(int)
    for p in instances:
        groups[p] += 1
    shapes = []
    for p, count in sorted(groups.items(), key=lambda item: -item[0].flops * item[1]):
        copies = max(
            1,
            min(
                math.ceil(SHAPE_PROGRAM_FLOPS / max(p.flops, 1.0)),
                SHAPE_PROGRAM_BYTES // max(p.operand_bytes(), 1),
                SHAPE_PROGRAM_COPIES,
            ),
        )
        shape_program, shape_inputs = products_program([p] * copies)
        shape_compiled = shape_program.lower(*shape_inputs).compile()
        shape_times = _interleaved(
            {
                "peak": peak,
                "shape": lambda f=shape_compiled, x=shape_inputs: block(f(*x)),  # type: ignore[misc]
            },
            max(5, reps // 2),
        )
        per_product_ms = _ms(shape_times["shape"])["median_ms"] / copies
        shapes.append(
            {
                "shape": p.label(),
                "product": asdict(p),
                "count": count,
                "flops_each": p.flops,
                "copies_timed": copies,
                "ms_each": per_product_ms,
                "gflops": p.flops / (per_product_ms * 1e6),
                "ms_total": per_product_ms * count,
                **_paired_ratio(shape_times["shape"], p.flops * copies, shape_times["peak"]),
            }
        )
    update_ms = entries["single"]["median_ms"]
    return {
        "algo": algo,
        "ensemble_size": size,
        "batch_size": batch_size,
        "flops_per_update": total_flops,
        "product_flops": product_flops,
        "product_flop_share": product_flops / total_flops,
        "products_per_update": len(instances),
        "distinct_shapes": len(groups),
        "problems": problems,
        **entries,
        "products_time_share": entries["products"]["median_ms"] / update_ms,
        "rest_ms": update_ms - entries["products"]["median_ms"],
        "shapes": shapes,
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = base_parser(__doc__.split("\n")[0])
    parser.add_argument("--algo", default="cal", choices=list_algorithms(), help="default cal")
    parser.add_argument("--size", type=int, default=None, help="ensemble size M (default 6)")
    parser.add_argument("--batch-size", type=int, default=None, help="default 256 (quick 32)")
    parser.add_argument("--updates-per-call", type=int, default=None, help="U (default 10)")
    parser.add_argument("--reps", type=int, default=None, help="timed calls (default 30)")
    args = parser.parse_args(argv)
    quick = args.quick
    size = args.size or (2 if quick else 6)
    batch_size = args.batch_size or (32 if quick else 256)
    updates = args.updates_per_call or (2 if quick else 10)
    reps = args.reps or (3 if quick else 30)
    info = machine_info()
    measured = measure(args.algo, size, batch_size, updates, reps, quick)
    result = {"benchmark": "update_parts", "quick": quick, "machine": info, **measured}
    path = write_result(result, args.out, f"update_parts_{args.algo}", quick)
    print(report(result))
    print(f"wrote {path}")
    return result


def report(result: dict[str, Any]) -> str:
    """The terminal summary of an update_parts result."""
    single, fused, dots = result["single"], result["fused"], result["products"]
    gflop = result["flops_per_update"] / 1e9
    lines = [
        f"{result['algo']} update, M = {result['ensemble_size']}, batch {result['batch_size']}"
        f"\n{device_line(result['machine'])}",
        f"reference matmul (1024x256x256 f32), timed between the others: "
        f"{result['peak']['gflops']:.1f} GFLOP/s; 'of peak' = rate / its rate, call by call",
        f"single update: {single['median_ms']:.2f} ms ({single['cpu_median_ms']:.2f} CPU ms), "
        f"{gflop:.3f} GFLOP, {single['gflops']:.1f} GFLOP/s = {single['ratio_to_peak']:.2f} of "
        f"peak ({single['cpu_ratio_to_peak']:.2f} in CPU time)",
        f"fused U = {fused['updates_per_call']}: {fused['median_ms']:.2f} ms/update "
        f"({fused['cpu_median_ms']:.2f} CPU ms), {fused['gflops']:.1f} GFLOP/s = "
        f"{fused['ratio_to_peak']:.2f} of peak ({fused['cpu_ratio_to_peak']:.2f} in CPU time)",
        f"its {result['products_per_update']} matrix products ({result['distinct_shapes']} "
        f"shapes): {result['product_flops'] / 1e9:.3f} GFLOP = "
        f"{result['product_flop_share']:.1%} of the update's FLOPs; alone "
        f"{dots['median_ms']:.2f} ms ({dots['cpu_median_ms']:.2f} CPU ms) = "
        f"{result['products_time_share']:.1%} of the single update's time, "
        f"{dots['gflops']:.1f} GFLOP/s = {dots['ratio_to_peak']:.2f} of peak "
        f"({dots['cpu_ratio_to_peak']:.2f} in CPU time)",
        f"everything else (elementwise, reductions, optimisers, RNG, dispatch): "
        f"{result['rest_ms']:.2f} ms",
    ]
    for problem in result["problems"]:
        lines.append(f"note: {problem}")
    rows = [
        [s["shape"], s["count"], s["ms_each"] * 1e3, s["ms_total"], s["gflops"], s["ratio_to_peak"]]
        for s in result["shapes"]
    ]
    headers = ["product [batch] m x k x n", "count", "us each", "ms total", "GFLOP/s", "of peak"]
    if rows:
        lines.append(format_table(headers, rows))
    return "\n".join(lines)


if __name__ == "__main__":
    main(sys.argv[1:])
