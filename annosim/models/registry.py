"""Loading models: built-in names, ``path/to/file.py:Class`` and ``package.module:Class``."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from annosim.errors import AnnosimError, ConfigError
from annosim.files import sha256_file
from annosim.models.base import SliceModelBase, as_model
from annosim.plugins import import_target

_SAM2_NAMES = tuple(
    f"{gen}-hiera-{size}"
    for gen in ("sam2", "sam2.1")
    for size in ("tiny", "small", "base-plus", "large")
)


@dataclass(frozen=True)
class BuiltinModel:
    """A built-in model: ``target`` is ``module:Class``; ``defaults`` are constructor kwargs;
    ``cuda_default``: without a ``device`` argument it runs on CUDA whenever torch sees one."""

    name: str
    target: str
    summary: str
    extra: str = ""
    defaults: dict[str, Any] = field(default_factory=dict)
    cuda_default: bool = False


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
                cuda_default=True,
            )
            for n in _SAM2_NAMES
        ),
        BuiltinModel(
            "vista3d",
            "annosim.models.vista3d_model:VISTA3DModel",
            "MONAI VISTA3D (native 3D; modes point, auto, auto+point).",
            extra="monai",
            cuda_default=True,
        ),
        BuiltinModel(
            "nninteractive",
            "annosim.models.nninteractive_model:NNInteractiveModel",
            "nnInteractive inference session (native 3D; points and boxes).",
            extra="nninteractive",
            cuda_default=True,
        ),
        BuiltinModel(
            "sam-med3d-turbo",
            "annosim.models.sammed3d_model:SamMed3DModel",
            "SAM-Med3D (turbo) through medim: a 128^3 patch model at 1.5 mm for the sammed3d protocols (--checkpoint).",
            extra="sammed3d",
            cuda_default=True,
        ),
    )
}


def _import_target(target: str) -> type:
    """Resolve ``module:Class`` or ``path/to/file.py:Class`` to a class."""
    if ":" not in target:
        raise ConfigError(
            f"model {target!r}: expected a built-in name ({', '.join(BUILTINS)}), "
            "path/to/file.py:Class or package.module:Class"
        )
    obj = import_target(target, "model")
    if not inspect.isclass(obj) and not callable(obj):
        raise ConfigError(f"{target}: {target.rpartition(':')[2]!r} is not a class")
    return obj


def model_class(spec: str) -> type:
    """The class behind a built-in name or a ``module:Class`` / ``file.py:Class`` spec."""
    builtin = BUILTINS.get(spec)
    if builtin is None:
        return _import_target(spec)
    try:
        return _import_target(builtin.target)
    except ConfigError as exc:
        hint = f" (install the extra: pip install 'annosim[{builtin.extra}]')" if builtin.extra else ""
        raise ConfigError(f"model {spec!r} is unavailable: {exc}{hint}") from None


def wants_cuda(spec: str, args: dict[str, Any], cuda_visible: bool) -> bool:
    """Whether the model ``spec`` built with ``args`` would compute on CUDA: its ``device``
    argument names a CUDA device, or it has none, is a built-in that defaults to CUDA
    (:attr:`BuiltinModel.cuda_default`) and ``cuda_visible``. Plugins decide their own default,
    unknown here: only their ``device`` argument counts."""
    device = args.get("device")
    if device is not None:
        return str(device).strip().lower().startswith("cuda")
    builtin = BUILTINS.get(spec)
    return bool(builtin is not None and builtin.cuda_default and cuda_visible)


def missing_methods(spec: str, methods: tuple[str, ...] | list[str]) -> list[str]:
    """Which of the optional ``methods`` the model class behind ``spec`` does not implement
    (checked on the class, before any model is built or case read)."""
    cls = model_class(spec)
    if isinstance(cls, type) and issubclass(cls, SliceModelBase):
        return [m for m in methods if getattr(cls, m, None) in (None, getattr(SliceModelBase, m, None))]
    return [m for m in methods if not callable(getattr(cls, m, None))]


def load_model(spec: str, args: dict[str, Any] | None = None) -> SliceModelBase:
    """Instantiate the model named by ``spec`` with constructor keyword ``args``.

    ``args`` come from ``--model-arg key=value`` (strings) and ``--checkpoint`` (key
    ``checkpoint``). The object must provide the plugin API (``set_volume``, ``start_object``,
    ``add_clicks``, ``propagate``); one that subclasses nothing is wrapped in
    :class:`annosim.models.base.PluginModel`. Naming a ``file.py`` runs that file's code.
    """
    args = dict(args or {})
    cls = model_class(spec)
    builtin = BUILTINS.get(spec)
    if builtin is not None:
        args = {**builtin.defaults, **args}
    try:
        model = cls(**args)
    except AnnosimError:
        raise
    except TypeError as exc:
        raise ConfigError(f"model {spec!r}: bad --model-arg ({exc})") from None
    try:
        return as_model(model)
    except TypeError as exc:
        raise ConfigError(f"model {spec!r} {exc}") from None


def model_identity(spec: str, args: dict[str, Any]) -> dict[str, Any]:
    """The model part of a run's configuration: spec, args and the checkpoint's sha256."""
    ident: dict[str, Any] = {"name": spec, "args": {k: str(v) for k, v in sorted(args.items())}}
    ckpt = args.get("checkpoint")
    if ckpt and Path(str(ckpt)).is_file():
        ident["checkpoint_sha256"] = sha256_file(Path(str(ckpt)))
    return ident


def model_info(model: SliceModelBase) -> dict[str, Any]:
    """The model's own description (``describe()``), recorded in run.json as information."""
    return dict(model.describe())
