"""VISTA3D weights: the MONAI bundle ``vista3d`` downloaded once into a cache, and a checkpoint
(the bundle's ``models/model.pt``, a plain state dict) loaded into ``vista3d132`` with
``torch.load(weights_only=True)``."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from annosim.errors import ConfigError, InputError
from annosim.files import unloadable_checkpoint

#: MONAI bundle that holds the released weights, and the file inside it.
BUNDLE_NAME = "vista3d"
BUNDLE_WEIGHTS = Path("models") / "model.pt"


def default_cache_dir() -> Path:
    """Where downloaded weights go: ``$ANNOSIM_CACHE`` or ``~/.cache/annosim``."""
    return Path(os.environ.get("ANNOSIM_CACHE", Path.home() / ".cache" / "annosim")).expanduser()


def download_bundle_weights(cache_dir: Path | None = None) -> Path:
    """Path of the released weights, downloading the MONAI bundle ``vista3d`` once.

    Raises :class:`ConfigError` (one line, with the way out) when the download fails.
    """
    bundle_dir = (cache_dir or default_cache_dir()) / "monai-bundles"
    weights = bundle_dir / BUNDLE_NAME / BUNDLE_WEIGHTS
    if weights.is_file():
        return weights
    try:
        from monai.bundle import download

        download(name=BUNDLE_NAME, bundle_dir=str(bundle_dir), progress=False)
    except Exception as exc:  # network errors come in many types
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(
            f"vista3d: no --checkpoint given and downloading the MONAI bundle {BUNDLE_NAME!r} failed "
            f"({reason}); offline? pass --checkpoint PATH to the bundle's models/model.pt"
        ) from None
    if not weights.is_file():
        raise ConfigError(f"vista3d: the downloaded bundle lacks {weights}; pass --checkpoint PATH")
    return weights


def load_vista3d(checkpoint: str | Path, device: torch.device | str = "cpu") -> torch.nn.Module:
    """Build ``vista3d132`` and load a state dict saved with ``torch.save(net.state_dict())``.

    Accepts a plain state dict or one wrapped under ``"model"``/``"state_dict"``, with or
    without DataParallel's ``module.`` prefix. Raises :class:`InputError` naming the file for a
    missing, unsafe or mismatching checkpoint.
    """
    from monai.networks.nets import vista3d132

    path = Path(checkpoint).expanduser()
    if not path.is_file():
        raise InputError(path, "checkpoint file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise unloadable_checkpoint(path, exc, "the MONAI bundle's models/model.pt, a torch.save state dict "
                                    "of tensors") from None
    for key in ("model", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not state:
        raise InputError(path, "expected a VISTA3D state dict")
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    first = state.get("image_encoder.encoder.conv_init.weight")
    if not isinstance(first, torch.Tensor):
        raise InputError(path, "not a VISTA3D state dict (no image_encoder.encoder.conv_init.weight)")
    net = vista3d132(encoder_embed_dim=int(first.shape[0]))
    missing, _unexpected = net.load_state_dict(state, strict=False)
    if missing:
        raise InputError(path, f"VISTA3D state dict lacks {len(missing)} tensors, e.g. {missing[0]}")
    return net.to(device).eval()
