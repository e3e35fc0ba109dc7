"""SAM2 model names, configs, checkpoint files: find, download, verify, load.

Registry names follow the Hugging Face model ids of the official release
(``sam2-hiera-tiny`` ... ``sam2.1-hiera-large``); each maps to the config shipped inside the
``sam2`` package (1.1.0) and to the official download location. A local file given with
``--checkpoint`` always wins; fine-tunes of the SAM2 architecture (e.g. MedSAM2) pass their own
``config`` (a name inside the ``sam2`` package, or a path to a YAML file).

Checkpoints are read with ``torch.load(..., weights_only=True)``: no pickled code runs.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Mapping

from annosim.errors import ConfigError, InputError
from annosim.files import sha256_file, unloadable_checkpoint

#: What a loadable SAM2 checkpoint is, for the error about one that is not.
VALID_CHECKPOINT = ("a torch.save file of {'model': state dict} or a bare state dict of tensors, "
                    "as the official sam2.1_hiera_*.pt files")

_SAM2_URL = "https://dl.fbaipublicfiles.com/segment_anything_2/072824/"
_SAM21_URL = "https://dl.fbaipublicfiles.com/segment_anything_2/092824/"


@dataclass(frozen=True)
class Sam2Variant:
    """One official SAM2 release.

    ``sha256`` is the published digest when known; ``None`` means "trust on first use": the
    digest of the first complete download is written beside the cached file and checked on
    every later use.
    """

    name: str
    config: str
    filename: str
    url: str
    sha256: str | None = None


def _variants() -> Mapping[str, Sam2Variant]:
    sizes = {"tiny": "t", "small": "s", "base-plus": "b+", "large": "l"}
    out: dict[str, Sam2Variant] = {}
    for size, short in sizes.items():
        file_size = size.replace("-", "_")
        out[f"sam2-hiera-{size}"] = Sam2Variant(
            f"sam2-hiera-{size}",
            f"configs/sam2/sam2_hiera_{short}.yaml",
            f"sam2_hiera_{file_size}.pt",
            f"{_SAM2_URL}sam2_hiera_{file_size}.pt",
        )
        out[f"sam2.1-hiera-{size}"] = Sam2Variant(
            f"sam2.1-hiera-{size}",
            f"configs/sam2.1/sam2.1_hiera_{short}.yaml",
            f"sam2.1_hiera_{file_size}.pt",
            f"{_SAM21_URL}sam2.1_hiera_{file_size}.pt",
        )
    return MappingProxyType(out)


#: Registry name -> release.
VARIANTS: Mapping[str, Sam2Variant] = _variants()


def get_variant(name: str) -> Sam2Variant:
    """The release called ``name``; :class:`ConfigError` listing the known names otherwise."""
    try:
        return VARIANTS[name]
    except KeyError:
        raise ConfigError(
            f"unknown SAM2 model {name!r}; known: {', '.join(VARIANTS)}"
        ) from None


def cache_dir() -> Path:
    """Folder for downloaded weights: ``$ANNOSIM_CACHE/sam2`` or ``~/.cache/annosim/sam2``."""
    root = os.environ.get("ANNOSIM_CACHE")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "annosim"
    return base / "sam2"


def _download(url: str, dest: Path) -> None:
    """Fetch ``url`` to ``dest`` through a temporary file in the same folder (atomic rename)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=dest.name, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as resp:
            expected = resp.headers.get("Content-Length")
            shutil.copyfileobj(resp, out, 1 << 20)
        if expected is not None and os.path.getsize(tmp) != int(expected):
            raise OSError(f"incomplete download ({os.path.getsize(tmp)} of {expected} bytes)")
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def fetch_checkpoint(
    variant: Sam2Variant,
    folder: Path | None = None,
    download: Callable[[str, Path], None] | None = None,
) -> Path:
    """Path of the cached official checkpoint of ``variant``, downloading it once if needed.

    The digest is checked against ``variant.sha256`` when published, else against the digest
    recorded at the first download (``<file>.sha256``). Offline or failed downloads raise
    :class:`ConfigError` saying how to pass a local file.
    """
    folder = cache_dir() if folder is None else folder
    download = _download if download is None else download
    dest = folder / variant.filename
    pin = dest.with_name(dest.name + ".sha256")
    if not dest.is_file():
        try:
            download(variant.url, dest)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ConfigError(
                f"cannot download {variant.name} weights from {variant.url} ({reason}); "
                f"download the file yourself and pass --checkpoint PATH, or put it at {dest}"
            ) from None
        digest = sha256_file(dest)
        if variant.sha256 is not None and digest != variant.sha256:
            dest.unlink()
            raise ConfigError(
                f"{variant.url}: downloaded file has sha256 {digest}, expected {variant.sha256}"
            )
        pin.write_text(digest + "\n")
        return dest
    expected = variant.sha256
    if expected is None and pin.is_file():
        expected = pin.read_text().strip()
    if expected is not None and sha256_file(dest) != expected:
        raise InputError(
            dest, f"cached checkpoint is corrupt (sha256 differs from {expected}); delete it"
        )
    return dest


def load_state_dict(path: str | Path) -> dict[str, Any]:
    """Read a SAM2 checkpoint (``{"model": state_dict}`` or a bare state dict) safely.

    Raises :class:`InputError` naming the file when it is missing, unreadable, or holds no
    tensors.
    """
    import torch

    p = Path(path)
    if not p.is_file():
        raise InputError(p, "checkpoint file not found")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, random bytes, pickled code refused...
        raise unloadable_checkpoint(p, exc, VALID_CHECKPOINT) from None
    sd = obj.get("model", obj) if isinstance(obj, dict) else None
    if not isinstance(sd, dict) or not sd or not all(
        isinstance(v, torch.Tensor) for v in sd.values()
    ):
        raise InputError(p, "checkpoint holds no model state dict (expected {'model': {...}})")
    return sd


def check_state_dict(model: Any, sd: Mapping[str, Any], path: str | Path, config: str) -> None:
    """Raise :class:`InputError` when ``sd`` does not fit ``model`` (keys or shapes)."""
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shapes = [k for k in own if k in sd and tuple(own[k].shape) != tuple(sd[k].shape)]
    if not (missing or unexpected or shapes):
        return
    parts = []
    for what, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)):
        if keys:
            parts.append(f"{len(keys)} {what} (e.g. {keys[0]})")
    raise InputError(
        path,
        f"weights do not fit config {config}: {', '.join(parts)}; "
        "pass --model-arg config=... matching the checkpoint",
    )


#: Overrides of ``sam2.build_sam.build_sam2_video_predictor`` (sam2 1.1.0, postprocessing on).
VIDEO_PREDICTOR_OVERRIDES: tuple[tuple[str, Any], ...] = (
    ("model._target_", "sam2.sam2_video_predictor.SAM2VideoPredictor"),
    ("model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability", True),
    ("model.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta", 0.05),
    ("model.sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh", 0.98),
    ("model.binarize_mask_from_pts_for_mem_enc", True),
    ("model.fill_hole_area", 8),
)


#: ``_target_`` values a SAM2 config may instantiate: SAM2's own classes, and torch.nn layers by
#: class name (``torch.nn.GELU``). Anything else (``builtins.open``, ``os.system``) is refused.
_ALLOWED_TARGET = re.compile(r"sam2\.[A-Za-z0-9_.]+|torch\.nn\.[A-Z][A-Za-z0-9_]*")


def check_config_targets(node: Any, config: str, where: str = "model") -> None:
    """ConfigError (one line) unless every ``_target_`` in the config tree ``node`` (an OmegaConf
    container, dicts and lists) names a class of ``sam2`` or a ``torch.nn`` layer: a
    configuration must not run arbitrary code."""
    from omegaconf import DictConfig, ListConfig

    if isinstance(node, (DictConfig, dict)):
        for key in node.keys():
            value = node[key]
            if key == "_target_" and not (isinstance(value, str) and _ALLOWED_TARGET.fullmatch(value)):
                raise ConfigError(f"SAM2 config {config}: {where}._target_ is {value!r}; only sam2.* classes and "
                                  "torch.nn layers may be instantiated from a config")
            check_config_targets(value, config, f"{where}.{key}")
    elif isinstance(node, (ListConfig, list, tuple)):
        for i, value in enumerate(node):
            check_config_targets(value, config, f"{where}[{i}]")


def build_video_predictor(config: str, image_size: int | None = None) -> Any:
    """An untrained ``SAM2VideoPredictor`` on the CPU, as the official builder makes it.

    ``config`` is a config inside the ``sam2`` package (``configs/sam2.1/sam2.1_hiera_t.yaml``)
    built with ``build_sam2_video_predictor``, or a path to a YAML file (a fine-tune's own
    config) built with the same overrides. ``image_size`` overrides the input size.
    """
    import sam2  # noqa: F401  (initialises hydra's config module)
    from hydra.errors import HydraException
    from hydra.utils import instantiate
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    extra = [] if image_size is None else [("model.image_size", int(image_size))]
    path = Path(config).expanduser()
    try:
        if path.suffix in (".yaml", ".yml") and path.is_file():
            cfg = OmegaConf.load(path)
            for key, value in (*VIDEO_PREDICTOR_OVERRIDES, *extra):
                OmegaConf.update(cfg, key, value, force_add=True)
            OmegaConf.resolve(cfg)
            check_config_targets(cfg.model, config)
            model = instantiate(cfg.model, _recursive_=True)
        else:
            from hydra import compose
            from sam2.build_sam import build_sam2_video_predictor

            packaged = compose(config_name=config)
            OmegaConf.resolve(packaged)
            check_config_targets(packaged.get("model"), config)

            overrides = [f"++{k}={v}" for k, v in extra]
            model = build_sam2_video_predictor(
                config, ckpt_path=None, device="cpu", hydra_overrides_extra=overrides
            )
    except (HydraException, OmegaConfBaseException, ImportError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"cannot build SAM2 from config {config!r}: {first[:200]}") from None
    model.eval()
    return model
