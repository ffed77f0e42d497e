"""The user guide builds strictly, and every command it shows exists with flags that exist.

A guide drifts from the code silently: a renamed function breaks its API reference, a
renamed flag leaves a command that fails when a reader pastes it. These tests turn both into
test failures. Commands are taken from the fenced code blocks and the inline code spans of
README.md and docs/**/*.md that call `python -m experiments.X` or `python -m benchmarks.X`;
each module's `--help` is read once (in this process, so JAX is imported once) and every
`--flag` of every command must appear in it. `experiments.run` commands are parsed in full
(`parse_command_line`: types, choices, presets, cross-field checks), without training.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import os
import re
import shlex
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]

FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
INLINE = re.compile(r"`((?:\.venv/bin/)?python -m (?:experiments|benchmarks)\.[^`]*)`")
MODULE = re.compile(r"(?:^|\s)-m\s+((?:experiments|benchmarks)\.\w+)(.*)$")
FLAG = re.compile(r"--[A-Za-z][\w-]*")


def _commands_of(text: str) -> list[str]:
    """Lines (continuations joined, comments cut) that run a module of this project."""
    chunks = [m.group(1) for m in FENCE.finditer(text)]
    found = [" ".join(m.group(1).split()) for m in INLINE.finditer(text)]
    for chunk in chunks:
        for line in chunk.replace("\\\n", " ").splitlines():
            line = re.sub(r"(^|\s)#.*$", "", line)  # a shell comment
            found.extend(" ".join(part.split()) for part in line.split("&&"))
    return [c for c in found if MODULE.search(c)]


def documented_commands() -> list[tuple[str, str, list[str]]]:
    """(page, module, arguments) of every documented command."""
    out = []
    for page in PAGES:
        for command in _commands_of(page.read_text()):
            module, rest = MODULE.search(command).groups()
            out.append((str(page.relative_to(ROOT)), module, shlex.split(rest)))
    return out


def _flags(args: list[str]) -> list[str]:
    """The `--flag` tokens, also inside optional-argument brackets (`[--video]`)."""
    return [FLAG.match(a.lstrip("[")).group(0) for a in args if FLAG.match(a.lstrip("["))]


def _algo_of(args: list[str]) -> str | None:
    for i, arg in enumerate(args):
        if arg in ("--algo", "--agent") and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(("--algo=", "--agent=")):
            return arg.split("=", 1)[1]
    return None


def _groups() -> dict[tuple[str, str | None], list[tuple[str, list[str]]]]:
    """Commands per (module, algorithm): `experiments.run` lists an algorithm's own flags
    only in `--algo NAME --help`."""
    groups = defaultdict(list)
    for page, module, args in documented_commands():
        algo = _algo_of(args) if module == "experiments.run" else None
        groups[(module, algo)].append((page, args))
    return dict(groups)


GROUPS = _groups()


def _help(module: str, algo: str | None) -> str:
    """The module's `--help` text, read in this process."""
    main = getattr(importlib.import_module(module), "main", None)
    if main is None:
        return ""  # a module without a command line takes no flags
    out = io.StringIO()
    argv = (["--algo", algo] if algo else []) + ["--help"]
    with (
        pytest.MonkeyPatch.context() as patch,
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(out),
    ):
        patch.setenv("COLUMNS", "250")  # long flags stay on one line in tyro's boxes
        try:
            code = main(argv)  # some commands turn argparse's exit into their status
        except SystemExit as exit_info:
            code = exit_info.code
    assert code in (0, None), out.getvalue()
    return out.getvalue()


def test_the_guide_shows_commands_of_most_modules():
    # Guards the extraction itself: a broken pattern would make the checks below vacuous.
    modules = {module for module, _ in GROUPS}
    assert {"experiments.run", "experiments.evaluate", "experiments.plot"} <= modules
    assert {"experiments.summarize", "experiments.landscape", "benchmarks.loop"} <= modules
    assert len(modules) >= 10
    assert ("experiments.run", "lgd") in GROUPS


def test_command_extraction_on_a_known_text():
    text = (
        "Run `python -m experiments.plot A\n--out f.png` or\n\n```bash\n"
        "X=1 .venv/bin/python -m benchmarks.loop --seeds 1 \\\n    --steps 5   # --not-a-flag\n"
        "pip install x && .venv/bin/python -m experiments.run --algo lgd [--video]\n```\n"
    )
    commands = _commands_of(text)
    assert commands == [
        "python -m experiments.plot A --out f.png",
        "X=1 .venv/bin/python -m benchmarks.loop --seeds 1 --steps 5",
        ".venv/bin/python -m experiments.run --algo lgd [--video]",
    ]
    args = shlex.split(MODULE.search(commands[2]).group(2))
    assert _flags(args) == ["--algo", "--video"] and _algo_of(args) == "lgd"


@pytest.mark.parametrize(
    "module, algo", sorted(GROUPS, key=str), ids=lambda v: str(v) if v else "default"
)
def test_documented_commands_exist_with_their_flags(module, algo):
    assert importlib.util.find_spec(module) is not None, f"{module} does not exist"
    known = set(FLAG.findall(_help(module, algo)))
    if module == "experiments.sweep":
        # the sweep passes every other flag on to each job's experiments.run
        for name in {_algo_of(args) for _, args in GROUPS[(module, algo)]} | {None}:
            known |= set(FLAG.findall(_help("experiments.run", name)))
    wrong = [
        f"{page}: python -m {module} {' '.join(args)}: {flag}"
        for page, args in GROUPS[(module, algo)]
        for flag in _flags(args)
        if flag not in known
    ]
    assert not wrong, "flags not in --help:\n" + "\n".join(wrong)


def test_documented_training_commands_parse():
    # The whole command line, as experiments.run parses it before training: value types,
    # choices, presets, the task and the cross-field checks. --resume needs a real run and
    # --help exits, so those are checked above only.
    from algd_jax.train_config import RunError, parse_command_line

    checked, failed = 0, []
    for page, module, args in documented_commands():
        if module != "experiments.run" or {"--resume", "--help"} & set(args):
            continue
        try:
            parse_command_line(args)
        except (RunError, SystemExit) as err:
            failed.append(f"{page}: {' '.join(args)}: {err}")
        checked += 1
    assert checked >= 8
    assert not failed, "\n".join(failed)


def test_guide_builds_strictly(tmp_path):
    # `mkdocs build --strict`: a broken link or anchor, a page missing from the nav, or an
    # API reference to a renamed or removed object fails the build.
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (tmp_path / "api" / "index.html").is_file()
    api = (tmp_path / "api" / "index.html").read_text()
    for name in ("algd_jax.algorithms.base.Algorithm", "algd_jax.training.train"):
        assert f'id="{name}"' in api, name
    print(f"mkdocs build --strict: {time.perf_counter() - start:.1f} s")
