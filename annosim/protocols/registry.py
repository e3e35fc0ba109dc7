"""Protocol registry: names -> factories, with a one-line description and the oracle
(ground-truth) information each protocol uses."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

from annosim.errors import ConfigError
from annosim.protocols.base import Protocol


@dataclass(frozen=True)
class ProtocolInfo:
    """Registry entry: ``factory(**overrides)`` builds the protocol."""

    name: str
    factory: Callable[..., Protocol]
    summary: str
    uses_gt: str
    source: str


def _he2024(**overrides: Any) -> Protocol:
    from annosim.params import coerce_overrides
    from annosim.protocols.he2024 import He2024, He2024Params

    return He2024(He2024Params(**coerce_overrides(He2024Params, overrides)))


def _he2024_vista(**overrides: Any) -> Protocol:
    from annosim.params import coerce_overrides
    from annosim.protocols.he2024 import VISTA_PARAMS, He2024, He2024Params

    params = dataclasses.replace(VISTA_PARAMS, **coerce_overrides(He2024Params, overrides))
    return He2024(params, variant="vista")


_REGISTRY: dict[str, ProtocolInfo] = {
    info.name: info
    for info in (
        ProtocolInfo(
            "he2024",
            _he2024,
            "He et al. 2024 (paper text): centre click + up to 5 clicks on the start slice, "
            "then up to 7 rounds of 3 clicks on the worst slice; best of 8 rounds.",
            "GT clicks (error regions), worst slice by GT Dice, best-of-rounds",
            "He et al. 2024, arXiv:2408.11210, section 2",
        ),
        ProtocolInfo(
            "he2024-vista",
            _he2024_vista,
            "He et al. 2024 as the reference script ran it: scalar-mean centres, 4 clicks with "
            "reset on the start slice, replacing clicks, JPEG frames as stored.",
            "GT clicks (error regions), worst slice by GT Dice, best-of-rounds",
            "Project-MONAI/VISTA val_multigpu_sam2_point_iterative.py",
        ),
    )
}


def register(info: ProtocolInfo) -> None:
    """Add a protocol to the registry (used by protocol modules and plugins)."""
    _REGISTRY[info.name] = info


def list_protocols() -> list[ProtocolInfo]:
    """Registered protocols in registration order."""
    _load_builtin_extras()
    return list(_REGISTRY.values())


def get_protocol(name: str, **overrides: Any) -> Protocol:
    """Build protocol ``name`` with parameter ``overrides`` (strings are converted)."""
    _load_builtin_extras()
    info = _REGISTRY.get(name)
    if info is None:
        known = ", ".join(_REGISTRY)
        raise ConfigError(f"unknown protocol {name!r}; known protocols: {known}")
    try:
        return info.factory(**overrides)
    except TypeError as exc:
        raise ConfigError(f"protocol {name!r}: {exc}") from None
    except ValueError as exc:
        raise ConfigError(f"protocol {name!r}: {exc}") from None


def _load_builtin_extras() -> None:
    """Import protocol modules that register themselves (other published protocols)."""
    try:
        import annosim.protocols.published  # noqa: F401
    except ModuleNotFoundError as exc:
        if exc.name != "annosim.protocols.published":
            raise
