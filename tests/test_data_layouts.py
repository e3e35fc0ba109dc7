"""Dataset layouts: every sample read through every layout that applies gives the same case.

Fixtures are built in tmp_path and point at ../shared/data through symbolic links (the layouts'
paths stay inside each dataset root; nothing is copied).
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest

from annosim.data.layouts import case_id_from_path, detect_layout, open_dataset
from annosim.errors import ConfigError, InputError

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "vista-datalists"

# sample -> (image relative to shared data, label files, label_names argument for layouts without names)
SAMPLES = {
    "totalseg": ("totalseg-abdomen/ct.nii.gz", ["totalseg-abdomen/seg.nii.gz"], None),
    "sts002": ("ibsi-sts/STS_002/CT_image.nii.gz", ["ibsi-sts/STS_002/CT_mask.nii.gz"], "1=GTV"),
    "sts019": ("ibsi-sts/STS_019/CT_image.nii.gz", ["ibsi-sts/STS_019/CT_mask.nii.gz"], "1=GTV"),
    # three NRRD structures on a DICOM series grid: in glob (sorted) order everywhere
    "dcmqi": (
        "dcmqi-ct-3slice/ct",
        ["dcmqi-ct-3slice/heart_seg.nrrd", "dcmqi-ct-3slice/liver_seg.nrrd", "dcmqi-ct-3slice/spine_seg.nrrd"],
        None,
    ),
}
NIFTI_SAMPLES = ["totalseg", "sts002", "sts019"]


def _names_for(shared: Path, sample: str) -> dict[int, str]:
    if sample == "totalseg":
        return {int(k): v for k, v in json.loads((shared / "totalseg-abdomen/labels.json").read_text()).items()}
    return {1: "GTV"}


def _reference(shared: Path, sample: str):
    image, labels, names = SAMPLES[sample]
    label_spec = ",".join(str(shared / p) for p in labels)
    return open_dataset(f"{shared / image} {label_spec}", label_names=names).cases[0].load()


def _assert_same(case, ref):
    assert case.image.dtype == np.float32 and np.array_equal(case.image, ref.image)
    assert np.array_equal(case.label, ref.label)
    assert case.spacing == ref.spacing
    assert case.label_names == ref.label_names
    assert case.orientation == ref.orientation


def _link(target: Path, link: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, link)


@pytest.mark.parametrize("sample", NIFTI_SAMPLES)
def test_msd_layout_matches_pair(shared_data, tmp_path, sample):
    image, labels, _ = SAMPLES[sample]
    root = tmp_path / "Task99_Sample"
    _link(shared_data / image, root / "imagesTr" / f"{sample}.nii.gz")
    _link(shared_data / labels[0], root / "labelsTr" / f"{sample}.nii.gz")
    names = {"0": "background", **{str(k): v for k, v in _names_for(shared_data, sample).items()}}
    (root / "dataset.json").write_text(json.dumps({
        "name": "Sample", "labels": names, "numTraining": 1, "test": [],
        "training": [{"image": f"./imagesTr/{sample}.nii.gz", "label": f"./labelsTr/{sample}.nii.gz"}],
    }))
    assert detect_layout(root) == "msd"
    ds = open_dataset(root)
    assert (ds.name, ds.layout, ds.split, len(ds)) == ("Sample", "msd", "training", 1)
    assert ds.cases[0].case_id == sample
    _assert_same(ds.cases[0].load(), _reference(shared_data, sample))


@pytest.mark.parametrize("sample", NIFTI_SAMPLES)
def test_nnunet_layout_matches_pair(shared_data, tmp_path, sample):
    image, labels, _ = SAMPLES[sample]
    root = tmp_path / "Dataset099_Sample"
    for sub in ("Tr", "Ts"):
        _link(shared_data / image, root / f"images{sub}" / f"{sample}{sub}_0000.nii.gz")
        _link(shared_data / labels[0], root / f"labels{sub}" / f"{sample}{sub}.nii.gz")
    names = {"background": 0, **{v: k for k, v in _names_for(shared_data, sample).items()}}
    (root / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "CT"}, "labels": names, "numTraining": 1, "file_ending": ".nii.gz",
    }))
    assert detect_layout(root) == "nnunet"
    ds = open_dataset(root)
    assert (ds.layout, ds.split, [c.case_id for c in ds]) == ("nnunet", "testing", [f"{sample}Ts"])
    ref = _reference(shared_data, sample)
    _assert_same(ds.cases[0].load(), ref)
    train = open_dataset(root / "dataset.json", split="training")
    assert [c.case_id for c in train] == [f"{sample}Tr"]
    _assert_same(train.cases[0].load(), ref)


@pytest.mark.parametrize("sample", list(SAMPLES))
def test_datalist_layout_matches_pair(shared_data, tmp_path, sample):
    image, labels, names = SAMPLES[sample]
    data_root = tmp_path / "data"
    _link(shared_data / Path(image).parts[0], data_root / Path(image).parts[0])
    label = labels[0] if len(labels) == 1 else labels  # several files: a JSON list
    (tmp_path / "lists").mkdir()
    datalist = tmp_path / "lists" / "sample_folds.json"
    datalist.write_text(json.dumps({
        "training": [{"image": image, "label": label, "fold": 1}],
        "testing": [{"image": image, "label": label}],
    }))
    assert detect_layout(datalist) == "datalist"
    ref = _reference(shared_data, sample)
    for split in (None, "fold:1", "training"):
        ds = open_dataset(datalist, data_root=data_root, split=split, label_names=names)
        assert ds.split == (split or "testing") and len(ds) == 1
        _assert_same(ds.cases[0].load(), ref)
    with pytest.raises(ConfigError, match="no training entries with fold 0"):
        open_dataset(datalist, data_root=data_root, split="fold:0")


@pytest.mark.parametrize("sample", list(SAMPLES))
def test_csv_layout_matches_pair(shared_data, tmp_path, sample):
    image, labels, names = SAMPLES[sample]
    top = Path(image).parts[0]
    _link(shared_data / top, tmp_path / top)
    manifest = tmp_path / "cases.csv"
    with manifest.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image", "label", "case"])
        writer.writerow([image, ",".join(labels), f"my-{sample}"])  # several labels: quoted, comma-separated
    assert detect_layout(manifest) == "csv"
    ds = open_dataset(manifest, label_names=names)
    assert [c.case_id for c in ds] == [f"my-{sample}"]
    _assert_same(ds.cases[0].load(), _reference(shared_data, sample))


def test_pair_label_list_and_glob_agree(shared_data):
    d = shared_data / "dcmqi-ct-3slice"
    listed = ",".join(str(d / f"{n}_seg.nrrd") for n in ("heart", "liver", "spine"))
    a = open_dataset(f"{d / 'ct'} {listed}").cases[0].load()
    b = open_dataset(f"'{d / 'ct'}' '{d / '*_seg.nrrd'}'").cases[0].load()
    _assert_same(a, b)
    assert a.label_names == {1: "liver", 2: "spine", 3: "heart"}  # each file's own value
    assert a.notes == ["'liver' overlaps 'heart' in 522 voxels; 'liver' kept there"]


def test_pair_relative_paths_use_data_root(shared_data):
    ds = open_dataset("ct.nii.gz seg.nii.gz", data_root=shared_data / "totalseg-abdomen")
    assert ds.cases[0].image == str(shared_data / "totalseg-abdomen" / "ct.nii.gz")
    assert ds.describe() == {
        "spec": "ct.nii.gz seg.nii.gz", "layout": "pair", "name": "ct",
        "root": str(shared_data / "totalseg-abdomen"), "split": None, "n_cases": 1,
    }


def test_same_stems_get_unique_case_ids(shared_data, tmp_path):
    _link(shared_data / "ibsi-sts", tmp_path / "ibsi-sts")
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "image,label\n"
        "ibsi-sts/STS_002/CT_image.nii.gz,ibsi-sts/STS_002/CT_mask.nii.gz\n"
        "ibsi-sts/STS_019/CT_image.nii.gz,ibsi-sts/STS_019/CT_mask.nii.gz\n"
    )
    ds = open_dataset(manifest)
    assert [c.case_id for c in ds] == ["ibsi-sts_STS_002_CT_image", "ibsi-sts_STS_019_CT_image"]


def test_open_dataset_reads_nothing_paper_datalist(tmp_path):
    path = REFERENCE / "Task03_5_folds.json"
    if not path.is_file():
        pytest.skip("../shared/reference/vista-datalists not found")
    data = json.loads(path.read_text())
    ds = open_dataset(path, data_root=tmp_path)  # no image exists under tmp_path: opening reads nothing
    assert (ds.layout, ds.split, len(ds)) == ("datalist", "testing", len(data["testing"]))
    assert ds.cases[0].case_id == case_id_from_path(data["testing"][0]["image"])
    assert data["label_dict"] == {"1": "liver", "2": "hepatic tumor"}
    assert ds.cases[0].label_names == {1: "liver", 2: "hepatic tumor"}
    fold0 = open_dataset(path, data_root=tmp_path, split="fold:0")
    assert len(fold0) == sum(1 for e in data["training"] if e.get("fold") == 0) > 0
    with pytest.raises(InputError, match="file not found"):
        ds.cases[0].load()


def test_label_names_argument_overrides_dataset_names(shared_data):
    d = shared_data / "totalseg-abdomen"
    case = open_dataset(f"{d / 'ct.nii.gz'} {d / 'seg.nii.gz'}", label_names="5=Liver").cases[0].load()
    assert case.label_names[5] == "Liver" and case.label_names[1] == "spleen"


# ------------------------------------------------------------------------------ bad dataset files


def test_bad_path_escaping_root(tmp_path):
    root = tmp_path / "ds"
    root.mkdir()
    (root / "list.json").write_text(json.dumps({"testing": [{"image": "../secret.nii.gz", "label": "l.nii.gz"}]}))
    with pytest.raises(InputError) as e:
        open_dataset(root / "list.json")
    message = str(e.value)
    assert "\n" not in message and "list.json" in message
    assert "'../secret.nii.gz' points outside the dataset root" in message
    (root / "abs.json").write_text(json.dumps({"testing": [{"image": "/etc/passwd", "label": "l.nii.gz"}]}))
    with pytest.raises(InputError, match="'/etc/passwd' points outside the dataset root"):
        open_dataset(root / "abs.json")
    (root / "glob.json").write_text(json.dumps({"testing": [{"image": "i.nii.gz", "label": "../*.nii.gz"}]}))
    with pytest.raises(InputError, match="points outside"):
        open_dataset(root / "glob.json")


def test_csv_manifest_paths_are_the_users_own(tmp_path):
    """Rule (issue 16, item 1): a CSV manifest's absolute paths are taken as they are, relative
    ones resolve against the manifest's folder; no containment check."""
    root = tmp_path / "ds"
    root.mkdir()
    (root / "m.csv").write_text("image,label\n/data/ct/a.nii.gz,/data/seg/a.nii.gz\nb.nii.gz,../seg/b.nii.gz\n")
    ds = open_dataset(root / "m.csv")
    assert [(r.image, r.labels) for r in ds.cases] == [
        ("/data/ct/a.nii.gz", ["/data/seg/a.nii.gz"]),
        (str(root / "b.nii.gz"), [str(tmp_path / "seg" / "b.nii.gz")]),
    ]
    # clashing names outside the root: ids relative to the clashing images' common folder
    (root / "n.csv").write_text("image,label\n/d/STS_002/CT.nii.gz,/d/STS_002/m.nii.gz\n"
                                "/d/STS_019/CT.nii.gz,/d/STS_019/m.nii.gz\n")
    assert [r.case_id for r in open_dataset(root / "n.csv").cases] == ["STS_002_CT", "STS_019_CT"]


def test_bad_malformed_dataset_json(tmp_path):
    root = tmp_path / "Task01"
    root.mkdir()
    (root / "dataset.json").write_text('{"labels": {"0": "background",}')
    with pytest.raises(InputError) as e:
        open_dataset(root)
    message = str(e.value)
    assert "\n" not in message and "dataset.json: not valid JSON" in message and "line 1" in message
    (root / "dataset.json").write_text('{"labels": {"0": "background"}, "training": [{"image": "a.nii.gz"}]}')
    with pytest.raises(InputError, match=r"dataset.json: training entry 1 'label': path is missing"):
        open_dataset(root)
    (root / "dataset.json").write_text('["not", "an", "object"]')
    with pytest.raises(InputError, match="expected a JSON object"):
        open_dataset(root, layout="msd")


def test_bad_malformed_csv(tmp_path):
    (tmp_path / "a.csv").write_text("img,seg\nx.nii.gz,y.nii.gz\n")
    with pytest.raises(InputError, match=r"a.csv: missing column 'image' \(header: img,seg\)"):
        open_dataset(tmp_path / "a.csv")
    (tmp_path / "b.csv").write_text("image,label\nx.nii.gz,y.nii.gz,extra\n")
    with pytest.raises(InputError, match="b.csv: line 2: 3 fields, header has 2"):
        open_dataset(tmp_path / "b.csv")
    (tmp_path / "c.csv").write_text("image,label,case\nx.nii.gz,y.nii.gz,A\nz.nii.gz,w.nii.gz,A\n")
    with pytest.raises(InputError, match="c.csv: case 'A' appears more than once"):
        open_dataset(tmp_path / "c.csv")
    (tmp_path / "d.csv").write_text("")
    with pytest.raises(InputError, match="d.csv: empty CSV"):
        open_dataset(tmp_path / "d.csv")


def test_bad_spec_forms(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        open_dataset(tmp_path / "nothing.json")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="folder has no dataset.json"):
        open_dataset(tmp_path / "empty")
    (tmp_path / "ct.nii.gz").write_bytes(b"")
    with pytest.raises(InputError, match="an image alone has no label"):
        open_dataset(tmp_path / "ct.nii.gz")
    with pytest.raises(ConfigError, match="unknown layout"):
        open_dataset(tmp_path / "ct.nii.gz", layout="bids")
    with pytest.raises(ConfigError, match="no split 'validation'"):
        (tmp_path / "l.json").write_text('{"training": [], "testing": []}')
        open_dataset(tmp_path / "l.json", split="validation")
