"""Dataset specs -> lists of cases, read lazily one at a time.

A *spec* names a dataset in one of these layouts (detected automatically, or forced with
``layout=``):

``msd``       Medical Segmentation Decathlon task folder: ``dataset.json`` with a ``training`` list
              of ``{"image", "label"}`` and ``labels`` as ``{"0": "background", "1": "spleen"}``.
``nnunet``    nnU-Net v2 raw folder: ``dataset.json`` with ``labels`` as ``{"background": 0, ...}``
              and ``file_ending``; ``imagesTr/CASE_0000.ext`` + ``labelsTr/CASE.ext``, and
              ``imagesTs``/``labelsTs``. Split ``testing`` (default when ``labelsTs`` exists) or
              ``training``.
``datalist``  MONAI datalist ``.json``: lists such as ``training``/``testing`` of
              ``{"image", "label"[, "fold"]}``; paths relative to ``data_root`` (default: the JSON's
              folder). Split ``testing`` (default when present), ``training``, any other list key, or
              ``fold:K`` (training entries with ``fold == K``). Names from ``label_dict``/``labels``.
``csv``       Manifest ``.csv`` with a header ``image,label[,case]``; paths relative to
              ``data_root`` (default: the CSV's folder).
``btcv``, ``abdomenct1k``  the folders of BTCV (``RawData/Training/img``, ``label``) and
              AbdomenCT-1K (``AbdomenCT-1K-ImagePart*``, ``Mask``), which have no
              ``dataset.json`` (see :mod:`annosim.data.challenge_layouts`).
``pair``      ``"IMAGE LABEL"`` (shell quoting allowed). ``LABEL`` may be several files separated by
              commas, or a glob such as ``"dir/*_seg.nrrd"``: structures on the image grid merged
              into one label map (see :func:`annosim.data.readers.read_labels_on`).

In every layout a label may be a 3D Slicer ``.seg.nrrd`` (names and values from its header), an
image may be a DICOM series folder. Paths inside dataset JSON/CSV files resolve against the
dataset root; one that points outside it (``../``, an absolute path elsewhere) is an
:class:`~annosim.errors.InputError`. Symbolic links inside the root are followed without complaint.
A CSV manifest is the user's own file: its absolute paths are taken as they are and relative
ones resolve against ``data_root`` (default: the CSV's folder), with no containment check.

Label names, weakest first: ``labels.json`` beside the label file, names in the label files
themselves, the dataset's own (``dataset.json``, ``label_dict``), the ``label_names`` argument.
"""

from __future__ import annotations

import csv
import json
import os
import shlex
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from annosim.data import challenge_layouts
from annosim.data.case import Case, check_case_names
from annosim.data.orientation import ORIENTATIONS, orient
from annosim.data.paths import _expand_label_spec, _inside, _unique_ids, _user_path, case_id_from_path
from annosim.data.readers import (
    labels_json_names,
    parse_label_names,
    read_image,
    read_labels_on,
)
from annosim.errors import ConfigError, InputError

#: Layout names accepted by :func:`open_dataset`.
LAYOUTS = ("msd", "nnunet", "datalist", "csv", "btcv", "abdomenct1k", "pair")


@dataclass
class CaseRef:
    """Where one case lies on disk; nothing is read until :meth:`load`.

    Attributes
    ----------
    case_id : str
        Stable identifier, unique within the dataset.
    image : str
        Image file or DICOM series folder.
    labels : list of str
        One label file, or several to merge (one structure each).
    label_names : dict[int, str]
        Names from the dataset and the ``label_names`` argument; names found in the files are added
        by :meth:`load`.
    """

    case_id: str
    image: str
    labels: list[str]
    label_names: dict[int, str] = field(default_factory=dict)

    def load(self, orientation: str = "canonical") -> Case:
        """Read image and labels, check they share a grid, orient both to ``(Z, Y, X)``.

        Raises :class:`InputError` (naming the file) for anything wrong with the files.
        """
        if orientation not in ORIENTATIONS:
            raise ConfigError(f"unknown orientation {orientation!r}; expected one of {', '.join(ORIENTATIONS)}")
        image = read_image(self.image)
        label = read_labels_on(image, self.labels)
        names = labels_json_names(self.labels[0])
        names.update(label.label_names)
        names.update(self.label_names)
        check_case_names(self.case_id, names, self.labels[0])
        volume, geometry = orient(image.data, image.affine, orientation)
        label_zyx = np.ascontiguousarray(geometry.to_volume(label.data))
        return Case(
            case_id=self.case_id,
            image=volume,
            label=label_zyx,
            spacing=geometry.spacing,
            label_names=names,
            orientation=orientation,
            geometry=geometry,
            sources={"image": self.image, "label": ", ".join(self.labels)},
            notes=list(label.notes),
        )


@dataclass
class Dataset:
    """A list of :class:`CaseRef` with where it came from."""

    name: str
    layout: str
    root: Path
    cases: list[CaseRef]
    spec: str = ""
    split: str | None = None

    def __len__(self) -> int:
        return len(self.cases)

    def __iter__(self) -> Iterator[CaseRef]:
        return iter(self.cases)

    def describe(self) -> dict:
        """JSON-able summary for run.json: spec, layout, name, root, split, number of cases."""
        return {
            "spec": self.spec,
            "layout": self.layout,
            "name": self.name,
            "root": str(self.root),
            "split": self.split,
            "n_cases": len(self.cases),
        }


# ----------------------------------------------------------------------------------- helpers


def _load_json(path: Path) -> dict:
    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(path, f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from exc
    except (UnicodeDecodeError, OSError) as exc:
        raise InputError(path, f"cannot read: {exc}") from exc
    if not isinstance(data, dict):
        raise InputError(path, "expected a JSON object at the top level")
    return data


def _json_layout(path: Path) -> str:
    """``msd`` or ``nnunet`` from a ``dataset.json``'s form."""
    data = _load_json(path)
    labels = data.get("labels")
    values = labels.values() if isinstance(labels, dict) else ()
    name_to_value = any(isinstance(v, (int, list)) and not isinstance(v, bool) for v in values)
    return "nnunet" if "file_ending" in data or name_to_value else "msd"


def detect_layout(spec: str | Path) -> str:
    """Guess the layout of ``spec`` (see the module docstring); raises InputError when impossible."""
    text = str(spec).strip()
    path = Path(text)
    if path.exists():
        if path.is_dir():
            if (path / "dataset.json").is_file():
                return _json_layout(path / "dataset.json")
            if challenge_layouts.btcv_training(path) is not None:
                return "btcv"
            if challenge_layouts.is_abdomenct1k(path):
                return "abdomenct1k"
            raise InputError(
                path, "folder has no dataset.json (not an MSD or nnU-Net folder); for one image give 'IMAGE LABEL'"
            )
        name = path.name.lower()
        if name == "dataset.json":
            return _json_layout(path)
        if name.endswith(".json"):
            return "datalist"
        if name.endswith((".csv", ".tsv")):
            return "csv"
        raise InputError(path, "an image alone has no label: give 'IMAGE LABEL'")
    tokens = _split_pair(text)
    if len(tokens) == 2:
        return "pair"
    if len(tokens) == 1:
        raise InputError(text, "file not found")
    raise InputError(
        None,
        f"cannot tell the layout of dataset spec {text!r}: expected a dataset folder, a .json datalist, "
        "a .csv manifest or 'IMAGE LABEL'",
    )


def _split_pair(text: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError as exc:
        raise InputError(None, f"dataset spec {text!r}: {exc}") from exc


# ----------------------------------------------------------------------------------- layouts


def _open_msd(spec: Path, split: str | None, names: dict[int, str]) -> Dataset:
    folder = spec.parent if spec.is_file() else spec
    json_path = folder / "dataset.json"
    data = _load_json(json_path)
    split = split or "training"
    if split != "training":
        raise ConfigError(f"MSD datasets have labels only for split 'training', not {split!r}")
    entries = data.get("training")
    if not isinstance(entries, list):
        raise InputError(json_path, "no 'training' list")
    ds_names = parse_label_names(data["labels"]) if isinstance(data.get("labels"), dict) else {}
    ds_names.update(names)
    refs = []
    for i, entry in enumerate(entries):
        where = f"training entry {i + 1}"
        if not isinstance(entry, dict):
            raise InputError(json_path, f"{where}: expected an object with 'image' and 'label'")
        image = _inside(folder, entry.get("image"), json_path, f"{where} 'image'")
        label = _inside(folder, entry.get("label"), json_path, f"{where} 'label'")
        refs.append(CaseRef(case_id_from_path(image), image, [label], dict(ds_names)))
    name = str(data.get("name") or folder.name)
    return Dataset(name, "msd", folder, _unique_ids(refs, folder), split=split)


def _open_nnunet(spec: Path, split: str | None, names: dict[int, str]) -> Dataset:
    folder = spec.parent if spec.is_file() else spec
    json_path = folder / "dataset.json"
    data = _load_json(json_path)
    ending = data.get("file_ending")
    if not isinstance(ending, str) or not ending:
        raise InputError(json_path, "nnU-Net dataset.json has no 'file_ending'")
    if split is None:
        split = "testing" if (folder / "labelsTs").is_dir() else "training"
    dirs = {"training": ("imagesTr", "labelsTr"), "testing": ("imagesTs", "labelsTs"), "test": ("imagesTs", "labelsTs")}
    if split not in dirs:
        raise ConfigError(f"nnU-Net split must be 'training' or 'testing', not {split!r}")
    images_dir, labels_dir = (folder / d for d in dirs[split])
    if not images_dir.is_dir():
        raise InputError(images_dir, "folder not found")
    suffix = "_0000" + ending
    images = sorted(p for p in images_dir.iterdir() if p.name.endswith(suffix))
    if not images:
        raise InputError(images_dir, f"no images named CASE{suffix}")
    ds_names = parse_label_names(data["labels"]) if isinstance(data.get("labels"), dict) else {}
    ds_names.update(names)
    refs = []
    for image in images:
        case = image.name[: -len(suffix)]
        refs.append(CaseRef(case, str(image), [str(labels_dir / (case + ending))], dict(ds_names)))
    return Dataset(folder.name, "nnunet", folder, refs, split=split)


def _open_datalist(spec: Path, data_root: Path | None, split: str | None, names: dict[int, str]) -> Dataset:
    data = _load_json(spec)
    root = data_root if data_root is not None else spec.parent
    if split is None:
        split = "testing" if isinstance(data.get("testing"), list) and data["testing"] else "training"
    if split.startswith("fold:"):
        try:
            fold = int(split.split(":", 1)[1])
        except ValueError:
            raise ConfigError(f"split {split!r}: expected fold:K with an integer K") from None
        training = data.get("training")
        if not isinstance(training, list):
            raise InputError(spec, "no 'training' list to take folds from")
        entries = [e for e in training if isinstance(e, dict) and e.get("fold") == fold]
        if not entries:
            raise ConfigError(f"{spec}: no training entries with fold {fold}")
    else:
        entries = data.get(split)
        if not isinstance(entries, list):
            lists = [k for k, v in data.items() if isinstance(v, list)]
            raise ConfigError(f"{spec}: no split {split!r}; it has {', '.join(lists) or 'no lists'}")
    ds_names: dict[int, str] = {}
    for key in ("label_dict", "labels"):
        if isinstance(data.get(key), dict):
            ds_names = parse_label_names(data[key])
            break
    ds_names.update(names)
    refs = []
    for i, entry in enumerate(entries):
        where = f"{split} entry {i + 1}"
        if not isinstance(entry, dict):
            raise InputError(spec, f"{where}: expected an object with 'image' and 'label'")
        image = entry.get("image")
        if isinstance(image, list) and len(image) == 1:
            image = image[0]
        image_path = _inside(root, image, spec, f"{where} 'image'")
        label = entry.get("label")
        if isinstance(label, list):
            labels = [_inside(root, lab, spec, f"{where} 'label'") for lab in label]
        elif isinstance(label, str):
            labels = _expand_label_spec(label, root, spec, f"{where} 'label'", check_root=True)
        else:
            raise InputError(spec, f"{where}: no 'label'")
        if not labels:
            raise InputError(spec, f"{where}: empty 'label' list")
        refs.append(CaseRef(case_id_from_path(image_path), image_path, labels, dict(ds_names)))
    return Dataset(spec.stem, "datalist", root, _unique_ids(refs, root), split=split)


def _open_csv(spec: Path, data_root: Path | None, names: dict[int, str]) -> Dataset:
    if not spec.is_file():
        raise InputError(spec, "file not found")
    root = data_root if data_root is not None else spec.parent
    delimiter = "\t" if spec.name.lower().endswith(".tsv") else ","
    try:
        with spec.open(newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh, delimiter=delimiter))
    except (UnicodeDecodeError, csv.Error, OSError) as exc:
        raise InputError(spec, f"cannot read CSV: {exc}") from exc
    rows = [(n, r) for n, r in enumerate(rows, start=1) if any(c.strip() for c in r)]
    if not rows:
        raise InputError(spec, "empty CSV: expected a header image,label[,case]")
    header = [c.strip().lower() for c in rows[0][1]]
    for column in ("image", "label"):
        if column not in header:
            raise InputError(spec, f"missing column {column!r} (header: {','.join(header)})")
    col = {name: header.index(name) for name in header}
    case_col = next((col[k] for k in ("case", "case_id", "id") if k in col), None)
    refs = []
    for line, row in rows[1:]:
        if len(row) != len(header):
            raise InputError(spec, f"line {line}: {len(row)} fields, header has {len(header)}")
        where = f"line {line}"
        image = _user_path(root, row[col["image"]], spec, f"{where} 'image'")
        labels = _expand_label_spec(row[col["label"]], root, spec, f"{where} 'label'", check_root=False)
        case_id = row[case_col].strip() if case_col is not None and row[case_col].strip() else case_id_from_path(image)
        refs.append(CaseRef(case_id, image, labels, dict(names)))
    if case_col is not None:
        dup = [c for c, n in Counter(r.case_id for r in refs).items() if n > 1]
        if dup:
            raise InputError(spec, f"case {dup[0]!r} appears more than once")
    if not refs:
        raise InputError(spec, "no cases listed")
    return Dataset(spec.stem, "csv", root, _unique_ids(refs, root))


def _open_pair(text: str, data_root: Path | None, names: dict[int, str]) -> Dataset:
    tokens = _split_pair(text)
    if len(tokens) != 2:
        raise InputError(None, f"dataset spec {text!r}: expected 'IMAGE LABEL', got {len(tokens)} parts")
    base = data_root if data_root is not None else Path.cwd()
    image = _user_path(base, tokens[0], None, "image")
    labels = _expand_label_spec(tokens[1], base, None, "label", check_root=False)
    root = data_root if data_root is not None else Path(image).parent
    case_id = case_id_from_path(image)
    return Dataset(case_id, "pair", Path(root), [CaseRef(case_id, image, labels, dict(names))])


def _open_listed(layout: str, folder: Path, split: str | None, names: dict[int, str]) -> Dataset:
    """A BTCV or AbdomenCT-1K folder (training cases only), with the dataset's own label names."""
    if split not in (None, "training"):
        raise ConfigError(f"{layout} folders have labels only for split 'training', not {split!r}")
    if layout == "btcv":
        root, listed = challenge_layouts.list_btcv(folder)
        own, name = challenge_layouts.BTCV_NAMES, "BTCV"
    else:
        root, listed = folder, challenge_layouts.list_abdomenct1k(folder)
        own, name = challenge_layouts.ABDOMENCT1K_NAMES, "AbdomenCT-1K"
    label_names = {**own, **names}
    refs = [CaseRef(case_id_from_path(image), image, [label], dict(label_names)) for image, label in listed]
    return Dataset(name, layout, root, _unique_ids(refs, root), split="training")


def open_dataset(
    spec: str | Path,
    *,
    layout: str | None = None,
    data_root: str | Path | None = None,
    split: str | None = None,
    label_names: str | dict[int, str] | None = None,
) -> Dataset:
    """Open a dataset spec (see the module docstring) without reading any image.

    ``layout`` forces one of :data:`LAYOUTS`; ``data_root`` is the folder datalist/CSV paths
    (and pair paths) are relative to; ``split`` picks a split where the layout has them;
    ``label_names`` (dict, JSON text, JSON file or ``"1=liver,2=tumour"``) overrides names.
    """
    text = str(spec).strip()
    if layout is None:
        layout = detect_layout(text)
    if layout not in LAYOUTS:
        raise ConfigError(f"unknown layout {layout!r}; expected one of {', '.join(LAYOUTS)}")
    names = parse_label_names(label_names) if label_names else {}
    root = Path(os.path.abspath(os.path.expanduser(str(data_root)))) if data_root is not None else None
    if root is not None and not root.is_dir():
        raise InputError(root, "data root folder not found")
    path = Path(os.path.abspath(os.path.expanduser(text))) if layout != "pair" else Path(text)
    if layout in ("msd", "nnunet"):
        folder = path.parent if path.is_file() else path
        if not (folder / "dataset.json").is_file():
            raise InputError(folder / "dataset.json", "file not found")
        ds = _open_msd(path, split, names) if layout == "msd" else _open_nnunet(path, split, names)
    elif layout == "datalist":
        ds = _open_datalist(path, root, split, names)
    elif layout in ("btcv", "abdomenct1k"):
        if not path.is_dir():
            raise InputError(path, "folder not found")
        ds = _open_listed(layout, path, split, names)
    elif layout == "csv":
        if split is not None:
            raise ConfigError("a CSV manifest has no splits; drop --split")
        ds = _open_csv(path, root, names)
    else:
        if split is not None:
            raise ConfigError("an 'IMAGE LABEL' pair has no splits; drop --split")
        ds = _open_pair(text, root, names)
    for ref in ds.cases:  # a newline or tab in a name would break rows, JSON lines and paths
        check_case_names(ref.case_id, ref.label_names, text)
    ds.spec = text
    return ds
