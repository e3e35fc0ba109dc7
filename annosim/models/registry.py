"""Loading models: built-in names, ``path/to/file.py:Class`` and ``package.module:Class``."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from annosim.errors import AnnosimError, ConfigError

_SAM2_NAMES = tuple(
    f"{gen}-hiera-{size}"
    for gen in ("sam2", "sam2.1")
    for size in ("tiny", "small", "base-plus", "large")
)


@dataclass(frozen=True)
class BuiltinModel:
    """A built-in model: ``target`` is ``module:Class``; ``defaults`` are constructor kwargs."""

    name: str
    target: str
    summary: str
    extra: str = ""
    defaults: dict[str, Any] = field(default_factory=dict)


BUILTINS: dict[str, BuiltinModel] = {
    m.name: m
    for m in (
        BuiltinModel(
            "classical",
            "annosim.models.classical:ClassicalModel",
            "Click-driven region growing on HU with geodesic negative cuts and slice-to-slice tracking (CPU, no weights).",
        ),
        *(
            BuiltinModel(
                n,
                "annosim.models.sam2_model:SAM2Model",
                f"SAM2 video predictor ({n}) with a per-case image-feature cache.",
                extra="sam2",
                defaults={"model_name": n},
            )
            for n in _SAM2_NAMES
        ),
        BuiltinModel(
            "vista3d",
            "annosim.models.vista3d_model:VISTA3DModel",
            "MONAI VISTA3D (native 3D; modes point, auto, auto+point).",
            extra="monai",
        ),
        BuiltinModel(
            "nninteractive",
            "annosim.models.nninteractive_model:NNInteractiveModel",
            "nnInteractive inference session (native 3D; points and boxes).",
            extra="nninteractive",
        ),
    )
}


def _import_target(target: str) -> type:
    """Resolve ``module:Class`` or ``path/to/file.py:Class`` to a class."""
    module_part, sep, attr = target.rpartition(":")
    if not sep or not module_part or not attr:
        raise ConfigError(
            f"model {target!r}: expected a built-in name ({', '.join(BUILTINS)}), "
            "path/to/file.py:Class or package.module:Class"
        )
    if module_part.endswith(".py") or "/" in module_part or "\\" in module_part:
        path = Path(module_part).expanduser().resolve()
        if not path.is_file():
            raise ConfigError(f"{module_part}: model file not found")
        digest = hashlib.sha256(str(path).encode()).hexdigest()[:12]
        spec = importlib.util.spec_from_file_location(f"annosim_plugin_{digest}", path)
        if spec is None or spec.loader is None:
            raise ConfigError(f"{module_part}: cannot be imported as a Python module")
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # user code: report in one line
            raise ConfigError(f"{module_part}: import failed: {type(exc).__name__}: {exc}") from exc
    else:
        try:
            module = importlib.import_module(module_part)
        except ModuleNotFoundError as exc:
            raise ConfigError(f"model module {module_part!r} not found ({exc})") from None
    try:
        obj = getattr(module, attr)
    except AttributeError:
        raise ConfigError(f"{module_part} has no attribute {attr!r}") from None
    if not inspect.isclass(obj) and not callable(obj):
        raise ConfigError(f"{target}: {attr!r} is not a class")
    return obj


def model_class(spec: str) -> type:
    """The class behind a built-in name or a ``module:Class`` / ``file.py:Class`` spec."""
    builtin = BUILTINS.get(spec)
    return _import_target(builtin.target if builtin is not None else spec)


def load_model(spec: str, args: dict[str, Any] | None = None) -> Any:
    """Instantiate the model named by ``spec`` with constructor keyword ``args``.

    ``args`` come from ``--model-arg key=value`` (strings) and ``--checkpoint`` (key
    ``checkpoint``). The object must provide the plugin API (DESIGN section 3).
    """
    args = dict(args or {})
    builtin = BUILTINS.get(spec)
    if builtin is not None:
        try:
            cls = _import_target(builtin.target)
        except ConfigError as exc:
            hint = f" (install the extra: pip install 'annosim[{builtin.extra}]')" if builtin.extra else ""
            raise ConfigError(f"model {spec!r} is unavailable: {exc}{hint}") from None
        args = {**builtin.defaults, **args}
    else:
        cls = _import_target(spec)
    try:
        model = cls(**args)
    except AnnosimError:
        raise
    except TypeError as exc:
        raise ConfigError(f"model {spec!r}: bad --model-arg ({exc})") from None
    missing = [m for m in ("set_volume", "start_object", "add_clicks", "propagate") if not callable(getattr(model, m, None))]
    if missing:
        raise ConfigError(f"model {spec!r} lacks the plugin method(s) {', '.join(missing)}")
    return model


def model_identity(spec: str, args: dict[str, Any]) -> dict[str, Any]:
    """The model part of a run's configuration: spec, args and the checkpoint's sha256."""
    ident: dict[str, Any] = {"name": spec, "args": {k: str(v) for k, v in sorted(args.items())}}
    ckpt = args.get("checkpoint")
    if ckpt and Path(str(ckpt)).is_file():
        ident["checkpoint_sha256"] = sha256_file(Path(str(ckpt)))
    return ident


def model_info(model: Any) -> dict[str, Any]:
    """The model's own description (``describe()``), recorded in run.json as information."""
    own = getattr(model, "describe", None)
    return dict(own()) if callable(own) else {"class": type(model).__qualname__}


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()
