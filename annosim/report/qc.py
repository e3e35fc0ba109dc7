"""QC images: for one object, the annotated slice of every round with its clicks, the truth
outline and (when the run saved predictions) the prediction outline.

Colours: truth outline green, prediction outline red (dashed), positive clicks ``+`` in cyan,
negative clicks ``-`` in orange, boxes in yellow. CT shown in an abdominal window (W 400, L 40).

Images are always drawn in the canonical radiological view (DESIGN section 2): a run made
``as-stored`` (e.g. ``he2024-vista``) is turned for display only, image, masks and prompts
together, with the case's :class:`annosim.data.orientation.Geometry`. When the run's slices are
not axial in the canonical frame (a scan stored sagittally), the panels show that plane with the
head up. The title names the protocol; panels wrap into rows of at most :data:`PANELS_PER_ROW`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from annosim.errors import ConfigError, InputError  # noqa: E402

#: CT display window (HU): level 40, width 400.
WINDOW = (-160.0, 240.0)
TRUTH_COLOR, PRED_COLOR, POS_COLOR, NEG_COLOR, BOX_COLOR = "#00e000", "#ff2020", "#00e5ff", "#ff9900", "#ffee00"
#: Most panels (rounds) in one row of a QC image; more rounds wrap into further rows.
PANELS_PER_ROW = 5
#: Inches of one panel (width, height).
PANEL_SIZE = (2.3, 2.75)
#: Canonical axis the run's slices lie across -> name of the plane shown.
_PLANES = {0: "axial", 1: "coronal", 2: "sagittal"}


@dataclass
class QCObject:
    """What one QC image shows.

    Attributes
    ----------
    title : str
        Heading drawn above the panels (keep it short: structure, setting, rank, case).
    image : ndarray float, (Z, Y, X)
        CT in HU, in the run's orientation.
    truth : ndarray bool, (Z, Y, X)
        The object's ground truth.
    rounds : DataFrame
        The object's recorded rounds (``round``, ``dice``...), without carried rows.
    prompts : list of dict
        The object's prompts.jsonl records.
    predictions : dict int -> ndarray bool (Z, Y, X) or None
        Saved prediction of each round, when the run saved them.
    protocol : str
        Protocol name, always shown in the title.
    geometry : Geometry or None
        The case's :class:`annosim.data.orientation.Geometry` in the run's orientation; an
        ``as-stored`` one is turned to the canonical view for display.
    plane : int
        Canonical axis the arrays' first axis runs along (0 = axial slices, as every canonical
        run; set by :func:`to_canonical`).
    """

    title: str
    image: np.ndarray
    truth: np.ndarray
    rounds: pd.DataFrame
    prompts: list[dict[str, Any]]
    predictions: dict[int, np.ndarray | None]
    protocol: str = ""
    geometry: Any = None
    plane: int = 0


def to_canonical(obj: QCObject) -> QCObject:
    """``obj`` turned from its run's orientation to the canonical one, for display only.

    Arrays are permuted and flipped (never resampled) as ``Geometry`` says; prompt coordinates
    follow (a point ``(z, y, x)``; a box's two inclusive corners). The run's slice axis stays the
    first axis; the other two keep canonical order. A canonical object, or one without a
    geometry, is returned unchanged.
    """
    from annosim.data.orientation import Geometry, orientation_geometry

    g = obj.geometry
    if not isinstance(g, Geometry) or g.orientation == "canonical":
        return obj
    c = orientation_geometry(g.shape, g.affine, "canonical")
    src = [g.axes.index(c.axes[o]) for o in range(3)]  # run axis that becomes canonical axis o
    flip = [c.flips[o] != g.flips[src[o]] for o in range(3)]
    plane = src.index(0)  # canonical axis of the run's slices
    order = [plane] + [o for o in range(3) if o != plane]  # displayed axes, in canonical numbering
    shape = [obj.image.shape[src[o]] for o in range(3)]

    def vol(a: np.ndarray) -> np.ndarray:
        a = np.transpose(a, src)
        a = np.flip(a, [o for o in range(3) if flip[o]]) if any(flip) else a
        return np.ascontiguousarray(np.transpose(a, order))

    def point(zyx: tuple[int, int, int]) -> tuple[int, int, int]:
        canon = [shape[o] - 1 - zyx[src[o]] if flip[o] else zyx[src[o]] for o in range(3)]
        return tuple(int(canon[o]) for o in order)  # type: ignore[return-value]

    prompts = []
    for p in obj.prompts:
        q = dict(p)
        if p.get("kind") == "point":
            q["z"], q["y"], q["x"] = point((int(p["z"]), int(p["y"]), int(p["x"])))
        elif p.get("kind") == "box":
            a = point((int(p["z"]), int(p["y0"]), int(p["x0"])))
            b = point((int(p["z"]), int(p["y1"]), int(p["x1"])))
            q.update(z=a[0], y0=min(a[1], b[1]), x0=min(a[2], b[2]), y1=max(a[1], b[1]), x1=max(a[2], b[2]))
        elif "z" in p:
            q["z"] = point((int(p["z"]), 0, 0))[0]
        prompts.append(q)
    preds = {k: (None if v is None else vol(v)) for k, v in obj.predictions.items()}
    return QCObject(obj.title, vol(obj.image), vol(obj.truth), obj.rounds, prompts, preds, obj.protocol,
                    c, plane)


def pick_objects(objects: pd.DataFrame) -> list[tuple[str, pd.Series]]:
    """Worst, median and best object by best-of-rounds Dice (ties: case, then label order).

    ``objects`` holds the objects of one structure in one setting (rows of
    :func:`annosim.report.stats.object_table`). The median is the lower median (index
    ``(n - 1) // 2`` in ascending order). An object picked twice is listed once, under its
    first rank; a single object is ranked ``"only object"``.
    """
    if objects.empty:
        return []
    ordered = objects.sort_values(["best_dice", "case", "label"], kind="mergesort").reset_index(drop=True)
    n = len(ordered)
    if n == 1:
        return [("only object", ordered.iloc[0])]
    out, seen = [], set()
    for rank, i in (("worst", 0), ("median", (n - 1) // 2), ("best", n - 1)):
        if i not in seen:
            seen.add(i)
            out.append((rank, ordered.iloc[i]))
    return out


def _round_slice(prompts: list[dict[str, Any]], round_: int) -> int | None:
    """The slice a round annotated: the ``z`` of its last prompt (None when it had none)."""
    zs = [int(p["z"]) for p in prompts if int(p.get("round", 0)) == round_]
    return zs[-1] if zs else None


def _worst_slice(truth: np.ndarray, pred: np.ndarray) -> int:
    """The slice with the most voxels where prediction and truth differ (ties: lowest z; no
    error at all: the slice with the most truth)."""
    err = (truth != pred).reshape(truth.shape[0], -1).sum(axis=1)
    if err.max() == 0:
        return int(np.argmax(truth.reshape(truth.shape[0], -1).sum(axis=1)))
    return int(np.argmax(err))


def _crop_box(truth: np.ndarray, extra: list[tuple[int, int]], margin: int = 16) -> tuple[slice, slice]:
    """In-plane box around the truth of all slices and the given (y, x) points, plus a margin,
    widened to a square where the image allows."""
    _, ny, nx = truth.shape
    ys, xs = np.nonzero(truth.any(axis=0))
    ys = np.concatenate([ys, [p[0] for p in extra]]).astype(int) if extra else ys
    xs = np.concatenate([xs, [p[1] for p in extra]]).astype(int) if extra else xs
    if ys.size == 0:
        return slice(0, ny), slice(0, nx)
    y0, y1 = ys.min() - margin, ys.max() + margin + 1
    x0, x1 = xs.min() - margin, xs.max() + margin + 1
    side = max(y1 - y0, x1 - x0)
    cy, cx = (y0 + y1) // 2, (x0 + x1) // 2
    y0, x0 = max(0, cy - side // 2), max(0, cx - side // 2)
    return slice(y0, min(ny, y0 + side)), slice(x0, min(nx, x0 + side))


def _outline(ax: plt.Axes, mask2d: np.ndarray, color: str, style: str = "solid") -> None:
    if mask2d.any() and not mask2d.all():
        ax.contour(mask2d.astype(np.float32), levels=[0.5], colors=[color], linewidths=1.2, linestyles=style)


def image_title(obj: QCObject, turned: bool = False) -> str:
    """Title of a QC image: the object's title, the protocol, and a note when an ``as-stored``
    run was turned for display."""
    title = obj.title + (f" - protocol {obj.protocol}" if obj.protocol else "")
    return title + (" (as-stored run, shown in the canonical view)" if turned else "")


def grid_shape(n: int, per_row: int = PANELS_PER_ROW) -> tuple[int, int]:
    """(rows, columns) of the panels of ``n`` rounds: at most ``per_row`` a row."""
    n = max(1, int(n))
    return (n + per_row - 1) // per_row, min(n, per_row)


def render_object(obj: QCObject, path: Path, dpi: int = 80) -> Path:
    """Draw one panel per recorded round (rows of at most :data:`PANELS_PER_ROW`) in the
    canonical view and save it as PNG at ``path``.

    A round without prompts (e.g. an automatic segmentation) shows the slice with the most error
    voxels when the prediction is known, else the slice with the most truth. The figure is
    ``max(2.3 * columns, 4.6)`` x ``2.75 * rows`` inches.
    """
    turned = obj.geometry is not None and getattr(obj.geometry, "orientation", "canonical") != "canonical"
    obj = to_canonical(obj)
    rounds = obj.rounds.sort_values("round")
    points = [(int(p["y"]), int(p["x"])) for p in obj.prompts if p.get("kind") == "point"]
    ys, xs = _crop_box(obj.truth, points)
    nrows, ncols = grid_shape(len(rounds))
    fig, axes = plt.subplots(nrows, ncols, figsize=(max(PANEL_SIZE[0] * ncols, 4.6), PANEL_SIZE[1] * nrows),
                             squeeze=False)
    flat = axes.ravel()
    origin = "upper" if obj.plane == 0 else "lower"  # coronal/sagittal planes: head up
    default_z = int(np.argmax(obj.truth.reshape(obj.truth.shape[0], -1).sum(axis=1)))
    for ax, (_, r) in zip(flat, rounds.iterrows()):
        k = int(r["round"])
        pred = obj.predictions.get(k)
        z = _round_slice(obj.prompts, k)
        if z is None:
            z = _worst_slice(obj.truth, pred) if pred is not None else default_z
        ax.imshow(obj.image[z, ys, xs], cmap="gray", vmin=WINDOW[0], vmax=WINDOW[1], interpolation="nearest",
                  origin=origin)
        _outline(ax, obj.truth[z, ys, xs], TRUTH_COLOR)
        if pred is not None:
            _outline(ax, pred[z, ys, xs], PRED_COLOR, "dashed")
        for p in obj.prompts:
            if int(p.get("round", 0)) != k or int(p["z"]) != z:
                continue
            if p.get("kind") == "point":
                py, px = int(p["y"]) - ys.start, int(p["x"]) - xs.start
                pos = bool(p.get("positive", True))
                ax.plot(px, py, marker="P" if pos else "_", ms=9 if pos else 11, mew=3 if not pos else 0.8,
                        color=POS_COLOR if pos else NEG_COLOR, mec="black" if pos else NEG_COLOR)
            elif p.get("kind") == "box":
                ax.add_patch(plt.Rectangle((int(p["x0"]) - xs.start, int(p["y0"]) - ys.start),
                                           int(p["x1"]) - int(p["x0"]), int(p["y1"]) - int(p["y0"]),
                                           fill=False, ec=BOX_COLOR, lw=1.2))
        where = "z" if obj.plane == 0 else f"{_PLANES[obj.plane]} {('z', 'y', 'x')[obj.plane]}"
        ax.set_title(f"round {k}  {where}={z}\nDice {float(r['dice']):.3f}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in flat[len(rounds):]:
        ax.set_axis_off()
    fig.suptitle(image_title(obj, turned), fontsize=9)
    height = fig.get_figheight()  # explicit margins: tight_layout misplaces rows of square images
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.05 / height, top=1 - 0.7 / height, wspace=0.06,
                        hspace=0.45 / (PANEL_SIZE[1] - 0.75))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


#: ``(case_id, orientation) -> annosim.data.case.Case``.
CaseLoader = Callable[[str, str], Any]


def open_run_dataset(meta: dict[str, Any]):
    """Reopen the dataset recorded in run.json (``data``: spec, layout, root, split).

    Returns an :class:`annosim.data.layouts.Dataset`. Raises the data layer's InputError/
    ConfigError when the dataset cannot be opened from here.
    """
    from annosim.data.layouts import open_dataset

    data = meta.get("data") or {}
    if isinstance(data, str):
        data = {"spec": data}
    spec, layout, split, root = data.get("spec"), data.get("layout"), data.get("split"), data.get("root")
    if not spec:
        raise InputError(None, "run.json names no dataset spec")
    attempts = [None]
    if root and layout in ("datalist", "csv", "pair"):
        attempts = [root, None] if layout != "pair" else [None, root]
    last: Exception | None = None
    for data_root in attempts:
        try:
            return open_dataset(spec, layout=layout, data_root=data_root, split=split)
        except (InputError, ConfigError) as exc:
            last = exc
    raise last  # type: ignore[misc]


def dataset_loader(meta: dict[str, Any]) -> tuple[CaseLoader | None, str]:
    """A function ``(case_id, orientation) -> Case`` for the dataset recorded in run.json, and
    ``""``; or ``(None, reason)`` when it cannot be opened here."""
    try:
        dataset = open_run_dataset(meta)
    except (ImportError, InputError, ConfigError) as exc:
        return None, str(exc)
    refs = {str(ref.case_id): ref for ref in dataset.cases}

    def load(case_id: str, orientation: str = "canonical") -> Any:
        if str(case_id) not in refs:
            raise InputError(dataset.spec, f"case {case_id!r} is not in the dataset")
        return refs[str(case_id)].load(orientation)

    return load, ""
