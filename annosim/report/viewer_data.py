"""What the replay viewer embeds for one object: the CT as 8-bit slices, the truth and every
round's prediction as run-length codes, the prompts and the per-round metrics.

Encodings (decoded by ``viewer.js``; :func:`rle_decode` is the reference):

- **CT**: each slice twice, as lossy WebP (quality :data:`CT_QUALITY`) base64 strings: once in
  the abdomen window (level 40, width 400, exact 8-bit grey levels before compression) and once
  over the wide range :data:`WIDE_RANGE` (10 HU a grey level), from which the lung and bone
  presets and any level/width are applied at view time. The CT is for orientation only; every
  mask and metric is exact.
- **Masks**: per slice, the run lengths of the flattened (C order) boolean slice, starting with a
  run of ``False`` (possibly 0); an empty slice is ``[]``. Only the truth and the predictions are
  stored; the page computes per-slice Dice, the over-tracked (prediction only) and missed (truth
  only) slices itself from them.

Everything is in the canonical radiological view (:func:`annosim.report.qc.to_canonical`); a
sagittal or coronal run's slices are flipped top-bottom so that the head is up.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from annosim.report.qc import QCObject, to_canonical

#: Window presets ``name -> (level, width)`` in HU; ``abdomen`` is embedded exactly, the others are
#: applied at view time to the wide source.
WINDOWS: dict[str, tuple[float, float]] = {"abdomen": (40.0, 400.0), "lung": (-600.0, 1500.0),
                                           "bone": (400.0, 1800.0)}
#: HU range of the wide 8-bit source (255 levels of 10 HU).
WIDE_RANGE: tuple[float, float] = (-1024.0, 1526.0)
#: WebP quality of the CT slices (0-100).
CT_QUALITY = 85


def window_u8(image: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``image`` (any shape, HU) mapped linearly from ``[lo, hi]`` to uint8 0..255, clipped.

    >>> window_u8(np.array([-200.0, -160.0, 40.0, 240.0, 999.0]), -160.0, 240.0).tolist()
    [0, 0, 128, 255, 255]
    """
    scaled = (np.asarray(image, dtype=np.float64) - lo) * (255.0 / (hi - lo))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def encode_slice(u8: np.ndarray, quality: int = CT_QUALITY) -> str:
    """A (Y, X) uint8 slice as a base64 lossy WebP string (Pillow)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(u8), mode="L").save(buf, format="WEBP", quality=int(quality), method=4)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def rle_encode(mask: np.ndarray) -> list[int]:
    """Run lengths of ``mask`` flattened in C order, starting with a ``False`` run; ``[]`` when
    the mask is empty.

    >>> rle_encode(np.array([[0, 1, 1], [1, 0, 0]], bool))
    [1, 3, 2]
    >>> rle_encode(np.array([[1, 0]], bool)), rle_encode(np.zeros((2, 2), bool))
    ([0, 1, 1], [])
    """
    flat = np.asarray(mask, dtype=bool).ravel()
    if not flat.any():
        return []
    change = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds).tolist()
    return ([0] + runs) if flat[0] else runs


def rle_decode(runs: list[int], shape: tuple[int, int]) -> np.ndarray:
    """Inverse of :func:`rle_encode`: a bool array of ``shape``.

    >>> rle_decode([1, 3, 2], (2, 3)).astype(int).tolist()
    [[0, 1, 1], [1, 0, 0]]
    """
    flat = np.zeros(int(np.prod(shape)), dtype=bool)
    pos = 0
    for i, n in enumerate(runs):
        if i % 2:
            flat[pos:pos + int(n)] = True
        pos += int(n)
    return flat.reshape(shape)


def rle_volume(mask: np.ndarray) -> list[list[int]]:
    """:func:`rle_encode` of every slice of a bool ``(Z, Y, X)`` volume."""
    return [rle_encode(s) for s in np.asarray(mask, dtype=bool)]


@dataclass
class PaneSource:
    """One pane of the viewer: an object of one run in one setting.

    ``obj`` carries the image, truth, rounds, prompts and saved predictions (in the run's
    orientation); ``frames`` are the setting's slices (``None`` = all); ``metrics`` the rounds.csv
    columns shown per round; ``heading`` names the run, model and setting; ``max_rounds`` is the
    protocol's (an object that stopped early shows its last prediction in later rounds).
    """

    obj: QCObject
    frames: np.ndarray | None
    metrics: tuple[str, ...]
    heading: str
    max_rounds: int = 1


def _display(obj: QCObject) -> QCObject:
    """``obj`` in the canonical view, flipped top-bottom when its slices are not axial."""
    obj = to_canonical(obj)
    if obj.plane == 0:
        return obj
    ny = obj.image.shape[1]

    def flip(a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(a[:, ::-1])

    prompts = []
    for p in obj.prompts:
        q = dict(p)
        if p.get("kind") == "point":
            q["y"] = ny - 1 - int(p["y"])
        elif p.get("kind") == "box":
            q["y0"], q["y1"] = ny - 1 - int(p["y1"]), ny - 1 - int(p["y0"])
        prompts.append(q)
    preds = {k: (None if v is None else flip(v)) for k, v in obj.predictions.items()}
    return QCObject(obj.title, flip(obj.image), flip(obj.truth), obj.rounds, prompts, preds, obj.protocol,
                    obj.geometry, obj.plane)


def _prompt_json(p: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"round": int(p.get("round", 0)), "kind": str(p.get("kind")), "z": int(p["z"])}
    if out["kind"] == "point":
        out.update(y=int(p["y"]), x=int(p["x"]), positive=bool(p.get("positive", True)))
    elif out["kind"] == "box":
        out.update(y0=int(p["y0"]), x0=int(p["x0"]), y1=int(p["y1"]), x1=int(p["x1"]))
    return out


def _rounds_json(rounds: pd.DataFrame, metrics: tuple[str, ...]) -> list[dict[str, Any]]:
    rows = []
    for _, r in rounds.sort_values("round").iterrows():
        row: dict[str, Any] = {"round": int(r["round"])}
        for c in ("clicks", "annotated_slices") + tuple(metrics):
            if c in r.index and pd.notna(r[c]):
                v = r[c]
                row[c] = float(v) if isinstance(v, (float, np.floating)) else (int(v) if isinstance(v, (int, np.integer)) else str(v))
        rows.append(row)
    return rows


def pane_json(src: PaneSource, quality: int = CT_QUALITY) -> dict[str, Any]:
    """The JSON-able description of one pane (see the module docstring for the encodings).

    Keys: ``heading``, ``title``, ``shape`` (Z, Y, X), ``plane``, ``frames`` (the setting's
    slices), ``ct`` (``{"abdomen": [...], "wide": [...]}`` base64 WebP per slice), ``truth``
    (RLE per slice), ``predictions`` (``{round: RLE per slice}``), ``prompts`` and ``rounds``.
    """
    obj = _display(src.obj)
    lo, hi = WINDOWS["abdomen"][0] - WINDOWS["abdomen"][1] / 2, WINDOWS["abdomen"][0] + WINDOWS["abdomen"][1] / 2
    soft = window_u8(obj.image, lo, hi)
    wide = window_u8(obj.image, *WIDE_RANGE)
    z = obj.image.shape[0]
    frames = list(range(z)) if src.frames is None else [int(f) for f in src.frames]
    return {
        "heading": src.heading,
        "title": obj.title,
        "protocol": obj.protocol,
        "shape": [int(s) for s in obj.image.shape],
        "plane": int(obj.plane),
        "frames": frames,
        "ct": {"abdomen": [encode_slice(s, quality) for s in soft], "wide": [encode_slice(s, quality) for s in wide]},
        "truth": rle_volume(obj.truth),
        "predictions": {str(k): rle_volume(v) for k, v in sorted(obj.predictions.items()) if v is not None},
        "prompts": [_prompt_json(p) for p in obj.prompts],
        "rounds": _rounds_json(obj.rounds, src.metrics),
        "metrics": list(src.metrics),
        "max_rounds": max([int(src.max_rounds)] + [int(k) for k in obj.predictions]),
    }
