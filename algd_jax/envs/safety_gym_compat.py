"""Import safety-gymnasium 1.0.0 on Python >= 3.11 without editing the package.

Why this module exists: twelve asset classes of safety-gymnasium 1.0.0 (hazards, buttons,
vases, gremlins, ...) are dataclasses declaring ``color: np.array = COLOR[...]``, an ndarray
default. Python 3.11's ``dataclasses`` rejects any default whose class is unhashable
(``ValueError: mutable default <class 'numpy.ndarray'> for field color``), so
``import safety_gymnasium`` fails before a single environment exists.

The remedy: while (and only while) ``safety_gymnasium`` is being imported for the first time,
``dataclasses.dataclass`` is replaced by a thin wrapper that, for classes defined inside
``safety_gymnasium`` only, turns each ndarray class default into
``field(default_factory=<copy of that array>)``. Every instance then gets its own copy of the
colour, which is what a ``default_factory`` means and what the package's code expects (it only
reads ``self.color``). Classes from any other module pass through to the real decorator
untouched, and the original ``dataclasses.dataclass`` is restored as soon as the import ends.

Use :func:`import_safety_gymnasium` instead of ``import safety_gymnasium`` everywhere in this
project; it is idempotent and raises :class:`MissingDependencyError` when the package is absent.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import sys
import threading
from types import ModuleType
from typing import Any

import numpy as np

from algd_jax.envs.errors import MissingDependencyError

_PACKAGE = "safety_gymnasium"
_PIP_NAME = "safety-gymnasium"
_lock = threading.Lock()


def _ndarray_defaults_to_factories(cls: type) -> type:
    """Replace ndarray class-level defaults of annotated fields by ``default_factory``.

    Only the class's own ``__dict__`` is inspected: inherited fields were already processed
    when their defining class was decorated.
    """
    for name in cls.__dict__.get("__annotations__", {}):
        value = cls.__dict__.get(name)
        if isinstance(value, np.ndarray):
            # ``value.copy`` is a zero-argument callable returning a fresh array each call.
            setattr(cls, name, dataclasses.field(default_factory=value.copy))
    return cls


def _make_patched_dataclass(original: Any) -> Any:
    """Wrap ``dataclasses.dataclass`` so it accepts safety-gymnasium's ndarray defaults."""

    def patched(cls: type | None = None, /, **kwargs: Any) -> Any:
        def wrap(c: type) -> type:
            if c.__module__.split(".")[0] == _PACKAGE:
                c = _ndarray_defaults_to_factories(c)
            return original(c, **kwargs)

        # Support both ``@dataclass`` and ``@dataclass(...)``.
        return wrap if cls is None else wrap(cls)

    return patched


def import_safety_gymnasium(task: str = "this task") -> ModuleType:
    """Return the ``safety_gymnasium`` module, importing it with the 3.11 remedy if needed.

    Args:
        task: what needs the package, used only in the error message.

    Raises:
        MissingDependencyError: ``safety-gymnasium`` or one of the packages it imports
            (e.g. ``gymnasium-robotics``) is not installed.
    """
    module = sys.modules.get(_PACKAGE)
    if module is not None:
        return module
    if importlib.util.find_spec(_PACKAGE) is None:
        raise MissingDependencyError(_PIP_NAME, task)
    with _lock:
        module = sys.modules.get(_PACKAGE)
        if module is not None:
            return module
        original = dataclasses.dataclass
        # The package's modules run ``from dataclasses import dataclass`` during this import,
        # so they bind the wrapper; modules imported later bind the original again.
        dataclasses.dataclass = _make_patched_dataclass(original)
        try:
            return importlib.import_module(_PACKAGE)
        except ModuleNotFoundError as err:
            # safety-gymnasium was installed with --no-deps, so a package it imports
            # (gymnasium_robotics, mujoco, ...) may be absent: name it, not a traceback.
            missing = (err.name or _PACKAGE).split(".")[0].replace("_", "-")
            raise MissingDependencyError(missing, task) from err
        finally:
            dataclasses.dataclass = original
