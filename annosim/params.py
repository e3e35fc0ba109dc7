"""Turning ``key=value`` strings from the command line into typed dataclass parameters."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from annosim.errors import ConfigError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def parse_key_values(items: typing.Iterable[str], what: str = "argument") -> dict[str, str]:
    """``["a=1", "b=x"]`` -> ``{"a": "1", "b": "x"}``; a missing ``=`` is a ConfigError."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{what} {item!r} is not of the form key=value")
        out[key.strip()] = value.strip()
    return out


def as_bool(value: bool | str) -> bool:
    """``True``/``False`` from a bool or a string such as ``"yes"``/``"0"`` (ConfigError else)."""
    if isinstance(value, str):
        low = value.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ConfigError(f"expected a boolean, got {value!r}")
    return bool(value)


def convert(value: Any, annotation: Any) -> Any:
    """Convert a string ``value`` to ``annotation`` (int, float, bool, str, optional of those)."""
    if not isinstance(value, str):
        return value
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if value.lower() in ("none", "null", ""):
            return None
        for arg in args:
            try:
                return convert(value, arg)
            except (TypeError, ValueError):
                continue
        raise ValueError(f"cannot convert {value!r} to {annotation}")
    if annotation is bool:
        low = value.lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ValueError(f"expected a boolean, got {value!r}")
    if annotation in (int, float, str):
        return annotation(value)
    if origin is tuple:
        parts = [v for v in value.replace(";", ",").split(",") if v != ""]
        args = typing.get_args(annotation)
        elem = args[0] if args else str
        return tuple(convert(v, elem) for v in parts)
    return value


def coerce_overrides(cls: type, overrides: dict[str, Any], owner: str | None = None) -> dict[str, Any]:
    """Check ``overrides`` against the fields of dataclass ``cls`` and convert strings.

    The one routine behind ``--protocol-arg`` and ``--model-arg``: an unknown key is a
    ConfigError listing the known ones, a value that does not convert names the key. ``owner``
    (e.g. ``"model 'classical'"``) is the subject of the messages (default: the class name).
    """
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    what = owner or cls.__name__
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        if key not in names:
            raise ConfigError(f"unknown parameter {key!r} for {what}; known: {', '.join(sorted(names))}")
        try:
            out[key] = convert(value, hints[key])
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{what}: parameter {key}={value!r}: {exc}") from None
    return out
