"""``annosim score`` on real masks: the totalseg-abdomen label map with the right kidney eroded
and a false-positive gallbladder blob, scored against the original; then reported together
with an interactive run."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from annosim.cli import main
from annosim.metrics import round_metrics

LABELS = "spleen,kidney_right,gallbladder"


def _spec(shared_data: Path) -> str:
    d = shared_data / "totalseg-abdomen"
    return f"{d / 'ct.nii.gz'} {d / 'seg.nii.gz'}"


@pytest.fixture(scope="module")
def truth(shared_data):
    img = nib.load(shared_data / "totalseg-abdomen" / "seg.nii.gz")
    return np.asarray(img.dataobj).astype(np.int16), img.affine


@pytest.fixture(scope="module")
def prediction(truth, tmp_path_factory):
    """Stored-order label map: kidney_right (2) eroded once; a 3x3 gallbladder (4) blob on a
    slice (stored axis 2) without gallbladder; case id 'ct' as the pair spec names it."""
    seg, affine = truth
    pred = seg.copy()
    kidney = seg == 2
    pred[kidney & ~ndimage.binary_erosion(kidney)] = 0
    gb_slices = np.flatnonzero((seg == 4).any(axis=(0, 1)))
    free = [k for k in range(seg.shape[2]) if k not in set(gb_slices)]
    k = free[0]
    pred[10:13, 10:13, k] = 4
    folder = tmp_path_factory.mktemp("pred")
    nib.save(nib.Nifti1Image(pred.astype(np.uint8), affine), folder / "ct.nii.gz")
    return folder, pred


@pytest.fixture(scope="module")
def scored(shared_data, prediction, tmp_path_factory):
    out = tmp_path_factory.mktemp("scored") / "run"
    assert main(["score", "--pred", str(prediction[0]), "--data", _spec(shared_data), "--out", str(out),
                 "--labels", LABELS]) == 0
    return out


def test_rows_match_direct_metrics(scored, truth, prediction):
    seg, _ = truth
    pred = prediction[1]
    rows = pd.read_csv(scored / "rounds.csv")
    assert len(rows) == 6
    assert set(rows["round"]) == {1} and set(rows["protocol"]) == {"automatic"}
    assert set(rows["clicks"]) == {0} and set(rows["annotated_slices"]) == {0}
    r = rows.set_index(["label_name", "setting"])
    spleen = r.loc[("spleen", "full")]
    assert (spleen["dice"], spleen["nsd"], spleen["hd95"], spleen["fp_slices"]) == (1.0, 1.0, 0.0, 0)
    # kidney: metrics on the stored arrays (3 mm isotropic, so the orientation does not matter)
    direct = round_metrics(np.moveaxis(pred == 2, 2, 0), np.moveaxis(seg == 2, 2, 0), (3.0, 3.0, 3.0))
    g, e = int((seg == 2).sum()), int((pred == 2).sum())
    assert r.loc[("kidney_right", "full"), "dice"] == pytest.approx(2 * e / (e + g), abs=1e-15)
    for key in ("dice", "nsd", "hd95", "fp_slices", "gt_slices"):
        assert r.loc[("kidney_right", "full"), key] == pytest.approx(direct[key], abs=1e-12)
    # gallbladder: the blob is a false-positive slice in 'full' and gone in 'fg-only'
    gb_full, gb_fg = r.loc[("gallbladder", "full")], r.loc[("gallbladder", "fg-only")]
    assert gb_full["fp_slices"] == 1 and gb_fg["fp_slices"] == 0
    assert gb_fg["dice"] == 1.0 and gb_full["dice"] == pytest.approx(2 * (seg == 4).sum() / (2 * (seg == 4).sum() + 9))
    meta = json.loads((scored / "run.json").read_text())
    assert meta["model"]["name"] == "precomputed" and meta["protocols"] == [{"name": "automatic", "max_rounds": 1}]


def test_rerun_resumes_without_duplicates(shared_data, prediction, scored, capsys):
    assert main(["score", "--pred", str(prediction[0]), "--data", _spec(shared_data), "--out", str(scored),
                 "--labels", LABELS]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1].endswith("(0 units written, 6 resumed, 0 errors)")  # the summary table of run
    assert out[0].split()[:3] == ["structure", "full", "fg-only"]
    assert len(pd.read_csv(scored / "rounds.csv")) == 6


def test_label_map_and_model_name(shared_data, truth, tmp_path):
    seg, affine = truth
    pred = seg.copy()
    pred[seg == 2] = 200  # a value the dataset does not use (20 is the colon)
    (tmp_path / "p").mkdir()
    nib.save(nib.Nifti1Image(pred.astype(np.uint8), affine), tmp_path / "p" / "ct.nii.gz")
    assert main(["score", "--pred", str(tmp_path / "p"), "--data", _spec(shared_data), "--out", str(tmp_path / "o"),
                 "--labels", "kidney_right", "--label-map", "2=200", "--model-name", "nnunet",
                 "--settings", "full"]) == 0
    rows = pd.read_csv(tmp_path / "o" / "rounds.csv")
    assert rows["dice"].tolist() == [1.0] and rows["setting"].tolist() == ["full"]
    assert json.loads((tmp_path / "o" / "run.json").read_text())["model"]["name"] == "nnunet"


def test_missing_and_mismatched_predictions(shared_data, truth, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["score", "--pred", str(tmp_path / "empty"), "--data", _spec(shared_data),
                 "--out", str(tmp_path / "o1")]) == 1
    errors = [json.loads(line) for line in (tmp_path / "o1" / "errors.jsonl").read_text().splitlines()]
    assert errors[0]["case"] == "ct" and "no prediction named ct" in errors[0]["error"]
    seg, affine = truth
    (tmp_path / "bad").mkdir()
    nib.save(nib.Nifti1Image(seg[:, :, :10].astype(np.uint8), affine), tmp_path / "bad" / "ct.nii.gz")
    assert main(["score", "--pred", str(tmp_path / "bad"), "--data", _spec(shared_data),
                 "--out", str(tmp_path / "o2")]) == 1
    err = json.loads((tmp_path / "o2" / "errors.jsonl").read_text().splitlines()[0])["error"]
    assert "prediction grid does not match image" in err and "shape" in err
    assert "annosim: ct:" in capsys.readouterr().err


def test_scored_run_in_the_report(shared_data, scored, tmp_path):
    out = tmp_path / "rep"
    assert main(["report", str(scored), "--out", str(out), "--dataset-name", "totalseg-abdomen",
                 "--n-boot", "200"]) == 0
    summary = pd.read_csv(out / "summary.csv")
    assert set(summary["model"]) == {"precomputed"} and set(summary["protocol"]) == {"automatic"}
    assert set(summary["n"]) == {1} and set(summary["early_stopped"]) == {0}
    t1 = pd.read_csv(out / "table1.csv")
    assert "right kidney" in set(t1["structure"])
    html = (out / "report.html").read_text()
    assert "predictions were not saved" not in html  # QC outlines come from the --pred folder
    assert len(list((out / "qc").rglob("*.png"))) == 6
