"""``annosim score``: score precomputed automatic segmentations (nnU-Net, TotalSegmentator,
Auto3DSeg outputs...) with the metrics of interactive runs, written as a results folder with one
round per (case, label, setting) so that they sit in the same tables.

The predictions are label maps named by case id (``<case>.nii.gz``, ``.nii``, ``.nrrd``,
``.seg.nrrd``, ``.mha``, ``.mhd``) on each case's image grid, using the dataset's label values
(or mapped with ``label_map``). Rows use protocol ``automatic``, round 1, 0 clicks and 0 annotated
slices. A ``fg-only`` row scores the prediction on the truth's slices only (the prediction is
cleared elsewhere, as an interactive run's video would be), so ``fp_slices`` is 0 there.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from annosim.errors import ConfigError, InputError
from annosim.metrics.registry import MetricSet
from annosim.results import provenance
from annosim.schema import SETTINGS, ErrorRecord, RoundRow, UnitKey, round_columns

#: Protocol name of scored automatic segmentations.
PROTOCOL = "automatic"
#: File endings searched for ``<case><ending>`` in the prediction folder, in this order.
PRED_SUFFIXES = (".nii.gz", ".nii", ".seg.nrrd", ".nrrd", ".mha", ".mhd")


@dataclass
class ScoreSummary:
    """What :func:`score_predictions` did."""

    out: Path
    cases: int = 0
    units: int = 0
    skipped: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)


def find_prediction(pred_dir: Path, case_id: str) -> Path | None:
    """The prediction file of ``case_id`` in ``pred_dir`` (first of :data:`PRED_SUFFIXES`), or None."""
    for suffix in PRED_SUFFIXES:
        p = Path(pred_dir) / f"{case_id}{suffix}"
        if p.is_file():
            return p
    return None


def read_prediction(path: Path, geometry: Any, image_path: str = "image") -> np.ndarray:
    """Read a label map and orient it like the case (``geometry``: the case's
    :class:`annosim.data.orientation.Geometry`). Returns an integer (Z, Y, X) array.

    Raises InputError when the file's grid is not the image's.
    """
    from annosim.data.readers import Volume, read_label, same_grid

    pred = read_label(path)
    image = Volume(data=np.broadcast_to(np.uint8(0), tuple(geometry.shape)), affine=geometry.affine, path=image_path)
    problem = same_grid(image, pred)
    if problem is not None:
        raise InputError(path, f"prediction grid does not match image {image_path}: {problem}")
    return np.ascontiguousarray(geometry.to_volume(pred.data))


def parse_label_map(text: str | None) -> dict[int, int]:
    """``"2=3,4=10"`` (dataset value = prediction value) -> ``{2: 3, 4: 10}``."""
    out: dict[int, int] = {}
    if not text:
        return out
    for item in str(text).split(","):
        item = item.strip()
        if not item:
            continue
        try:
            a, b = item.split("=")
            out[int(a)] = int(b)
        except ValueError:
            raise ConfigError(f"--label-map item {item!r}: expected DATASET_VALUE=PRED_VALUE") from None
    return out


def score_case(case: Any, pred: np.ndarray, labels: Sequence[int], settings: Sequence[str] = SETTINGS,
               nsd_tolerance: float = 2.0, surface: bool = True,
               label_map: dict[int, int] | None = None,
               metrics: MetricSet = MetricSet()) -> dict[tuple[int, str], dict[str, Any]]:
    """Rows of rounds.csv for one case: ``{(label, setting): row}``.

    ``case`` is an :class:`annosim.data.case.Case`; ``pred`` an integer (Z, Y, X) label map on
    the same grid.
    """
    from annosim.engine.unit import setting_frames

    if pred.shape != case.label.shape:
        raise InputError(case.sources.get("label"), f"prediction shape {pred.shape} != label shape {case.label.shape}")
    label_map = label_map or {}
    rows: dict[tuple[int, str], dict[str, Any]] = {}
    for label in labels:
        gt = case.label == label
        p_all = pred == label_map.get(int(label), int(label))
        for setting in settings:
            frames = setting_frames(gt, setting)
            p = p_all
            if frames is not None:
                keep = np.zeros(p.shape[0], dtype=bool)
                keep[frames] = True
                p = p_all & keep[:, None, None]
            values = metrics.compute(p, gt, case.spacing, nsd_tolerance, surface=surface)
            row = RoundRow(case.case_id, int(label), case.name_of(label), setting, PROTOCOL, 1, 0, 0, values, 0.0)
            rows[(int(label), setting)] = row.record()
    return rows


def score_predictions(pred_dir: str | Path, data_spec: str, out: str | Path, *, model_name: str = "precomputed",
                      settings: Sequence[str] = SETTINGS, labels: Sequence[str | int] | None = None,
                      nsd_tolerance: float = 2.0, surface: bool = True, orientation: str = "canonical",
                      layout: str | None = None, data_root: str | None = None, split: str | None = None,
                      label_names: str | None = None, label_map: dict[int, int] | None = None, metric_specs: Sequence[str] = ()) -> ScoreSummary:
    """Score every case of ``data_spec`` that has a prediction in ``pred_dir``; write (or resume)
    the results folder ``out``. Cases without a prediction, unreadable files and grid mismatches
    go to errors.jsonl; the others are scored.
    """
    from annosim.data.layouts import open_dataset
    from annosim.data.preflight import check_command_line_files, check_label_names
    from annosim.files import check_out_folder
    from annosim.engine.case import resolve_labels
    from annosim.results import ResultsFolder

    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise InputError(pred_dir, "prediction folder not found")
    for s in settings:
        if s not in SETTINGS:
            raise ConfigError(f"unknown setting {s!r}; expected one of {', '.join(SETTINGS)}")
    metrics = MetricSet.with_user(metric_specs)
    check_out_folder(out, "--out")
    dataset = open_dataset(data_spec, layout=layout, data_root=data_root, split=split, label_names=label_names)
    check_command_line_files(dataset)
    check_label_names(dataset.cases, [str(t) for t in labels] if labels else None)
    config = {
        "protocols": [{"name": PROTOCOL, "max_rounds": 1}],
        "model": {"name": model_name, "pred_dir": str(pred_dir.resolve()),
                  **({"label_map": {str(k): v for k, v in sorted(label_map.items())}} if label_map else {})},
        "data": dataset.describe(),
        "settings": list(settings),
        "labels": list(labels) if labels else None,
        "seed": 0,
        "nsd_tolerance": float(nsd_tolerance),
        "surface_metrics": bool(surface),
        "metrics": metrics.describe(),
        "orientation": orientation,
    }
    meta = {**provenance(), "command": "score", "argv": sys.argv[1:]}
    summary = ScoreSummary(Path(out))
    with ResultsFolder(out, round_columns(metrics.columns)).open(config, meta) as store:
        for ref in dataset.cases:
            pred_path = find_prediction(pred_dir, ref.case_id)
            if pred_path is None:
                err = f"{pred_dir}: no prediction named {ref.case_id}{{{','.join(PRED_SUFFIXES)}}}"
                store.write_error(ErrorRecord(ref.case_id, None, "prediction", err))
                summary.errors.append({"case": ref.case_id, "error": err})
                continue
            try:
                case = ref.load(orientation)
                pred = read_prediction(pred_path, case.geometry, case.sources.get("image", "image"))
                values, problems = resolve_labels(case, labels)
            except InputError as exc:
                store.write_error(ErrorRecord(ref.case_id, None, "read", str(exc)))
                summary.errors.append({"case": ref.case_id, "error": str(exc)})
                continue
            for msg in problems:
                store.write_error(ErrorRecord(ref.case_id, None, "labels", msg))
                summary.errors.append({"case": ref.case_id, "error": msg})
            summary.cases += 1
            done = {(v, st) for v in values for st in settings if store.is_done(UnitKey(case.case_id, v, st, PROTOCOL))}
            summary.skipped += len(done)
            todo = [v for v in values if any((v, st) not in done for st in settings)]
            rows = score_case(case, pred, todo, settings, nsd_tolerance, surface, label_map, metrics)
            for (label, setting), row in rows.items():
                if (label, setting) in done:
                    continue
                store.write_unit(UnitKey(case.case_id, label, setting, PROTOCOL), [row], [])
                summary.units += 1
    return summary


def load_scored_prediction(meta: dict[str, Any], case: Any, label: int) -> np.ndarray | None:
    """For QC images of a scored run: the bool (Z, Y, X) prediction of ``label`` in ``case``
    (oriented like it), or None when run.json names no prediction folder or the file is gone."""
    model = meta.get("model") or {}
    if not model.get("pred_dir"):
        return None
    path = find_prediction(Path(model["pred_dir"]), case.case_id)
    if path is None:
        return None
    pred = read_prediction(path, case.geometry, case.sources.get("image", "image"))
    value = int((model.get("label_map") or {}).get(str(int(label)), int(label)))
    return pred == value
