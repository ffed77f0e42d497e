"""Errors raised by the task registry, with messages meant to be shown to a user as they are.

Each message is one self-contained line, so a command-line front end can print
``str(error)`` and exit without a traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

#: The command that lists every registered task (implemented by ``experiments.run``).
LIST_TASKS_COMMAND = "python -m experiments.run --list-tasks"

# safety-gymnasium 1.0.0 declares pins (gymnasium 0.28.1, mujoco 2.3.3, pygame 2.1.0) that
# cannot be met next to modern JAX, so it has to be installed without its dependencies.
_INSTALL_HINTS = {
    "safety-gymnasium": "pip install --no-deps safety-gymnasium==1.0.0",
}


def closest_names(name: str, known: Sequence[str], n: int = 3) -> list[str]:
    """Return up to ``n`` names of ``known`` closest to ``name`` (case-insensitive)."""
    by_lower = {k.lower(): k for k in known}
    matches = difflib.get_close_matches(name.lower(), list(by_lower), n=n, cutoff=0.5)
    if not matches:
        # Fall back to substring hits, e.g. "Cheetah" -> every HalfCheetah task.
        matches = [k for k in by_lower if name.lower() in k][:n]
    return [by_lower[m] for m in matches]


class UnknownTaskError(ValueError):
    """A task name that is not in the registry; the message names the closest known tasks."""

    def __init__(self, name: str, known: Sequence[str]) -> None:
        self.name = name
        self.suggestions = closest_names(name, known)
        hint = (
            f"did you mean {', '.join(self.suggestions)}?"
            if self.suggestions
            else "no similar task name"
        )
        super().__init__(
            f"unknown task {name!r} ({hint}); list all tasks with `{LIST_TASKS_COMMAND}`"
        )


class MissingDependencyError(ImportError):
    """A task needs an optional Python package that is not installed."""

    def __init__(self, package: str, task: str) -> None:
        self.package = package
        self.task = task
        install = _INSTALL_HINTS.get(package, f"pip install {package}")
        super().__init__(
            f"{task} needs the Python package {package!r}, which is not installed; "
            f"install it with `{install}`"
        )
