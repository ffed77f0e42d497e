"""The README's first screen and .ci/run stay the same commands."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```bash\n(.+?)\n```", text)


def test_ci_runs_the_readme_install_and_test_commands():
    install_and_run, test = readme_commands()[:2]
    install = install_and_run.split(" && .venv/bin/python -m experiments.run")[0]
    assert "experiments.run --task HalfCheetahVelocity" in install_and_run
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert install in ci
    assert test in ci


def test_readme_first_screen_is_short():
    # The two commands must be visible without scrolling (~40 lines).
    lines = (ROOT / "README.md").read_text().splitlines()
    test_line = next(i for i, line in enumerate(lines) if "-m pytest" in line)
    assert test_line < 40


def test_readme_is_a_front_page():
    # Measurements, tables and derivations live in the guide (docs/); the front page stays
    # short enough to read in five minutes.
    assert len((ROOT / "README.md").read_text().splitlines()) <= 150


def test_readme_links_point_to_files_that_exist():
    # The README is not part of the MkDocs build, so its links are checked here.
    text = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    assert len(targets) >= 10
    missing = [t for t in targets if "://" not in t and not (ROOT / t).exists()]
    assert not missing
