"""Importing user code named on the command line: ``package.module:attr`` or
``path/to/file.py:attr`` (models with ``--model``, metrics with ``--metric``).

Importing a ``file.py`` runs that file's code: it is the user's explicit choice, and the only way
annosim runs code that a command names (dataset files and results folders never run anything).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
from pathlib import Path
from typing import Any

from annosim.errors import ConfigError


def is_file_spec(spec: str) -> bool:
    """Whether ``spec`` (``module:attr``) names a Python file rather than an importable module.

    >>> is_file_spec("plugins/grow.py:Grow"), is_file_spec("my_pkg.models:Grow")
    (True, False)
    """
    module_part = spec.rpartition(":")[0]
    return module_part.endswith(".py") or "/" in module_part or "\\" in module_part


def absolute_spec(spec: str) -> str:
    """``spec`` with a ``file.py`` part made absolute (for processes in another folder)."""
    if not is_file_spec(spec):
        return spec
    module_part, _, attr = spec.rpartition(":")
    return f"{Path(module_part).expanduser().resolve()}:{attr}"


def import_target(spec: str, what: str = "plugin") -> Any:
    """The object named by ``module:attr`` or ``path/to/file.py:attr``.

    Raises ConfigError (one line) when the form is wrong, the file or module is missing, its
    import fails, or it has no such attribute. ``what`` names the kind in messages.
    """
    module_part, sep, attr = spec.rpartition(":")
    if not sep or not module_part or not attr:
        raise ConfigError(f"{what} {spec!r}: expected path/to/file.py:NAME or package.module:NAME")
    if is_file_spec(spec):
        path = Path(module_part).expanduser().resolve()
        if not path.is_file():
            raise ConfigError(f"{module_part}: {what} file not found")
        digest = hashlib.sha256(str(path).encode()).hexdigest()[:12]
        mod_spec = importlib.util.spec_from_file_location(f"annosim_plugin_{digest}", path)
        if mod_spec is None or mod_spec.loader is None:
            raise ConfigError(f"{module_part}: cannot be imported as a Python module")
        module = importlib.util.module_from_spec(mod_spec)
        try:
            mod_spec.loader.exec_module(module)
        except Exception as exc:  # user code: report in one line
            raise ConfigError(f"{module_part}: import failed: {type(exc).__name__}: {exc}") from exc
    else:
        try:
            module = importlib.import_module(module_part)
        except ModuleNotFoundError as exc:
            raise ConfigError(f"{what} module {module_part!r} not found ({exc})") from None
        except Exception as exc:
            raise ConfigError(f"{what} module {module_part!r}: import failed: {type(exc).__name__}: {exc}") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ConfigError(f"{module_part} has no attribute {attr!r}") from None
