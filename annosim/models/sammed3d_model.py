"""``sam-med3d-turbo``: SAM-Med3D (uni-medical/SAM-Med3D) as a patch model, its network built by
the ``medim`` package (``medim.create_model("SAM-Med3D")``, medim 0.1.2).

The protocol (:mod:`annosim.protocols.sammed3d`) hands over the z-normalised 128^3 patch and
the clicks; this adapter does what the source's ``sam_model_infer`` does with them (IU L110-181
@f3de1fa): the image encoder once per patch; per call the prompt encoder on the points and the
previous low-res logits (32^3 zeros at first), the mask decoder (one mask), and the low-res
logits upsampled trilinearly (``align_corners=False``) to the patch. The network sees the
patch in torchio's RAS order ``(1, 1, i, j, k)`` and points as ``(i, j, k)`` indices, as in the
source; the plugin API's canonical ``(z, y, x)`` are converted here.

Checkpoint: the file medim's loader reads (``sam_med3d_turbo.pth``: a dict whose
``model_state_dict`` is the network's state dict; a bare state dict is accepted too), loaded
with ``torch.load(weights_only=True)`` and ``strict`` key matching (medim itself unpickles
anything and ignores missing keys). The architecture (patch size, widths, depth, heads, global
attention blocks) is read from the tensors' shapes, so a smaller network saved the same way
loads too. Weights cannot be downloaded by annosim: ``--checkpoint`` is required.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from annosim.data.orientation import canonical_points_to_ras, canonical_to_ras, ras_to_canonical
from annosim.errors import ConfigError, InputError
from annosim.files import unloadable_checkpoint
from annosim.models.base import PatchPrediction, PatchSpec, SliceModelBase

#: SAM-Med3D's patch spacing (mm), the ``target_spacing`` of IU L382 (:class:`PatchSpec`'s default).
SPACING_MM = PatchSpec().spacing[0]
#: ViT patch size of SAM-Med3D's image encoder (``vit_patch_size``).
VIT_PATCH = 16
#: Window size of its windowed attention blocks (rel-pos tables of 2 * 14 - 1 rows).
WINDOW = 14
_VALID = "SAM-Med3D's sam_med3d_turbo.pth (a dict with 'model_state_dict'), saved with torch.save"


def read_state_dict(path: Path) -> dict[str, Any]:
    """The state dict in a SAM-Med3D checkpoint (InputError naming the file otherwise)."""
    import torch

    if not path.is_file():
        raise InputError(path, "checkpoint file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise unloadable_checkpoint(path, exc, _VALID) from None
    if isinstance(state, dict) and isinstance(state.get("model_state_dict"), dict):
        state = state["model_state_dict"]
    if not isinstance(state, dict) or not state:
        raise InputError(path, "expected a SAM-Med3D state dict (under 'model_state_dict')")
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    if not isinstance(state.get("image_encoder.pos_embed"), torch.Tensor):
        raise InputError(path, "not a SAM-Med3D state dict (no image_encoder.pos_embed)")
    return state


def architecture(state: dict[str, Any], path: Path) -> dict[str, Any]:
    """medim ``build_sam3D_vit_b_ori`` keyword arguments read from the tensor shapes."""
    try:
        pos = state["image_encoder.pos_embed"]            # (1, s/16, s/16, s/16, embed)
        depth = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"image_encoder\.blocks\.(\d+)\.", k)))
        head_dim = int(state["image_encoder.blocks.0.attn.rel_pos_d"].shape[1])
        grid = int(pos.shape[1])
        globals_ = [i for i in range(depth)
                    if int(state[f"image_encoder.blocks.{i}.attn.rel_pos_d"].shape[0]) == 2 * grid - 1
                    and 2 * grid - 1 != 2 * WINDOW - 1]
        return dict(image_size=grid * VIT_PATCH, encoder_embed_dim=int(pos.shape[-1]), encoder_depth=depth,
                    encoder_num_heads=int(pos.shape[-1]) // head_dim, encoder_global_attn_indexes=globals_,
                    prompt_embed_dim=int(state["prompt_encoder.point_embeddings.0.weight"].shape[1]))
    except (KeyError, ValueError, IndexError, AttributeError) as exc:
        raise InputError(path, f"not a SAM-Med3D state dict ({type(exc).__name__}: {exc})") from None


def load_sammed3d(checkpoint: str | Path, device: Any = "cpu") -> Any:
    """The medim SAM-Med3D network with the checkpoint's weights (strict), in eval mode."""
    try:
        import medim
    except ImportError:
        raise ConfigError("model 'sam-med3d-turbo' needs the medim package: pip install --no-deps medim==0.1.2 "
                          "appdirs (or make install)") from None
    path = Path(checkpoint).expanduser()
    state = read_state_dict(path)
    arch = architecture(state, path)
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):  # medim prints "creating model ..."
        net = medim.create_model("SAM-Med3D", pretrained=False, **arch)
    result = net.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        keys = result.missing_keys or result.unexpected_keys
        what = "lacks" if result.missing_keys else "has unexpected"
        raise InputError(path, f"SAM-Med3D state dict {what} {len(keys)} tensors, e.g. {keys[0]}")
    return net.to(device).eval()


class SamMed3DModel(SliceModelBase):
    """SAM-Med3D through medim (module docstring). ``checkpoint``: the weights file (required);
    ``device``: torch device (default CUDA when available)."""

    name = "sam-med3d-turbo"

    def __init__(self, checkpoint: str | None = None, device: str | None = None) -> None:
        super().__init__()
        import torch

        if not checkpoint:
            raise ConfigError("model 'sam-med3d-turbo' needs --checkpoint sam_med3d_turbo.pth "
                              "(weights are not downloaded)")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.checkpoint = Path(checkpoint).expanduser()
        self.network = load_sammed3d(self.checkpoint, self.device)
        size = int(self.network.image_encoder.img_size)
        self.patch_spec = PatchSpec((size,) * 3, (SPACING_MM,) * 3, "zscore-positive")
        self._embedding = None

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "checkpoint": str(self.checkpoint), "device": str(self.device),
                "patch": list(self.patch_spec.size)}

    def release_case(self) -> None:
        self._embedding = None

    def set_patch(self, patch: np.ndarray) -> None:
        """Run the image encoder on the canonical patch, given to it in RAS order (1, 1, i, j, k)."""
        import torch

        p = np.asarray(patch, dtype=np.float32)
        if p.shape != self.patch_spec.size:
            raise ValueError(f"patch of shape {p.shape}, expected {self.patch_spec.size}")
        x = torch.from_numpy(np.ascontiguousarray(canonical_to_ras(p)))[None, None].to(self.device)
        with torch.no_grad():
            self._embedding = self.network.image_encoder(x)

    def network_inputs(self, points: np.ndarray, labels: np.ndarray, low_res: np.ndarray | None) -> tuple[Any, Any, Any]:
        """The prompt encoder's inputs: coords float ``(1, K, 3)`` RAS ``(i, j, k)``, labels int64
        ``(1, K)``, mask logits float ``(1, 1, s/4, s/4, s/4)`` (zeros when ``low_res`` is None)."""
        import torch

        pts = np.asarray(points, dtype=np.int64).reshape(-1, 3)
        lab = np.asarray(labels, dtype=np.int64).reshape(-1)
        if lab.shape[0] != pts.shape[0]:
            raise ValueError(f"{pts.shape[0]} points but {lab.shape[0]} labels")
        size = self.patch_spec.size
        if pts.size and (pts.min() < 0 or np.any(pts.max(axis=0) >= np.array(size))):
            raise ValueError(f"points outside the {size} patch")
        ras = canonical_points_to_ras(pts, size)
        coords = torch.as_tensor(ras[None], dtype=torch.float32, device=self.device)
        lab_t = torch.as_tensor(lab[None], dtype=torch.int64, device=self.device)
        if low_res is None:
            mask = torch.zeros((1, 1) + tuple(s // 4 for s in size), device=self.device)
        else:
            mask = torch.as_tensor(np.asarray(low_res, dtype=np.float32), device=self.device)
        return coords, lab_t, mask

    def predict_patch(self, points: np.ndarray, labels: np.ndarray,
                      low_res: np.ndarray | None = None) -> PatchPrediction:
        """One decoder pass (IU L148-169): logits upsampled to the patch (canonical axes) and the
        low-res logits ``(1, 1, s/4, s/4, s/4)`` for the next call."""
        import torch
        import torch.nn.functional as F

        if self._embedding is None:
            raise RuntimeError("set_patch must be called before predict_patch")
        coords, lab, mask = self.network_inputs(points, labels, low_res)
        net = self.network
        with torch.no_grad():
            sparse, dense = net.prompt_encoder(points=[coords, lab], boxes=None, masks=mask)
            low, _ = net.mask_decoder(image_embeddings=self._embedding, image_pe=net.prompt_encoder.get_dense_pe(),
                                      sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense)
            full = F.interpolate(low, size=self.patch_spec.size, mode="trilinear", align_corners=False)
        logits = ras_to_canonical(full[0, 0].float().cpu().numpy())
        return PatchPrediction(np.ascontiguousarray(logits), low.float().cpu().numpy())
